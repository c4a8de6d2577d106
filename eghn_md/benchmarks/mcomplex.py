"""M-complex: charged particles grouped into rigid complexes (the EGHN paper's simulated benchmark).

A system holds ``N`` particles of charge ±1 split into ``M`` complexes of random sizes (at least 2, mean about
``N / M``). Particles interact pairwise with the Coulomb-like force ``F_i = Σ_j q_i q_j (x_i − x_j) / |x_i − x_j|³``
(every component of the total force on a particle clipped to ±``max_force``); each complex moves as one rigid body.
Time step 0.001, a sample every 100 steps; the task maps (x, v) at sample 10 to x at sample 25.

Two rigid-body integrators (semi-implicit Euler, the positions of every complex rebuilt as ``x_c + R r_body`` so
intra-complex distances are exact up to round-off):

* ``"rigid"``: Newton–Euler. Net force / mass → centre-of-mass acceleration; net torque → angular momentum
  ``L``; ``ω = I⁻¹ L`` with the world-frame inertia tensor ``I = R I_body Rᵀ`` (pseudo-inverse for two-particle
  complexes); ``R ← exp(ω dt) R`` (Rodrigues).
* ``"published"`` (default: it reproduces the paper's Linear-baseline error): the approximations of the authors'
  generator — centre acceleration = net force / n² (the mean force divided by the size), ``ω`` itself integrated
  with ``dω = τ / J dt`` where ``J = Σ_i |r_i⊥ω|² / 3``.

Initial conditions follow the authors' generator: σ = (N/5)^(1/3) + 0.5; complex centres uniform in [−σ, σ]³ at
least 1.6 apart (20 tries each); each particle at distance (0.6 … 1.1)·d_min/1.6 from its centre in a random
direction; particle velocities N(0, 1) rescaled to speed 0.5, projected onto the rigid motion (centre velocity = mean,
ω = mean of r × (v − v_c) / |r|²). Sizes: ``M`` distinct values from 2 … 2·(N/M) − 2 with weights decreasing in the
size. Simulations in which a velocity component exceeds 5 at the target sample are redrawn.

Files are ``.npz`` holding, per split, flattened node arrays with graph offsets ``{split}_ptr``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from eghn_md.benchmarks._graphs import GraphList
from eghn_md.choices import SPLITS
from eghn_md.data.batch import GraphBatch
from eghn_md.errors import DataError, UsageError

__all__ = [
    "MComplexConfig",
    "DYNAMICS",
    "SPLITS",
    "sample_complex_sizes",
    "initial_state",
    "simulate",
    "generate",
    "save",
    "load",
    "MComplexDataset",
    "PAPER_TABLE",
    "PAPER_TABLE_MULTI",
    "paper_row",
]

DYNAMICS = ("rigid", "published")
FORMAT_VERSION = 1

#: The paper's Table (×10⁻²), single-system columns (M, N/M) → model → (mean, std).
PAPER_TABLE = {
    (3, 3): {"linear": (35.15, 0.01), "gnn": (16.00, 0.11), "rf": (14.20, 0.09), "egnn": (12.69, 0.19),
             "eghn": (11.58, 0.01)},
    (5, 5): {"linear": (35.22, 0.00), "gnn": (17.55, 0.19), "rf": (18.37, 0.12), "egnn": (15.37, 0.13),
             "eghn": (14.42, 0.08)},
    (5, 10): {"linear": (30.14, 0.00), "gnn": (16.15, 0.08), "rf": (17.08, 0.03), "egnn": (15.12, 0.11),
              "eghn": (14.29, 0.40)},
    (10, 10): {"linear": (31.44, 0.01), "gnn": (15.91, 0.15), "rf": (18.57, 0.30), "egnn": (14.64, 0.27),
               "eghn": (13.09, 0.66)},
}

#: The paper's "multiple systems" columns (J = 5 system types with the same M and mean size), ×10⁻², mean ± std.
PAPER_TABLE_MULTI = {
    (3, 3): {"linear": (35.91, 0.01), "gnn": (16.76, 0.13), "rf": (15.17, 0.10), "egnn": (13.33, 0.12),
             "eghn": (12.80, 0.56)},
    (5, 5): {"linear": (35.29, 0.01), "gnn": (17.58, 0.11), "rf": (18.55, 0.12), "egnn": (15.48, 0.16),
             "eghn": (14.85, 0.03)},
    (5, 10): {"linear": (30.88, 0.01), "gnn": (16.55, 0.21), "rf": (17.24, 0.11), "egnn": (15.29, 0.12),
              "eghn": (14.50, 0.08)},
    (10, 10): {"linear": (32.49, 0.01), "gnn": (16.05, 0.16), "rf": (19.34, 0.25), "egnn": (15.02, 0.18),
               "eghn": (13.11, 0.92)},
}


def paper_row(n_complex: int, mean_size: int, system_types: int) -> Optional[dict]:
    """The paper's results for a column (model → (mean, std) ×10⁻²), or ``None`` when the paper has no such column
    (the paper's multiple-systems variant has J = 5 system types)."""
    table = PAPER_TABLE if system_types == 1 else PAPER_TABLE_MULTI if system_types == 5 else {}
    return table.get((int(n_complex), int(mean_size)))


@dataclass(frozen=True, kw_only=True)
class MComplexConfig:
    """Generator settings. Default split sizes: the authors' generator makes 2000/2000/2000 and their training
    script uses the first 1000 training systems (``max_training_samples``)."""

    n_complex: int = 3
    mean_size: int = 3
    system_types: int = 1
    n_train: int = 1000
    n_val: int = 2000
    n_test: int = 2000
    frame_in: int = 10
    frame_out: int = 25
    sample_every: int = 100
    dt: float = 1e-3
    max_force: float = 100.0
    vel_norm: float = 0.5
    max_speed: float = 5.0
    dynamics: str = "published"
    seed: int = 43

    def __post_init__(self) -> None:
        if self.dynamics not in DYNAMICS:
            raise UsageError(f"unknown dynamics {self.dynamics!r}; valid choices: {', '.join(DYNAMICS)}")
        if self.n_complex < 1 or self.mean_size < 2:
            raise UsageError(f"need n_complex >= 1 and mean_size >= 2, got {self.n_complex}, {self.mean_size}")
        if self.n_complex > max(1, 2 * self.mean_size - 3):
            raise UsageError(
                f"{self.n_complex} distinct complex sizes cannot be drawn from 2..{2 * self.mean_size - 2}; "
                f"use n_complex <= {2 * self.mean_size - 3} or a larger mean_size")
        if not 0 <= self.frame_in < self.frame_out:
            raise UsageError(f"need 0 <= frame_in < frame_out, got {self.frame_in}, {self.frame_out}")
        if min(self.n_train, self.n_val, self.n_test) < 0 or self.system_types < 1:
            raise UsageError("split sizes must be >= 0 and system_types >= 1")

    @property
    def n_steps(self) -> int:
        """Integration steps simulated: sample ``k`` is the state after step ``k * sample_every + 1``."""
        return self.frame_out * self.sample_every + 1

    def split_size(self, split: str) -> int:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]


def sample_complex_sizes(n_complex: int, mean_size: int, rng: np.random.Generator) -> np.ndarray:
    """``n_complex`` distinct sizes from 2 … 2·mean_size − 2, smaller sizes more likely (the authors' scheme)."""
    targets = np.arange(2, 2 * mean_size - 1)
    weights = (targets[::-1] + 4).astype(float)
    if len(weights) >= 3:
        weights[0] = weights[2] = weights[1]
    return rng.choice(targets, size=n_complex, replace=False, p=weights / weights.sum()).astype(np.int64)


# ----------------------------------------------------------------------------------------------- initial state
def initial_state(sizes: np.ndarray, rng: np.random.Generator, vel_norm: float = 0.5):
    """One system's start: positions (N, 3), velocities (N, 3), charges (N,), complex id (N,) (contiguous blocks),
    complex centres (M, 3), centre velocities (M, 3) and angular velocities (M, 3)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n, m = int(sizes.sum()), len(sizes)
    sigma = (n / 5.0) ** (1.0 / 3.0) + 0.5
    centres = np.zeros((m, 3))
    for i in range(m):
        for _ in range(20):
            c = 2.0 * (rng.random(3) - 0.5) * sigma
            if i == 0 or np.min(np.linalg.norm(centres[:i] - c, axis=1)) >= 1.6:
                break
        centres[i] = c
    if m > 1:
        d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        d_min = d[np.triu_indices(m, 1)].min() / 1.6
    else:
        d_min = 1.0
    comp = np.repeat(np.arange(m), sizes)
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = (rng.random((n, 1)) / 2.0 + 0.6) * d_min
    pos = centres[comp] + direction * radius
    vel = rng.standard_normal((n, 3))
    vel *= vel_norm / np.linalg.norm(vel, axis=1, keepdims=True)
    charges = rng.choice([1.0, -1.0], size=n)
    xc = np.stack([pos[comp == k].mean(0) for k in range(m)])
    vc = np.stack([vel[comp == k].mean(0) for k in range(m)])
    r = pos - xc[comp]
    w_i = np.cross(r, vel - vc[comp]) / np.sum(r**2, axis=1, keepdims=True)
    omega = np.stack([w_i[comp == k].mean(0) for k in range(m)])
    vel = vc[comp] + np.cross(omega[comp], r)
    return pos, vel, charges, comp, xc, vc, omega


# ------------------------------------------------------------------------------------------------ integration
def _skew(w: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(w[..., 0])
    return torch.stack([torch.stack([z, -w[..., 2], w[..., 1]], -1),
                        torch.stack([w[..., 2], z, -w[..., 0]], -1),
                        torch.stack([-w[..., 1], w[..., 0], z], -1)], -2)


def _rotation(phi: torch.Tensor) -> torch.Tensor:
    """exp(skew(phi)) by Rodrigues' formula, (..., 3) → (..., 3, 3)."""
    theta2 = (phi**2).sum(-1)
    theta = theta2.sqrt()
    small = theta < 1e-6
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(safe)) / safe**2)
    k = _skew(phi)
    eye = torch.eye(3, dtype=phi.dtype).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def _forces(x: torch.Tensor, qq: torch.Tensor, max_force: float) -> torch.Tensor:
    """Clipped Coulomb-like forces. x: (S, N, 3); qq: (S, N, N) charge products with zero diagonal."""
    sq = (x**2).sum(-1)
    r2 = sq[:, :, None] + sq[:, None, :] - 2.0 * x @ x.transpose(1, 2)
    r2 = r2.clamp_min(1e-12)
    w = qq / r2.pow(1.5)
    f = x * w.sum(-1, keepdim=True) - w @ x
    return f.clamp(-max_force, max_force)


def simulate(sizes: np.ndarray, n_sims: int, *, config: MComplexConfig, rng: np.random.Generator,
             chunk: Optional[int] = None, record: Optional[Sequence[int]] = None) -> dict:
    """Simulate ``n_sims`` valid systems with the complex ``sizes`` (contiguous node blocks).

    Returns ``pos`` / ``vel`` of shape (n_sims, len(record), N, 3) at the recorded sample indices (default
    ``(frame_in, frame_out)``), ``charge`` (n_sims, N) and ``complex`` (N,).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    record = tuple(record) if record is not None else (config.frame_in, config.frame_out)
    chunk = chunk or max(16, min(1024, int(4e6 // (n * n))))
    out_pos, out_vel, out_q, have = [], [], [], 0
    while have < n_sims:
        want = min(chunk, n_sims - have)
        p, v, q, comp = _simulate_chunk(sizes, want, config, rng, record)
        ok = np.abs(v[:, -1]).max(axis=(1, 2)) <= config.max_speed
        ok &= np.isfinite(p).all(axis=(1, 2, 3))
        out_pos.append(p[ok]), out_vel.append(v[ok]), out_q.append(q[ok])
        have += int(ok.sum())
    pos = np.concatenate(out_pos)[:n_sims]
    vel = np.concatenate(out_vel)[:n_sims]
    return {"pos": pos, "vel": vel, "charge": np.concatenate(out_q)[:n_sims], "complex": comp}


def _simulate_chunk(sizes, s, cfg: MComplexConfig, rng, record):
    inits = [initial_state(sizes, rng, cfg.vel_norm) for _ in range(s)]
    t = lambda k: torch.as_tensor(np.stack([i[k] for i in inits]), dtype=torch.float64)  # noqa: E731
    x, v, q = t(0), t(1), t(2)
    comp_np = inits[0][3]
    comp = torch.as_tensor(comp_np)
    xc, vc, omega = t(4), t(5), t(6)
    m = len(sizes)
    onehot = torch.nn.functional.one_hot(comp, m).to(torch.float64)  # (N, M)
    count = onehot.sum(0)  # (M,)
    qq = q[:, :, None] * q[:, None, :]
    qq = qq * (1.0 - torch.eye(q.shape[1], dtype=torch.float64))
    r_body = x - xc[:, comp]  # (S, N, 3), body frame = initial world frame
    rot = torch.eye(3, dtype=torch.float64).expand(s, m, 3, 3).clone()
    rigid = cfg.dynamics == "rigid"
    if rigid:
        rr = (r_body**2).sum(-1)[..., None, None] * torch.eye(3, dtype=torch.float64) - r_body[..., :, None] * r_body[
            ..., None, :]
        i_body = torch.einsum("nm,snij->smij", onehot, rr)
        i_body_pinv = torch.linalg.pinv(i_body, hermitian=True, rtol=1e-9)
        ang_mom = (i_body @ omega[..., None])[..., 0]
    dt = cfg.dt
    rec_pos, rec_vel = [], []
    rec_steps = {k * cfg.sample_every + 1: k for k in record}
    for step in range(1, cfg.n_steps + 1):
        f = _forces(x, qq, cfg.max_force)
        r = x - xc[:, comp]
        f_c = torch.einsum("nm,snd->smd", onehot, f)
        torque = torch.einsum("nm,snd->smd", onehot, torch.linalg.cross(r, f))
        if rigid:
            vc = vc + f_c / count[:, None] * dt
            ang_mom = ang_mom + torque * dt
            omega = (rot @ (i_body_pinv @ (rot.transpose(-1, -2) @ ang_mom[..., None])))[..., 0]
        else:
            vc = vc + f_c / count[:, None] ** 2 * dt
            w_hat = omega / (omega.norm(dim=-1, keepdim=True).clamp_min(1e-300))
            r_perp = r - (r * w_hat[:, comp]).sum(-1, keepdim=True) * w_hat[:, comp]
            inertia = torch.einsum("nm,sn->sm", onehot, (r_perp**2).sum(-1) / 3.0).clamp_min(1e-12)
            omega = omega + torque / inertia[..., None] * dt
        xc = xc + vc * dt
        rot = _rotation(omega * dt) @ rot
        r_new = (rot[:, comp] @ r_body[..., None])[..., 0]
        x = xc[:, comp] + r_new
        if rigid:  # velocities consistent with the new orientation: ω = I(R)⁻¹ L
            omega = (rot @ (i_body_pinv @ (rot.transpose(-1, -2) @ ang_mom[..., None])))[..., 0]
        v = vc[:, comp] + torch.linalg.cross(omega[:, comp], r_new)
        if step in rec_steps:
            rec_pos.append(x.numpy().copy())
            rec_vel.append(v.numpy().copy())
    pos = np.stack(rec_pos, axis=1)
    vel = np.stack(rec_vel, axis=1)
    return pos, vel, q.numpy(), comp_np


# ---------------------------------------------------------------------------------------------- data sets
def generate(config: MComplexConfig, *, splits: Sequence[str] = SPLITS, log=None) -> dict:
    """Generate the splits: a dict of flat arrays (see :func:`save`) plus ``meta``."""
    root = np.random.SeedSequence(config.seed)
    size_rng, *split_seeds = [np.random.default_rng(s) for s in root.spawn(1 + len(SPLITS))]
    types = [sample_complex_sizes(config.n_complex, config.mean_size, size_rng) for _ in range(config.system_types)]
    data: dict = {}
    for split, rng in zip(SPLITS, split_seeds, strict=True):
        if split not in splits:
            continue
        n_sims = config.split_size(split)
        kinds = rng.integers(0, len(types), size=n_sims)
        graphs = []
        for k, sizes in enumerate(types):
            count = int((kinds == k).sum())
            if count == 0:
                continue
            if log:
                log(f"{split}: {count} systems of sizes {sizes.tolist()}")
            sim = simulate(sizes, count, config=config, rng=rng)
            for i in range(count):
                perm = rng.permutation(len(sim["complex"]))
                graphs.append((k, sim["pos"][i][:, perm], sim["vel"][i][:, perm], sim["charge"][i][perm],
                               sim["complex"][perm]))
        order = rng.permutation(len(graphs))
        graphs = [graphs[i] for i in order]
        sizes_n = [g[3].shape[0] for g in graphs]
        data[f"{split}_ptr"] = np.concatenate([[0], np.cumsum(sizes_n)]).astype(np.int64)
        data[f"{split}_system_type"] = np.array([g[0] for g in graphs], dtype=np.int64)
        data[f"{split}_pos_in"] = _cat([g[1][0] for g in graphs])
        data[f"{split}_vel_in"] = _cat([g[2][0] for g in graphs])
        data[f"{split}_pos_out"] = _cat([g[1][-1] for g in graphs])
        data[f"{split}_vel_out"] = _cat([g[2][-1] for g in graphs])
        data[f"{split}_charge"] = _cat([g[3] for g in graphs]).astype(np.float32)
        data[f"{split}_complex"] = np.concatenate([g[4] for g in graphs]).astype(np.int64) if graphs else np.zeros(
            0, np.int64)
    data["meta"] = {"format_version": FORMAT_VERSION, "config": asdict(config),
                    "system_sizes": [t.tolist() for t in types]}
    return data


def _cat(arrays) -> np.ndarray:
    return np.concatenate(arrays).astype(np.float32) if len(arrays) else np.zeros((0, 3), np.float32)


def save(data: dict, path: str | Path) -> None:
    """Write :func:`generate`'s output atomically to ``path`` (.npz, no pickle)."""
    from eghn_md.io.atomic import atomic_path

    arrays = {k: v for k, v in data.items() if k != "meta"}
    arrays["meta_json"] = np.array(json.dumps(data["meta"]))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def load(path: str | Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files if k != "meta_json"}
            meta = json.loads(str(z["meta_json"]))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{str(path)!r} is not an M-complex data file: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{str(path)!r}: unsupported M-complex format {meta.get('format_version')!r}")
    data["meta"] = meta
    return data


class MComplexDataset(GraphList):
    """One split as single-graph :class:`GraphBatch` samples.

    Nodes: particles; ``h`` = speed |v| (the authors' node feature); edges: complete graph without self loops,
    ``edge_attr`` = [q_i q_j, same-complex flag]; ``local_edge_index`` = the same-complex edges; ``target`` = x at
    the output sample.
    """

    def __init__(self, data: dict | str | Path, split: str, *, dtype: torch.dtype = torch.float32,
                 max_samples: Optional[int] = None) -> None:
        if split not in SPLITS:
            raise UsageError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
        if not isinstance(data, dict):
            data = load(data)
        if f"{split}_ptr" not in data:
            raise DataError(f"split {split!r} is not in this M-complex file")
        self.meta = data["meta"]
        ptr = data[f"{split}_ptr"]
        n = len(ptr) - 1 if max_samples is None else min(len(ptr) - 1, int(max_samples))
        self._graphs = []
        for g in range(n):
            rows = slice(int(ptr[g]), int(ptr[g + 1]))
            pos, vel, target, charge = (torch.as_tensor(data[f"{split}_{key}"][rows], dtype=dtype)
                                        for key in ("pos_in", "vel_in", "pos_out", "charge"))
            self._graphs.append(_make_graph(pos, vel, target, charge, torch.as_tensor(data[f"{split}_complex"][rows])))


def _make_graph(pos, vel, target, charge, comp) -> GraphBatch:
    n = pos.shape[0]
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    ei = torch.stack([i[keep], j[keep]])
    same = (comp[ei[0]] == comp[ei[1]]).to(pos.dtype)
    edge_attr = torch.stack([charge[ei[0]] * charge[ei[1]], same], dim=1)
    return GraphBatch.single(pos=pos, vel=vel, h=vel.norm(dim=1, keepdim=True), edge_index=ei,
                             edge_attr=edge_attr, local_edge_index=ei[:, same.bool()], target=target)

"""Rollouts judged as distributions: does a model's ensemble sample what the reference MD samples?

:func:`compare_ensembles` compares a *reference* (one or more MD trajectories) with a *model* ensemble (one or more
rollout replicas), all (T, N, 3) [Å] with the same N nodes in the same order. The metrics are those the field reports
for generated ensembles (AlphaFlow, Jing et al. 2024; Str2Str, Lu et al. 2024):

* **Superposition.** Every frame is superposed (Kabsch, rotation only, no reflection) on the *reference mean
  structure*, found by iterating "superpose every reference frame on the current mean, average" from the first
  reference frame until the mean moves < 1e-4 Å RMSD (at most 10 rounds).
* **RMSF** per node, about each ensemble's own mean of the superposed frames; Pearson r of model vs reference and
  the mean over nodes of the ratio model / reference (1 = right amplitude).
* **MD-PCA W2** (AlphaFlow): PCA of the superposed reference coordinates (3N-dimensional, eigenvectors of their
  covariance), both ensembles projected on PC1–PC2; the 2-Wasserstein distance between the two point clouds by exact
  optimal transport (``scipy.optimize.linear_sum_assignment``) on equal random subsamples of at most
  ``max_samples`` frames. Projections are divided by √N, so distances are in Å of Cα RMSD.
* **Jensen–Shannon distances** (Str2Str; ``scipy.spatial.distance.jensenshannon``, base 2, so in [0, 1]) of the
  radius of gyration and of every pairwise node distance with ``|i − j| >= 3`` (averaged over pairs); histograms of
  50 bins over the reference's range; model values outside that range are counted in the end bins (Str2Str drops
  them, which would hide a model that leaves the reference's range). Pairwise distances use the same subsample as W2.
* **States** (with a :class:`~eghn_md.rollout.states.TwoStates`): populations, transitions per 1,000 steps each way
  and the mean dwell time [ps] of each ensemble (:func:`~eghn_md.rollout.states.state_summary`, counts summed over
  trajectories). One *step* is ``step_ps`` (a rollout step = the model's horizon); the reference is read every
  ``reference_stride`` frames for this, so that both are sampled at the same interval. Each population carries its
  standard error (:func:`~eghn_md.rollout.states.population_se`), and ``population_gap`` gives the model's second
  state's population minus the reference's with the two errors combined: a finite reference run is itself an
  estimate (one 1,250-step run of equilibrium AdK: ± 0.06), so a gap of one or two such errors is not a model error.
* **Validity** (with ``bonds``): chain breaks and clashes of every frame of both ensembles, as
  :func:`~eghn_md.rollout.validity.validity_report` defines them.

**The reference's floor** (what perfect sampling scores) is the same function between two independent reference runs
of equal length: ``compare_ensembles(reference=[run_a], model=[run_b], …)``; :func:`reference_floor` does that, or
splits one run into halves when only one is given.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from eghn_md.errors import DataError, UsageError
from eghn_md.rollout.states import TwoStates, state_series, state_summary
from eghn_md.utils import evenly_spaced

__all__ = ["compare_ensembles", "reference_floor", "population_gap", "superpose", "mean_structure", "rmsf",
           "pca_basis", "project", "w2_exact", "js_distance", "pairwise_js", "radius_of_gyration", "JS_BINS",
           "MIN_PAIR_SEP"]

JS_BINS = 50  #: histogram bins of the Jensen–Shannon distances (Str2Str)
MIN_PAIR_SEP = 3  #: smallest sequence separation |i − j| of the pairwise distances (Str2Str)


def superpose(frames: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Frames rotated and translated onto ``target`` (least-squares, proper rotations only).

    Args:
        frames: (T, N, 3) [Å].
        target: (N, 3) [Å].

    Returns:
        (T, N, 3) [Å] superposed frames (float64), centred on the target's centroid.
    """
    x = np.asarray(frames, dtype=np.float64)
    tc = np.asarray(target, dtype=np.float64).mean(axis=0)
    y = np.asarray(target, dtype=np.float64) - tc
    xc = x - x.mean(axis=1, keepdims=True)
    h = np.matmul(xc.transpose(0, 2, 1), y)  # (T, 3, 3) covariance of mobile and target
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.matmul(u, vt)))
    u[:, :, 2] *= d[:, None]  # no reflection
    xc = np.matmul(xc, np.matmul(u, vt))  # x_c @ rot ≈ y
    xc += tc
    return xc


def mean_structure(frames: np.ndarray, *, tol: float = 1e-4, max_rounds: int = 10,
                   max_frames: int = 5000) -> np.ndarray:
    """(N, 3) [Å] mean of (T, N, 3) [Å] frames superposed on their own mean (iterated from frame 0); of at most
    ``max_frames`` evenly spaced frames."""
    x = np.asarray(frames, dtype=np.float64)
    x = x[evenly_spaced(len(x), max_frames)]
    mean = x[0] - x[0].mean(axis=0)
    for _ in range(max_rounds):
        new = superpose(x, mean).mean(axis=0)
        moved = np.sqrt(((new - mean) ** 2).sum(axis=1).mean())
        mean = new
        if moved < tol:
            break
    return mean


def rmsf(frames: np.ndarray) -> np.ndarray:
    """(N,) [Å] root-mean-square fluctuation of each node about its mean over (T, N, 3) [Å] (already superposed)."""
    x = np.asarray(frames, dtype=np.float64)
    return np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))


def radius_of_gyration(frames: np.ndarray) -> np.ndarray:
    """(T,) [Å] geometric radius of gyration of (T, N, 3) [Å] frames (equal node weights)."""
    x = np.asarray(frames, dtype=np.float64)
    return np.sqrt(((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=2).mean(axis=1))


def pca_basis(frames: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components of superposed frames.

    Args:
        frames: (T, N, 3) [Å] superposed frames.
        n_components: how many components to return.

    Returns:
        ``(mean (3N,) [Å], components (n_components, 3N) unit vectors, explained variance fraction (n_components,))``.
    """
    x = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1)
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    val, vec = np.linalg.eigh(cov)
    order = np.argsort(val)[::-1][:n_components]
    total = val.clip(min=0).sum()
    return mean, vec[:, order].T, val[order] / total if total > 0 else np.zeros(len(order))


def project(frames: np.ndarray, basis: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """(T, k) [Å] coordinates of superposed (T, N, 3) [Å] frames on the components of :func:`pca_basis`, / √N."""
    mean, comps, _ = basis
    x = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1)
    return (x - mean) @ comps.T / np.sqrt(x.shape[1] / 3)


def w2_exact(a: np.ndarray, b: np.ndarray) -> float:
    """2-Wasserstein distance between two equal-size point clouds with uniform weights, by exact optimal transport.

    Args:
        a: (M, d) points; b: (M, d) points, same units (the result has them).
    """
    from scipy.optimize import linear_sum_assignment

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or not len(a):
        raise UsageError(f"w2_exact needs two (M, d) arrays of one shape, got {a.shape} and {b.shape}")
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def _hist(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """(P, bins) counts of (M, P) values, column p in ``bins`` equal bins over [lo[p], hi[p]], outside → end bins."""
    width = np.where(hi > lo, hi - lo, 1.0)
    k = np.floor((values - lo) / width * bins).astype(np.int64).clip(0, bins - 1)
    p = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    return np.bincount((p * bins + k).ravel(), minlength=values.shape[1] * bins).reshape(-1, bins).astype(np.float64)


def js_distance(ref: np.ndarray, model: np.ndarray, *, bins: int = JS_BINS) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) of two samples of one scalar: (M,) and (M',) values, histograms
    of ``bins`` bins over the range of ``ref`` (model values outside it fall in the end bins)."""
    from scipy.spatial.distance import jensenshannon

    r, m = np.asarray(ref, dtype=np.float64)[:, None], np.asarray(model, dtype=np.float64)[:, None]
    lo, hi = r.min(axis=0), r.max(axis=0)
    return float(jensenshannon(_hist(r, lo, hi, bins)[0], _hist(m, lo, hi, bins)[0], base=2))


def _pair_distances(frames: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(T, P) [Å] the condensed pair distances of (T, N, 3) [Å] frames selected by the (N(N−1)/2,) mask ``keep``."""
    from scipy.spatial.distance import pdist

    return np.stack([pdist(f)[keep] for f in frames])


def pairwise_js(ref: np.ndarray, model: np.ndarray, *, min_separation: int = MIN_PAIR_SEP, bins: int = JS_BINS,
                chunk: int = 256) -> float:
    """Mean over node pairs with ``|i − j| >= min_separation`` of the Jensen–Shannon distance of their distance.

    Args:
        ref: (M, N, 3) [Å] reference frames; model: (M', N, 3) [Å] model frames.
        chunk: frames per block (memory: chunk × N²/2 floats).
    """
    from scipy.spatial.distance import jensenshannon

    i, j = np.triu_indices(ref.shape[1], k=1)
    keep = (j - i) >= min_separation
    if not keep.any():
        return float("nan")
    lo, hi = np.full(int(keep.sum()), np.inf), np.full(int(keep.sum()), -np.inf)
    for s in range(0, len(ref), chunk):
        d = _pair_distances(ref[s:s + chunk], keep)
        lo, hi = np.minimum(lo, d.min(axis=0)), np.maximum(hi, d.max(axis=0))
    counts = []
    for x in (ref, model):
        c = np.zeros((len(lo), bins))
        for s in range(0, len(x), chunk):
            c += _hist(_pair_distances(x[s:s + chunk], keep), lo, hi, bins)
        counts.append(c)
    return float(np.mean(jensenshannon(counts[0], counts[1], axis=1, base=2)))


def _stack(trajs: Sequence[np.ndarray], what: str, n_nodes: Optional[int] = None) -> list[np.ndarray]:
    """Validated list of (T, N, 3) float64 trajectories."""
    if isinstance(trajs, np.ndarray) and trajs.ndim == 3:
        trajs = [trajs]
    out = [np.asarray(t, dtype=np.float64) for t in trajs]
    if not out:
        raise UsageError(f"the {what} ensemble has no trajectory")
    for k, t in enumerate(out):
        if t.ndim != 3 or t.shape[2] != 3 or len(t) < 2:
            raise UsageError(f"{what} trajectory {k} must be (T, N, 3) with T >= 2, got shape {t.shape}")
        n = out[0].shape[1] if n_nodes is None else n_nodes
        if t.shape[1] != n:
            raise DataError(f"{what} trajectory {k} has {t.shape[1]} nodes, the reference {n}")
        if not np.isfinite(t).all():
            raise DataError(f"{what} trajectory {k} has non-finite coordinates")
    return out


def _subsample(x: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) == m else x[np.sort(rng.choice(len(x), size=m, replace=False))]


def _states(states: TwoStates, trajs: list[np.ndarray], stride: int, step_ps: float) -> dict:
    """State summary of trajectories read every ``stride`` frames, with transitions per 1,000 steps."""
    series = [state_series(states, t[::stride]) for t in trajs]
    out = state_summary(series, dt_ps=step_ps, names=states.names)
    steps = sum(len(s) - 1 for s in series)
    out["n_steps"] = steps
    dwell = state_summary(series, dt_ps=1.0, names=states.names)["mean_dwell_ps"]
    out["mean_dwell_steps"] = dwell  # the same visits counted in steps (when step_ps is unknown)
    out["per_1000_steps"] = {k: (1000.0 * v / steps if steps else None) for k, v in out["transitions"].items()}
    return out


def _validity(trajs: list[np.ndarray], bonds, node_kind: str) -> dict:
    from eghn_md.rollout.validity import validity_report

    reps = [validity_report(t, bonds=bonds, node_kind=node_kind).summary() for t in trajs]
    n = sum(r["n_frames"] for r in reps)
    brk, cl = sum(r["frames_with_break"] for r in reps), sum(r["frames_with_clash"] for r in reps)
    return {"n_frames": n, "frames_with_break": brk, "frames_with_clash": cl,
            "frac_frames_with_break": brk / n, "frac_frames_with_clash": cl / n}


def _pearson(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None


def compare_ensembles(*, reference: Sequence[np.ndarray], model: Sequence[np.ndarray],
                      states: Optional[TwoStates] = None, step_ps: float, reference_stride: int = 1,
                      bonds=None, node_kind: str = "residue", max_samples: int = 1000, seed: int = 0) -> dict:
    """Distributional metrics of a model ensemble against a reference (definitions: module docstring).

    Args:
        reference: list of (T, N, 3) [Å] reference trajectories (or one array).
        model: list of (T', N, 3) [Å] model trajectories (replicas / rollouts; or one array).
        states: optional two-state definition for populations, transitions and dwell times.
        step_ps: [ps] time between consecutive model frames (one rollout step).
        reference_stride: reference frames per model step (the states are read at that interval).
        bonds: optional (2, B) int node bonds for the validity of both ensembles.
        node_kind: ``"residue"`` or ``"atom"`` (validity thresholds).
        max_samples: frames per ensemble for W2 and the pairwise distances (random subsample, ``seed``).
        seed: seed of the subsamples.

    Returns:
        JSON-able dict: ``n_frames``, ``rmsf``, ``pca``, ``js``, ``rg_A``, and ``states`` / ``validity`` if asked.
    """
    ref = _stack(reference, "reference")
    mod = _stack(model, "model", ref[0].shape[1])
    if reference_stride < 1 or max_samples < 2:
        raise UsageError(f"need reference_stride >= 1 and max_samples >= 2, got {reference_stride}, {max_samples}")
    r_all, m_all = np.concatenate(ref), np.concatenate(mod)
    target = mean_structure(r_all)
    r_sup, m_sup = superpose(r_all, target), superpose(m_all, target)
    f_ref, f_mod = rmsf(r_sup), rmsf(m_sup)
    basis = pca_basis(r_sup)
    rng = np.random.default_rng(seed)
    m = min(len(r_sup), len(m_sup), max_samples)
    r_sub, m_sub = _subsample(r_sup, m, rng), _subsample(m_sup, m, rng)
    rg_r, rg_m = radius_of_gyration(r_all), radius_of_gyration(m_all)
    out = {
        "n_frames": {"reference": len(r_all), "model": len(m_all)},
        "n_trajectories": {"reference": len(ref), "model": len(mod)},
        "rmsf": {"pearson_r": _pearson(f_ref, f_mod), "ratio": float(np.mean(f_mod / np.maximum(f_ref, 1e-12))),
                 "reference_mean_A": float(f_ref.mean()), "model_mean_A": float(f_mod.mean()),
                 "reference_A": f_ref.tolist(), "model_A": f_mod.tolist()},
        "pca": {"w2_A": w2_exact(project(r_sub, basis), project(m_sub, basis)), "n_samples": int(m),
                "explained_variance": basis[2].tolist()},
        "js": {"rg": js_distance(rg_r, rg_m), "pairwise_distances": pairwise_js(r_sub, m_sub), "bins": JS_BINS,
               "min_separation": MIN_PAIR_SEP},
        "rg_A": {"reference_mean": float(rg_r.mean()), "model_mean": float(rg_m.mean())},
    }
    if states is not None:
        st = {"reference": _states(states, ref, reference_stride, step_ps), "model": _states(states, mod, 1, step_ps),
              "definition": states.describe()}
        out["states"] = {**st, "population_gap": population_gap(st["model"], st["reference"], states.names[1])}
    if bonds is not None:
        out["validity"] = {"reference": _validity(ref, bonds, node_kind), "model": _validity(mod, bonds, node_kind)}
    return out


def population_gap(model: dict, reference: dict, name: str) -> dict:
    """Population of state ``name`` in ``model`` minus that in ``reference`` (two :func:`state_summary` results) with
    its standard error, sqrt(se_model² + se_reference²), and the gap in units of that error (``z``); entries are None
    where a population or an error is unknown."""
    pm, pr = model["population"][name], reference["population"][name]
    gap = None if pm is None or pr is None else pm - pr
    se = None
    if model.get("population_se") is not None and reference.get("population_se") is not None:
        se = float(np.hypot(model["population_se"], reference["population_se"]))
    z = gap / se if gap is not None and se else None
    return {"state": name, "model_minus_reference": gap, "se": se, "z": z}


def reference_floor(reference: Sequence[np.ndarray], **kwargs) -> dict:
    """:func:`compare_ensembles` of one half of the reference against the other: the first half of the trajectories
    against the second with two or more (independent runs), else the first half of the frames of the only one
    against the second half. ``kwargs`` as :func:`compare_ensembles`; the result adds ``floor_kind``
    (``"trajectories"`` or ``"halves"``)."""
    ref = _stack(reference, "reference")
    if len(ref) >= 2:
        k = len(ref) // 2
        a, b, kind = ref[:k], ref[k:2 * k], "trajectories"
    else:
        half = len(ref[0]) // 2
        if half < 2:
            raise UsageError(f"the reference has {len(ref[0])} frames, too few to split into halves")
        a, b, kind = [ref[0][:half]], [ref[0][half:2 * half]], "halves"
    stride = kwargs.get("reference_stride", 1)
    b = [t[::stride] for t in b]  # the second half plays the model: one frame per step
    return {**compare_ensembles(reference=a, model=b, **kwargs), "floor_kind": kind}

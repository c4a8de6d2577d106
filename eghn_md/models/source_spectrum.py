"""A structured source for the generative flow: noise shaped like the training data's motion over the horizon.

The flow's isotropic source x_t + σz spreads its variance evenly over all 3(N − 1) directions. Protein motion over
picoseconds does not: on the equilibrium AdK benchmark 56 % of the variance of the 16 ps Cα displacements lies in
the 10 softest of the 213 modes of the contact graph (5 % with isotropic noise), the domain motions that open and
close the protein (``examples/benchmarks/results/generative_equilibrium.md`` §6). A small denoiser then has to
build that collective motion out of uncorrelated noise, and under-does it. The *spectral* source (model option
``spectral_source``; the harmonic priors of EigenFold and AlphaFlow are the pattern, here fitted to the data) puts
the noise where the motion is:

* the **contact graph** of x_t: nodes closer than :data:`SPECTRUM_CUTOFF` are joined, L = D − A its Laplacian
  (the Gaussian network model's Kirchhoff matrix), eigenvalues λ_k, eigenvectors u_k;
* the **spectrum** f(λ) > 0: the mean squared displacement over the horizon along u_k per unit of isotropic
  variance, as a function of λ_k, measured on training pairs (:func:`fit_spectrum`), stored at
  :data:`N_KNOTS` log-spaced λ (:func:`knots`; log-linear between them, constant beyond) and normalised so that
  its mean over the training modes is 1 (``flow_sigma`` keeps its meaning: the RMS source noise per coordinate);
* the **noise** ξ = U diag(√f(λ)) Uᵀ z per graph and coordinate (:func:`spectral_noise`), z unit Gaussian; the
  zero mode (translation) gets none, so ξ is centred.

ξ is a matrix function of L, which depends on distances only: rotating / reflecting z rotates ξ, translating x_t
leaves it alone, permuting the nodes (and z) permutes it, and each graph's ξ reads its own nodes only.
f ≡ 1 gives the isotropic, centred noise of a connected graph (``tests/test_source_spectrum.py``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["SPECTRUM_CUTOFF", "N_KNOTS", "knots", "laplacian_modes", "spectrum_at", "spectral_noise",
           "fit_spectrum"]

#: [Å] contact distance of the graph whose Laplacian modes shape the noise (the Gaussian network model's range)
SPECTRUM_CUTOFF = 10.0
#: number of λ values the spectrum is stored at, log-spaced over [_LAMBDA_LO, _LAMBDA_HI] (contact-graph Laplacian
#: eigenvalues of Cα graphs lie in ~0.3–60)
N_KNOTS = 24
_LAMBDA_LO, _LAMBDA_HI = 0.05, 80.0
#: eigenvalues below this (relative to the largest) are zero modes: a graph's translation, which gets no noise
_ZERO_MODE = 1e-6


def knots() -> Tensor:
    """The λ values (:data:`N_KNOTS`,) the spectrum is stored at (float64)."""
    return torch.logspace(math.log10(_LAMBDA_LO), math.log10(_LAMBDA_HI), N_KNOTS, dtype=torch.float64)


def laplacian_modes(pos: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (G, n) and eigenvectors (G, n, n) (columns) of the contact-graph Laplacians of ``pos``
    (G, n, 3) [Å] (G graphs of n nodes; pairs closer than :data:`SPECTRUM_CUTOFF` joined), in ``pos``' dtype."""
    d = torch.cdist(pos, pos)
    a = (d < SPECTRUM_CUTOFF).to(pos.dtype)
    a = a - torch.diag_embed(torch.diagonal(a, dim1=1, dim2=2))
    lap = torch.diag_embed(a.sum(2)) - a
    return torch.linalg.eigh(lap)


def spectrum_at(lam: Tensor, values: Tensor) -> Tensor:
    """f(λ): the spectrum ``values`` (:data:`N_KNOTS`,) (at :func:`knots`) at eigenvalues ``lam`` (any shape),
    log-linear in log λ between the knots, constant beyond; 0 on zero modes (λ ≤ :data:`_ZERO_MODE` × the largest
    of the last axis)."""
    x = torch.log(knots().to(lam.device))
    y = torch.log(values.to(device=lam.device, dtype=torch.float64))
    t = torch.log(lam.to(torch.float64).clamp_min(1e-300)).clamp(float(x[0]), float(x[-1]))
    i = torch.searchsorted(x, t.contiguous()).clamp(1, N_KNOTS - 1)
    w = (t - x[i - 1]) / (x[i] - x[i - 1])
    f = torch.exp(y[i - 1] + w * (y[i] - y[i - 1]))
    zero = lam <= _ZERO_MODE * lam.amax(dim=-1, keepdim=True).clamp_min(1e-300)
    return torch.where(zero, torch.zeros_like(f), f).to(lam.dtype)


def _graph_noise(z: Tensor, pos: Tensor, values: Tensor) -> Tensor:
    """ξ (G, n, 3) of G equal-sized graphs: ``z`` (G, n, 3) unit noise, ``pos`` (G, n, 3) [Å] x_t."""
    lam, u = laplacian_modes(pos)
    scale = spectrum_at(lam, values).sqrt().unsqueeze(2)  # (G, n, 1)
    return u @ (scale * (u.transpose(1, 2) @ z))


def spectral_noise(z: Tensor, pos: Tensor, ptr: Tensor, values: Sequence[float] | Tensor) -> Tensor:
    """The spectral source noise ξ (N, 3) of a batch of graphs (see the module docstring).

    Args:
        z: (N, 3) unit Gaussian noise.
        pos: (N, 3) [Å] the current frame x_t.
        ptr: (G + 1,) long offsets of the graphs' nodes.
        values: (:data:`N_KNOTS`,) the spectrum f at :func:`knots` (> 0).

    Graphs of equal size go through one batched eigendecomposition (replicas of one protein: one call).
    """
    values = torch.as_tensor(values, dtype=torch.float64)
    counts = (ptr[1:] - ptr[:-1]).tolist()
    dtype = torch.promote_types(z.dtype, torch.float32)  # no eigendecomposition in half precision
    z, pos = z.to(dtype), pos.to(dtype)
    with torch.autocast(device_type=z.device.type, enabled=False):
        if len(set(counts)) == 1:
            n = counts[0]
            return _graph_noise(z.reshape(-1, n, 3), pos.reshape(-1, n, 3), values).reshape(-1, 3)
        out = torch.empty_like(z)
        for a, b in zip(ptr[:-1].tolist(), ptr[1:].tolist(), strict=True):
            out[a:b] = _graph_noise(z[None, a:b], pos[None, a:b], values)[0]
    return out


def fit_spectrum(starts: Tensor, ends: Tensor) -> list[float]:
    """The spectrum of a trajectory's motion over the horizon, at :func:`knots` (:data:`N_KNOTS` floats > 0).

    Args:
        starts: (P, n, 3) [Å] frames x_t; ends: (P, n, 3) [Å] the frames x(t + ΔT) one horizon later.

    For every pair, the centred displacement is projected on the Laplacian modes of x_t; a mode's squared
    projection per coordinate is averaged over the modes whose λ falls nearest each knot (in log λ); knots no mode
    falls near take the log-linear interpolation of their neighbours (constant beyond the first / last). The result
    is divided by its mean over all the pairs' modes (f(λ) there: mean 1).
    """
    starts, ends = starts.to(torch.float64), ends.to(torch.float64)
    lam, u = laplacian_modes(starts)
    disp = ends - starts
    disp = disp - disp.mean(dim=1, keepdim=True)
    power = (u.transpose(1, 2) @ disp).pow(2).mean(dim=2)  # (P, n) per mode and coordinate [Å²]
    live = lam > _ZERO_MODE * lam.amax(dim=1, keepdim=True)
    x = torch.log(knots())
    near = (torch.log(lam[live]).unsqueeze(1) - x).abs().argmin(dim=1)
    total = torch.zeros(N_KNOTS, dtype=torch.float64).index_add_(0, near, power[live])
    count = torch.zeros(N_KNOTS, dtype=torch.float64).index_add_(0, near, torch.ones_like(power[live]))
    if not bool((total > 0).any()):
        raise ValueError("fit_spectrum: the frames do not move over the horizon (every displacement is 0)")
    seen = (count > 0) & (total > 0)
    logf = torch.log(total[seen] / count[seen])
    filled = _interp(x, x[seen], logf)
    values = torch.exp(filled)
    values = values / spectrum_at(lam[live], values).mean()
    return [float(v) for v in values]


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Linear interpolation of (``xp``, ``fp``) (increasing ``xp``) at ``x``, constant beyond the ends."""
    if xp.numel() == 1:
        return fp.expand(x.shape[0]).clone()
    i = torch.searchsorted(xp, x.clamp(float(xp[0]), float(xp[-1]))).clamp(1, xp.numel() - 1)
    w = (x.clamp(float(xp[0]), float(xp[-1])) - xp[i - 1]) / (xp[i] - xp[i - 1])
    return fp[i - 1] + w * (fp[i] - fp[i - 1])

"""Figure of a model ensemble against a reference (the metrics of :mod:`eghn_md.rollout.distribution`).

One figure, written atomically (png, svg or pdf from the extension; matplotlib's Agg canvas, no pyplot):

* top: the free-energy surface ``F = −ln p`` [kT] of the reference and of the model on the reference's PC1 / PC2
  (every frame superposed on the reference mean structure; coordinates / √N in Å), side by side on the same axes and
  colour scale, zero at the most populated bin of each, empty bins blank;
* middle: per-node RMSF of both, with the Pearson r and the mean ratio model / reference;
* bottom: the two-state order parameter ΔQ = Q_B − Q_A against time, with the hysteresis thresholds, of up to four
  model trajectories and the first reference trajectory over the same time span (without a state definition: the
  radius of gyration).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from eghn_md.errors import UsageError
from eghn_md.io.atomic import atomic_path
from eghn_md.rollout.distribution import mean_structure, pca_basis, project, radius_of_gyration, rmsf, superpose
from eghn_md.rollout.states import TwoStates, order_parameter, states_from_files

__all__ = ["plot_ensembles", "maybe_plot_ensembles"]

_FORMATS = ("png", "svg", "pdf")
_BINS = 40
_F_MAX_KT = 8.0
_MAX_MODEL_LINES = 4


def _fes(ax, xy: np.ndarray, edges: tuple[np.ndarray, np.ndarray], title: str):
    """Draw −ln p [kT] of (M, 2) points on ``edges``; returns the mesh (for the colour bar)."""
    h, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=edges)
    with np.errstate(divide="ignore"):
        f = -np.log(h / h.max())
    f[~np.isfinite(f)] = np.nan
    mesh = ax.pcolormesh(edges[0], edges[1], f.T, cmap="viridis", vmin=0.0, vmax=_F_MAX_KT, shading="flat")
    ax.set(xlabel="PC1 [Å]", ylabel="PC2 [Å]", title=title)
    return mesh


def _series(ax, reference: list[np.ndarray], model: list[np.ndarray], *, states: Optional[TwoStates],
            step_ps: Optional[float], reference_stride: int) -> None:
    """ΔQ (or Rg) against time [ps] (steps without ``step_ps``) of the first reference trajectory and the first
    model trajectories."""
    value = (lambda x: order_parameter(states, x)) if states is not None else radius_of_gyration
    unit = "step" if step_ps is None or not math.isfinite(step_ps) else "time [ps]"
    step_ps = 1.0 if unit == "step" else step_ps
    span = max(len(t) for t in model[:_MAX_MODEL_LINES])
    ref = reference[0][::reference_stride][:span]  # the reference over the rollouts' time span
    ax.plot(np.arange(len(ref)) * step_ps, value(ref), color="k", lw=0.8, label="reference")
    for k, traj in enumerate(model[:_MAX_MODEL_LINES]):
        ax.plot(np.arange(len(traj)) * step_ps, value(traj), lw=0.8, alpha=0.8, color=f"C{k}",
                label="model" if len(model) == 1 else f"model {k}")
    if states is not None:
        for t, name in ((states.low, states.names[0]), (states.high, states.names[1])):
            ax.axhline(t, color="grey", ls="--", lw=0.8)
            ax.annotate(f"enter {name}", (0, t), xycoords=("axes fraction", "data"), fontsize=8, color="grey",
                        va="bottom")
        ax.set_ylim(-1.05, 1.05)
    label = f"ΔQ = Q({states.names[1]}) − Q({states.names[0]})" if states is not None else "Rg [Å]"
    ax.set(xlabel=unit, ylabel=label,
           title="two-state order parameter" if states is not None else "radius of gyration")
    ax.legend(fontsize=8, loc="upper right")


def plot_ensembles(path: str | Path, *, reference: Sequence[np.ndarray], model: Sequence[np.ndarray],
                   states: Optional[TwoStates] = None, step_ps: Optional[float] = None, reference_stride: int = 1,
                   title: str = "") -> str:
    """Write the figure (module docstring) of ``model`` against ``reference``; returns the path.

    Args:
        path: output file; its extension picks the format (png, svg, pdf).
        reference: list of (T, N, 3) [Å] reference trajectories.
        model: list of (T', N, 3) [Å] model trajectories.
        states: optional two-state definition (bottom panel: ΔQ; without it Rg).
        step_ps: [ps] time between model frames (None: the time axis counts steps); reference_stride: reference
            frames per model step.
        title: figure title.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lstrip(".").lower() not in _FORMATS:
        raise UsageError(f"figure format of {str(path)!r} is not one of {list(_FORMATS)}")
    ref = [np.asarray(t, dtype=np.float64) for t in reference]
    mod = [np.asarray(t, dtype=np.float64) for t in model]
    r_all, m_all = np.concatenate(ref), np.concatenate(mod)
    target = mean_structure(r_all)
    r_sup, m_sup = superpose(r_all, target), superpose(m_all, target)
    basis = pca_basis(r_sup)
    pr, pm = project(r_sup, basis), project(m_sup, basis)
    both = np.concatenate([pr, pm])
    edges = tuple(np.linspace(lo, hi, _BINS + 1)
                  for lo, hi in zip(both.min(axis=0), both.max(axis=0) + 1e-9, strict=True))
    fig = Figure(figsize=(10, 11), layout="constrained")
    grid = fig.add_gridspec(3, 2)
    ax_r, ax_m = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    _fes(ax_r, pr, edges, f"reference ({len(r_all)} frames)")
    mesh = _fes(ax_m, pm, edges, f"model ({len(m_all)} frames)")
    fig.colorbar(mesh, ax=[ax_r, ax_m], label="F [kT]")
    ax = fig.add_subplot(grid[1, :])
    f_ref, f_mod = rmsf(r_sup), rmsf(m_sup)
    nodes = np.arange(len(f_ref))
    ax.plot(nodes, f_ref, color="k", label="reference")
    ax.plot(nodes, f_mod, color="C0", label="model")
    r = np.corrcoef(f_ref, f_mod)[0, 1] if f_ref.std() > 0 and f_mod.std() > 0 else float("nan")
    ratio = np.mean(f_mod / np.maximum(f_ref, 1e-12))
    ax.set(xlabel="node", ylabel="RMSF [Å]",
           title=f"RMSF on the reference mean (Pearson r = {r:.2f}, ratio {ratio:.2f})")
    ax.legend(fontsize=8)
    _series(fig.add_subplot(grid[2, :]), ref, mod, states=states, step_ps=step_ps, reference_stride=reference_stride)
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower(), dpi=120)
    return str(path)


def maybe_plot_ensembles(path: str | Path, frames: dict, result: dict, *, states: Optional[Sequence[str]] = None,
                         log: Optional[Callable[[str], None]] = None) -> Optional[str]:
    """The figure of ``evaluate --rollout`` (:func:`eghn_md.rollout.assess.assess_rollouts` with ``keep_frames``:
    ``frames`` {"reference", "model"} one step apart, ``result`` its summary; ``states`` the two structure files);
    the path, or None with a warning: a figure never fails the evaluation."""
    try:
        two = None if not states else states_from_files(*states)
        return plot_ensembles(path, reference=frames["reference"], model=frames["model"], states=two,
                              step_ps=result.get("step_ps"), title=f"{len(frames['model'])} rollouts of "
                              f"{result.get('steps')} steps vs the reference")
    except Exception as exc:  # noqa: BLE001 - a figure must not fail the evaluation
        msg = f"warning: ensemble figure not written ({type(exc).__name__}: {exc})"
        log(msg) if log is not None else warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return None

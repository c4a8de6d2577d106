"""The divergence guard of a rollout: the bounds (:class:`GuardConfig`) and the check of every predicted frame
(:class:`StepGuard`), shared by single rollouts (:mod:`eghn_md.rollout.rollout`) and ensembles
(:mod:`eghn_md.rollout.ensemble`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["GuardConfig", "StepGuard", "STEP_RMS_FACTOR", "STEP_RMS_FLOOR"]


@dataclass(frozen=True, kw_only=True)
class GuardConfig:
    """When a rollout is stopped as diverged (each bound documented; the frames before the failing step are kept).

    * ``max_bond_dev`` [Å]: a bond of the node graph stretched or compressed by more than this from its length in
      the start frame: the chain is torn apart (well beyond the Cα–Cα break the validity report counts,
      :data:`~eghn_md.graph.chains.CA_CA_MAX_BOND`; None disables);
    * ``rg_bounds``: radius of gyration outside ``(low, high)`` × the start frame's: the structure swells or collapses
      (MD of a folded protein stays within a few per cent; None disables);
    * ``max_step_rms`` [Å]: RMS displacement of one step (the model left the region it was trained on);
    * non-finite coordinates always stop a rollout.

    The commands (``rollout`` and ``evaluate --rollout``) guard with :meth:`for_model`: these bounds and a step
    bound of :data:`STEP_RMS_FACTOR` × the model's typical displacement, at least :data:`STEP_RMS_FLOOR`.
    """

    max_bond_dev: Optional[float] = 2.0
    rg_bounds: Optional[tuple[float, float]] = (0.5, 1.5)
    max_step_rms: float = math.inf

    @classmethod
    def for_model(cls, stats: dict) -> "GuardConfig":
        """The guard of a trained model, from its checkpoint's training statistics (``disp_scale`` [Å])."""
        disp = float(stats.get("disp_scale", 1.0))
        return cls(max_step_rms=max(STEP_RMS_FACTOR * disp, STEP_RMS_FLOOR))


#: the commands' step bound: this many times the model's typical displacement ``disp_scale`` per step ...
STEP_RMS_FACTOR = 20.0
#: ... and never below this [Å]
STEP_RMS_FLOOR = 10.0


class StepGuard:
    """Checks every predicted frame against :class:`GuardConfig`; ``__call__`` returns None or the reason."""

    def __init__(self, config: GuardConfig, x0: torch.Tensor, bonds: torch.Tensor):
        self.config = config
        self.i, self.j = bonds[:, bonds[0] < bonds[1]].to(x0.device)
        self.ref = (x0[self.i] - x0[self.j]).norm(dim=1)
        self.rg0 = float(_rg(x0))

    def __call__(self, cur: torch.Tensor, nxt: torch.Tensor) -> Optional[str]:
        c = self.config
        if not bool(torch.isfinite(nxt).all()):
            return "non-finite coordinates predicted"
        step_rms = float(((nxt - cur) ** 2).sum(dim=1).mean().sqrt())
        if step_rms > c.max_step_rms:
            return f"RMS step {step_rms:.1f} Å exceeds {c.max_step_rms:.1f} Å (the model left its training region)"
        if c.max_bond_dev is not None and self.i.numel():
            dev = ((nxt[self.i] - nxt[self.j]).norm(dim=1) - self.ref).abs()
            worst = int(dev.argmax())
            if float(dev[worst]) > c.max_bond_dev:
                return (f"bond {int(self.i[worst])}–{int(self.j[worst])} deviates {float(dev[worst]):.1f} Å from its "
                        f"start length (bound {c.max_bond_dev:g} Å): the chain broke")
        if c.rg_bounds is not None:
            ratio = float(_rg(nxt)) / max(self.rg0, 1e-12)
            if not c.rg_bounds[0] <= ratio <= c.rg_bounds[1]:
                return (f"radius of gyration {ratio:.2f}× the start frame's, outside {c.rg_bounds[0]:g}–"
                        f"{c.rg_bounds[1]:g}×: the structure {'swelled' if ratio > 1 else 'collapsed'}")
        return None


def _rg(x: torch.Tensor) -> torch.Tensor:
    """Radius of gyration [Å] of (N, 3) positions (equal weights)."""
    return ((x - x.mean(dim=0)) ** 2).sum(dim=1).mean().sqrt()

"""An exponential moving average of a module's weights (``train: ema_decay``).

After optimiser step n the average moves towards the module's floating-point state (parameters and buffers)::

    ema ← ema + (1 − d_n) (w − ema),    d_n = min(d, (1 + n) / (10 + n))

The warm-up ``d_n`` lets the first steps' (random) weights fade quickly, so a short run is not dominated by its
initialisation. Integer buffers are not averaged: the average's state carries the module's own. The average is
plain data (a state dict and a step count), saved in ``last.pt`` so that a resumed run continues it bit-identically.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn

__all__ = ["WeightAverage", "ema_weight"]


def ema_weight(decay: float, updates: int) -> float:
    """The decay ``d_n`` of update number ``updates`` (0-based): ``min(decay, (1 + n) / (10 + n))``."""
    return min(float(decay), (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """The moving average of ``module``'s floating-point state; ``update`` after every optimiser step.

    Args:
        module: the trained module (not a DDP / compile wrapper: its ``state_dict`` tensors share the parameters'
            storage, which is what the average follows and what :meth:`swapped_in` writes to).
        decay: d in (0, 1).
        state: a previous :meth:`state_dict` to continue from (resume); ``None`` starts at the module's weights.
        updates: how many updates ``state`` has seen.
    """

    def __init__(self, module: nn.Module, *, decay: float, state: Optional[dict] = None, updates: int = 0) -> None:
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay, self.updates = float(decay), int(updates)
        self._live = dict(module.state_dict())
        self._keys = [k for k, v in self._live.items() if v.is_floating_point()]
        src = self._live if state is None else state
        self._avg = {k: src[k].detach().to(self._live[k].device, self._live[k].dtype).clone() for k in self._keys}

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average towards the module's current weights."""
        weight = 1.0 - ema_weight(self.decay, self.updates)
        torch._foreach_lerp_([self._avg[k] for k in self._keys], [self._live[k] for k in self._keys], weight)
        self.updates += 1

    def state_dict(self) -> dict:
        """A copy of the module's state with the averaged floating-point entries (loadable into the module)."""
        return {k: (self._avg[k] if k in self._avg else v).detach().clone() for k, v in self._live.items()}

    @contextmanager
    @torch.no_grad()
    def swapped_in(self) -> Iterator[None]:
        """Within the block the module holds the averaged weights; its own are restored on exit."""
        live = [self._live[k] for k in self._keys]
        saved = [t.clone() for t in live]
        torch._foreach_copy_(live, [self._avg[k] for k in self._keys])
        try:
            yield
        finally:
            torch._foreach_copy_(live, saved)

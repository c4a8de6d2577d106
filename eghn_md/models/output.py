"""What every model returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor

__all__ = ["ModelOutput"]


@dataclass
class ModelOutput:
    """Prediction for a :class:`~eghn_md.data.batch.GraphBatch`.

    * ``pos``: (N, 3) [Å] predicted absolute positions at t + ΔT.
    * ``reg``: () pooling regulariser (zero for models without pooling).
    * ``assign``: (N, K) soft cluster assignment S, or None.
    * ``scalars``: (N, H) node scalars returned by the decoder (``eghn-published``, as the authors' model returns
      them; no loss term reads them), or None.
    """

    pos: Tensor
    reg: Tensor
    assign: Optional[Tensor] = None
    scalars: Optional[Tensor] = None

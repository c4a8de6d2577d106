"""The command line's progress display: one rich implementation of :class:`eghn_md.utils.Progress` (on stderr)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["RichProgress"]


class RichProgress:
    """A bar with done/total, elapsed and remaining time, and what the status says: training epochs show the loss
    and each of its terms (every ``train_*`` entry of the history row), the validation MSE, the best one so far and
    samples/s; preprocessing the trajectory being read; other steps their ``info`` (fit-bias: each round's mismatch)."""

    def __init__(self, *, console: Console | None = None, description: str = "", transient: bool = False) -> None:
        self.console = console or Console(stderr=True, emoji=False)
        self.description = description
        self.transient = transient
        self._progress: Progress | None = None
        self._task = None
        self._best = math.inf

    def start(self, total: int, done: int = 0) -> None:
        # the description and the status quote user text (trajectory names): columns without markup
        self._progress = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[info]}", markup=False),
                                  TimeElapsedColumn(), TimeRemainingColumn(),
                                  console=self.console, transient=self.transient)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=total, completed=done, info="")

    def update(self, status: Mapping[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=status["done"], info=self._info(status))

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _info(self, status: Mapping[str, Any]) -> str:
        if "train_loss" not in status:
            return str(status.get("info", status.get("trajectory", "")))
        val = status.get("val_mse", float("nan"))
        if val == val and val < self._best:
            self._best = val
        terms = " ".join(f"{k.removeprefix('train_')} {v:.3g}" for k, v in status.items()
                         if k.startswith("train_") and k != "train_loss")
        return (f"loss {status['train_loss']:.4g}{f' ({terms})' if terms else ''}  "
                f"val {f'{val:.4g}' if val == val else '-'} Å²  "
                f"best {f'{self._best:.4g}' if self._best < math.inf else '-'}  "
                f"{status.get('samples_per_s', float('nan')):.1f} samples/s")

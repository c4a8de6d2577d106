"""Rich live progress for training: epoch bar with loss, validation MSE, samples/s and ETA (on stderr)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["TrainProgress"]


class TrainProgress:
    """Implements the ``progress`` protocol of :func:`eghn_md.train.loop.fit`."""

    def __init__(self, *, console: Console | None = None, description: str = "train") -> None:
        self.console = console or Console(stderr=True)
        self.description = description
        self._progress: Progress | None = None
        self._task = None
        self._best = math.inf

    def start(self, total_epochs: int, done: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  val {task.fields[val]} Å²  best {task.fields[best]}"),
            TextColumn("{task.fields[sps]} samples/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            self.description, total=total_epochs, completed=done, loss="-", val="-", best="-", sps="-"
        )

    def update(self, row: dict) -> None:
        if self._progress is None:
            return
        val = row.get("val_mse", float("nan"))
        if val == val and val < self._best:
            self._best = val
        self._progress.update(
            self._task,
            completed=row["epoch"],
            loss=f"{row['train_loss']:.4g}",
            val=f"{val:.4g}" if val == val else "-",
            best=f"{self._best:.4g}" if self._best < math.inf else "-",
            sps=f"{row['samples_per_s']:.1f}",
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

"""Small shared utilities: device resolution, seeding and the progress interface of long library calls."""

from __future__ import annotations

import os
import random
from typing import Any, Mapping, Optional, Protocol, runtime_checkable

import numpy as np
import torch

from eghn_md.errors import UsageError

__all__ = ["resolve_device", "seed_everything", "release_heap", "HEAP_TRIM_STEPS", "reject_unknown_fields",
           "DEVICE_CHOICES", "Progress", "SILENT", "as_progress", "evenly_spaced"]

from eghn_md.choices import DEVICES as DEVICE_CHOICES  # noqa: E402  (one home, torch-free)


@runtime_checkable
class Progress(Protocol):
    """The one progress interface of long library calls (``fit``, ``preprocess``, rollouts, ``evaluate``'s
    rollouts): ``start(total, done)`` when the work begins (``total`` units, ``done`` of them complete already, e.g.
    on resume), ``update(status)`` after each unit (``status["done"]``: units complete so far; the other keys
    describe it, e.g. a training epoch's history row), ``stop()`` when the work ends, also when it fails.

    The library is silent by default (:data:`SILENT`); the command line passes rich progress bars
    (``cli._progress``)."""

    def start(self, total: int, done: int = 0) -> None: ...

    def update(self, status: Mapping[str, Any]) -> None: ...

    def stop(self) -> None: ...


class _Silent:
    """A :class:`Progress` that shows nothing."""

    def start(self, total: int, done: int = 0) -> None:
        pass

    def update(self, status: Mapping[str, Any]) -> None:
        pass

    def stop(self) -> None:
        pass

    def __repr__(self) -> str:
        return "SILENT"


#: the library's default progress: nothing shown
SILENT: Progress = _Silent()


def as_progress(progress: Optional[Progress]) -> Progress:
    """``progress``, or :data:`SILENT` for ``None``; anything else must have ``start``, ``update`` and ``stop``."""
    if progress is None:
        return SILENT
    if not isinstance(progress, Progress):
        raise TypeError(f"progress must have start(total, done), update(status) and stop() methods, got {progress!r}")
    return progress


def resolve_device(device: str | torch.device) -> torch.device:
    """Map ``auto|cpu|cuda|cuda:N`` to a :class:`torch.device`; ``auto`` picks CUDA when available.

    Under ``torchrun`` (``LOCAL_RANK`` set) CUDA devices are assigned one per local rank.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"`device` {device!r} requested but CUDA is not available; use 'cpu' or 'auto'",
                             params=("device",))
        if name == "cuda" and "LOCAL_RANK" in os.environ:
            name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device {device!r}; valid choices: {', '.join(DEVICE_CHOICES)}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """Indices (≤ ``k``,) int64 of ``k`` of ``n`` items, evenly spaced, first and last included, ascending and
    distinct (all ``n`` when ``k`` ≥ ``n``; none when ``n`` or ``k`` is 0)."""
    k = min(int(n), int(k))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, int(n) - 1, num=k).round().astype(np.int64))


def reject_unknown_fields(d: dict, cls, *, what: str) -> None:
    """Raise :class:`UsageError` naming the keys of ``d`` that are not fields of dataclass ``cls``, and the valid
    ones."""
    from dataclasses import fields

    valid = sorted(f.name for f in fields(cls))
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise UsageError(f"unknown {what} option(s) {unknown}; valid: {valid}")


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile(model, dynamic=True)``: node and edge counts change from sample to sample, so shapes are
    symbolic from the start. The first calls pay the compilation (and a recompilation per new dtype/device); the
    results are those of the eager model up to floating-point reassociation. A torch without ``torch.compile`` is
    refused with a :class:`~eghn_md.errors.UsageError` naming the version."""
    if not hasattr(torch, "compile"):
        raise UsageError(f"`compile` needs torch >= 2.0 (this is torch {torch.__version__}); run without `compile`",
                         params=("compile",))
    return torch.compile(model, dynamic=True)


def release_heap() -> bool:
    """Hand the C heap's free pages back to the operating system (glibc's ``malloc_trim(0)``); True where it ran.

    A long rollout allocates tensors of a slightly different size every step (the radius graph's edge count
    changes), and glibc keeps the freed pieces: without a trim the peak resident memory of an 8-replica AdK rollout
    grew by ~7 MB per step (1.5–1.8 GB after 200 steps, 14 GB after 2,000), with one every 10 steps it was 0.56 GB
    after 200 steps and 0.59 GB after 600 (``examples/benchmarks/RESULTS.md``). A no-op (False) where the C library
    is not glibc.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        import ctypes
        import ctypes.util

        try:
            _MALLOC_TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without it)
            _MALLOC_TRIM = False
    if _MALLOC_TRIM is False:
        return False
    _MALLOC_TRIM(0)
    return True


_MALLOC_TRIM = None  #: glibc's malloc_trim once looked up, False where there is none
#: rollout steps between two calls of :func:`release_heap` (the single and the ensemble rollout loops)
HEAP_TRIM_STEPS = 10

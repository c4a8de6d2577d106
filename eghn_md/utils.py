"""Small shared utilities: device resolution and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from eghn_md.errors import UsageError

__all__ = ["resolve_device", "seed_everything", "reject_unknown_fields", "DEVICE_CHOICES"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


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
            raise UsageError(f"--device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
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


def reject_unknown_fields(d: dict, cls, *, what: str) -> None:
    """Raise :class:`UsageError` naming the keys of ``d`` that are not fields of dataclass ``cls``, and the valid ones."""
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
        raise UsageError(f"--compile needs torch >= 2.0 (this is torch {torch.__version__}); run without --compile")
    return torch.compile(model, dynamic=True)

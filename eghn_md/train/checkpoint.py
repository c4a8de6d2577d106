"""Checkpoints: weights + resolved config + normalisation stats + node metadata + format version.

A checkpoint is a plain dict of tensors, numbers, strings and lists, saved with :func:`torch.save` and read with
``torch.load(weights_only=True)`` (no pickled objects, so an untrusted file cannot run code). A SHA-256 digest over
the metadata and the model weights detects corrupted or edited files. Files are written atomically.

Format history:

* 1 — initial format: ``kind``, ``format_version``, ``eghn_md_version``, ``model_config``, ``data_config``,
  ``train_config``, ``stats``, ``nodes``, ``state_dict``, ``digest``; optional ``train_state``, ``metrics``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from eghn_md import __version__
from eghn_md.errors import DataError, UsageError
from eghn_md.io.atomic import atomic_path
from eghn_md.models.registry import has_pooling
from eghn_md.train.config import migrate_legacy

__all__ = ["FORMAT_VERSION", "KIND", "Checkpoint", "save_checkpoint", "load_checkpoint", "load_model", "describe"]

FORMAT_VERSION = 1
KIND = "eghn-md-model"
_META_KEYS = ("model_config", "data_config", "train_config", "stats", "nodes")


def _digest(meta: dict, state_dict: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _tensor_free(obj: Any) -> Any:
    """Metadata must be plain data: convert tensors to lists."""
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, dict):
        return {str(k): _tensor_free(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tensor_free(v) for v in obj]
    return obj


@dataclass
class Checkpoint:
    """A loaded checkpoint (plain data; build the model with :func:`load_model`)."""

    path: Path
    model_config: dict
    data_config: dict
    train_config: dict
    stats: dict
    nodes: dict
    state_dict: dict
    format_version: int
    eghn_md_version: str
    train_state: Optional[dict] = None
    metrics: dict = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    *,
    model_config: dict,
    data_config: dict,
    train_config: dict,
    stats: dict,
    nodes: dict,
    state_dict: dict,
    train_state: Optional[dict] = None,
    metrics: Optional[dict] = None,
) -> Path:
    """Write a checkpoint atomically (temp file, fsync, rename) and return its path."""
    meta = {
        "model_config": _tensor_free(model_config),
        "data_config": _tensor_free(data_config),
        "train_config": _tensor_free(train_config),
        "stats": _tensor_free(stats),
        "nodes": _tensor_free(nodes),
    }
    state_dict = {k: v.detach().to("cpu") for k, v in state_dict.items()}
    payload = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "eghn_md_version": __version__,
        **meta,
        "state_dict": state_dict,
        "digest": _digest(meta, state_dict),
        "metrics": _tensor_free(metrics or {}),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _read_payload(path: Path):
    """What ``path`` holds, read by torch's safe (weights-only) loader; a file that loader refuses or cannot read
    is a :class:`DataError` saying that nothing in it was executed."""
    try:
        with warnings.catch_warnings():  # torch warns about unusual pickle protocols of foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        wanted = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if wanted:  # the file asks to import / call something: refused by the weights-only unpickler, never run
            raise DataError(
                f"{str(path)!r} is not an eghn-md checkpoint: it asks to run {wanted.group(1)!r}, which the safe "
                "(weights-only) loader refuses; nothing in it was executed"
            ) from None
        raise DataError(
            f"{str(path)!r} is not a readable eghn-md checkpoint (corrupted, or not a PyTorch file; the safe "
            "loader refused it and nothing in it was executed)"
        ) from None
    except Exception as exc:  # BadZipFile, RuntimeError, EOFError, OSError, TypeError …: a damaged file
        raise DataError(
            f"{str(path)!r} is not a readable eghn-md checkpoint (truncated or corrupted: {_first_line(exc)})"
        ) from None


def load_checkpoint(path: str | Path, *, verify: bool = True) -> Checkpoint:
    """Read and validate a checkpoint.

    Raises :class:`UsageError` for a missing file or a directory; :class:`DataError` for an unreadable file, a file
    that is not an eghn-md checkpoint (pickled objects are refused, never run), a newer format version than this
    eghn-md understands, or content whose digest does not match (corrupted or modified).
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"checkpoint {str(path)!r} does not exist")
    if path.is_dir():
        raise UsageError(f"checkpoint {str(path)!r} is a directory; pass RUN/model.pt")
    payload = _read_payload(path)
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        raise DataError(f"{str(path)!r} is not an eghn-md checkpoint (no kind={KIND!r} entry)")
    version = payload.get("format_version")
    if not isinstance(version, int):
        raise DataError(f"{str(path)!r} has no integer format_version")
    if version > FORMAT_VERSION:
        raise DataError(
            f"{str(path)!r} has checkpoint format {version}, newer than this eghn-md {__version__} reads "
            f"(<= {FORMAT_VERSION}); upgrade eghn-md"
        )
    missing = [k for k in (*_META_KEYS, "state_dict", "digest") if k not in payload]
    if missing:
        raise DataError(f"{str(path)!r} is missing checkpoint entries {missing}")
    sd = payload["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DataError(f"{str(path)!r}: 'state_dict' is not a mapping of tensors")
    bad = [k for k in _META_KEYS if not isinstance(payload[k], dict)]
    if bad:
        raise DataError(f"{str(path)!r}: checkpoint entries {bad} are not mappings")
    if verify:
        meta = {k: payload[k] for k in _META_KEYS}
        if _digest(meta, sd) != payload["digest"]:
            raise DataError(f"{str(path)!r} failed its integrity check (content modified or corrupted)")
    model_config = dict(payload["model_config"])
    model_config.setdefault("vector_norm", "per-graph")  # written before the option existed: v0.1's scaling
    # keys written in the model section by earlier versions: their home (train) holds the value the run used
    model_config = migrate_legacy({"model": model_config, "train": dict(payload["train_config"].get("train") or {})},
                                  recorded=True)["model"]
    return Checkpoint(
        path=path,
        model_config=model_config,
        data_config=payload["data_config"],
        train_config=payload["train_config"],
        stats=payload["stats"],
        nodes=payload["nodes"],
        state_dict=payload["state_dict"],
        format_version=version,
        eghn_md_version=str(payload.get("eghn_md_version", "?")),
        train_state=payload.get("train_state"),
        metrics=payload.get("metrics") or {},
    )


def load_model(path: str | Path, *, device: str | torch.device = "cpu"):
    """Load a checkpoint and build its model in eval mode: returns ``(model, checkpoint)``."""
    from eghn_md.models import ModelConfig, build_model
    from eghn_md.utils import resolve_device

    ckpt = load_checkpoint(path)
    try:
        model = build_model(ModelConfig.from_dict(ckpt.model_config))
    except (UsageError, TypeError, ValueError) as exc:
        raise DataError(f"{str(path)!r}: its model configuration is not valid for this eghn-md ({exc})") from None
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split()).replace(f"Error(s) in loading state_dict for {type(model).__name__}: ", "")
        raise DataError(f"{str(path)!r}: weights do not fit model {ckpt.model_config.get('name')!r} "
                        f"({detail[:240]})") from None
    model = model.to(resolve_device(device)).eval()
    return model, ckpt


def describe(path: str | Path) -> dict:
    """A summary of a checkpoint for ``eghn-md info``."""
    ckpt = load_checkpoint(path)
    n_params = sum(int(t.numel()) for t in ckpt.state_dict.values())
    mc, dc = ckpt.model_config, ckpt.data_config
    nodes = ckpt.nodes
    out = {
        "file": str(ckpt.path),
        "format_version": ckpt.format_version,
        "eghn_md_version": ckpt.eghn_md_version,
        "model": mc.get("name"),
        "parameters": n_params,
        "hidden": mc.get("hidden"),
        "layers": mc.get("n_layers"),
        "clusters": mc.get("n_clusters") if has_pooling(mc.get("name", "")) else None,
        "horizon_frames": dc.get("horizon"),
        "horizon_ps": ckpt.stats.get("horizon_ps"),
        "frame_dt_ps": ckpt.stats.get("frame_dt_ps"),
        "sequence_bonds": len(nodes.get("bonds", [])),
        "cutoff_A": dc.get("cutoff"),
        "selection": nodes.get("selection"),
        "nodes": len(nodes.get("resname", [])),
        "trained_epochs": (ckpt.train_state or {}).get("epoch", ckpt.metrics.get("epochs")),
        "best_epoch": ckpt.metrics.get("best_epoch"),
        "best_val_mse_A2": ckpt.metrics.get("best_val_mse"),
        "pair_bias_pairs": mc.get("bias_pairs") or None,
        "pair_bias_collective": bool(mc.get("bias_collective")) if mc.get("bias_pairs") else None,
    }
    return out

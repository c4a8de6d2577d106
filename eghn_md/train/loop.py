"""The training loop: AdamW or Adam + schedule + clipping + early stopping, deterministic and exactly resumable.

``fit`` trains any model that maps a :class:`~eghn_md.data.batch.GraphBatch` to a
:class:`~eghn_md.models.ModelOutput` on sequences of single-graph samples. It is used by ``eghn-md train`` and by the
paper benchmarks alike.

Determinism and resume: the sample order of epoch ``e`` and the torch RNG at its start are functions of
``(seed, e)`` only, so a run resumed from the checkpoint of epoch ``k`` follows the same loss curve as an
uninterrupted run with the same seed.

Distributed (``torchrun``): when ``WORLD_SIZE > 1`` the process group is initialised (NCCL on CUDA, gloo on CPU),
the model is wrapped in DistributedDataParallel and each global batch of ``batch_size`` samples is split across
ranks, so the gradient is the same as a single process would compute (exactly so when graphs have equal sizes).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from eghn_md.data.batch import GraphBatch, collate
from eghn_md.errors import UsageError
from eghn_md.utils import reject_unknown_fields, resolve_device

__all__ = ["TrainConfig", "FitResult", "TrainState", "fit", "evaluate_mse", "iterate_batches", "SCHEDULES",
           "OPTIMIZERS"]

SCHEDULES = ("cosine", "plateau", "none")
#: ``adamw``: decoupled weight decay (the default); ``adam``: torch's Adam, weight decay added to the gradient as an
#: L2 penalty (the published EGHN code's optimiser)
OPTIMIZERS = ("adamw", "adam")


@dataclass(kw_only=True)
class TrainConfig:
    """Optimisation settings (all plain data, saved in every checkpoint).

    ``patience`` counts evaluations without validation improvement (0 disables early stopping); ``max_chunk_nodes``
    splits each batch into pieces of at most that many nodes whose gradients are accumulated (the same gradient;
    per-edge tensors stay cache-sized, which is faster on CPU and needs less memory; 0 disables).
    """

    epochs: int = 100
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    grad_clip: float = 10.0
    patience: int = 20
    eval_every: int = 1
    reg_weight: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    max_chunk_nodes: int = 1024
    optimizer: str = "adamw"  #: one of OPTIMIZERS

    def __post_init__(self) -> None:
        def number(name: str, kind: type) -> float:
            value = getattr(self, name)
            try:
                x = kind(value)
            except (TypeError, ValueError, OverflowError):
                raise UsageError(f"{name} must be a finite number, got {value!r}") from None
            if not math.isfinite(x):
                raise UsageError(f"{name} must be a finite number, got {value!r}")
            return x

        for name in ("epochs", "batch_size", "eval_every"):
            if number(name, int) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("lr",):
            if not number(name, float) > 0:
                raise UsageError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "grad_clip", "reg_weight", "patience", "max_chunk_nodes"):
            if number(name, float) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; valid choices: {', '.join(SCHEDULES)}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; valid choices: {', '.join(OPTIMIZERS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        reject_unknown_fields(d, cls, what="train")
        return cls(**d)


@dataclass
class TrainState:
    """Everything needed to continue a run after epoch ``epoch`` (1-based, completed)."""

    epoch: int
    model_state: dict
    optimizer_state: dict
    scheduler_state: dict
    history: list
    best_val: float
    best_epoch: int
    best_state: dict
    bad_evals: int
    stopped: bool = False

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class FitResult:
    history: list
    best_state: dict
    best_epoch: int
    best_val_mse: float
    last_state: TrainState
    stopped_early: bool = False
    train_samples_per_s: float = float("nan")
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------- helpers
def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed(device: torch.device) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def iterate_batches(dataset: Sequence[GraphBatch], indices: Sequence[int], batch_size: int):
    """Yield lists of samples (not yet collated) of ``batch_size`` consecutive ``indices``."""
    for start in range(0, len(indices), batch_size):
        yield [dataset[int(i)] for i in indices[start : start + batch_size]]


def _chunks(samples: list[GraphBatch], max_nodes: int) -> list[list[GraphBatch]]:
    if max_nodes <= 0:
        return [samples]
    out, cur, n = [], [], 0
    for s in samples:
        if cur and n + s.num_nodes > max_nodes:
            out.append(cur)
            cur, n = [], 0
        cur.append(s)
        n += s.num_nodes
    if cur:
        out.append(cur)
    return out


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Half-precision losses (autocast) are summed in float32; float32/float64 stay as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return g


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return nullcontext()


def _build_scheduler(optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr * 0.01)
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=5)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


@torch.no_grad()
def evaluate_mse(
    model: nn.Module,
    dataset: Sequence[GraphBatch],
    *,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    amp: bool = False,
) -> float:
    """Mean squared error per coordinate [Å²] of ``model`` on ``dataset`` (nodes and coordinates pooled).

    Under ``torchrun`` every rank evaluates its share and the sums are all-reduced.
    """
    device = resolve_device(device)
    rank, world = _dist_info()
    indices = list(range(rank, len(dataset), world))
    was_training = model.training
    model.eval()
    sq = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    for samples in iterate_batches(dataset, indices, batch_size):
        batch = collate(samples).to(device)
        with _autocast(device, amp):
            out = model(batch)
        sq += ((out.pos.double() - batch.target.double()) ** 2).sum()
        count += batch.target.numel()
    if world > 1:
        dist.all_reduce(sq)
        dist.all_reduce(count)
    model.train(was_training)
    return float(sq / count.clamp_min(1))


def _is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA out-of-memory errors and the CPU allocator's "can't allocate memory"."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "can't allocate memory" in str(exc)


def _out_of_memory_error(device: torch.device, config: TrainConfig) -> Exception:
    from eghn_md.errors import ResourceError

    if device.type == "cuda":
        torch.cuda.empty_cache()
    bs = int(config.batch_size)
    hint = f"lower --batch-size (e.g. --batch-size {max(1, bs // 2)})" if bs > 1 else "use a smaller --hidden"
    return ResourceError(
        f"out of memory on {device.type} while training with batch size {bs}; {hint}, or set "
        "train: {max_chunk_nodes: N} in the --config file to process each batch in pieces of N nodes"
    )


# ------------------------------------------------------------------------------------------------------------ fit
def fit(
    model: nn.Module,
    train_set: Sequence[GraphBatch],
    val_set: Sequence[GraphBatch],
    *,
    config: TrainConfig,
    resume: Optional[TrainState] = None,
    on_epoch_end: Optional[Callable[[TrainState, bool], None]] = None,
    progress: Any = None,
) -> FitResult:
    """Train ``model`` and return the best-on-validation weights and the history.

    Args:
        model: maps a ``GraphBatch`` to an output with ``pos`` (N, 3) [Å] and ``reg`` (scalar).
        train_set, val_set: sequences of single-graph samples with ``target`` (N, 3) [Å].
        config: optimisation settings.
        resume: state of a previous run (from its last checkpoint) to continue from.
        on_epoch_end: called on rank 0 after every epoch with the resumable state and whether it is the new best
            (the CLI writes checkpoints there).
        progress: optional object with ``start(total_epochs, done)``, ``update(row: dict)`` and ``stop()`` methods.

    Interrupting (``KeyboardInterrupt``) propagates after the last completed epoch was handed to ``on_epoch_end``.
    """
    from eghn_md.models.loss import compute_loss  # local: the models package imports data, not train

    if len(train_set) == 0:
        raise UsageError("the training set is empty (no window fits: check --horizon and the split fractions)")
    if len(val_set) == 0:
        raise UsageError("the validation set is empty (no window fits: check --horizon and the split fractions)")
    device = resolve_device(config.device)
    _maybe_init_distributed(device)
    rank, world = _dist_info()

    torch.manual_seed(config.seed)
    model = model.to(device)
    opt_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    optimizer = opt_class(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _build_scheduler(optimizer, config)
    history: list = []
    best_val, best_epoch, bad_evals = math.inf, 0, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start_epoch = 1
    if resume is not None:
        model.load_state_dict(resume.model_state)
        optimizer.load_state_dict(resume.optimizer_state)
        scheduler.load_state_dict(resume.scheduler_state)
        history = list(resume.history)
        best_val, best_epoch, bad_evals = resume.best_val, resume.best_epoch, resume.bad_evals
        best_state = resume.best_state
        start_epoch = resume.epoch + 1
        if resume.stopped or start_epoch > config.epochs:
            raise UsageError(
                f"nothing to do: the run already finished ({resume.epoch} epochs"
                f"{', stopped early' if resume.stopped else ''}); pass a larger --epochs to continue it"
            )
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    state = resume
    stopped = bool(resume.stopped) if resume is not None else False
    total_samples, total_time = 0, 0.0
    if progress is not None and rank == 0:
        progress.start(config.epochs, start_epoch - 1)
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            torch.manual_seed(int(config.seed) * 7919 + epoch)
            order = torch.randperm(len(train_set), generator=_epoch_generator(config.seed, epoch)).tolist()
            net.train()
            t0 = time.perf_counter()
            sums = {"loss": 0.0, "mse": 0.0, "reg": 0.0}
            n_batches = 0
            n_seen = 0
            for global_batch in iterate_batches(train_set, order, config.batch_size):
                mine = global_batch[rank::world]
                if len(global_batch) < world:  # too few samples to give every rank one: skip (last batch only)
                    continue
                n_nodes = sum(s.num_nodes for s in mine)
                n_graphs = len(mine)
                optimizer.zero_grad(set_to_none=True)
                pieces = _chunks(mine, config.max_chunk_nodes)
                b_loss = b_mse = b_reg = 0.0
                for k, piece in enumerate(pieces):
                    batch = collate(piece).to(device)
                    sync = nullcontext() if (world == 1 or k == len(pieces) - 1) else net.no_sync()
                    with sync:
                        with _autocast(device, config.amp):
                            out = net(batch)
                        _, mse, reg = compute_loss(out, batch.target, reg_weight=config.reg_weight)
                        w_nodes = batch.num_nodes / n_nodes
                        w_graphs = batch.num_graphs / n_graphs
                        loss = _at_least_fp32(mse) * w_nodes + config.reg_weight * _at_least_fp32(reg) * w_graphs
                        if not torch.isfinite(loss):
                            from eghn_md.errors import DivergenceError

                            raise DivergenceError(
                                f"training loss became {float(loss.detach())} at epoch {epoch}; lower --lr or check the data"
                            )
                        loss.backward()
                    b_loss += float(loss.detach())
                    b_mse += float(mse.detach()) * w_nodes
                    b_reg += float(reg.detach()) * w_graphs
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                optimizer.step()
                sums["loss"] += b_loss
                sums["mse"] += b_mse
                sums["reg"] += b_reg
                n_batches += 1
                n_seen += len(global_batch)
            dt = time.perf_counter() - t0
            total_samples += n_seen
            total_time += dt
            row = {
                "epoch": epoch,
                "train_loss": sums["loss"] / max(n_batches, 1),
                "train_mse": sums["mse"] / max(n_batches, 1),
                "train_reg": sums["reg"] / max(n_batches, 1),
                "val_mse": float("nan"),
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_time_s": dt,
                "samples_per_s": n_seen / dt if dt > 0 else float("nan"),
            }
            if world > 1:
                t = torch.tensor([row["train_loss"], row["train_mse"], row["train_reg"]], dtype=torch.float64,
                                 device=device)
                dist.all_reduce(t)
                row["train_loss"], row["train_mse"], row["train_reg"] = (t / world).tolist()
            is_best = False
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                val = evaluate_mse(net, val_set, batch_size=config.batch_size, device=device, amp=config.amp)
                row["val_mse"] = val
                if val < best_val:
                    best_val, best_epoch, bad_evals, is_best = val, epoch, 0, True
                    best_state = {k: v.detach().clone() for k, v in _unwrap(net).state_dict().items()}
                else:
                    bad_evals += 1
                if config.schedule == "plateau":
                    scheduler.step(val)
            if config.schedule != "plateau":
                scheduler.step()
            history.append(row)
            if config.patience > 0 and bad_evals >= config.patience:
                stopped = True
            state = TrainState(
                epoch=epoch,
                model_state={k: v.detach().clone() for k, v in _unwrap(net).state_dict().items()},
                optimizer_state=optimizer.state_dict(),
                scheduler_state=scheduler.state_dict(),
                history=list(history),
                best_val=best_val,
                best_epoch=best_epoch,
                best_state=best_state,
                bad_evals=bad_evals,
                stopped=stopped,
            )
            if rank == 0:
                if on_epoch_end is not None:
                    on_epoch_end(state, is_best)
                if progress is not None:
                    progress.update(row)
            if stopped:
                break
    except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not _is_out_of_memory(exc):
            raise
        raise _out_of_memory_error(device, config) from None
    finally:
        if progress is not None and rank == 0:
            progress.stop()
    return FitResult(
        history=history,
        best_state=best_state,
        best_epoch=best_epoch,
        best_val_mse=best_val,
        last_state=state,
        stopped_early=stopped,
        train_samples_per_s=(total_samples / total_time) if total_time > 0 else float("nan"),
    )

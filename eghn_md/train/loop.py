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
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from eghn_md.data.batch import GraphBatch, collate
from eghn_md.errors import DivergenceError, ResourceError, UsageError
from eghn_md.train.ema import WeightAverage
from eghn_md.train.feed import BatchFeed, Prepared, resolve_workers
from eghn_md.train.objective import Objective, objective_from_config
from eghn_md.train.options import MIN_VAL_WINDOWS, OPTIMIZERS, SCHEDULES, SELECTIONS, TrainConfig
from eghn_md.utils import SILENT, Progress, as_progress, compile_model, resolve_device

__all__ = ["TrainConfig", "FitResult", "TrainState", "fit", "evaluate_mse", "iterate_batches", "objective_from_config",
           "OPTIMIZERS", "SCHEDULES", "SELECTIONS", "MIN_VAL_WINDOWS", "validation_noise", "VALIDATION_SEED"]

#: the seed stream of a generative model's validation samples (window k's noise: seed VALIDATION_SEED + k)
VALIDATION_SEED = 2_000_003


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
    ema_state: Optional[dict] = None  #: the weight average (``train: ema_decay``), None when off
    ema_updates: int = 0

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
    """The plain module inside DistributedDataParallel and/or ``torch.compile`` wrappers."""
    model = getattr(model, "_orig_mod", model)
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return getattr(model, "_orig_mod", model)


def _index_chunks(indices: Sequence[int], batch_size: int):
    """Yield runs of ``batch_size`` consecutive ``indices`` (the last one shorter)."""
    for start in range(0, len(indices), batch_size):
        yield indices[start : start + batch_size]


def iterate_batches(dataset: Sequence[GraphBatch], indices: Sequence[int], batch_size: int):
    """Yield lists of samples (not yet collated) of ``batch_size`` consecutive ``indices``."""
    for chunk in _index_chunks(indices, batch_size):
        yield [dataset[int(i)] for i in chunk]


def validation_noise(samples: Sequence[GraphBatch], indices: Sequence[int]) -> torch.Tensor:
    """Unit Gaussian source noise (N, 3) for one sample of each of ``samples`` (collated in this order), window
    ``indices[k]``'s drawn in float64 on the CPU from a generator seeded by that index alone."""
    parts = []
    for sample, index in zip(samples, indices, strict=True):
        g = torch.Generator().manual_seed(VALIDATION_SEED + int(index))
        parts.append(torch.randn((sample.num_nodes, 3), generator=g, dtype=torch.float64))
    return torch.cat(parts) if parts else torch.zeros((0, 3), dtype=torch.float64)


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

    Under ``torchrun`` every rank evaluates its share and the sums are all-reduced. A generative model's one sample
    per window is drawn from noise seeded by the window's index in ``dataset`` (:func:`validation_noise`), so the
    number is the same, up to floating-point rounding, for any number of ranks, any batch size and any state of
    torch's global generator, and epochs are compared on the same draws. (The seed does not depend on the run's
    ``seed``: window k of any set and any run gets the same noise.)
    """
    device = resolve_device(device)
    rank, world = _dist_info()
    indices = list(range(rank, len(dataset), world))
    was_training = model.training
    model.eval()
    sq = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    caps = getattr(_unwrap(model), "capabilities", None)  # fit trains any GraphBatch → ModelOutput module
    sampled = bool(caps is not None and caps.generative)
    for chunk in _index_chunks(indices, batch_size):  # the indices too: they seed a generative model's noise
        samples = [dataset[int(i)] for i in chunk]
        batch = collate(samples).to(device)
        kwargs = {}
        if sampled:
            kwargs["noise"] = validation_noise(samples, chunk).to(batch.pos)
        with _autocast(device, amp):
            out = model(batch, **kwargs)
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
    if device.type == "cuda":
        torch.cuda.empty_cache()
    bs = int(config.batch_size)
    hint = f"lower `batch_size` (e.g. `batch_size` {max(1, bs // 2)})" if bs > 1 else "use a smaller `hidden`"
    return ResourceError(
        f"out of memory on {device.type} while training with batch size {bs}; {hint}, or set "
        "train: {max_chunk_nodes: N} in the `config_file` to process each batch in pieces of N nodes",
        params=("batch_size", "hidden", "config_file"),
    )


# ------------------------------------------------------------------------------------------------------------ fit
@dataclass
class _Run:
    """What one training run carries from epoch to epoch."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    objective: Objective
    config: TrainConfig
    device: torch.device
    rank: int
    world: int
    history: list = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    bad_evals: int = 0
    best_state: dict = field(default_factory=dict)
    stopped: bool = False
    feed: Optional[BatchFeed] = None
    ema: Optional[WeightAverage] = None


def _inference_state(run: _Run) -> dict:
    """The weights validation sees and ``model.pt`` keeps: the average when ``ema_decay`` is on."""
    return run.ema.state_dict() if run.ema is not None else _state_copy(run.net)


def _inference_weights(run: _Run):
    """A context in which ``run.net`` holds the weights of :func:`_inference_state`."""
    return run.ema.swapped_in() if run.ema is not None else nullcontext()


def _state_copy(net: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in _unwrap(net).state_dict().items()}


def _start(model: nn.Module, config: TrainConfig, objective: Objective, resume: Optional[TrainState]) -> _Run:
    """Device, process group, optimiser and schedule, and the state of a resumed run."""
    device = resolve_device(config.device)
    _maybe_init_distributed(device)
    rank, world = _dist_info()
    torch.manual_seed(config.seed)
    model = model.to(device)
    opt_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    # the fused kernel: one pass over all parameters instead of a dozen element-wise ops per tensor (the same
    # update; on CPU 5× faster at 1.9M parameters, which counts at batch 1, RESULTS.md)
    optimizer = opt_class(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                          fused=device.type in ("cpu", "cuda"))
    run = _Run(net=model, optimizer=optimizer, scheduler=_build_scheduler(optimizer, config), objective=objective,
               config=config, device=device, rank=rank, world=world, best_state=_state_copy(model))
    if resume is not None:
        model.load_state_dict(resume.model_state)
        optimizer.load_state_dict(resume.optimizer_state)
        run.scheduler.load_state_dict(resume.scheduler_state)
        run.history = list(resume.history)
        run.best_val, run.best_epoch, run.bad_evals = resume.best_val, resume.best_epoch, resume.bad_evals
        run.best_state, run.stopped = resume.best_state, bool(resume.stopped)
        if resume.stopped or resume.epoch + 1 > config.epochs:
            raise UsageError(
                f"nothing to do: the run already finished ({resume.epoch} epochs"
                f"{', stopped early' if resume.stopped else ''}); pass a larger `epochs` to continue it",
                params=("epochs",),
            )
    if config.ema_decay > 0:
        state, updates = (resume.ema_state, resume.ema_updates) if resume is not None else (None, 0)
        run.ema = WeightAverage(model, decay=config.ema_decay, state=state, updates=updates)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        run.net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        run.net = compile_model(run.net)
    return run


def _feed(run: _Run, train_set: Sequence[GraphBatch]) -> BatchFeed:
    cfg = run.config
    return BatchFeed(train_set, config=cfg, objective=run.objective, workers=resolve_workers(cfg.workers, run.device),
                     rank=run.rank, world=run.world, pin_memory=run.device.type == "cuda")


def _global_totals(totals: dict, run: _Run) -> dict:
    """The loss denominators of the whole global batch: this rank's counts all-reduced over the ranks, so every
    rank's loss is its share of the global sums and the averaged gradient is the single-process one."""
    if run.world == 1:
        return totals
    keys = ("nodes", "bonds", "pairs")
    flat = [totals["graphs"]] + [x for key in keys for x in totals[key]]
    t = torch.tensor(flat, dtype=torch.float64, device=run.device)
    dist.all_reduce(t)
    steps = torch.tensor([totals["steps"]], dtype=torch.float64, device=run.device)
    dist.all_reduce(steps, op=dist.ReduceOp.MAX)
    vals, k, out = t.tolist(), len(totals["nodes"]), {"graphs": int(t[0]), "steps": int(steps[0])}
    for i, key in enumerate(keys):
        out[key] = [int(v) for v in vals[1 + i * k: 1 + (i + 1) * k]]
    return out


def _take_step(run: _Run, prepared: Prepared, epoch: int) -> dict:
    """One optimiser step on this rank's share of a batch (in pieces); returns the detached loss parts (tensors)."""
    cfg = run.config
    totals, pieces = _global_totals(prepared.totals, run), prepared.pieces
    run.optimizer.zero_grad(set_to_none=True)
    sums: dict = {}
    non_blocking = run.device.type == "cuda"
    for k, piece in enumerate(pieces):
        batch = piece.to(run.device, non_blocking=non_blocking)
        sync = nullcontext() if (run.world == 1 or k == len(pieces) - 1) else run.net.no_sync()
        with sync:
            with _autocast(run.device, cfg.amp):
                loss, parts = run.objective(run.net, batch, totals)
            if run.world > 1:  # a share of the global sums; DDP averages gradients over the ranks
                loss, parts = loss * run.world, {key: v * run.world for key, v in parts.items()}
            loss.backward()  # a non-finite loss is caught once per epoch (no host sync per step): _check_finite
        for key, v in {"loss": loss.detach(), **parts}.items():
            sums[key] = sums.get(key, 0.0) + v
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.net.parameters(), cfg.grad_clip)
    run.optimizer.step()
    if run.ema is not None:
        run.ema.update()
    return sums


def _train_epoch(run: _Run, train_set: Sequence[GraphBatch], epoch: int) -> dict:
    """One pass over the training set in the epoch's seeded order; returns the history row's training columns:
    ``train_loss`` and ``train_<term>`` for every term the objective reports (:attr:`Objective.terms`)."""
    cfg = run.config
    torch.manual_seed(int(cfg.seed) * 7919 + epoch)
    order = torch.randperm(len(train_set), generator=_epoch_generator(cfg.seed, epoch)).tolist()
    run.net.train()
    t0 = time.perf_counter()
    keys = ("loss", *run.objective.terms)
    steps: list = []  # per optimiser step the values of ``keys``, checked once at the end (no host sync per step)
    n_seen = 0
    if run.feed is None:
        run.feed = _feed(run, train_set)
    for prepared in run.feed.epoch(order, epoch):
        parts = _take_step(run, prepared, epoch)
        steps.append(torch.stack([_at_least_fp32(torch.as_tensor(parts[k], device=run.device)).double().reshape(())
                                  for k in keys]))
        n_seen += prepared.n_global
    dt = time.perf_counter() - t0
    values = torch.stack(steps) if steps else torch.zeros((0, len(keys)), dtype=torch.float64, device=run.device)
    if run.world > 1:  # every rank sees every rank's values (a non-finite one too): all ranks stop together
        dist.all_reduce(values)
        values = values / run.world
    _check_finite(run, values, keys, epoch)
    means = dict(zip(keys, values.mean(dim=0).tolist(), strict=True)) if steps else {k: math.nan for k in keys}
    return {"epoch": epoch, "train_loss": means["loss"], **{f"train_{k}": means[k] for k in keys[1:]},
            "val_mse": math.nan, "lr": run.optimizer.param_groups[0]["lr"], "epoch_time_s": dt,
            "samples_per_s": n_seen / dt if dt > 0 else math.nan}


def _check_finite(run: _Run, values: torch.Tensor, keys: Sequence[str], epoch: int) -> None:
    """Raise :class:`DivergenceError` naming the first optimiser step of the epoch with a non-finite loss term.

    ``values``: (n_steps, len(keys)) the loss (``keys[0]``) and the objective's terms of every step. A term is
    named before the total it feeds; one sync with the host per epoch."""
    bad = ~torch.isfinite(values)
    if not bool(bad.any()):
        return
    step = int(bad.any(dim=1).nonzero()[0, 0])
    col = next(i for i in [*range(1, len(keys)), 0] if bool(bad[step, i]))
    docs = getattr(run.objective, "term_docs", {})
    what = f"term {keys[col]} ({docs[keys[col]]})" if keys[col] in docs else f"{keys[col]}"
    raise DivergenceError(
        f"training diverged in epoch {epoch}, step {step + 1} of {values.shape[0]}: the {what} became "
        f"{float(values[step, col])}; try a lower `lr` (now {run.config.lr:g}) or, for eghn-published, the "
        "paper preset", params=("lr",))


def _validate(run: _Run, val_set: Sequence[GraphBatch], epoch: int, row: dict) -> bool:
    """Evaluate when due, track the best weights and the early-stopping count; True when this epoch is the best."""
    cfg = run.config
    is_best = False
    if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
        with _inference_weights(run):
            val = evaluate_mse(run.net, val_set, batch_size=cfg.batch_size, device=run.device, amp=cfg.amp)
        row["val_mse"] = val
        if cfg.select == "last":
            run.best_val, run.best_epoch, is_best = val, epoch, True
            run.best_state = _inference_state(run)
        elif val < run.best_val:
            run.best_val, run.best_epoch, run.bad_evals, is_best = val, epoch, 0, True
            run.best_state = _inference_state(run)
        else:
            run.bad_evals += 1
        if cfg.schedule == "plateau":
            run.scheduler.step(val)
    if cfg.schedule != "plateau":
        run.scheduler.step()
    if cfg.select == "best" and cfg.patience > 0 and run.bad_evals >= cfg.patience:
        run.stopped = True
    return is_best


def _snapshot(run: _Run, epoch: int) -> TrainState:
    return TrainState(epoch=epoch, model_state=_state_copy(run.net), optimizer_state=run.optimizer.state_dict(),
                      scheduler_state=run.scheduler.state_dict(), history=list(run.history), best_val=run.best_val,
                      best_epoch=run.best_epoch, best_state=run.best_state, bad_evals=run.bad_evals,
                      stopped=run.stopped, ema_state=None if run.ema is None else run.ema.state_dict(),
                      ema_updates=0 if run.ema is None else run.ema.updates)


def fit(
    model: nn.Module,
    train_set: Sequence[GraphBatch],
    val_set: Sequence[GraphBatch],
    *,
    config: TrainConfig,
    objective: Optional[Objective] = None,
    resume: Optional[TrainState] = None,
    on_epoch_end: Optional[Callable[[TrainState, bool], None]] = None,
    progress: Optional[Progress] = None,
) -> FitResult:
    """Train ``model`` and return the best-on-validation weights and the history.

    Args:
        model: maps a ``GraphBatch`` to an output with ``pos`` (N, 3) [Å] and ``reg`` (scalar).
        train_set, val_set: sequences of single-graph samples with ``target`` (N, 3) [Å] (and ``future`` for
            multi-step training).
        config: optimisation settings.
        objective: the loss (default: :func:`objective_from_config` of ``config``).
        resume: state of a previous run (from its last checkpoint) to continue from.
        on_epoch_end: called on rank 0 after every epoch with the resumable state and whether it is the new best
            (the CLI writes checkpoints there).
        progress: a :class:`~eghn_md.utils.Progress` over epochs (rank 0 only); ``update`` gets each epoch's history
            row (``epoch``, ``train_loss``, ``val_mse``, ``samples_per_s``, …) with ``done`` = the epoch.

    Interrupting (``KeyboardInterrupt``) propagates after the last completed epoch was handed to ``on_epoch_end``.
    """
    for name, s in (("training", train_set), ("validation", val_set)):
        if len(s) == 0:
            raise UsageError(f"the {name} set is empty (no window fits: check the horizon and the split fractions)")
    run = _start(model, config, objective or objective_from_config(config), resume)
    start_epoch = resume.epoch + 1 if resume is not None else 1
    state, total_samples, total_time = resume, 0, 0.0
    progress = as_progress(progress) if run.rank == 0 else SILENT
    progress.start(config.epochs, start_epoch - 1)
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            row = _train_epoch(run, train_set, epoch)
            total_samples += row["samples_per_s"] * row["epoch_time_s"]
            total_time += row["epoch_time_s"]
            is_best = _validate(run, val_set, epoch, row)
            run.history.append(row)
            state = _snapshot(run, epoch)
            if run.rank == 0:
                if on_epoch_end is not None:
                    on_epoch_end(state, is_best)
                progress.update({**row, "done": epoch})
            if run.stopped:
                break
    except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not _is_out_of_memory(exc):
            raise
        raise _out_of_memory_error(run.device, config) from None
    finally:
        if run.feed is not None:
            run.feed.close()
        progress.stop()
    return FitResult(history=run.history, best_state=run.best_state, best_epoch=run.best_epoch,
                     best_val_mse=run.best_val, last_state=state, stopped_early=run.stopped,
                     train_samples_per_s=(total_samples / total_time) if total_time > 0 else float("nan"))

"""From dataset files to train / validation / test sample sets (time-block splits or whole files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from eghn_md.choices import SPLITS
from eghn_md.data.samples import ConcatSet, DataConfig, WindowSet, default_cutoff, split_ranges
from eghn_md.data.system import GraphSystem, check_same_nodes, with_model_bonds
from eghn_md.data.timebase import common_spacing, frame_spacing, frames_per_horizon
from eghn_md.errors import DataError, UsageError
from eghn_md.graph.features import FeatureSpec, canonical_residue, feature_spec_for

__all__ = ["Splits", "build_splits", "open_system", "SPLITS"]


@dataclass
class Splits:
    """Sample sets per split plus what they were built from.

    ``frame_dt_ps`` [ps]: frame spacing of the first trajectory (NaN without usable times); ``horizon_frames``: the
    horizon in its frames; ``horizon_ps`` [ps]: the horizon as time; ``notes``: one-line remarks for summaries
    (residue spellings); ``sources``: one dict per (file, trajectory, split) with its ``horizon_frames``.
    """

    sets: dict
    system: GraphSystem
    cutoff: float
    frame_dt_ps: float
    horizon_frames: int = 0
    horizon_ps: float = float("nan")
    notes: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    _handles: list = field(default_factory=list, repr=False)

    def close(self) -> None:
        for h in self._handles:
            h.close()
        self._handles.clear()

    def __enter__(self) -> "Splits":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_system(dataset, *, spec: Optional[FeatureSpec] = None) -> GraphSystem:
    """The :class:`GraphSystem` of an open :class:`eghn_md.data.dataset.Dataset`."""
    return GraphSystem.from_nodes(dataset.nodes, selection=dataset.selection, spec=spec)


def _check_same_system(system: GraphSystem, dataset, path, *, first) -> None:
    """All datasets of one run must hold the same nodes (one model, one node table in its checkpoint)."""
    got = dataset.nodes
    same = got.n_nodes == system.n_nodes and [canonical_residue(x) for x in got.resname] == [
        canonical_residue(x) for x in system.nodes.resname
    ] and [str(x) for x in got.name] == [str(x) for x in system.nodes.name]
    if not same:
        raise DataError(
            f"dataset {str(path)!r} ({got.n_nodes} nodes, selection {dataset.selection!r}) does not have the nodes "
            f"of {str(first)!r} ({system.n_nodes} nodes, selection {system.selection!r}); all datasets of a run "
            "must come from the same system and selection"
        )


def _horizon_for(dataset, name: str, path, config: DataConfig, spacings: dict, horizon_name: str) -> int:
    """Frames per horizon on trajectory ``name`` of ``dataset``; records its spacing [ps] in ``spacings``.

    With ``config.horizon_ps`` the horizon is physical time and each trajectory gets its own frame count (mixed
    spacings are fine); with a horizon in frames every trajectory must share one spacing (checked by the caller).
    """
    what = f"trajectory {name!r} of {str(path)!r}"
    if config.horizon_ps is not None:
        dt = frame_spacing(dataset.times(name), what=what)
        spacings[what] = dt
        return frames_per_horizon(config.horizon_ps, dt, what=what, horizon=horizon_name)
    try:
        spacings[what] = frame_spacing(dataset.times(name), what=what)
    except DataError:  # no usable times: the horizon stays a number of frames, its time unknown
        spacings[what] = float("nan")
    return int(config.horizon)


def _windows(ds, path, whole, fractions, wanted, system: GraphSystem, cutoff: float, config: DataConfig,
             spacings: dict, horizon_name: str, future_steps: int = 1, time_reversal: bool = False):
    """``(split, WindowSet, source description)`` for every wanted block of every trajectory of ``ds``."""
    out = []
    for name in ds.trajectories:
        pos = ds.positions(name)
        n_frames = int(pos.shape[0])
        horizon = _horizon_for(ds, name, path, config, spacings, horizon_name)
        blocks = (
            dict(zip(SPLITS, split_ranges(n_frames, fractions), strict=True))
            if whole is None
            else {s: ((0, n_frames) if s == whole else (0, 0)) for s in SPLITS}
        )
        for split, block in blocks.items():
            if split not in wanted or block[1] - block[0] <= 0:
                continue
            ws = WindowSet(positions=pos, block=block, h=system.h, bonds=system.bonds, horizon=horizon,
                           cutoff=cutoff, window_stride=config.window_stride,
                           future_steps=future_steps if split == "train" else 1,
                           time_reversal=time_reversal and split == "train",
                           name=f"{Path(path).name}:{name}:{split}")
            out.append((split, ws, {"file": str(path), "trajectory": name, "split": split, "frames": list(block),
                                    "windows": len(ws), "horizon_frames": horizon}))
    return out


def _spacing_of_run(spacings: dict, config: DataConfig) -> float:
    """The frame spacing [ps] of the first trajectory; with a horizon in frames all must share it."""
    known = {k: v for k, v in spacings.items() if v == v}
    if config.horizon_ps is None:
        common_spacing(known)
    return next(iter(spacings.values()), float("nan"))


def _wanted(only: Optional[Sequence[str]]) -> set:
    wanted = set(SPLITS if only is None else only)
    bad = wanted - set(SPLITS)
    if bad:
        raise UsageError(f"unknown split(s) {sorted(bad)}; valid: {', '.join(SPLITS)}")
    return wanted


def _fractions(split: Sequence[float], *, val: bool, test: bool) -> list[float]:
    """Block fractions of the ``data`` files: a split given as whole files goes to training instead."""
    fr = list(split)
    if val:
        fr[0], fr[1] = fr[0] + fr[1], 0.0
    if test:
        fr[0], fr[2] = fr[0] + fr[2], 0.0
    return fr


def _dataset_system(ds, path, spec, expected_nodes: Optional[dict], system: Optional[GraphSystem], *, first):
    """``(graph system, note)`` of one dataset, checked against the model's nodes (``expected_nodes``: its bonds are
    used) or against the first dataset's system."""
    sys_here = open_system(ds, spec=spec)
    note = None
    if expected_nodes is not None:
        note = check_same_nodes(expected_nodes, ds.nodes, what=f"dataset {str(path)!r}")
        sys_here = GraphSystem.from_nodes(with_model_bonds(ds.nodes, expected_nodes), selection=ds.selection,
                                          spec=spec)
    elif system is not None:
        _check_same_system(system, ds, path, first=first)
    if system is not None and sys_here.h.shape[1] != system.h.shape[1]:
        raise DataError(
            f"dataset {str(path)!r} has {sys_here.h.shape[1]} node features but {str(first)!r} has "
            f"{system.h.shape[1]}; datasets must use the same kind of selection"
        )
    return sys_here, note


def build_splits(
    data: Sequence[str | Path],
    *,
    config: DataConfig,
    val: Sequence[str | Path] = (),
    test: Sequence[str | Path] = (),
    only: Optional[Sequence[str]] = None,
    expected_nodes: Optional[dict] = None,
    future_steps: int = 1,
    time_reversal: bool = False,
) -> Splits:
    """Build the sample sets.

    Every trajectory of the ``data`` files is cut into contiguous time blocks by ``config.split``; when ``val``
    (``test``) files are given, those files form the whole validation (test) set and the corresponding block of the
    ``data`` files is given to training instead. No window straddles two blocks.

    Args:
        data: dataset files (.h5) made by ``eghn-md preprocess``.
        config: horizon, cutoff, split fractions.
        val, test: optional whole-file validation / test datasets.
        only: build only these splits (others are empty), e.g. ``["test"]`` for evaluation.
        expected_nodes: a model's node metadata; every file must have the same nodes (residue names compared by
            canonical type; spelling differences are listed in ``Splits.notes``), and its stored bonds are used.
        future_steps: K, the true frames each training window carries for multi-step training (1: the target only).
        time_reversal: the training split also serves every window played backwards
            (:class:`~eghn_md.data.samples.WindowSet`); validation and test stay as recorded.

    Raises:
        UsageError: trajectories of different frame spacings with a horizon given in frames.
        DataError: a horizon in ps that is not a whole number of some trajectory's frames.
    """
    from eghn_md.data.dataset import Dataset

    if not data and not val and not test:
        raise UsageError("no dataset given")
    wanted = _wanted(only)
    fr = _fractions(config.split, val=bool(val), test=bool(test))
    parts: dict[str, list] = {s: [] for s in SPLITS}
    handles, sources, notes, spacings = [], [], [], {}
    system: Optional[GraphSystem] = None
    spec = FeatureSpec.from_dict(expected_nodes["feature_spec"]) if expected_nodes else None
    cutoff = config.cutoff
    horizon_name = "`horizon_ps`" if expected_nodes is None else "the model's horizon"
    try:
        jobs = [(p, None) for p in data] + [(p, "val") for p in val] + [(p, "test") for p in test]
        for path, whole in jobs:
            ds = Dataset(path)
            handles.append(ds)
            ds.validate()  # shapes, dtypes, finite values: a clear DataError before any sample is built
            if spec is None:  # a new run: the feature set of config.features (resume / evaluate: the model's)
                spec = feature_spec_for(config.features, ds.nodes, what=f"dataset {str(path)!r}")
            elif spec.charge and ds.nodes.charge is None:
                raise DataError(f"dataset {str(path)!r} stores no charges, which the model's node features need "
                                "(preprocess it from a topology with charges: PSF, TPR, PRMTOP)")
            sys_here, note = _dataset_system(ds, path, spec, expected_nodes, system, first=jobs[0][0])
            notes += [note] if note else []
            if system is None:
                system, spec = sys_here, sys_here.spec
                cutoff = default_cutoff(system.nodes_are_atoms) if cutoff is None else cutoff
            for split, ws, source in _windows(ds, path, whole, fr, wanted, sys_here, float(cutoff), config,
                                              spacings, horizon_name, future_steps, time_reversal):
                parts[split].append(ws)
                sources.append(source)
        frame_dt = _spacing_of_run(spacings, config)
    except BaseException:
        for h in handles:
            h.close()
        raise
    assert system is not None
    return Splits(
        sets={s: ConcatSet(parts[s]) for s in SPLITS},
        system=system,
        cutoff=float(cutoff),
        frame_dt_ps=frame_dt,
        horizon_frames=sources[0]["horizon_frames"] if sources else int(config.horizon),
        horizon_ps=config.horizon_ps if config.horizon_ps is not None else frame_dt * int(config.horizon),
        notes=notes,
        sources=sources,
        _handles=handles,
    )

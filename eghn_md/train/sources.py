"""From dataset files to train / validation / test sample sets (time-block splits or whole files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence


from eghn_md.data.samples import ConcatSet, DataConfig, WindowSet, default_cutoff, split_ranges
from eghn_md.data.system import GraphSystem, check_same_nodes
from eghn_md.errors import DataError, UsageError
from eghn_md.graph.features import FeatureSpec, feature_spec_for

__all__ = ["Splits", "build_splits", "open_system", "SPLITS"]

SPLITS = ("train", "val", "test")


@dataclass
class Splits:
    """Sample sets per split plus what they were built from."""

    sets: dict
    system: GraphSystem
    cutoff: float
    frame_dt_ps: float
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
    same = got.n_nodes == system.n_nodes and [str(x) for x in got.resname] == [
        str(x) for x in system.nodes.resname
    ] and [str(x) for x in got.name] == [str(x) for x in system.nodes.name]
    if not same:
        raise DataError(
            f"dataset {str(path)!r} ({got.n_nodes} nodes, selection {dataset.selection!r}) does not have the nodes "
            f"of {str(first)!r} ({system.n_nodes} nodes, selection {system.selection!r}); all datasets of a run "
            "must come from the same system and selection"
        )


def _frame_dt(dataset, name: str) -> float:
    t = dataset.times(name)
    if len(t) < 2:
        return float("nan")
    return float(t[1] - t[0])


def build_splits(
    data: Sequence[str | Path],
    *,
    config: DataConfig,
    val: Sequence[str | Path] = (),
    test: Sequence[str | Path] = (),
    only: Optional[Sequence[str]] = None,
    expected_nodes: Optional[dict] = None,
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
        expected_nodes: a model's node metadata; every file must have the same nodes.
    """
    from eghn_md.data.dataset import Dataset

    if not data and not val and not test:
        raise UsageError("no dataset given")
    wanted = set(SPLITS if only is None else only)
    bad = wanted - set(SPLITS)
    if bad:
        raise UsageError(f"unknown split(s) {sorted(bad)}; valid: {', '.join(SPLITS)}")
    fr = list(config.split)
    if val:
        fr[0], fr[1] = fr[0] + fr[1], 0.0
    if test:
        fr[0], fr[2] = fr[0] + fr[2], 0.0
    parts: dict[str, list] = {s: [] for s in SPLITS}
    handles, sources = [], []
    system: Optional[GraphSystem] = None
    spec = FeatureSpec.from_dict(expected_nodes["feature_spec"]) if expected_nodes else None
    cutoff = config.cutoff
    frame_dt = float("nan")
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
            sys_here = open_system(ds, spec=spec)
            if expected_nodes is not None:
                check_same_nodes(expected_nodes, ds.nodes, what=f"dataset {str(path)!r}")
            elif system is not None:
                _check_same_system(system, ds, path, first=jobs[0][0])
            if system is None:
                system = sys_here
                spec = sys_here.spec
                if cutoff is None:
                    cutoff = default_cutoff(system.nodes_are_atoms)
            elif sys_here.h.shape[1] != system.h.shape[1]:
                raise DataError(
                    f"dataset {str(path)!r} has {sys_here.h.shape[1]} node features but {str(data[0])!r} has "
                    f"{system.h.shape[1]}; datasets must use the same kind of selection"
                )
            for name in ds.trajectories:
                pos = ds.positions(name)
                n_frames = int(pos.shape[0])
                if frame_dt != frame_dt:
                    frame_dt = _frame_dt(ds, name)
                blocks = (
                    dict(zip(SPLITS, split_ranges(n_frames, fr)))
                    if whole is None
                    else {s: ((0, n_frames) if s == whole else (0, 0)) for s in SPLITS}
                )
                for split, block in blocks.items():
                    if split not in wanted or block[1] - block[0] <= 0:
                        continue
                    ws = WindowSet(
                        positions=pos, block=block, h=sys_here.h, bonds=sys_here.bonds, horizon=config.horizon,
                        cutoff=float(cutoff), window_stride=config.window_stride,
                        name=f"{Path(path).name}:{name}:{split}",
                    )
                    parts[split].append(ws)
                    sources.append({"file": str(path), "trajectory": name, "split": split,
                                    "frames": list(block), "windows": len(ws)})
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
        sources=sources,
        _handles=handles,
    )

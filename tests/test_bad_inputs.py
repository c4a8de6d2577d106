"""Every command against bad input: one ``Error:`` line naming the problem, exit 2 (usage) or 1 (data), no traceback,
no output file. Each row of :data:`CASES` is one test and one row of the table in ``tests/README.md``.

Set ``EGHN_BAD_INPUT_TABLE=path.md`` to append the message each case gets to that file (used to refresh the README).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from _data import run_cli


@dataclass(frozen=True)
class Case:
    command: str
    what: str  # the bad input, as it appears in tests/README.md
    args: tuple  # argv with {placeholders} filled from the `bad` fixture
    code: int  # expected exit code (2 usage, 1 data)
    message: str  # expected excerpt of the error line
    existing: str = ""  # an output that exists before the run and must stay byte-identical

    @property
    def id(self) -> str:
        return f"{self.command}: {self.what}"


def C(command, what, args, code, message, existing=""):
    return Case(command, what, tuple(args.split()), code, message, existing)


O = "-o {out}/a.h5"  # noqa: E741
TRAIN = "--preset tiny --epochs 1 --quiet --device cpu"
EVAL = "--per-node {out}/e.csv --device cpu"
ROLL = "--steps 3 -o {out}/p.dcd --quiet --device cpu"

CASES = [
    # ------------------------------------------------------------------------------------------------ preprocess
    C("preprocess", "nonexistent topology", f"preprocess {{nope}}/x.psf {{dcd}} {O}", 2, "topology file"),
    C("preprocess", "nonexistent trajectory", f"preprocess {{psf}} {{nope}}/x.dcd {O}", 2, "does not exist"),
    C("preprocess", "topology is a directory", f"preprocess {{bad}} {{dcd}} {O}", 2, "is a directory"),
    C("preprocess", "wrong trajectory extension (.txt)", f"preprocess {{psf}} {{bad}}/notes.txt {O}", 2,
      "unknown trajectory format '.txt'"),
    C("preprocess", "wrong topology extension (.txt)", f"preprocess {{bad}}/notes.txt {{dcd}} {O}", 2,
      "unknown topology format '.txt'"),
    C("preprocess", "random-byte DCD", f"preprocess {{psf}} {{bad}}/random.dcd {O}", 1,
      "cannot read trajectory"),
    C("preprocess", "empty DCD", f"preprocess {{psf}} {{bad}}/empty.dcd {O}", 1, "premature EOF"),
    C("preprocess", "DCD truncated inside its header", f"preprocess {{psf}} {{bad}}/trunc_head.dcd {O}", 1,
      "cannot read trajectory"),
    C("preprocess", "DCD with random bytes over frame records", f"preprocess {{psf}} {{bad}}/corrupt_mid.dcd {O}",
      1, "truncated or corrupted file"),
    C("preprocess", "random-byte XTC", f"preprocess {{psf}} {{bad}}/random.xtc {O}", 1, "cannot read trajectory"),
    C("preprocess", "XTC truncated mid-frame", f"preprocess {{psf}} {{bad}}/trunc.xtc {O}", 1,
      "truncated or corrupted file"),
    C("preprocess", "random-byte PDB topology", f"preprocess {{bad}}/random.pdb {{dcd}} {O}", 1,
      "cannot read topology"),
    C("preprocess", "PDB truncated mid-line", f"preprocess {{pdb}} {{bad}}/trunc.pdb {O}", 1,
      "cannot read trajectory"),
    C("preprocess", "random-byte HDF5 trajectory", f"preprocess {{psf}} {{bad}}/random.h5 {O}", 1,
      "cannot read HDF5 file"),
    C("preprocess", "eghn-md dataset given as trajectory", f"preprocess {{psf}} {{h5}} {O}", 2,
      "is an eghn-md dataset, not a trajectory"),
    C("preprocess", "topology and trajectory atom counts differ", f"preprocess {{psf}} {{xtc_other}} {O}", 1,
      "atoms but the topology has 3341"),
    C("preprocess", "NaN/Inf coordinates", f"preprocess {{psf}} {{bad}}/nan.dcd {O}", 1,
      "non-finite (NaN/Inf) coordinates in frame 5"),
    C("preprocess", "selection matching no atom", f"preprocess {{psf}} {{dcd}} {O} --select name<ZZZ", 2,
      "matches no atom"),
    C("preprocess", "blank selection", f"preprocess {{psf}} {{dcd}} {O} --select <>", 2, "selection string is empty"),
    C("preprocess", "unparsable selection", f"preprocess {{psf}} {{dcd}} {O} --select protein<and<(", 2,
      "invalid selection"),
    C("preprocess", "--stride 0", f"preprocess {{psf}} {{dcd}} {O} --stride 0", 2, "--stride must be a positive"),
    C("preprocess", "--stride -3", f"preprocess {{psf}} {{dcd}} {O} --stride -3", 2, "--stride must be a positive"),
    C("preprocess", "--stride leaving one frame", f"preprocess {{psf}} {{dcd}} {O} --stride 1000", 1,
      "need at least 2"),
    C("preprocess", "topology-only file alone (no trajectory)", f"preprocess {{psf}} {O}", 2,
      "no trajectory given and topology"),
    C("preprocess", "output directory missing", "preprocess {psf} {dcd} -o {nope}/a.h5", 2, "does not exist"),
    C("preprocess", "output exists (no --overwrite)", "preprocess {psf} {dcd} -o {out}/old.h5", 2,
      "already exists; pass --overwrite", existing="old.h5"),
    # ----------------------------------------------------------------------------------------------------- train
    C("train", "nonexistent dataset", f"train {{nope}}/x.h5 -o {{out}}/run {TRAIN}", 2, "does not exist"),
    C("train", "random-byte HDF5", f"train {{bad}}/random.h5 -o {{out}}/run {TRAIN}", 1, "not a readable HDF5"),
    C("train", "truncated HDF5", f"train {{bad}}/trunc.h5 -o {{out}}/run {TRAIN}", 1, "truncated file"),
    C("train", "DCD given as dataset", f"train {{dcd}} -o {{out}}/run {TRAIN}", 1, "not a readable HDF5 file"),
    C("train", "HDF5 that is not an eghn-md dataset", f"train {{bad}}/noformat.h5 -o {{out}}/run {TRAIN}", 1,
      "is not an eghn-md dataset"),
    C("train", "dataset format version from the future", f"train {{bad}}/newer.h5 -o {{out}}/run {TRAIN}", 1,
      "dataset format version 99, newer than"),
    C("train", "dataset with NaN positions", f"train {{bad}}/nan.h5 -o {{out}}/run {TRAIN}", 1,
      "non-finite positions at frame 50"),
    C("train", "dataset with Inf positions", f"train {{bad}}/inf.h5 -o {{out}}/run {TRAIN}", 1,
      "non-finite positions at frame 90"),
    C("train", "dataset with NaN frame times", f"train {{bad}}/nantime.h5 -o {{out}}/run {TRAIN}", 1,
      "non-finite frame times"),
    C("train", "dataset positions stored as float64", f"train {{bad}}/f64.h5 -o {{out}}/run {TRAIN}", 1,
      "expected float32"),
    C("train", "dataset positions of the wrong shape", f"train {{bad}}/shape.h5 -o {{out}}/run {TRAIN}", 1,
      "expected (frames, 214, 3)"),
    C("train", "dataset without positions", f"train {{bad}}/nopos.h5 -o {{out}}/run {TRAIN}", 1,
      "has no 'positions'"),
    C("train", "dataset without node table", f"train {{bad}}/nonodes.h5 -o {{out}}/run {TRAIN}", 1,
      "no '/nodes' group"),
    C("train", "datasets of different selections", f"train {{h5}} {{sub_h5}} -o {{out}}/run {TRAIN}", 1,
      "must come from the same system and selection"),
    C("train", "horizon >= number of frames", f"train {{h5}} -o {{out}}/run {TRAIN} --horizon 98", 2,
      "not enough frames for horizon 98"),
    C("train", "dataset shorter than one window", f"train {{bad}}/short.h5 -o {{out}}/run {TRAIN}", 2,
      "not enough frames for horizon 5"),
    C("train", "--horizon 0", f"train {{h5}} -o {{out}}/run {TRAIN} --horizon 0", 2, "'--horizon'"),
    C("train", "--epochs 0", f"train {{h5}} -o {{out}}/run {TRAIN} --epochs 0", 2, "'--epochs'"),
    C("train", "--batch-size 0", f"train {{h5}} -o {{out}}/run {TRAIN} --batch-size 0", 2, "'--batch-size'"),
    C("train", "--lr 0", f"train {{h5}} -o {{out}}/run {TRAIN} --lr 0", 2, "'--lr'"),
    C("train", "--lr -1", f"train {{h5}} -o {{out}}/run {TRAIN} --lr -1", 2, "'--lr'"),
    C("train", "--lr inf", f"train {{h5}} -o {{out}}/run {TRAIN} --lr inf", 2, "lr must be a finite number"),
    C("train", "--lr nan", f"train {{h5}} -o {{out}}/run {TRAIN} --lr nan", 2, "lr must be a finite number"),
    C("train", "--cutoff 0", f"train {{h5}} -o {{out}}/run {TRAIN} --cutoff 0", 2, "'--cutoff'"),
    C("train", "--cutoff inf", f"train {{h5}} -o {{out}}/run {TRAIN} --cutoff inf", 2,
      "cutoff must be a finite number > 0"),
    C("train", "--weight-decay -1", f"train {{h5}} -o {{out}}/run {TRAIN} --weight-decay -1", 2, "'--weight-decay'"),
    C("train", "--hidden 0", f"train {{h5}} -o {{out}}/run {TRAIN} --hidden 0", 2, "'--hidden'"),
    C("train", "--clusters 0", f"train {{h5}} -o {{out}}/run {TRAIN} --clusters 0", 2, "'--clusters'"),
    C("train", "--clusters above the node count", f"train {{h5}} -o {{out}}/run {TRAIN} --clusters 1000", 2,
      "exceeds the 214 nodes"),
    C("train", "nonexistent --config", f"train {{h5}} -o {{out}}/run {TRAIN} --config {{nope}}/c.yaml", 2,
      "config file"),
    C("train", "binary --config", f"train {{h5}} -o {{out}}/run {TRAIN} --config {{bad}}/random.pdb", 2,
      "is not a text (UTF-8) YAML file"),
    C("train", "--config that is not a mapping", f"train {{h5}} -o {{out}}/run {TRAIN} --config {{bad}}/notes.txt",
      2, "must hold a mapping"),
    C("train", "--config with a non-number batch_size",
      f"train {{h5}} -o {{out}}/run {TRAIN} --config {{bad}}/abc.yaml", 2, "batch_size must be a finite number"),
    C("train", "--config with a non-number horizon", f"train {{h5}} -o {{out}}/run {TRAIN} --config {{bad}}/hz.yaml",
      2, "invalid data option"),
    C("train", "--config with a scalar split", f"train {{h5}} -o {{out}}/run {TRAIN} --config {{bad}}/split.yaml",
      2, "split must be a list of three fractions"),
    C("train", "--config with an unknown option", f"train {{h5}} -o {{out}}/run {TRAIN} --config {{bad}}/typo.yaml",
      2, "unknown train option(s) ['epoch']"),
    C("train", "--resume without a previous run", f"train {{h5}} -o {{out}}/run {TRAIN} --resume", 2,
      "nothing to resume"),
    C("train", "datasets of different frame spacings (--horizon in frames)",
      f"train {{h5}} {{h5_every2}} -o {{out}}/run {TRAIN}", 2, "has frames 2 ps apart but"),
    C("train", "--horizon-ps not a whole number of frames", f"train {{h5}} -o {{out}}/run {TRAIN} --horizon-ps 2.5", 1,
      "not a whole number of frames"),
    C("train", "--horizon-ps 0", f"train {{h5}} -o {{out}}/run {TRAIN} --horizon-ps 0", 2, "'--horizon-ps'"),
    C("train", "--horizon and --horizon-ps together", f"train {{h5}} -o {{out}}/run {TRAIN} --horizon 5 --horizon-ps 5",
      2, "not both"),
    C("train", "output is a file", f"train {{h5}} -o {{out}}/old.h5 {TRAIN}", 2, "is a file",
      existing="old.h5"),
    # -------------------------------------------------------------------------------------------------- evaluate
    C("evaluate", "nonexistent model", f"evaluate {{nope}}/model.pt {{h5}} {EVAL}", 2, "does not exist"),
    C("evaluate", "nonexistent model, default --per-node beside it", "evaluate {nope}/model.pt {h5}", 2,
      "checkpoint"),
    C("evaluate", "random-byte model", f"evaluate {{bad}}/random.pt {{h5}} {EVAL}", 1,
      "not a readable eghn-md checkpoint"),
    C("evaluate", "dataset given as model", f"evaluate {{h5}} {{h5}} {EVAL}", 1, "not a readable eghn-md checkpoint"),
    C("evaluate", "pickle-bomb model", f"evaluate {{bad}}/bomb.pt {{h5}} {EVAL}", 1, "nothing in it was executed"),
    C("evaluate", "tampered model weights", f"evaluate {{bad}}/tamper_w.pt {{h5}} {EVAL}", 1,
      "failed its integrity check"),
    C("evaluate", "nonexistent dataset", f"evaluate {{model}} {{nope}}/x.h5 {EVAL}", 2, "does not exist"),
    C("evaluate", "random-byte dataset", f"evaluate {{model}} {{bad}}/random.h5 {EVAL}", 1, "not a readable HDF5"),
    C("evaluate", "dataset of a different selection than the model", f"evaluate {{model}} {{sub_h5}} {EVAL}", 1,
      "but the model was trained on 214 nodes"),
    C("evaluate", "dataset whose sequence differs from the model's", f"evaluate {{model}} {{bad}}/mutated.h5 {EVAL}",
      1, "the sequence differs"),
    C("evaluate", "dataset with frames not a whole fraction of the horizon",
      f"evaluate {{model}} {{h5_every2}} {EVAL}", 1, "has frames 2 ps apart but the model's horizon is 5 ps"),
    C("evaluate", "dataset with NaN positions", f"evaluate {{model}} {{bad}}/nan.h5 {EVAL}", 1,
      "non-finite positions at frame 50"),
    C("evaluate", "dataset positions of the wrong shape", f"evaluate {{model}} {{bad}}/shape.h5 {EVAL}", 1,
      "expected (frames, 214, 3)"),
    C("evaluate", "dataset without positions", f"evaluate {{model}} {{bad}}/nopos.h5 {EVAL}", 1, "has no 'positions'"),
    C("evaluate", "dataset shorter than one window", f"evaluate {{model}} {{bad}}/short.h5 {EVAL} --split all", 2,
      "no window of 2×5+1 frames"),
    C("evaluate", "--batch-size 0", f"evaluate {{model}} {{h5}} {EVAL} --batch-size 0", 2, "'--batch-size'"),
    C("evaluate", "--per-node in a missing directory", "evaluate {model} {h5} --per-node {nope}/e.csv", 2,
      "does not exist"),
    C("evaluate", "unknown --split", f"evaluate {{model}} {{h5}} {EVAL} --split nope", 2, "'--split'"),
    # --------------------------------------------------------------------------------------------------- rollout
    C("rollout", "nonexistent model", f"rollout {{nope}}/m.pt {{psf}} {{dcd}} {ROLL}", 2, "does not exist"),
    C("rollout", "pickle-bomb model", f"rollout {{bad}}/bomb.pt {{psf}} {{dcd}} {ROLL}", 1,
      "nothing in it was executed"),
    C("rollout", "nonexistent topology", f"rollout {{model}} {{nope}}/x.psf {{dcd}} {ROLL}", 2, "does not exist"),
    C("rollout", "random-byte DCD", f"rollout {{model}} {{psf}} {{bad}}/random.dcd {ROLL}", 1,
      "cannot read trajectory"),
    C("rollout", "topology and trajectory atom counts differ", f"rollout {{model}} {{psf}} {{xtc_other}} {ROLL}", 1,
      "atoms but the topology has 3341"),
    C("rollout", "NaN coordinates in the start frames", f"rollout {{model}} {{psf}} {{bad}}/nan.dcd {ROLL} --frame 5",
      1, "input frame 5 has non-finite coordinates"),
    C("rollout", "topology-only file alone (no trajectory)", f"rollout {{model}} {{psf}} {ROLL}", 2,
      "no trajectory given and topology"),
    C("rollout", "topology whose sequence differs from the model's",
      f"rollout {{model}} {{bad}}/mutated.psf {{dcd}} {ROLL}", 1, "the sequence differs"),
    C("rollout", "trajectory with frames not a whole fraction of the horizon",
      f"rollout {{model}} {{psf}} {{bad}}/every2.dcd {ROLL}", 1,
      "has frames 2 ps apart but the model's horizon is 5 ps"),
    C("rollout", "--steps 0", f"rollout {{model}} {{psf}} {{dcd}} {ROLL} --steps 0", 2, "'--steps'"),
    C("rollout", "--frame -1", f"rollout {{model}} {{psf}} {{dcd}} {ROLL} --frame -1", 2, "'--frame'"),
    C("rollout", "--frame before one horizon of history", f"rollout {{model}} {{psf}} {{dcd}} {ROLL} --frame 2", 2,
      "is too early"),
    C("rollout", "--frame >= number of frames", f"rollout {{model}} {{psf}} {{dcd}} {ROLL} --frame 98", 2,
      "out of range: the trajectory has 98 frames"),
    C("rollout", "--truth beyond the last frame", f"rollout {{model}} {{psf}} {{dcd}} {ROLL} --steps 50 --truth", 2,
      "--truth needs frame"),
    C("rollout", "output not .dcd", "rollout {model} {psf} {dcd} --steps 3 -o {out}/p.xtc", 2, "must end in .dcd"),
    C("rollout", "output directory missing", "rollout {model} {psf} {dcd} --steps 3 -o {nope}/p.dcd", 2,
      "does not exist"),
    C("rollout", "output exists (no --overwrite)", "rollout {model} {psf} {dcd} --steps 3 -o {out}/old.dcd", 2,
      "already exists", existing="old.dcd"),
    # ---------------------------------------------------------------------------------------------------- export
    C("export", "clusters: nonexistent model", "export clusters {nope}/m.pt {psf} {dcd} -o {out}/cl --quiet", 2,
      "does not exist"),
    C("export", "clusters: nonexistent model and output directory", "export clusters {nope}/m.pt {psf} {dcd} -o "
      "{nope}/cl --quiet", 2, "checkpoint"),
    C("export", "clusters: pickle-bomb model", "export clusters {bad}/bomb.pt {psf} {dcd} -o {out}/cl --quiet", 1,
      "nothing in it was executed"),
    C("export", "clusters: random-byte DCD", "export clusters {model} {psf} {bad}/random.dcd -o {out}/cl --quiet", 1,
      "cannot read trajectory"),
    C("export", "clusters: atom counts differ", "export clusters {model} {psf} {xtc_other} -o {out}/cl --quiet", 1,
      "atoms but the topology has 3341"),
    C("export", "clusters: --frame >= number of frames",
      "export clusters {model} {psf} {dcd} -o {out}/cl --quiet --frame 98", 2, "98"),
    C("export", "clusters: frames not a whole fraction of the horizon",
      "export clusters {model} {psf} {bad}/every2.dcd -o {out}/cl --quiet", 1, "has frames 2 ps apart"),
    C("export", "clusters: malformed --frames", "export clusters {model} {psf} {dcd} -o {out}/cl --quiet --frames x:y",
      2, "--frames"),
    C("export", "trajectory: nonexistent input", "export trajectory {nope}/p.dcd -o {out}/p.xtc", 2, "does not exist"),
    C("export", "trajectory: random-byte DCD", "export trajectory {bad}/random.dcd -o {out}/p.xtc --top {pdb}", 1,
      "cannot read"),
    C("export", "trajectory: unknown output extension", "export trajectory {dcd} -o {out}/p.abc --top {psf}", 2,
      ".abc"),
    # ------------------------------------------------------------------------------------------------------ info
    C("info", "nonexistent checkpoint", "info {nope}/m.pt", 2, "does not exist"),
    C("info", "nonexistent dataset", "info {nope}/x.h5", 2, "does not exist"),
    C("info", "a directory", "info {bad}", 2, "is a directory"),
    C("info", "random-byte checkpoint", "info {bad}/random.pt", 1, "not a readable eghn-md checkpoint"),
    C("info", "empty checkpoint", "info {bad}/empty.pt", 1, "not a readable eghn-md checkpoint"),
    C("info", "truncated checkpoint", "info {bad}/trunc.pt", 1, "truncated or corrupted"),
    C("info", "pickle-bomb checkpoint (zip)", "info {bad}/bomb.pt", 1, "nothing in it was executed"),
    C("info", "pickle-bomb checkpoint (raw pickle)", "info {bad}/bomb_raw.pt", 1, "nothing in it was executed"),
    C("info", "checkpoint with a flipped weight", "info {bad}/tamper_w.pt", 1, "failed its integrity check"),
    C("info", "checkpoint with an edited config value", "info {bad}/tamper_cfg.pt", 1, "failed its integrity check"),
    C("info", "checkpoint format version from the future", "info {bad}/newer.pt", 1,
      "checkpoint format 2, newer than"),
    C("info", "torch file that is not an eghn-md checkpoint", "info {bad}/list.pt", 1, "is not an eghn-md checkpoint"),
    C("info", "random-byte HDF5", "info {bad}/random.h5", 1, "not a readable HDF5 file"),
    C("info", "dataset format version from the future", "info {bad}/newer.h5", 1, "newer than"),
]


# ------------------------------------------------------------------------------------------------------ bad files
def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _edit_h5(src: str, dst: Path, fn) -> None:
    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f, f["trajectories"][list(f["trajectories"])[0]])


def _replace(g, key, array) -> None:
    del g[key]
    g.create_dataset(key, data=array)


class _Bomb:
    """Unpickling this would create the marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def make_bad_checkpoints(model_pt: str, d: Path, marker: Path) -> None:
    """bomb.pt, bomb_raw.pt, tamper_w.pt, tamper_cfg.pt, newer.pt, list.pt, trunc.pt, empty.pt, random.pt in ``d``."""
    import copy
    import pickle

    import torch

    good = torch.load(model_pt, weights_only=True)
    p = copy.deepcopy(good)
    key = sorted(p["state_dict"])[0]
    p["state_dict"][key].view(-1)[0] += 1.0
    torch.save(p, d / "tamper_w.pt")
    p = copy.deepcopy(good)
    p["model_config"]["hidden"] = int(p["model_config"]["hidden"]) * 2
    torch.save(p, d / "tamper_cfg.pt")
    p = copy.deepcopy(good)
    p["format_version"] = int(p["format_version"]) + 1
    torch.save(p, d / "newer.pt")
    torch.save([1, 2, 3], d / "list.pt")
    torch.save({"kind": "eghn-md-model", "format_version": 1, "payload": _Bomb(marker)}, d / "bomb.pt")
    _write(d / "bomb_raw.pt", pickle.dumps(_Bomb(marker)))
    raw = Path(model_pt).read_bytes()
    _write(d / "trunc.pt", raw[: len(raw) // 2])
    _write(d / "empty.pt", b"")
    _write(d / "random.pt", np.random.default_rng(1).bytes(4096))


@pytest.fixture(scope="session")
def bad(adk, adk_h5, tiny_run, tmp_path_factory):
    """Paths of good and broken inputs (``{bad}`` folder, ``{nope}`` missing folder …) for :data:`CASES`."""
    import warnings

    import MDAnalysis as mda
    from MDAnalysisTests import datafiles as df

    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    for name in ("random.dcd", "random.xtc", "random.pdb", "random.h5"):
        _write(d / name, rng.bytes(5000))
    _write(d / "empty.dcd", b"")
    (d / "notes.txt").write_text("not a trajectory\n")
    dcd = Path(adk["dcd"]).read_bytes()
    _write(d / "trunc_head.dcd", dcd[:50])
    mid = bytearray(dcd)
    mid[len(mid) // 2 : len(mid) // 2 + 4000] = rng.bytes(4000)
    _write(d / "corrupt_mid.dcd", bytes(mid))
    pdb = Path(df.PDB_small).read_bytes()
    _write(d / "trunc.pdb", pdb[: len(pdb) // 2 + 7])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(adk["psf"], adk["dcd"])
        ca = u.select_atoms("protein and name CA").indices
        n = u.atoms.n_atoms
        with mda.Writer(str(d / "nan.dcd"), n) as w, mda.Writer(str(d / "full.xtc"), n) as x:
            for ts in u.trajectory[:12]:
                pos = u.atoms.positions
                x.write(u.atoms)
                if ts.frame == 5:
                    pos[ca[3]] = np.nan
                if ts.frame == 8:
                    pos[ca[4]] = np.inf
                u.atoms.positions = pos
                w.write(u.atoms)
    xtc = (d / "full.xtc").read_bytes()
    _write(d / "trunc.xtc", xtc[: int(len(xtc) * 0.6)])
    (d / "abc.yaml").write_text("train: {batch_size: abc}\n")
    (d / "typo.yaml").write_text("train: {epoch: 3}\n")
    (d / "hz.yaml").write_text("data: {horizon: abc}\n")
    (d / "split.yaml").write_text("data: {split: 3}\n")

    f32 = np.float32
    _edit_h5(adk_h5, d / "nan.h5", lambda f, g: g["positions"].__setitem__((50, 3, 1), np.nan))
    _edit_h5(adk_h5, d / "inf.h5", lambda f, g: g["positions"].__setitem__((90, 0, 0), np.inf))
    _edit_h5(adk_h5, d / "nantime.h5", lambda f, g: g["times"].__setitem__(3, np.nan))
    _edit_h5(adk_h5, d / "newer.h5", lambda f, g: f.attrs.__setitem__("format_version", 99))
    _edit_h5(adk_h5, d / "noformat.h5", lambda f, g: f.attrs.__delitem__("format"))
    _edit_h5(adk_h5, d / "nonodes.h5", lambda f, g: f.__delitem__("nodes"))
    _edit_h5(adk_h5, d / "nopos.h5", lambda f, g: g.__delitem__("positions"))
    _edit_h5(adk_h5, d / "f64.h5", lambda f, g: _replace(g, "positions", g["positions"][()].astype(np.float64)))
    _edit_h5(adk_h5, d / "shape.h5", lambda f, g: _replace(g, "positions", g["positions"][:, :100].astype(f32)))

    def short(f, g):
        for key in ("positions", "times", "frame_index"):
            _replace(g, key, g[key][:8])

    _edit_h5(adk_h5, d / "short.h5", short)
    raw = Path(adk_h5).read_bytes()
    _write(d / "trunc.h5", raw[: len(raw) // 2])
    make_bad_checkpoints(str(Path(tiny_run) / "model.pt"), d, d / "PWNED")

    text = Path(adk["psf"]).read_text()  # residue 1 MET → ALA: a real sequence difference
    assert text.count(" 4AKE 1    MET ") == 19
    (d / "mutated.psf").write_text(text.replace(" 4AKE 1    MET ", " 4AKE 1    ALA "))
    _edit_h5(adk_h5, d / "mutated.h5", lambda f, g: f["nodes"]["resname"].__setitem__(0, "ALA"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(adk["psf"], adk["dcd"])
        with mda.Writer(str(d / "every2.dcd"), u.atoms.n_atoms, dt=2 * u.trajectory.dt) as w:
            for _ in u.trajectory[::2]:
                w.write(u.atoms)
    every2 = tmp_path_factory.mktemp("every2") / "every2.h5"
    res = run_cli("preprocess", adk["psf"], adk["dcd"], "-o", str(every2), "--quiet",
                  "--stride", "2")
    assert res.exit_code == 0, res.output
    sub = tmp_path_factory.mktemp("sub") / "sub.h5"
    res = run_cli("preprocess", adk["psf"], adk["dcd"], "-o", str(sub), "--quiet",
                  "--select", "name CA and resid 1:50")
    assert res.exit_code == 0, res.output
    return {
        "bad": str(d), "nope": str(d / "no-such-dir"), "psf": adk["psf"], "dcd": adk["dcd"], "pdb": df.PDB_small,
        "xtc_other": df.XTC, "h5": adk_h5, "sub_h5": str(sub), "h5_every2": str(every2),
        "model": str(Path(tiny_run) / "model.pt"),
        "marker": str(d / "PWNED"),
    }


def _argv(case: Case, paths: dict) -> list[str]:
    # '<' stands for a space inside one argument (selections) so that CASES stay one string per row
    return [a.format(**paths).replace("<", " ") if a != "<>" else "" for a in case.args]


# ------------------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_error(case, bad, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "out"
    out.mkdir()
    if case.existing:
        (out / case.existing).write_bytes(b"previous output\n")
    paths = {**bad, "out": str(out)}
    res = run_cli(*_argv(case, paths))
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert res.exit_code == case.code, (res.exit_code, res.output, res.exception)
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    assert len(errors) == 1, res.stderr
    assert case.message in errors[0], errors[0]
    # no output file: the output folder holds exactly what was there before (nothing new, nothing half-written)
    left = sorted(p.name for p in out.iterdir())
    assert left == ([case.existing] if case.existing else []), left
    if case.existing:
        assert (out / case.existing).read_bytes() == b"previous output\n"
    assert not Path(bad["marker"]).exists(), "a checkpoint executed code while loading"
    table = os.environ.get("EGHN_BAD_INPUT_TABLE")
    if table:
        msg = errors[0][len("Error: "):].replace(bad["bad"], "BAD").replace(str(out), "OUT")
        for path, short in ((bad["model"], "model.pt"), (bad["h5"], "adk.h5"), (os.path.dirname(bad["psf"]), "DATA")):
            msg = msg.replace(path, short)
        with open(table, "a") as fh:
            fh.write(f"| `{case.command}` | {case.what} | {case.code} | {msg.replace('|', '/')} |\n")


def test_readme_table_lists_every_case():
    """tests/README.md has one row per case (command + bad input), so the table cannot drift from the tests."""
    readme = (Path(__file__).parent / "README.md").read_text()
    missing = [c.id for c in CASES if f"| `{c.command}` | {c.what} |" not in readme]
    assert not missing, missing


def test_unreadable_file_is_a_one_line_error(adk, tmp_path):
    """Permission denied (as a normal user; root reads everything, so the reader is made to fail the same way)."""
    import errno
    from unittest import mock

    src = tmp_path / "locked.dcd"
    shutil.copy(adk["dcd"], src)
    src.chmod(0)
    try:
        if os.geteuid() != 0:
            res = run_cli("preprocess", adk["psf"], str(src), "-o", str(tmp_path / "a.h5"))
        else:
            err = PermissionError(errno.EACCES, "Permission denied", str(src))
            with mock.patch("eghn_md.data.preprocess.sha256_file", side_effect=err):
                res = run_cli("preprocess", adk["psf"], str(src), "-o", str(tmp_path / "a.h5"))
    finally:
        src.chmod(0o644)
    assert res.exit_code in (1, 2), res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and ("Permission denied" in lines[0] or "cannot read" in lines[0]), res.stderr
    assert not (tmp_path / "a.h5").exists()


def test_no_traceback_from_a_real_process_on_a_broken_trajectory(adk, bad, tmp_path):
    """End to end in a fresh interpreter: stderr is exactly one line (MDAnalysis' half-built reader used to print an
    'Exception ignored in __del__' traceback at exit)."""
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "eghn-md"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([str(exe), "preprocess", adk["psf"], f"{bad['bad']}/random.dcd", "-o",
                           str(tmp_path / "a.h5")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("Error: cannot read trajectory")
    assert not (tmp_path / "a.h5").exists()
    proc = subprocess.run([str(exe), "--debug", "info", f"{bad['bad']}/random.h5"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr  # --debug shows it

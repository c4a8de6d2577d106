"""Untrusted files: checkpoints are read weights-only and verified (digest, format version, model fit); a file whose
pickle would run code is refused without running it; datasets are validated before train/evaluate use them."""

from __future__ import annotations

import copy
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from _data import run_cli
from eghn_md.errors import DataError
from eghn_md.train.checkpoint import _META_KEYS, _digest, load_checkpoint, load_model


class _Touch:
    """Unpickling this creates ``marker`` (stands for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


class _Exec:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture()
def good(tiny_run):
    return torch.load(Path(tiny_run) / "model.pt", weights_only=True)


def _save(payload, path, *, redigest=False):
    if redigest:
        payload["digest"] = _digest({k: payload[k] for k in _META_KEYS}, payload["state_dict"])
    torch.save(payload, path)
    return path


def test_checkpoints_are_loaded_weights_only(tiny_run, monkeypatch):
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(Path(tiny_run) / "model.pt")
    assert calls == [True]


def test_flipped_weight_is_refused(good, tmp_path):
    p = copy.deepcopy(good)
    key = sorted(p["state_dict"])[-1]
    p["state_dict"][key].view(-1)[-1] *= -1.0001
    with pytest.raises(DataError, match="failed its integrity check"):
        load_checkpoint(_save(p, tmp_path / "w.pt"))
    load_checkpoint(tmp_path / "w.pt", verify=False)  # the check is what refuses it, not an unreadable file


def test_flipped_byte_inside_the_file_is_refused(tiny_run, tmp_path):
    """A raw bit flip in a stored tensor (inside the zip) is caught by the digest or by the zip reader."""
    src = Path(tiny_run) / "model.pt"
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # local header, then data
    raw[start + info.file_size // 2] ^= 0x40
    bad = tmp_path / "flip.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="integrity check|truncated or corrupted"):
        load_checkpoint(bad)


def test_edited_config_value_is_refused(good, tmp_path):
    p = copy.deepcopy(good)
    p["data_config"]["cutoff"] = float(p["data_config"]["cutoff"]) + 1.0
    with pytest.raises(DataError, match="failed its integrity check"):
        load_checkpoint(_save(p, tmp_path / "c.pt"))


def test_newer_format_version_is_refused(good, tmp_path):
    p = copy.deepcopy(good)
    p["format_version"] = 99
    with pytest.raises(DataError, match="checkpoint format 99, newer than .* upgrade eghn-md"):
        load_checkpoint(_save(p, tmp_path / "v.pt"))


def test_missing_digest_and_wrong_kind_are_refused(good, tmp_path):
    p = copy.deepcopy(good)
    del p["digest"]
    with pytest.raises(DataError, match="missing checkpoint entries"):
        load_checkpoint(_save(p, tmp_path / "d.pt"))
    p = copy.deepcopy(good)
    p["kind"] = "something-else"
    with pytest.raises(DataError, match="is not an eghn-md checkpoint"):
        load_checkpoint(_save(p, tmp_path / "k.pt"))


def test_weights_of_a_different_model_are_refused(good, tmp_path):
    """Consistent digest, but the weights belong to another architecture / size."""
    p = copy.deepcopy(good)
    p["model_config"]["name"] = "egnn"
    with pytest.raises(DataError, match="weights do not fit model 'egnn'"):
        load_model(_save(p, tmp_path / "m.pt", redigest=True))
    p = copy.deepcopy(good)
    p["model_config"]["hidden"] = int(p["model_config"]["hidden"]) * 2
    with pytest.raises(DataError, match="weights do not fit model"):
        load_model(_save(p, tmp_path / "h.pt", redigest=True))
    p = copy.deepcopy(good)
    p["model_config"]["name"] = "no-such-model"
    with pytest.raises(DataError, match="model configuration is not valid"):
        load_model(_save(p, tmp_path / "n.pt", redigest=True))


@pytest.mark.parametrize("bomb", [_Touch, _Exec])
@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle"])
def test_pickle_bomb_is_refused_without_running(bomb, container, tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "bomb.pt"
    payload = {"kind": "eghn-md-model", "format_version": 1, "x": bomb(marker)}
    if container == "torch-zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    for verify in (True, False):
        with pytest.raises(DataError, match="nothing in it was executed"):
            load_checkpoint(path, verify=verify)
    res = run_cli("info", str(path))
    assert res.exit_code == 1 and res.stderr.startswith("Error:") and "nothing in it was executed" in res.stderr
    assert not marker.exists()
    # the same file loaded unsafely does run its code: the refusal above is what protects the user
    try:
        torch.load(path, weights_only=False)
    except RuntimeError:  # a raw pickle is not a torch file: it fails after its code already ran
        pass
    assert marker.exists()


def test_build_splits_validates_every_dataset(adk_h5, monkeypatch):
    from eghn_md.data.dataset import Dataset
    from eghn_md.data.samples import DataConfig
    from eghn_md.train.sources import build_splits

    seen = []
    real = Dataset.validate

    def spy(self):
        seen.append(str(self.path))
        return real(self)

    monkeypatch.setattr(Dataset, "validate", spy)
    with build_splits([adk_h5], config=DataConfig(horizon=5), val=[adk_h5], test=[adk_h5]):
        pass
    assert seen == [adk_h5] * 3


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_train_and_evaluate_refuse_a_float64_dataset(command, adk_h5, tiny_run, tmp_path):
    """Positions stored as float64 pass every check except validate(): refusing them shows validate() ran."""
    import shutil

    import h5py

    bad = tmp_path / "f64.h5"
    shutil.copy(adk_h5, bad)
    with h5py.File(bad, "r+") as f:
        g = f["trajectories"][list(f["trajectories"])[0]]
        pos = g["positions"][()].astype("float64")
        del g["positions"]
        g.create_dataset("positions", data=pos)
    args = (["train", str(bad), "-o", str(tmp_path / "run"), "--preset", "tiny", "--epochs", "1", "--quiet"]
            if command == "train" else
            ["evaluate", str(Path(tiny_run) / "model.pt"), str(bad), "--per-node", str(tmp_path / "e.csv")])
    res = run_cli(*args)
    assert res.exit_code == 1, res.output
    assert "positions are float64, expected float32" in res.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "e.csv").exists()

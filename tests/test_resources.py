"""Resource limits: out of memory suggests a smaller batch; a full disk leaves the previous output intact and is a
one-line error."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from _data import run_cli
from eghn_md.errors import ResourceError


class _Raises(torch.nn.Module):
    """A model whose forward raises ``exc`` (stands for a GPU running out of memory)."""

    def __init__(self, exc):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.exc = exc

    def forward(self, batch):
        raise self.exc


def _tiny_sets(adk_h5):
    from eghn_md.data.samples import DataConfig
    from eghn_md.train.sources import build_splits

    return build_splits([adk_h5], config=DataConfig(horizon=5, window_stride=8))


@pytest.mark.parametrize("exc", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: 9e9 bytes"),
])
def test_out_of_memory_in_fit_suggests_a_smaller_batch(adk_h5, exc):
    from eghn_md.train.loop import TrainConfig, fit

    with _tiny_sets(adk_h5) as splits:
        with pytest.raises(ResourceError, match=r"out of memory .* lower batch_size \(e\.g\. batch_size 4\)"):
            fit(_Raises(exc), splits.sets["train"], splits.sets["val"],
                config=TrainConfig(epochs=1, batch_size=8, device="cpu"))


def test_other_runtime_errors_are_not_disguised(adk_h5):
    from eghn_md.train.loop import TrainConfig, fit

    with _tiny_sets(adk_h5) as splits:
        with pytest.raises(RuntimeError, match="shape mismatch") as info:
            fit(_Raises(RuntimeError("shape mismatch")), splits.sets["train"], splits.sets["val"],
                config=TrainConfig(epochs=1, batch_size=8, device="cpu"))
    assert not isinstance(info.value, ResourceError)


def test_out_of_memory_through_the_cli_is_one_line(adk_h5, tiny_config, tmp_path, monkeypatch):
    import eghn_md.models as models

    real = models.build_model

    def build_oom(cfg):
        model = real(cfg)
        model.forward = lambda batch: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory."))
        return model

    monkeypatch.setattr(models, "build_model", build_oom)
    res = run_cli("train", adk_h5, "-o", str(tmp_path / "run"), "--config", tiny_config,
                  "--quiet", "--device", "cpu", "--batch-size", "6")
    assert res.exit_code == 1, res.output
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("Error: out of memory on cpu"), res.stderr
    assert "--batch-size 3" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "run" / "model.pt").exists()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tiny_run, tmp_path, monkeypatch):
    """torch.save writes half a file into the temporary path, then the disk is full."""
    import shutil

    from eghn_md.train import checkpoint as ck

    dst = tmp_path / "last.pt"
    shutil.copy(Path(tiny_run) / "last.pt", dst)
    before = dst.read_bytes()
    good = ck.load_checkpoint(dst)

    def half_then_full(obj, path):
        Path(path).write_bytes(before[: len(before) // 2])
        _enospc()

    monkeypatch.setattr(ck.torch, "save", half_then_full)
    with pytest.raises(OSError) as info:
        ck.save_checkpoint(dst, model_config=good.model_config, data_config=good.data_config,
                           train_config=good.train_config, stats=good.stats, nodes=good.nodes,
                           state_dict=good.state_dict)
    assert info.value.errno == errno.ENOSPC
    assert dst.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left


def test_full_disk_during_preprocess_is_one_line_and_keeps_the_old_output(adk, adk_h5, tmp_path, monkeypatch):
    import shutil

    import eghn_md.data.dataset as dataset

    out = tmp_path / "adk.h5"
    shutil.copy(adk_h5, out)
    before = out.read_bytes()
    real = dataset._write_trajectory

    def write_then_full(*args, **kwargs):
        real(*args, **kwargs)  # the frames went into the temporary file …
        _enospc()  # … then the disk filled up

    monkeypatch.setattr(dataset, "_write_trajectory", write_then_full)
    res = run_cli("preprocess", adk["psf"], adk["dcd"], "-o", str(out), "--overwrite", "--quiet")
    assert res.exit_code == 1, res.output
    assert res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("Error: No space left on device [ENOSPC]") and "free some space" in res.stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adk.h5"]


@pytest.mark.parametrize("exc, expected", [
    (OSError(errno.EIO, "Input/output error", "/data/x.dcd"), "Error: Input/output error [EIO]: '/data/x.dcd'"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.dcd"), "Error: Permission denied [EACCES]"),
    (OSError("Unable to synchronously open file"), "Error: Unable to synchronously open file"),
])
def test_any_os_error_is_a_one_line_message(exc, expected, monkeypatch, tmp_path):
    import eghn_md.data.preprocess as pre

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(pre, "preprocess", boom)
    res = run_cli("preprocess", "a.psf", "a.dcd", "-o", str(tmp_path / "a.h5"))
    assert res.exit_code == 1
    assert res.stderr.startswith(expected) and res.stderr.count("\n") == 1, res.stderr
    res = run_cli("--debug", "preprocess", "a.psf", "a.dcd", "-o", str(tmp_path / "a.h5"))
    assert res.exception is exc  # --debug re-raises the original error

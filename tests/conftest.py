"""Shared fixtures: MDAnalysisTests AdK files, a preprocessed dataset and a tiny trained model (session-scoped)."""

from __future__ import annotations

import os
import warnings

import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning, module="MDAnalysis")
os.environ.setdefault("MPLBACKEND", "Agg")

TINY_CONFIG = """\
model: {name: eghn, hidden: 16, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 4, reg_weight: 0.1}
data: {horizon: 5, window_stride: 2}
train: {epochs: 2, batch_size: 8, lr: 0.002, schedule: cosine, patience: 0}
"""


def pytest_addoption(parser):
    parser.addoption(
        "--device", default="cpu", choices=("cpu", "cuda"),
        help="torch device of the tests that take the `device` fixture (models' equivariance, the edge chain, the "
             "training loop, the shared tiny run and its rollouts): cpu (default) or cuda (pick the GPU with "
             "CUDA_VISIBLE_DEVICES, as the commands' --device does). Commands that other tests run with the "
             "default --device auto use a visible GPU as well.")


def pytest_configure(config):
    import torch

    if config.getoption("--device") == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device cuda: this torch ({torch.__version__}) sees no CUDA device")


@pytest.fixture(scope="session")
def device(request):
    """The ``--device`` the device-aware tests run on (a :class:`torch.device`)."""
    import torch

    return torch.device(request.config.getoption("--device"))


@pytest.fixture(scope="session")
def adk():
    """Paths of the AdK PSF/DCD/DCD2 files shipped by MDAnalysisTests."""
    from MDAnalysisTests import datafiles as d

    return {"psf": d.PSF, "dcd": d.DCD, "dcd2": d.DCD2}


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    p.write_text(TINY_CONFIG)
    return str(p)


@pytest.fixture(scope="session")
def adk_h5(adk, tmp_path_factory):
    """AdK Cα dataset (214 nodes × 98 frames) made by the real preprocess command."""
    from _data import run_cli

    out = tmp_path_factory.mktemp("data") / "adk.h5"
    res = run_cli("preprocess", adk["psf"], adk["dcd"], "-o", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    return str(out)


@pytest.fixture(scope="session")
def tiny_run(adk_h5, tiny_config, tmp_path_factory, device):
    """A tiny EGHN trained for two epochs through the real train command (on ``--device``); returns the run
    directory."""
    from _data import run_cli

    run = tmp_path_factory.mktemp("run") / "run"
    res = run_cli("train", adk_h5, "-o", str(run), "--config", tiny_config, "--seed", "1", "--quiet",
                  "--device", str(device))
    assert res.exit_code == 0, res.output
    return run

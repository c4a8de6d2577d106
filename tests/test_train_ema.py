"""The weight average of ``train: ema_decay``: its arithmetic, what validation / model.pt / last.pt hold, and a
resumed run that continues the average bit-identically."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _data import full_and_resumed_runs, history_rows
from eghn_md.errors import UsageError
from eghn_md.train.checkpoint import load_checkpoint
from eghn_md.train.ema import WeightAverage, ema_weight
from eghn_md.train.options import TrainConfig

EMA_CONFIG = """\
model: {name: eghn, generative: true, hidden: 16, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1,
        n_clusters: 4, sample_steps: 2}
data: {horizon: 5, window_stride: 3}
train: {epochs: 3, batch_size: 4, lr: 0.002, schedule: cosine, patience: 0, unroll_steps: 1, free_steps: 0,
        noise_std: 0.0, noise_scale: 0.0,
        bond_weight: 1.0, clash_weight: 1.0, ema_decay: 0.9, select: last}
"""


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_the_average_follows_the_formula_with_its_warm_up():
    m = _Tiny()
    avg = WeightAverage(m, decay=0.9)
    expected = torch.zeros(3, dtype=torch.float64)
    for n, value in enumerate([1.0, -2.0, 4.0, 0.5, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]):
        with torch.no_grad():
            m.w.fill_(value)
            m.count.fill_(n)
        avg.update()
        d = min(0.9, (1 + n) / (10 + n))
        assert ema_weight(0.9, n) == pytest.approx(d)
        expected = d * expected + (1 - d) * value
        torch.testing.assert_close(avg.state_dict()["w"], expected, atol=1e-14, rtol=0)
    assert ema_weight(0.9, 100) == 0.9 and avg.updates == 13
    assert int(avg.state_dict()["count"]) == 12  # integer buffers are the module's own


def test_swapped_in_holds_the_average_and_restores_the_weights():
    m = _Tiny()
    avg = WeightAverage(m, decay=0.5)
    with torch.no_grad():
        m.w.fill_(2.0)
    avg.update()  # d_0 = 0.1: the average is 0.9 * 2
    with avg.swapped_in():
        torch.testing.assert_close(m.w.detach(), torch.full((3,), 1.8, dtype=torch.float64))
    torch.testing.assert_close(m.w.detach(), torch.full((3,), 2.0, dtype=torch.float64))
    resumed = WeightAverage(m, decay=0.5, state=avg.state_dict(), updates=avg.updates)
    torch.testing.assert_close(resumed.state_dict()["w"], avg.state_dict()["w"])


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_a_decay_outside_0_1_is_refused_naming_the_choices(bad):
    with pytest.raises(UsageError, match="ema_decay must be 0 .off. or in .0, 1."):
        TrainConfig(ema_decay=bad)
    with pytest.raises(UsageError, match="ema_decay must be a finite number"):
        TrainConfig(ema_decay="x")


def test_training_keeps_the_average_and_resumes_it_bit_identically(adk_h5, tmp_path):
    cfg_file = tmp_path / "ema.yaml"
    cfg_file.write_text(EMA_CONFIG)
    full, part = full_and_resumed_runs(adk_h5, cfg_file, tmp_path, seed=2)
    for ra, rb in zip(history_rows(full), history_rows(part), strict=True):
        assert rb["val_mse"] == ra["val_mse"] and rb["train_loss"] == ra["train_loss"]
    last, model = load_checkpoint(full / "last.pt"), load_checkpoint(full / "model.pt")
    st = last.train_state
    assert st["ema_updates"] > 0
    part_model = load_checkpoint(part / "model.pt")
    for key in st["model_state"]:
        torch.testing.assert_close(last.state_dict[key], st["ema_state"][key], atol=0, rtol=0)
        torch.testing.assert_close(model.state_dict[key], st["ema_state"][key], atol=0, rtol=0)
        torch.testing.assert_close(part_model.state_dict[key], model.state_dict[key], atol=0, rtol=0)
    ema = st["ema_state"]
    moved = [k for k, v in st["model_state"].items() if v.is_floating_point() and not torch.equal(v, ema[k])]
    assert moved  # the average is not the optimiser's weights

"""The rollout-aware objective: unrolled steps equal a hand-made rollout, noise is reproducible, pieces and resume
give the same training, and the small-validation fallback."""

from __future__ import annotations

import math

import pytest
import torch

from _data import full_and_resumed_runs, history_rows, run_cli
from eghn_md.data.batch import collate
from eghn_md.data.samples import WindowSet, build_edges
from eghn_md.models import ModelConfig, build_model
from eghn_md.testing.synthetic import chain_graph
from eghn_md.train.loop import TrainConfig, fit, objective_from_config
from eghn_md.train.objective import Objective, sample_noise


def _windows(future_steps=3, dtype=torch.float64):
    """A 30-frame random-walk chain of 12 nodes as one WindowSet (horizon 4)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.cumsum(torch.randn(12, 3, generator=g, dtype=dtype) * 2.0, dim=0)
    frames = x0 + torch.cumsum(torch.randn(30, 12, 3, generator=g, dtype=dtype) * 0.2, dim=0)
    idx = torch.arange(11)
    bonds = torch.cat([torch.stack([idx, idx + 1]), torch.stack([idx + 1, idx])], dim=1)
    ws = WindowSet(positions=frames.float().numpy(), block=(0, 30), h=torch.ones(12, 2), bonds=bonds, horizon=4,
                   cutoff=6.0, future_steps=future_steps)
    return ws, frames.float()


def _model():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="egnn", node_in=2, edge_in=1, hidden=8, n_layers=1, length_scale=3.0)).double()


def test_windows_carry_future_frames_and_nan_past_the_block():
    ws, frames = _windows()
    s = ws[0]
    t = ws.starts[0]
    torch.testing.assert_close(s.future[:, 0], frames[t + 8])
    torch.testing.assert_close(s.future[:, 1], frames[t + 12])
    last = ws[len(ws) - 1]  # t + ΔT is the last frame: no future frame exists
    assert torch.isnan(last.future).all()
    assert ws.starts == WindowSet(positions=frames.numpy(), block=(0, 30), h=ws.h, bonds=ws.bonds, horizon=4,
                                  cutoff=6.0).starts


def test_time_reversal_serves_every_window_backwards_with_its_past_as_future():
    ws, frames = _windows()
    rev = WindowSet(positions=frames.numpy(), block=(0, 30), h=ws.h, bonds=ws.bonds, horizon=4, cutoff=6.0,
                    future_steps=3, time_reversal=True)
    n = len(ws)
    assert len(rev) == 2 * n
    for i in (0, n // 2, n - 1):  # the first half is the forward set, unchanged
        torch.testing.assert_close(rev[i].pos, ws[i].pos)
        torch.testing.assert_close(rev[i].target, ws[i].target)
    for i in (0, 3, n - 1):
        t, s = ws.starts[i], rev[n + i]
        torch.testing.assert_close(s.pos, frames[t])
        torch.testing.assert_close(s.vel, frames[t] - frames[t + 4])  # came from the later frame
        torch.testing.assert_close(s.target, frames[t - 4])
        for k in (2, 3):  # t − kΔT, NaN before the block's first frame
            f = t - 4 * k
            if f >= 0:
                torch.testing.assert_close(s.future[:, k - 2], frames[f])
            else:
                assert torch.isnan(s.future[:, k - 2]).all()
        torch.testing.assert_close(s.edge_index, ws[i].edge_index)  # edges of the same input frame
    assert torch.isnan(rev[n].future).all()  # the first window: t − 2ΔT = −4 lies before the block


def test_time_reversal_reaches_only_the_training_split(adk_h5):
    from eghn_md.data.samples import DataConfig
    from eghn_md.train.sources import build_splits

    cfg = DataConfig(horizon=5, split=(0.6, 0.2, 0.2))
    with build_splits([adk_h5], config=cfg) as plain, build_splits([adk_h5], config=cfg, time_reversal=True) as rev:
        assert len(rev.sets["train"]) == 2 * len(plain.sets["train"]) > 0
        assert len(rev.sets["val"]) == len(plain.sets["val"]) and len(rev.sets["test"]) == len(plain.sets["test"])


def test_unrolled_loss_equals_a_hand_made_rollout():
    ws, frames = _windows()
    model = _model()
    sample = ws[0].to(dtype=torch.float64)
    obj = Objective(TrainConfig(unroll_steps=3, pushforward=False), cutoff=6.0)
    loss, parts = obj(model, sample, obj.totals([sample]))
    # by hand: three steps, edges rebuilt, velocity = last displacement
    prev, cur, errs = sample.pos - sample.vel, sample.pos, []
    targets = [sample.target, sample.future[:, 0], sample.future[:, 1]]
    for y in targets:
        ei, ea = build_edges(cur, 6.0, sample.bonds)
        nxt = model(sample.replace(pos=cur, vel=cur - prev, edge_index=ei, edge_attr=ea)).pos
        errs.append(((nxt - y) ** 2).mean())
        prev, cur = cur, nxt
    assert float(loss) == pytest.approx(float(sum(errs) / 3), rel=1e-10)
    assert float(parts["mse"]) == pytest.approx(float(errs[0]), rel=1e-10)


def test_pushforward_changes_gradients_not_the_loss():
    ws, _ = _windows()
    sample = ws[0].to(dtype=torch.float64)
    grads, losses = [], []
    for pf in (False, True):
        model = _model()
        obj = Objective(TrainConfig(unroll_steps=3, pushforward=pf), cutoff=6.0)
        loss, _ = obj(model, sample, obj.totals([sample]))
        loss.backward()
        losses.append(float(loss))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    assert not torch.allclose(grads[0], grads[1])


def test_bond_and_clash_terms_by_hand():
    ws, _ = _windows(future_steps=1)
    s = ws[3].to(dtype=torch.float64)

    class Shift(torch.nn.Module):  # predicts the input with node 0 moved onto node 2: one short bond, one clash
        def forward(self, b):
            from eghn_md.models import ModelOutput
            pos = b.pos.clone()
            pos[0] = b.pos[2] + 0.5
            return ModelOutput(pos=pos, reg=pos.new_zeros(()))

    obj = Objective(TrainConfig(bond_weight=1.0, clash_weight=1.0, clash_distance=3.0, reg_weight=0.0))
    _, parts = obj(Shift(), s, obj.totals([s]))
    pred = s.pos.clone()
    pred[0] = s.pos[2] + 0.5
    i, j = s.bonds
    bond = (((pred[i] - pred[j]).norm(dim=1) - (s.target[i] - s.target[j]).norm(dim=1)) ** 2).mean()
    i, j = s.edge_index
    floor = (s.target[i] - s.target[j]).norm(dim=1).clamp_max(3.0)
    clash = (torch.relu(floor - (pred[i] - pred[j]).norm(dim=1)) ** 2).mean()
    assert float(parts["bond"]) == pytest.approx(float(bond), rel=1e-10)
    assert float(parts["clash"]) == pytest.approx(float(clash), rel=1e-10) and float(clash) > 0


def test_noise_is_a_function_of_seed_epoch_and_sample():
    a, sa = sample_noise(5, 0.3, seed=1, epoch=2, index=3, dtype=torch.float32, device="cpu", scale_std=0.05)
    b, sb = sample_noise(5, 0.3, seed=1, epoch=2, index=3, dtype=torch.float32, device="cpu", scale_std=0.05)
    c, sc = sample_noise(5, 0.3, seed=1, epoch=3, index=3, dtype=torch.float32, device="cpu", scale_std=0.05)
    assert torch.equal(a, b) and sa == sb and not torch.equal(a, c) and sa != sc
    assert a.shape == (2, 5, 3) and 0.1 < float(a.std()) < 0.6 and 0.75 < sa < 1.25
    assert sample_noise(5, 0.3, seed=1, epoch=2, index=3, dtype=torch.float32, device="cpu")[1] == 1.0


def _fit_chains(max_chunk_nodes):
    graphs = [chain_graph(40 + 7 * k, node_in=6, seed=k, cutoff=6.0, dtype=torch.float64) for k in range(10)]
    # a second target one horizon later, NaN for every third graph (window at the end of its block)
    graphs = [g.replace(future=(g.target + 0.3 * (g.target - g.pos)).unsqueeze(1) * (1 if k % 3 else float("nan")))
              for k, g in enumerate(graphs)]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="eghn", node_in=6, hidden=8, n_layers=1, n_pool_layers=1,
                                    n_decoder_layers=1, n_clusters=3, length_scale=4.0)).double()
    cfg = TrainConfig(epochs=2, batch_size=5, lr=1e-2, seed=0, device="cpu", patience=0,
                      max_chunk_nodes=max_chunk_nodes, noise_std=0.2, noise_scale=0.05, unroll_steps=2,
                      bond_weight=1.0, clash_weight=1.0)
    return fit(model, graphs[:8], graphs[8:], config=cfg, objective=objective_from_config(cfg, cutoff=6.0))


def test_rollout_objective_in_pieces_gives_the_same_training():
    whole, pieces = _fit_chains(0), _fit_chains(60)
    for a, b in zip(whole.history, pieces.history, strict=True):
        for key in ("train_loss", "train_mse", "train_mse_unroll", "train_bond", "train_clash", "val_mse"):
            assert b[key] == pytest.approx(a[key], rel=1e-9), key


def test_unroll_without_cutoff_is_refused():
    from eghn_md.errors import UsageError

    with pytest.raises(UsageError, match="cutoff"):
        objective_from_config(TrainConfig(unroll_steps=2))
    with pytest.raises(UsageError, match="select"):
        TrainConfig(select="worst")


UNROLL_CONFIG = """\
model: {name: eghn, hidden: 16, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 4, refine_layers: 1}
data: {horizon: 5, window_stride: 3}
train: {epochs: 3, batch_size: 4, lr: 0.002, schedule: cosine, patience: 0, noise_std: 0.3, noise_scale: 0.05,
        unroll_steps: 2, refine_noise: 0.2,
        bond_weight: 1.0, clash_weight: 1.0}
"""




def test_unrolled_noisy_training_resumes_bit_identically(adk_h5, tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(UNROLL_CONFIG)
    full, part = full_and_resumed_runs(adk_h5, cfg_file, tmp_path, seed=2)
    a, b = history_rows(full), history_rows(part)
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b, strict=True):
        for key in ("train_loss", "train_mse", "train_mse_unroll", "train_bond", "train_clash", "val_mse"):
            assert rb[key] == ra[key], (ra["epoch"], key)  # the CSV's 8 significant digits, exactly


def test_small_validation_set_warns_and_keeps_the_last_epoch(adk_h5, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: egnn, hidden: 8, n_layers: 1}\ndata: {horizon: 15, split: [0.66, 0.34, 0.0]}\n"
                   "train: {epochs: 3, batch_size: 8, patience: 1}\n")
    res = run_cli("train", adk_h5, "-o", str(tmp_path / "r"), "--config", str(cfg), "--json",
                  "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "too few to select a model" in res.output and "--val FILE" in res.output
    import json

    metrics = json.loads(res.output[res.output.index("{"):])
    assert metrics["selection"] == "last" and metrics["best_epoch"] == metrics["epochs_run"] == 3


def test_free_steps_add_the_bond_and_clash_terms_of_a_hand_made_rollout_past_the_targets():
    ws, _ = _windows()
    model = _model()
    sample = ws[0].to(dtype=torch.float64)
    cfg = dict(unroll_steps=2, pushforward=False, bond_weight=3.0, clash_weight=2.0)
    supervised = Objective(TrainConfig(**cfg), cutoff=6.0)
    free = Objective(TrainConfig(**cfg, free_steps=2), cutoff=6.0)
    loss0, _ = supervised(model, sample, supervised.totals([sample]))
    loss, parts = free(model, sample, free.totals([sample]))
    # by hand: two supervised steps, then two more, scored against the first target's geometry
    prev, cur = sample.pos - sample.vel, sample.pos
    for _ in range(2):
        ei, ea = build_edges(cur, 6.0, sample.bonds)
        prev, cur = cur, model(sample.replace(pos=cur, vel=cur - prev, edge_index=ei, edge_attr=ea)).pos
    ref = sample.target
    i, j = sample.bonds
    ci, cj = sample.edge_index
    bond = clash = 0.0
    for _ in range(2):
        ei, ea = build_edges(cur, 6.0, sample.bonds)
        prev, cur = cur, model(sample.replace(pos=cur, vel=cur - prev, edge_index=ei, edge_attr=ea)).pos
        bond = bond + (((cur[i] - cur[j]).norm(dim=1) - (ref[i] - ref[j]).norm(dim=1)) ** 2).mean()
        floor = (ref[ci] - ref[cj]).norm(dim=1).clamp_max(3.0)
        clash = clash + (torch.relu(floor - (cur[ci] - cur[cj]).norm(dim=1)) ** 2).mean()
    expected = (loss0 - 0.0) * 2 / 4 + (3.0 * bond + 2.0 * clash) / 4
    reg = float(model(sample).reg)  # egnn: zero
    assert reg == 0.0
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(parts["bond_free"], bond / 2)
    loss.backward()  # the free steps carry gradient
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_free_steps_need_a_geometry_term():
    with pytest.raises(Exception, match="free_steps"):
        TrainConfig(free_steps=2)
    with pytest.raises(Exception, match="free_steps"):
        TrainConfig(free_steps=1.5, bond_weight=1.0)


def test_refine_noise_is_its_own_stream_and_leaves_the_input_noise_alone():
    from eghn_md.train.feed import with_noise
    from eghn_md.train.objective import sample_refine_noise

    ws, _ = _windows()
    s = ws[3]
    a = with_noise(s, noise_std=0.3, noise_scale=0.05, seed=1, epoch=2, index=3)
    b = with_noise(s, noise_std=0.3, noise_scale=0.05, seed=1, epoch=2, index=3, refine_noise=0.4)
    assert a.refine_noise is None and torch.equal(a.pos, b.pos) and torch.equal(a.vel, b.vel)
    n = sample_refine_noise(s.num_nodes, 0.4, seed=1, epoch=2, index=3, dtype=torch.float32, device="cpu")
    assert torch.equal(b.refine_noise, n) and n.shape == (s.num_nodes, 3) and 0.2 < float(n.std()) < 0.7
    other = sample_refine_noise(s.num_nodes, 0.4, seed=1, epoch=3, index=3, dtype=torch.float32, device="cpu")
    assert not torch.equal(n, other)
    batch = collate([b, with_noise(ws[4], noise_std=0.0, noise_scale=0.0, seed=1, epoch=2, index=4, refine_noise=0.4)])
    assert batch.refine_noise.shape == (batch.num_nodes, 3)


def test_refine_noise_enters_the_refinement_input_in_training_mode_only():
    ws, _ = _windows()
    sample = ws[0].to(dtype=torch.float64)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="egnn", node_in=2, edge_in=1, hidden=8, n_layers=1, length_scale=3.0,
                                    refine_layers=2)).double()
    noise = 0.5 * torch.randn(sample.num_nodes, 3, dtype=torch.float64)
    noisy = sample.replace(refine_noise=noise)
    model.eval()
    assert torch.equal(model(noisy).pos, model(sample).pos)
    model.train()
    seen = {}
    hook = model.refine.layers[0].register_forward_pre_hook(lambda m, args: seen.update(x=args[0].clone()))
    model(sample)
    clean_in = seen["x"]
    out = model(noisy).pos
    hook.remove()
    assert torch.allclose(seen["x"], clean_in + noise / 3.0, atol=1e-12)  # internal unit: Å / length_scale
    assert not torch.allclose(out, model(sample).pos)


def test_refine_noise_needs_refinement_layers(adk_h5, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: egnn, hidden: 8, n_layers: 1, refine_layers: 0}\ndata: {horizon: 2}\n"
                   "train: {epochs: 1, refine_noise: 0.3}\n")
    res = run_cli("train", adk_h5, "-o", str(tmp_path / "r"), "--config", str(cfg), "--device",
                  "cpu")
    assert res.exit_code != 0 and "refine_noise" in res.output and "refine_layers" in res.output, res.output
    # refine_layers set (the default preset's 4) on a model that builds no refinement: refused too, not ignored
    cfg.write_text("model: {name: eghn-published, hidden: 8, n_layers: 1, refine_layers: 4}\ndata: {horizon: 2}\n"
                   "train: {epochs: 1, refine_noise: 0.3}\n")
    res = run_cli("train", adk_h5, "-o", str(tmp_path / "r2"), "--config", str(cfg), "--device",
                  "cpu")
    assert res.exit_code != 0 and "refine_noise" in res.output and "'eghn-published'" in res.output, res.output
    with pytest.raises(Exception, match="refine_noise"):
        TrainConfig(refine_noise=-0.1)


def test_refine_layers_on_a_model_without_refinement_is_reported_not_ignored_silently(adk_h5, tmp_path):
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    cfg = resolve_config(preset="tiny", overrides={
        "model": {"name": "gnn", "hidden": 8, "n_layers": 1, "refine_layers": 3},
        "data": {"horizon": 2, "window_stride": 8}, "train": {"epochs": 1, "device": "cpu"}})
    lines = []
    train_run([adk_h5], tmp_path / "r", config=cfg, log=lines.append)
    assert any("'gnn'" in x and "refine_layers 3 is ignored" in x for x in lines), lines
    lines.clear()
    cfg.model["name"] = "egnn"  # a refining model: no such warning
    train_run([adk_h5], tmp_path / "r2", config=cfg, log=lines.append)
    assert not any("refine_layers" in x for x in lines), lines


def test_time_reversal_must_be_a_boolean():
    with pytest.raises(Exception, match="time_reversal"):
        TrainConfig(time_reversal="yes")


def test_default_preset_logs_every_loss_term(adk_h5, tmp_path):
    """Every term the objective of `default` computes (free-step terms included) is a history column, in the
    order of the terms table, finite, and shown on the progress line."""
    from cli._progress import RichProgress
    from eghn_md.train.config import resolve_config
    from eghn_md.train.objective import Objective

    run = tmp_path / "run"
    res = run_cli("train", adk_h5, "-o", run, "--preset", "default", "--epochs", "1", "--horizon", "5",
                  "--quiet", "--device", "cpu")
    assert res.exit_code == 0, res.output
    terms = Objective(config=resolve_config(preset="default").train).terms
    assert {"bond_free", "clash_free", "mse_unroll", "bond", "clash"} <= set(terms)
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert [c for c in header if c.startswith("train_") and c != "train_loss"] == [f"train_{t}" for t in terms]
    row = history_rows(run)[0]
    assert all(math.isfinite(float(row[f"train_{t}"])) for t in terms)
    info = RichProgress()._info({k: (float(v) if k != "epoch" else int(v)) for k, v in row.items()})
    assert all(f" {t} " in f" {info} ".replace("(", " ") for t in terms), info

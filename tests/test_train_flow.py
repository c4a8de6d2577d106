"""Training a generative model through the existing loop: flow-matching objective, per-sample seeded draws (pieces
agree with the whole batch), resume bit-identical, the generative preset, what is refused."""

from __future__ import annotations

import pytest
import torch

from _data import full_and_resumed_runs, history_rows, run_cli
from eghn_md.data.batch import collate
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.testing.synthetic import chain_graph
from eghn_md.train.flow_objective import FlowObjective, objective_for, sample_flow
from eghn_md.train.objective import Objective
from eghn_md.train.options import TrainConfig

FLOW_CONFIG = """\
model: {name: eghn, generative: true, hidden: 16, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1,
        n_clusters: 4, sample_steps: 2}
data: {horizon: 5, window_stride: 3}
train: {epochs: 3, batch_size: 4, lr: 0.002, schedule: cosine, patience: 0, unroll_steps: 1, free_steps: 0,
        noise_std: 0.0, noise_scale: 0.0, bond_weight: 1.0, clash_weight: 1.0}
"""


def _samples(n=3):
    return [chain_graph(12 + 3 * k, node_in=4, dtype=torch.float64, seed=k) for k in range(n)]


def test_draws_are_per_sample_and_seeded():
    a = sample_flow(5, seed=1, epoch=2, index=3, dtype=torch.float64, device="cpu")
    torch.testing.assert_close(a, sample_flow(5, seed=1, epoch=2, index=3, dtype=torch.float64, device="cpu"))
    assert a.shape == (5, 4) and bool((a[:, 3] == a[0, 3]).all()) and 0 <= float(a[0, 3]) < 1
    for other in ({"seed": 2, "epoch": 2, "index": 3}, {"seed": 1, "epoch": 3, "index": 3},
                  {"seed": 1, "epoch": 2, "index": 4}):
        assert not torch.equal(a, sample_flow(5, **other, dtype=torch.float64, device="cpu"))


def test_loss_of_pieces_adds_up_to_the_loss_of_the_batch():
    """Per-sample draws and batch-wide denominators: the batch in pieces gives the same loss and gradient."""
    torch.manual_seed(0)
    net = build_model(ModelConfig(name="eghn", node_in=4, edge_in=0, hidden=8, n_layers=1, n_pool_layers=1,
                                  n_clusters=3, length_scale=4.0, disp_scale=1.0, generative=True)).double()
    obj = FlowObjective(config=TrainConfig(bond_weight=2.0, clash_weight=3.0, reg_weight=0.5))
    samples = [obj.draw(s, seed=0, epoch=1, index=i) for i, s in enumerate(_samples())]
    totals = obj.totals(samples)
    whole, parts = obj(net, collate(samples), totals)
    assert set(parts) == {"mse", "reg", "bond", "clash"} and float(parts["mse"]) > 0
    g_whole = torch.autograd.grad(whole, list(net.parameters()), allow_unused=True)
    split = [obj(net, collate(p), totals)[0] for p in (samples[:1], samples[1:])]
    torch.testing.assert_close(split[0] + split[1], whole, atol=1e-12, rtol=1e-10)
    g_split = torch.autograd.grad(split[0] + split[1], list(net.parameters()), allow_unused=True)
    for a, b in zip(g_whole, g_split, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)


def test_objective_is_chosen_by_the_model_and_free_steps_are_refused():
    gen = build_model(ModelConfig(name="egnn", node_in=4, generative=True))
    det = build_model(ModelConfig(name="egnn", node_in=4))
    assert isinstance(objective_for(gen, TrainConfig()), FlowObjective)
    assert isinstance(objective_for(det, TrainConfig()), Objective)
    assert objective_for(gen, TrainConfig(unroll_steps=3), cutoff=10.0).terms == ("mse", "reg", "mse_unroll")
    with pytest.raises(UsageError, match="free_steps: 0.*generative"):
        objective_for(gen, TrainConfig(free_steps=1, bond_weight=1.0), cutoff=10.0)
    with pytest.raises(UsageError, match="pushforward: true"):
        objective_for(gen, TrainConfig(unroll_steps=2, pushforward=False), cutoff=10.0)
    with pytest.raises(UsageError, match="cutoff"):
        objective_for(gen, TrainConfig(unroll_steps=2))


@pytest.mark.parametrize("extra", ["", "contact_weight: 1.0, score_weight: 0.5",
                                   "score_weight: 0.5, score_steps: 2"])
def test_generative_training_resumes_bit_identically(adk_h5, tmp_path, extra):
    """Also with the sampled score (its samples' noise comes from each sample's seeded draw, like the flow's) and
    with the score over a two-step rollout (the data then carry the frame 2ΔT ahead)."""
    cfg_file = tmp_path / "flow.yaml"
    cfg_file.write_text(FLOW_CONFIG.replace("clash_weight: 1.0}", "clash_weight: 1.0" + (", " + extra if extra else "")
                                            + "}"))
    full, part = full_and_resumed_runs(adk_h5, cfg_file, tmp_path, seed=3)
    a, b = history_rows(full), history_rows(part)
    assert len(a) == len(b) == 3
    keys = ("train_loss", "train_mse", "train_bond", "train_clash", "val_mse") + \
        tuple(f"train_{k}" for k in ("contact", "score") if f"{k}_weight" in extra)
    for ra, rb in zip(a, b, strict=True):
        for key in keys:
            assert rb[key] == ra[key], (ra["epoch"], key)
    assert float(a[-1]["train_mse"]) < float(a[0]["train_mse"])  # it learns


def test_default_preset_with_generative_model_names_the_fix(adk_h5, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {generative: true}\n")
    res = run_cli("train", adk_h5, "-o", tmp_path / "r", "--config", cfg, "--epochs", "1", "--horizon", "5", "--quiet")
    assert res.exit_code == 2 and "--preset" in res.output and "free_steps: 0" in res.output
    assert "Traceback" not in res.output


def test_training_statistics_carry_the_geometry_the_guidance_keeps():
    """compute_stats gives the bond range and the closest non-local approach of the input and target frames."""
    from eghn_md.data.samples import compute_stats

    s = chain_graph(40, node_in=4, dtype=torch.float64, seed=3)
    stats = compute_stats([s])
    d = torch.cat([(x[s.bonds[0]] - x[s.bonds[1]]).norm(dim=1) for x in (s.pos, s.target)])
    assert stats["bond_range"] == pytest.approx([float(d.min()), float(d.max())])
    assert 0 < stats["contact_floor"] < 8.0
    bare = s.replace(local_edge_index=s.edge_index[:, :0])
    assert compute_stats([bare])["bond_range"] is None


def test_flow_weight_moves_the_loss_over_tau_not_its_scale():
    """``flow_weight`` p: w(τ) = max(1 − τ, 0.1)^(−p), mean 1 over τ ~ U(0, 1); the loss sums each sample's error
    times its w(τ) while ``mse`` stays the unweighted error."""
    from eghn_md.train.flow_objective import TAU_CLIP, flow_time_weight

    tau = torch.linspace(0, 1, 2_000_001, dtype=torch.float64)
    for p in (0.0, 0.5, 1.0, 2.0, 3.0):
        w = flow_time_weight(tau, p)
        assert abs(float(torch.trapezoid(w, tau)) - 1.0) < 1e-6
        torch.testing.assert_close(w[-1] / w[0], torch.tensor((1 - TAU_CLIP) ** -p, dtype=torch.float64))
    torch.manual_seed(0)
    net = build_model(ModelConfig(name="eghn", node_in=4, edge_in=0, hidden=8, n_layers=1, n_pool_layers=1,
                                  n_clusters=3, length_scale=4.0, disp_scale=1.0, generative=True)).double()
    flat = FlowObjective(config=TrainConfig(reg_weight=0.0))
    samples = [flat.draw(s, seed=0, epoch=1, index=i) for i, s in enumerate(_samples())]
    totals = flat.totals(samples)
    per_sample = [flat(net, collate([s]), totals)[0] for s in samples]
    taus = torch.stack([s.flow[0, 3] for s in samples])
    weighted = FlowObjective(config=TrainConfig(reg_weight=0.0, flow_weight=2.0))
    loss, parts = weighted(net, collate(samples), totals)
    expected = sum(v * w for v, w in zip(per_sample, flow_time_weight(taus, 2.0), strict=True))
    torch.testing.assert_close(loss, expected, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(parts["mse"], sum(per_sample).detach(), atol=1e-12, rtol=1e-10)
    with pytest.raises(UsageError, match="flow_weight must be >= 0"):
        TrainConfig(flow_weight=-1.0)
    with pytest.raises(UsageError, match="flow_weight.*deterministic"):
        objective_for(build_model(ModelConfig(name="egnn", node_in=4)), TrainConfig(flow_weight=2.0))


def test_contact_weight_is_the_tau_weighted_distance_error_over_the_input_contacts():
    """``contact_weight``: Σ τ (|x̂₁ᵢ − x̂₁ⱼ| − |x₁ᵢ − x₁ⱼ|)² over the input frame's contact edges / their count, by
    hand from the denoiser's own x̂₁; it adds to the loss with its weight and is refused for a deterministic model."""
    torch.manual_seed(0)
    net = build_model(ModelConfig(name="eghn", node_in=4, edge_in=0, hidden=8, n_layers=1, n_pool_layers=1,
                                  n_clusters=3, length_scale=4.0, disp_scale=1.0, generative=True)).double()
    plain = FlowObjective(config=TrainConfig(reg_weight=0.0))
    obj = FlowObjective(config=TrainConfig(reg_weight=0.0, contact_weight=3.0))
    assert obj.terms == ("mse", "reg", "contact")
    samples = [obj.draw(s, seed=0, epoch=1, index=i) for i, s in enumerate(_samples())]
    batch, totals = collate(samples), obj.totals(samples)
    loss, parts = obj(net, batch, totals)
    base, _ = plain(net, batch, totals)
    pred = net(batch, flow=batch.flow[:, :4]).pos
    i, j = batch.edge_index
    d_pred, d_true = (pred[i] - pred[j]).norm(dim=1), (batch.target[i] - batch.target[j]).norm(dim=1)
    expected = (batch.flow[i, 3] * (d_pred - d_true) ** 2).sum() / batch.edge_index.shape[1]
    assert totals["pairs"][0] == batch.edge_index.shape[1] and float(expected.detach()) > 0
    torch.testing.assert_close(parts["contact"], expected.detach(), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(loss, base + 3.0 * expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", ["contact_weight", "score_weight"])
def test_generative_terms_are_checked_and_refused_for_a_deterministic_model(name):
    with pytest.raises(UsageError, match=f"{name} must be >= 0"):
        TrainConfig(**{name: -1.0})
    with pytest.raises(UsageError, match=f"{name}.*deterministic"):
        objective_for(build_model(ModelConfig(name="egnn", node_in=4)), TrainConfig(**{name: 1.0}))


def test_marginal_score_by_hand_and_its_term_adds_up_over_pieces():
    """:func:`marginal_score` on one graph against the arithmetic by hand; ``score_weight``: two samples by the
    model's own sampler from the draw's noise, differentiated through, the batch in pieces giving the whole's loss."""
    from eghn_md.train.flow_objective import SCORE_SAMPLES, flow_columns, marginal_score

    s = chain_graph(6, node_in=4, dtype=torch.float64, seed=1)
    g = torch.Generator().manual_seed(0)
    a, b = (s.target + torch.randn(s.target.shape, generator=g, dtype=torch.float64) for _ in range(2))
    i, j = s.edge_index
    y = s.target
    by_node = [0.5 * (float((a[k] - y[k]).norm()) + float((b[k] - y[k]).norm())) - 0.5 * float((a[k] - b[k]).norm())
               for k in range(6)]
    dist = [[float((x[p] - x[q]).norm()) for p, q in zip(i.tolist(), j.tolist(), strict=True)] for x in (a, b, y)]
    by_pair = [0.5 * (abs(u - w) + abs(v - w)) - 0.5 * abs(u - v) for u, v, w in zip(*dist, strict=True)]
    expected = sum(by_node) / len(by_node) + sum(by_pair) / len(by_pair)
    batch = collate([s])
    got = marginal_score(a, b, y, batch, s.edge_index)
    torch.testing.assert_close(got, torch.tensor([expected], dtype=torch.float64), atol=1e-12, rtol=1e-10)
    assert float(marginal_score(y, y, y, batch, s.edge_index)) == 0.0

    torch.manual_seed(0)
    net = build_model(ModelConfig(name="eghn", node_in=4, edge_in=0, hidden=8, n_layers=1, n_pool_layers=1,
                                  n_clusters=3, length_scale=4.0, disp_scale=1.0, generative=True,
                                  sample_steps=2)).double()
    obj = FlowObjective(config=TrainConfig(reg_weight=0.0, score_weight=0.5))
    assert obj.terms == ("mse", "reg", "score") and obj.score_samples == SCORE_SAMPLES
    samples = [obj.draw(x, seed=0, epoch=1, index=k) for k, x in enumerate(_samples())]
    assert samples[0].flow.shape[1] == flow_columns(1, SCORE_SAMPLES)
    totals = obj.totals(samples)
    whole, parts = obj(net, collate(samples), totals)
    assert float(parts["score"]) > 0
    split = [obj(net, collate(p), totals)[0] for p in (samples[:1], samples[1:])]
    torch.testing.assert_close(split[0] + split[1], whole, atol=1e-12, rtol=1e-10)
    flat = FlowObjective(config=TrainConfig(reg_weight=0.0))
    base = flat(net, collate([x.replace(flow=x.flow[:, :4]) for x in samples]), totals)[0]
    torch.testing.assert_close(whole, base + 0.5 * parts["score"], atol=1e-12, rtol=1e-10)
    grads = torch.autograd.grad(whole - base, [p for p in net.parameters() if p.requires_grad], allow_unused=True)
    assert any(gr is not None and float(gr.abs().sum()) > 0 for gr in grads)  # the samples are differentiated


def test_validation_of_a_generative_model_draws_seeded_per_window(monkeypatch):
    """``evaluate_mse`` samples window k from noise seeded by k alone: the same number whatever the batch size,
    the rank's share and torch's global generator, and the sum of each window's error by hand."""
    import eghn_md.train.loop as loop
    from eghn_md.train.loop import evaluate_mse, validation_noise

    torch.manual_seed(0)
    net = build_model(ModelConfig(name="eghn", node_in=4, edge_in=0, hidden=8, n_layers=1, n_pool_layers=1,
                                  n_clusters=3, length_scale=4.0, disp_scale=1.0, generative=True,
                                  sample_steps=2)).double()
    data = _samples(5)
    values = []
    for size, seed in ((1, 1), (2, 2), (5, 3)):
        torch.manual_seed(seed)
        values.append(evaluate_mse(net, data, batch_size=size))
    assert values[1] == pytest.approx(values[0], rel=1e-12)
    assert values[2] == pytest.approx(values[0], rel=1e-12)

    def by_hand(windows):
        sq = sum(float(((net(collate([data[k]]), noise=validation_noise([data[k]], [k])).pos - data[k].target)
                        ** 2).sum()) for k in windows)
        return sq / sum(data[k].target.numel() for k in windows)

    assert values[0] == pytest.approx(by_hand(range(5)), rel=1e-12)
    assert not torch.equal(validation_noise(data[:1], [0]), validation_noise(data[:1], [1]))
    # rank 1 of 2 evaluates windows 1 and 3, each with its own index's noise (the all-reduce is skipped here)
    monkeypatch.setattr(loop, "_dist_info", lambda: (1, 2))
    monkeypatch.setattr(loop.dist, "all_reduce", lambda t: None)
    assert evaluate_mse(net, data, batch_size=2) == pytest.approx(by_hand([1, 3]), rel=1e-12)


def test_validation_takes_any_module_that_maps_a_batch():
    """``fit`` trains any GraphBatch → ModelOutput module: one without declared capabilities is validated as a
    deterministic model."""
    from eghn_md.models.output import ModelOutput
    from eghn_md.train.loop import evaluate_mse

    class Shift(torch.nn.Module):
        def forward(self, batch):
            return ModelOutput(pos=batch.pos + 1.0, reg=batch.pos.new_zeros(()))

    data = _samples(2)
    expected = sum(float(((s.pos + 1.0 - s.target) ** 2).sum()) for s in data) / sum(s.target.numel() for s in data)
    assert evaluate_mse(Shift(), data, batch_size=1) == pytest.approx(expected, rel=1e-12)

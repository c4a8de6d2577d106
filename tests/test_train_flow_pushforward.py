"""Pushforward steps of the flow objective (``train: {unroll_steps: K}`` with a generative model): the draw's layout,
the wiring of a step from the model's own sample (checked against a computation by hand), windows without a future
frame, pieces adding up to the batch, and a training run through the real command."""

from __future__ import annotations

import torch

from _data import history_rows, run_cli
from eghn_md.data.batch import collate
from eghn_md.data.samples import build_edges
from eghn_md.models import ModelConfig, build_model
from eghn_md.testing.synthetic import chain_graph
from eghn_md.train.flow_objective import FlowObjective, flow_columns, sample_flow
from eghn_md.train.options import TrainConfig

CUTOFF = 8.0


def _net():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="eghn", node_in=4, edge_in=0, hidden=8, n_layers=1, n_pool_layers=1,
                                   n_clusters=3, length_scale=4.0, disp_scale=1.0, generative=True,
                                   sample_steps=2)).double()


def _samples(futures=(True, True, False)):
    """Chains with one future frame (x(t + 2ΔT)), or with NaN there (a window at the end of its block)."""
    out = []
    for k, has in enumerate(futures):
        s = chain_graph(12 + 3 * k, node_in=4, dtype=torch.float64, seed=k, cutoff=CUTOFF)
        future = s.target + 0.5 * torch.randn(s.target.shape, generator=torch.Generator().manual_seed(k),
                                              dtype=torch.float64)
        out.append(s.replace(future=(future if has else torch.full_like(future, float("nan"))).unsqueeze(1)))
    return out


def test_draw_keeps_the_first_step_and_adds_seven_columns_per_step():
    one = sample_flow(6, seed=1, epoch=2, index=3, dtype=torch.float64, device="cpu")
    three = sample_flow(6, seed=1, epoch=2, index=3, dtype=torch.float64, device="cpu", steps=3)
    assert three.shape == (6, flow_columns(3)) == (6, 18)
    torch.testing.assert_close(three[:, :4], one, rtol=0, atol=0)
    taus = three[:, [3, 10, 17]]
    assert bool((taus == taus[0]).all()) and len(set(taus[0].tolist())) == 3  # one τ per graph and step


def test_second_step_trains_from_the_models_own_sample():
    """Loss = mean over the two steps; step 2 is flow matching from the model's sample (drawn with the draw's
    sampling noise, edges rebuilt from it) towards the true x(t + 2ΔT): recomputed here by hand."""
    net = _net()
    config = TrainConfig(unroll_steps=2, reg_weight=0.0)
    obj = FlowObjective(config=config, cutoff=CUTOFF)
    sample = obj.draw(_samples((True,))[0], seed=0, epoch=1, index=0)
    loss, parts = obj(net, sample, obj.totals([sample]))
    one = FlowObjective(config=TrainConfig(reg_weight=0.0))
    first, _ = one(net, sample.replace(flow=sample.flow[:, :4]), one.totals([sample]))
    with torch.no_grad():
        x = net(sample, noise=sample.flow[:, 4:7]).pos
    edge_index, edge_attr = build_edges(x, CUTOFF, sample.bonds)
    step = sample.replace(pos=x, vel=x - sample.pos, edge_index=edge_index, edge_attr=edge_attr[:, :0],
                          target=sample.future[:, 0])
    second = ((net(step, flow=sample.flow[:, 7:11]).pos - sample.future[:, 0]) ** 2).mean()
    torch.testing.assert_close(parts["mse"], first.detach())
    torch.testing.assert_close(parts["mse_unroll"], second.detach())
    torch.testing.assert_close(loss, 0.5 * (first + second))


def test_windows_without_a_future_frame_train_one_step():
    net = _net()
    obj = FlowObjective(config=TrainConfig(unroll_steps=2, bond_weight=2.0, clash_weight=3.0, reg_weight=0.5),
                        cutoff=CUTOFF)
    one = FlowObjective(config=TrainConfig(bond_weight=2.0, clash_weight=3.0, reg_weight=0.5))
    sample = obj.draw(_samples((False,))[0], seed=0, epoch=1, index=0)
    loss, _ = obj(net, sample, obj.totals([sample]))
    ref, _ = one(net, sample.replace(flow=sample.flow[:, :4]), one.totals([sample]))
    torch.testing.assert_close(loss, ref)


def test_pushforward_loss_of_pieces_adds_up_to_the_loss_of_the_batch():
    net = _net()
    obj = FlowObjective(config=TrainConfig(unroll_steps=2, bond_weight=2.0, clash_weight=3.0, reg_weight=0.5),
                        cutoff=CUTOFF)
    samples = [obj.draw(s, seed=0, epoch=1, index=i) for i, s in enumerate(_samples())]
    totals = obj.totals(samples)
    assert totals["steps"] == 2 and totals["nodes"][1] == samples[0].num_nodes + samples[1].num_nodes
    whole, parts = obj(net, collate(samples), totals)
    assert set(parts) == {"mse", "reg", "mse_unroll", "bond", "clash"} and float(parts["mse_unroll"]) > 0
    split = [obj(net, collate(p), totals)[0] for p in (samples[:1], samples[1:])]
    torch.testing.assert_close(split[0] + split[1], whole, atol=1e-12, rtol=1e-10)
    g_whole = torch.autograd.grad(whole, list(net.parameters()), allow_unused=True)
    g_split = torch.autograd.grad(split[0] + split[1], list(net.parameters()), allow_unused=True)
    for a, b in zip(g_whole, g_split, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)


def test_fine_tune_from_a_model_with_pushforward_steps(adk_h5, tmp_path):
    """``train --init``: a new run starts from a trained model's configuration and weights (at a vanishing learning
    rate they stay), here with pushforward steps; refused beside --resume and for data the model cannot read."""
    from eghn_md.train.checkpoint import load_checkpoint

    (tmp_path / "a.yaml").write_text("model: {hidden: 8, n_layers: 1, n_clusters: 3, sample_steps: 2}\n"
                                     "data: {horizon: 5, window_stride: 4}\ntrain: {epochs: 1, patience: 0}\n")
    (tmp_path / "b.yaml").write_text("data: {horizon: 5, window_stride: 4}\n"
                                     "train: {epochs: 1, unroll_steps: 2, patience: 0, lr: 1.0e-12}\n")
    common = ("--preset", "generative", "--quiet", "--device", "cpu", "--seed", "1")
    assert run_cli("train", adk_h5, "-o", tmp_path / "a", "--config", tmp_path / "a.yaml", *common).exit_code == 0
    res = run_cli("train", adk_h5, "-o", tmp_path / "b", "--config", tmp_path / "b.yaml", "--init",
                  tmp_path / "a" / "model.pt", *common)
    assert res.exit_code == 0, res.output
    a, b = load_checkpoint(tmp_path / "a" / "model.pt"), load_checkpoint(tmp_path / "b" / "model.pt")
    assert b.model_config == a.model_config and b.train_config["_init"] == str(tmp_path / "a" / "model.pt")
    for key, value in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[key], value, atol=1e-8, rtol=0)
    row = history_rows(tmp_path / "b")[-1]
    assert float(row["train_mse_unroll"]) > 0 and float(row["val_mse"]) > 0
    res = run_cli("train", adk_h5, "-o", tmp_path / "b", "--init", tmp_path / "a" / "model.pt", "--resume")
    assert res.exit_code == 2 and "not both" in res.output
    res = run_cli("train", adk_h5, "-o", tmp_path / "c", "--config", tmp_path / "b.yaml", "--init",
                  tmp_path / "a" / "model.pt", *common, "--features", "residue")
    assert res.exit_code == 2 and "node scalars" in res.output and "Traceback" not in res.output


def test_score_with_pushforward_steps_reads_the_last_columns():
    """``score_weight`` with ``unroll_steps`` 2: the draw keeps the steps' 11 columns and appends 2 × 3; the score's
    two samples are drawn from exactly those last six columns, from the first input frame."""
    from eghn_md.train.flow_objective import marginal_score

    steps = sample_flow(6, seed=1, epoch=2, index=3, dtype=torch.float64, device="cpu", steps=2)
    both = sample_flow(6, seed=1, epoch=2, index=3, dtype=torch.float64, device="cpu", steps=2, samples=2)
    assert both.shape == (6, flow_columns(2, 2)) == (6, 17)
    torch.testing.assert_close(both[:, :11], steps, rtol=0, atol=0)
    net = _net()
    obj = FlowObjective(config=TrainConfig(reg_weight=0.0, unroll_steps=2, score_weight=1.0), cutoff=CUTOFF)
    samples = [obj.draw(s, seed=0, epoch=1, index=i) for i, s in enumerate(_samples())]
    batch, totals = collate(samples), obj.totals(samples)
    _, parts = obj(net, batch, totals)
    c = flow_columns(2)
    a, b = (net(batch, noise=batch.flow[:, c + 3 * k:c + 3 * k + 3]).pos for k in range(2))
    expected = marginal_score(a, b, batch.target, batch, batch.edge_index).sum() / batch.num_graphs
    torch.testing.assert_close(parts["score"], expected.detach(), atol=1e-12, rtol=1e-10)


def test_score_over_a_rollout_by_hand_and_windows_without_a_future():
    """``score_steps`` 2: each of the two samples is rolled on one more step by the sampler (edges rebuilt from it,
    still differentiated) from the draw's next 2 × 3 columns, and the score is the mean of the two steps' scores
    (step 2 against x(t + 2ΔT)); a graph without that frame keeps its first step's score alone. Recomputed here by
    hand; the batch in pieces gives the whole's loss."""
    from eghn_md.train.flow_objective import marginal_score

    net = _net()
    obj = FlowObjective(config=TrainConfig(reg_weight=0.0, score_weight=1.0, score_steps=2), cutoff=CUTOFF)
    assert obj.score_samples == 4 and "x(t + 2ΔT)" in obj.term_docs["score"]
    samples = [obj.draw(s, seed=0, epoch=1, index=i) for i, s in enumerate(_samples((True, False, True)))]
    assert samples[0].flow.shape[1] == flow_columns(1, 4) == 16
    batch, totals = collate(samples), obj.totals(samples)
    loss, parts = obj(net, batch, totals)

    def step_score(graph, k, inputs):
        noise = [graph.flow[:, 4 + 6 * k + 3 * s:4 + 6 * k + 3 * s + 3] for s in range(2)]
        a, b = (net(x, noise=z).pos for x, z in zip(inputs, noise, strict=True))
        target = graph.target if k == 0 else graph.future[:, 0]
        return marginal_score(a, b, target, graph, graph.edge_index), (a, b)

    expected = []
    for g in samples:
        g = collate([g])
        first, (a, b) = step_score(g, 0, [g, g])
        if not torch.isfinite(g.future).all():
            expected.append(first)
            continue
        moved = []
        for x in (a, b):
            edge_index, edge_attr = build_edges(x, CUTOFF, g.bonds)
            moved.append(g.replace(pos=x, vel=x - g.pos, edge_index=edge_index, edge_attr=edge_attr[:, :0]))
        second, _ = step_score(g, 1, moved)
        expected.append(0.5 * (first + second))
    expected = torch.cat(expected).sum() / len(samples)
    torch.testing.assert_close(parts["score"], expected.detach(), atol=1e-12, rtol=1e-10)
    split = [obj(net, collate(p), totals)[0] for p in (samples[:1], samples[1:])]
    torch.testing.assert_close(split[0] + split[1], loss, atol=1e-12, rtol=1e-10)
    grads = torch.autograd.grad(obj._score(net, batch).sum(), [p for p in net.parameters() if p.requires_grad],
                                allow_unused=True)
    assert any(gr is not None and float(gr.abs().sum()) > 0 for gr in grads)


def test_score_steps_needs_the_score_the_cutoff_and_the_future_frames():
    import pytest

    from eghn_md.errors import UsageError

    with pytest.raises(UsageError, match="score_steps = 2 scores nothing without score_weight"):
        TrainConfig(score_steps=2)
    for bad in (0, 1.5, True):
        with pytest.raises(UsageError, match="score_steps must be"):
            TrainConfig(score_weight=1.0, score_steps=bad)
    with pytest.raises(UsageError, match="cutoff"):
        FlowObjective(config=TrainConfig(score_weight=1.0, score_steps=2))
    obj = FlowObjective(config=TrainConfig(score_weight=1.0, score_steps=3), cutoff=CUTOFF)
    sample = obj.draw(_samples((True,))[0], seed=0, epoch=1, index=0)  # one future frame, two needed
    with pytest.raises(ValueError, match="score_steps = 3 needs 2 future frames"):
        obj(_net(), sample, obj.totals([sample]))

"""The pair bias of a generative model (:mod:`eghn_md.models.pair_bias`, ``eghn-md fit-bias``): the move is
−rate × the gradient of the tabulated potentials (autograd reference), sampling with it stays E(3)-equivariant and
permutation equivariant with its pairs relabelled (float64), the densities and the Boltzmann correction, the fit
through the command line (a checkpoint that loads with its bias and samples other frames), and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _bias import INDEX, N, bias_graphs, bias_model, sampler
from _data import run_cli
from eghn_md.data.batch import collate
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig
from eghn_md.models.collective_bias import CV_DENSITY_WIDTH
from eghn_md.models.pair_bias import (
    KNOTS,
    MAX_SHIFT,
    R_MIN,
    SPACING,
    bias_shift,
    boltzmann_correction,
    knots,
    pair_densities,
    pair_energy,
)
from eghn_md.testing.equivariance import assert_equivariant, permute_batch
from eghn_md.testing.synthetic import random_graph

#: the generative model shipped for the demo
SHIPPED = Path(__file__).resolve().parents[1] / "examples" / "models" / "adk_eq_generative.pt"


def _table(seed=0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(INDEX.shape[1], KNOTS, generator=gen, dtype=torch.float64)


def test_the_move_is_minus_rate_times_the_gradient_of_the_tables():
    x = 3.0 * torch.randn(2 * N, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ptr = torch.tensor([0, N, 2 * N])
    table = _table(scale=0.05)  # small: no node reaches MAX_SHIFT
    xr = x.clone().requires_grad_(True)
    i = torch.cat([INDEX[0], INDEX[0] + N])
    j = torch.cat([INDEX[1], INDEX[1] + N])
    pair_energy((xr[i] - xr[j]).norm(dim=1), table.repeat(2, 1)).sum().backward()
    move = bias_shift(x, index=INDEX, table=table, ptr=ptr, rate=0.7)
    assert float(move.norm(dim=1).max()) < MAX_SHIFT
    torch.testing.assert_close(move, -0.7 * xr.grad, atol=1e-12, rtol=0)
    big = bias_shift(x, index=INDEX, table=100 * table, ptr=ptr, rate=0.7)
    assert float(big.norm(dim=1).max()) == pytest.approx(MAX_SHIFT)


def test_the_tables_are_linear_between_knots_and_continued_beyond():
    table = _table()
    r = torch.tensor([R_MIN - 2.0, R_MIN + 0.5 * SPACING, float(knots()[-1]) + 3.0, 5.0, 5.0], dtype=torch.float64)
    got = pair_energy(r, table)
    assert float(got[1]) == pytest.approx(0.5 * float(table[1, 0] + table[1, 1]))
    slope0 = float(table[0, 1] - table[0, 0]) / SPACING
    assert float(got[0]) == pytest.approx(float(table[0, 0]) - 2.0 * slope0)
    slope_end = float(table[2, -1] - table[2, -2]) / SPACING
    assert float(got[2]) == pytest.approx(float(table[2, -1]) + 3.0 * slope_end)


def test_biased_sampling_is_e3_equivariant_and_reads_the_bias():
    model = bias_model(table=_table())
    batch = collate(bias_graphs())
    assert_equivariant(sampler(model), batch, atol=1e-10, reflections=True, n_trials=2)
    biased = sampler(model)(batch)
    assert float((sampler(bias_model())(batch) - biased).abs().max()) > 1e-3
    flat = bias_model(table=torch.zeros(INDEX.shape[1], KNOTS, dtype=torch.float64))
    torch.testing.assert_close(sampler(flat)(batch), sampler(bias_model())(batch), atol=1e-12, rtol=0)


def test_biased_sampling_is_permutation_equivariant_with_the_pairs_relabelled():
    g = bias_graphs(1)[0]
    base = sampler(bias_model(table=_table()))(g)
    pg, perm = permute_batch(g, seed=3)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(N)
    got = sampler(bias_model(index=inv[INDEX], table=_table()))(pg)
    torch.testing.assert_close(got, base[perm], atol=1e-10, rtol=1e-10)


def test_densities_sum_to_one_and_sit_at_the_distance():
    frames = np.zeros((5, 3, 3))
    frames[:, 1, 0] = 6.0
    frames[:, 2, 0] = 40.0  # beyond the knots: counted on the last one
    p = pair_densities(frames, torch.tensor([[0, 0], [1, 2]]))
    torch.testing.assert_close(p.sum(dim=1), torch.ones(2, dtype=torch.float64))
    assert float(knots()[int(p[0].argmax())]) == pytest.approx(6.0)
    assert int(p[1].argmax()) == KNOTS - 1


def test_the_correction_rises_where_the_model_goes_too_often():
    ref = pair_densities(np.array([[[0, 0, 0], [6.0, 0, 0]]] * 4), torch.tensor([[0], [1]]))
    model = pair_densities(np.array([[[0, 0, 0], [9.0, 0, 0]]] * 4), torch.tensor([[0], [1]]))
    c = boltzmann_correction(model, ref, weight=0.5)
    k6, k9 = (int(torch.argmin((knots() - r).abs())) for r in (6.0, 9.0))
    assert float(c[0, k9]) > 0.4 and float(c[0, k6]) < -0.4
    assert float(c.abs().max()) <= 1.0 + 1e-12 and abs(float(c.mean())) < 1e-12
    with pytest.raises(ValueError, match="weight"):
        boltzmann_correction(model, ref, weight=0.0)


def test_a_graph_of_another_size_and_bad_shapes_are_refused():
    model = bias_model(table=_table())
    other = random_graph(N + 2, node_in=4, edge_in=2, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=f"graph 1 of the batch has {N + 2} nodes.*fitted for {N} nodes"):
        model(collate([bias_graphs(1)[0], other]))
    with pytest.raises(ValueError, match="node numbers must lie in"):
        bias_model(index=INDEX + 3, table=_table())
    with pytest.raises(ValueError, match="expected index"):
        bias_model(table=_table()[:, :5])
    with pytest.raises(UsageError, match="pair bias"):
        ModelConfig(name="eghn", node_in=4, bias_pairs=3, bias_nodes=8)


def test_fit_bias_through_the_command_line(shipped_reference, tmp_path):
    """``eghn-md fit-bias`` on the shipped model's training data stand-in (a few frames of a short equilibrium run
    are not shipped, so a rollout of the shipped model itself is the reference): a checkpoint that loads with its
    bias, records every round and samples other frames than the model without it."""
    shipped, data = SHIPPED, shipped_reference
    out = tmp_path / "bias.pt"
    res = run_cli("fit-bias", shipped, data, "-o", out, "--rounds", "2", "--replicas", "2", "--steps", "3",
                  "--json", "--quiet", "--device", "cpu")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2] and summary["pairs"] > 100
    assert summary["rounds"][-1]["table_max_kT"] > 0
    from eghn_md.train.checkpoint import load_model

    model, ckpt = load_model(out)
    assert model.config.bias_pairs == summary["pairs"] and ckpt.metrics["pair_bias"]["rounds"]
    assert float(model.bias_table.abs().max()) > 0
    assert model.config.bias_collective and float(model.bias_cv_table.abs().max()) > 0  # on by default
    assert all(0 <= r["collective_mismatch"] <= 1 for r in summary["rounds"])
    assert len({r["collective_width"] for r in summary["rounds"]}) == 1  # one step's spread of ξ, in knots
    assert summary["rounds"][0]["collective_width"] >= CV_DENSITY_WIDTH
    again = run_cli("fit-bias", shipped, data, "-o", out, "--rounds", "1")
    assert again.exit_code == 2 and "exists" in again.output and "Traceback" not in again.output
    refined = run_cli("fit-bias", out, data, "-o", tmp_path / "refined.pt", "--rounds", "1", "--replicas", "2",
                      "--steps", "3", "--json", "--quiet", "--device", "cpu")
    assert refined.exit_code == 0, refined.output  # a biased model's fit starts from its own tables
    first = json.loads(refined.stdout)["rounds"][0]
    assert first["table_max_kT"] == pytest.approx(float(model.bias_table.abs().max()), rel=1e-6)
    again, _ = load_model(tmp_path / "refined.pt")
    torch.testing.assert_close(again.bias_cv_weight, model.bias_cv_weight)  # the same ξ, its table refined
    fits = {}
    for scale in (None, "1.5"):
        out = tmp_path / f"plain_{scale}.pt"
        plain = run_cli("fit-bias", shipped, data, "-o", out, "--rounds", "1", "--replicas", "2", "--steps", "3",
                        "--no-collective", "--json", "--quiet", "--device", "cpu",
                        *(() if scale is None else ("--source-scale", scale)))
        assert plain.exit_code == 0, plain.output
        fits[scale] = (load_model(out)[0], json.loads(plain.stdout)["rounds"][0])
    assert not fits[None][0].config.bias_collective
    assert fits[None][0].config.source_scale == model.config.source_scale == 1.0  # the model's own λ, kept
    assert fits["1.5"][0].config.source_scale == 1.5  # the λ its ensembles ran with, kept for the rollout
    assert fits["1.5"][1]["mismatch_mean"] != fits[None][1]["mismatch_mean"]  # same seed, wider steps
    bad = run_cli("fit-bias", shipped, data, "-o", tmp_path / "bad.pt", "--source-scale", "0")
    assert bad.exit_code == 2 and "--source-scale" in bad.output and "Traceback" not in bad.output


def test_fit_bias_writes_the_mean_of_the_last_corrections(shipped_reference, tmp_path):
    """``--average 2`` over two rounds writes the mean of the tables after corrections 1 and 2, which the fits of
    one and two rounds (the same seeds, so the same chains) write on their own; out of range it is refused."""
    from eghn_md.train.checkpoint import load_model

    shipped, data = SHIPPED, shipped_reference
    fitted = {}
    for rounds, average in ((1, 1), (2, 1), (2, 2)):
        out = tmp_path / f"r{rounds}a{average}.pt"
        res = run_cli("fit-bias", shipped, data, "-o", out, "--rounds", str(rounds), "--average", str(average),
                      "--replicas", "2", "--steps", "3", "--seed", "5", "--quiet", "--json", "--device", "cpu")
        assert res.exit_code == 0, res.output
        fitted[rounds, average] = load_model(out)[0]
        last = json.loads(res.stdout)["rounds"][-1]  # the last ensemble samples with the tables written
        assert last["table_max_kT"] == pytest.approx(float(fitted[rounds, average].bias_table.abs().max()), rel=1e-6)
    one, two, mean = fitted[1, 1], fitted[2, 1], fitted[2, 2]
    assert not torch.equal(one.bias_table, two.bias_table)
    torch.testing.assert_close(mean.bias_table, (one.bias_table + two.bias_table) / 2)
    torch.testing.assert_close(mean.bias_cv_table, (one.bias_cv_table + two.bias_cv_table) / 2)
    bad = run_cli("fit-bias", shipped, data, "-o", tmp_path / "bad.pt", "--rounds", "2", "--average", "3")
    assert bad.exit_code == 2 and "average" in bad.output and "[1, --rounds = 2]" in bad.output
    assert "Traceback" not in bad.output


@pytest.fixture(scope="module")
def shipped_reference(tmp_path_factory):
    """A dataset of 40 frames rolled out by the shipped model from the open crystal structure (a stand-in for
    its training run, which is not shipped), preprocessed like a user's trajectory."""
    from MDAnalysisTests.datafiles import PDB_small

    tmp_path = tmp_path_factory.mktemp("shipped_reference")
    roll = run_cli("rollout", SHIPPED, PDB_small, "--steps", "40", "-o", tmp_path / "ref.dcd", "--quiet",
                   "--device", "cpu")
    assert roll.exit_code == 0, roll.output
    res = run_cli("preprocess", tmp_path / "ref.pdb", tmp_path / "ref.dcd", "-o", tmp_path / "ref.h5", "--quiet")
    assert res.exit_code == 0, res.output
    return tmp_path / "ref.h5"


def test_fit_bias_refuses_a_deterministic_model(tiny_run, adk_h5, tmp_path):
    res = run_cli("fit-bias", tiny_run / "model.pt", adk_h5, "-o", tmp_path / "b.pt")
    assert res.exit_code == 2 and "deterministic" in res.output and "Traceback" not in res.output


def test_each_round_continues_the_chains_of_the_last():
    """A replica goes on from its last frame; one the guard stopped starts again from its first start."""
    from eghn_md.rollout.ensemble import EnsembleResult
    from eghn_md.rollout.pair_bias_fit import _chain_ends

    starts = torch.zeros(2, 3, 3, dtype=torch.float64)
    frames = [np.full((4, 3, 3), 1.0, dtype=np.float32), np.full((2, 3, 3), 2.0, dtype=np.float32)]
    frames[0][-1] = 7.0
    ends = _chain_ends(EnsembleResult(frames=frames, stopped=[None, {"step": 2, "reason": "x"}]), starts)
    assert ends.dtype == torch.float64 and float(ends[0].max()) == 7.0 and float(ends[1].abs().max()) == 0.0


def test_fit_bias_config_names_the_bad_value():
    from eghn_md.rollout.pair_bias_fit import FitBiasConfig

    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(UsageError, match="source_scale") as err:
            FitBiasConfig(source_scale=bad)
        assert err.value.params == ("source_scale",)
    assert FitBiasConfig(source_scale=2).source_scale == 2 and FitBiasConfig().source_scale is None

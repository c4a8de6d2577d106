"""The generative model that ``make demo`` ships (examples/models/adk_eq_generative.pt, trained by
examples/models/train_adk_eq_generative.py): it loads through the safe (weights-only) loader, its card matches it,
and an ensemble rollout from the open AdK crystal structure (MDAnalysisTests' adk_open.pdb) stays valid by the
project's validity report and repeats for a seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _data import run_cli

MODEL = Path(__file__).resolve().parents[1] / "examples" / "models" / "adk_eq_generative.pt"
CARD = MODEL.with_suffix(".json")
STEPS, REPLICAS, SEED = 30, 3, 7


@pytest.fixture(scope="module")
def open_pdb():
    from MDAnalysisTests.datafiles import PDB_small  # adk_open.pdb: the open AdK crystal structure, one frame

    return PDB_small


def _read(pdb: Path, dcd: Path) -> np.ndarray:
    import MDAnalysis as mda

    u = mda.Universe(str(pdb), str(dcd))
    return np.stack([u.atoms.positions.copy() for _ in u.trajectory])


def _roll(model: Path, start: str, out: Path, steps: int) -> dict:
    res = run_cli("rollout", model, start, "--steps", steps, "--replicas", REPLICAS, "--seed", SEED, "-o", out,
                  "--device", "cpu", "--json", "--quiet", expect=0)
    return json.loads(res.stdout)


def test_shipped_model_loads_weights_only_and_matches_its_card():
    from eghn_md.models.registry import is_generative
    from eghn_md.train.checkpoint import load_model

    assert MODEL.stat().st_size < 500_000  # shipped in the repository: small
    raw = torch.load(MODEL, map_location="cpu", weights_only=True)  # no pickled objects in it
    assert "train_state" not in raw  # the model, not the optimiser
    model, ckpt = load_model(MODEL)  # through load_checkpoint: the digest verifies
    assert is_generative(model) and not model.training
    card = json.loads(CARD.read_text())
    assert card["model_file"] == MODEL.name and card["preset"] == "generative"
    asked = card["config"]["model"]  # the resolved preset + overrides; the checkpoint adds the data's sizes
    assert asked and {k: ckpt.model_config[k] for k in asked} == asked
    assert card["config"]["data"]["horizon"] == ckpt.data_config["horizon"] == 10


def test_shipped_model_ensemble_from_open_pdb_is_valid_and_repeats(open_pdb, tmp_path):
    s = _roll(MODEL, open_pdb, tmp_path / "a.dcd", STEPS)
    assert s["replicas"] == REPLICAS and s["steps_done"] == [STEPS] * REPLICAS
    assert s["stopped"] == [None] * REPLICAS
    v = s["validity"]
    assert v["n_replicas"] == REPLICAS and v["n_frames"] == REPLICAS * (STEPS + 1)
    assert v["frames_with_break"] == 0 and v["frames_with_clash"] == 0
    a = [_read(tmp_path / "a.pdb", tmp_path / f"a_r{k}.dcd") for k in range(REPLICAS)]
    assert all(x.shape == (STEPS + 1, 214, 3) for x in a)
    assert np.abs(a[0][-1] - a[1][-1]).max() > 0.1  # the replicas sample different paths
    assert np.sqrt(((a[0][1:] - a[0][:-1]) ** 2).sum(-1).mean(-1)).min() > 0.1  # it moves every step [Å]
    short = 5  # the same seed repeats the ensemble: a shorter rollout is its prefix
    _roll(MODEL, open_pdb, tmp_path / "b.dcd", short)
    for k in range(REPLICAS):
        np.testing.assert_array_equal(_read(tmp_path / "b.pdb", tmp_path / f"b_r{k}.dcd"), a[k][: short + 1])


@pytest.fixture(scope="module")
def eq_h5(tmp_path_factory):
    """A short equilibrium AdK reference run (the demo's generator, frames 1.6 ps apart), preprocessed."""
    pytest.importorskip("openmm")
    d = tmp_path_factory.mktemp("eq")
    # 20 rollout steps of ΔT = 10 frames need 201 frames after the start
    run_cli("bench", "adk-equilibrium", "generate", "-o", d, "--frames", 220, "--seed", 2, "-q", expect=0)
    run_cli("preprocess", d / "adk_cg.pdb", d / "run-2.dcd", "-o", d / "run-2.h5", "-q", expect=0)
    return d / "run-2.h5"


def test_evaluate_rollouts_of_a_generative_model_repeat(eq_h5):
    """``evaluate --rollout`` (what the demo prints its RMSF r with) samples from a fixed seed: the same numbers on
    every call, whatever the caller's random state."""
    from eghn_md.rollout.assess import assess_model_rollouts

    def run() -> dict:
        return assess_model_rollouts(MODEL, [eq_h5], split="all", steps=20, n_starts=1, device="cpu")

    a = run()
    torch.manual_seed(12345)  # whatever the caller's random state: the same samples
    b = run()
    assert a["validity"]["frames_with_break"] == 0 and a["validity"]["frames_with_clash"] == 0
    assert a["rmsd_A"]["model"] == b["rmsd_A"]["model"]
    assert a["distribution"]["rmsf"]["pearson_r"] == b["distribution"]["rmsf"]["pearson_r"]
    assert a["rmsd_A"]["model"][-1] > 0.5  # it moved: the sampler ran [Å]


def test_evaluate_samples_reports_calibration_and_follows_the_source_scale(eq_h5, tmp_path):
    """``evaluate --samples`` judges the samples as a distribution: errors of their mean and of one sample, the
    coverage of their central 50 % beside a calibrated sampler's, and a wider source (``--source-scale``) widens
    them; the same seed repeats."""
    def sampled(*extra) -> dict:
        res = run_cli("evaluate", MODEL, eq_h5, "--split", "val", "--samples", 4, "--per-node", tmp_path / "e.csv",
                      "--json", "--quiet", "--device", "cpu", *extra, expect=0)
        out = json.loads(res.stdout)
        return {**out["sampled"], "source_scale": out["source_scale"], "static": out["static"]}  # λ behind them

    a, b, wide = sampled(), sampled(), sampled("--source-scale", 2.0)
    assert a == b  # seed 0 both times
    assert a["n_samples"] == 4 and a["ideal"] == pytest.approx(0.3) and a["source_scale"] == 1.0
    assert 0.0 <= a["coverage50"] <= 1.0 and a["mse_one"] > 0 and a["spread"] > 0
    assert wide["source_scale"] == 2.0 and wide["spread"] > 1.5 * a["spread"]
    assert a["data_step_msd"] == pytest.approx(a["static"])  # the truth's step is what "static" errs by
    assert a["step_ratio"] == pytest.approx(a["step_msd"] / a["data_step_msd"]) and wide["step_msd"] > a["step_msd"]
    assert sampled("--seed", 1)["mse_one"] != a["mse_one"]
    few = sampled("--sample-steps", 1)
    assert few["sample_steps"] == 1 and a["sample_steps"] is None and few["mse_one"] != a["mse_one"]


def test_evaluate_calibrate_finds_the_source_scale_of_calibrated_samples(eq_h5, tmp_path):
    """``evaluate --calibrate``: passes at several λ with one seed, the λ nearest the ideal coverage kept, and the
    errors, samples and rollouts reported at it."""
    res = run_cli("evaluate", MODEL, eq_h5, "--split", "val", "--samples", 4, "--calibrate", "--per-node",
                  tmp_path / "e.csv", "--json", "--quiet", "--device", "cpu", expect=0)
    out = json.loads(res.stdout)
    cal, lams = out["calibration"], [p["source_scale"] for p in out["calibration"]["passes"]]
    assert lams[0] == 1.0 and len(set(lams)) == len(lams) and 1 < len(lams) <= 8  # from the checkpoint's λ
    near = min(cal["passes"], key=lambda p: abs(p["coverage50"] - cal["ideal"]))
    assert cal["source_scale"] == near["source_scale"] == out["source_scale"]
    assert out["sampled"]["coverage50"] == near["coverage50"] and cal["ideal"] == pytest.approx(0.3)
    # the same search again from another λ ends at a λ as well calibrated (one seed: coverage grows with λ)
    again = run_cli("evaluate", MODEL, eq_h5, "--split", "val", "--samples", 4, "--calibrate", "--source-scale",
                    near["source_scale"], "--per-node", tmp_path / "e.csv", "--json", "--quiet", "--device", "cpu",
                    expect=0)
    assert json.loads(again.stdout)["calibration"]["passes"][0]["coverage50"] == near["coverage50"]


def test_the_source_scale_search_brackets_then_interpolates(monkeypatch):
    """:func:`calibrate_source_scale` on a coverage known in closed form (rising with λ): widened by 1.5 until
    bracketed, then interpolated to the tolerance; a coverage that never rises far enough stops after the passes
    allowed, at the best λ tried."""
    from eghn_md.train import evaluate as ev
    from eghn_md.train.checkpoint import load_model

    model, _ = load_model(MODEL)
    for curve, expect_bracket in ((lambda lam: min(1.0, 0.441 * (lam / 1.8) ** 0.8), True),
                                  (lambda lam: 0.2 + 0.0 * lam, False)):
        monkeypatch.setattr(ev, "sample_calibration", lambda m, w, curve=curve, **kw: {
            "coverage50": curve(float(m.config.source_scale)), "mse_mean": 1.0, "mse_one": 2.0, "spread": 1.0,
            "ideal": ev.ideal_coverage(kw["n_samples"]), "n_samples": kw["n_samples"]})
        model.set_source_scale(1.0)
        c = ev.calibrate_source_scale(model, [], n_samples=16)
        lams = [p["source_scale"] for p in c["passes"]]
        assert lams[:3] == [1.0, 1.5, 2.25] and c["bracketed"] is expect_bracket
        assert float(model.config.source_scale) == c["source_scale"]
        if expect_bracket:
            assert abs(c["coverage50"] - c["ideal"]) <= ev.CALIBRATION_TOLERANCE and 1.6 < c["source_scale"] < 2.0
        else:
            assert len(lams) == ev.MAX_CALIBRATION_PASSES and c["coverage50"] == 0.2


def test_ideal_coverage_is_what_samples_of_the_truths_distribution_score():
    from eghn_md.train.evaluate import ideal_coverage

    gen = torch.Generator().manual_seed(0)
    draws = torch.randn(16 + 1, 40000, generator=gen, dtype=torch.float64)  # 16 samples and the truth, per column
    lo, hi = torch.quantile(draws[:16], 0.25, dim=0), torch.quantile(draws[:16], 0.75, dim=0)
    share = float(((draws[16] >= lo) & (draws[16] <= hi)).double().mean())
    assert ideal_coverage(16) == pytest.approx(7.5 / 17) and share == pytest.approx(ideal_coverage(16), abs=0.01)


def test_evaluate_samples_refuses_a_deterministic_model(tiny_run, adk_h5, tmp_path):
    res = run_cli("evaluate", tiny_run / "model.pt", adk_h5, "--samples", 4, "--per-node", tmp_path / "e.csv")
    assert res.exit_code == 2 and "--samples" in res.output and "deterministic" in res.output
    assert "Traceback" not in res.output
    res = run_cli("evaluate", tiny_run / "model.pt", adk_h5, "--sample-steps", 2, "--per-node", tmp_path / "e.csv")
    assert res.exit_code == 2 and "give --samples too" in res.output and "Traceback" not in res.output
    res = run_cli("evaluate", tiny_run / "model.pt", adk_h5, "--calibrate", "--per-node", tmp_path / "e.csv")
    assert res.exit_code == 2 and "--calibrate" in res.output and "deterministic" in res.output
    assert "Traceback" not in res.output

"""`eghn-md evaluate --rollout N [--states A.pdb B.pdb]`: rollouts judged as a distribution against the data."""

from __future__ import annotations

import json
import warnings

import h5py
import pytest

from tests._data import datafile, run_cli


def _ca_pdb(name: str, path, drop_last: bool = False) -> str:
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ca = mda.Universe(datafile(name)).select_atoms("name CA")
        (ca[:-1] if drop_last else ca).write(str(path))
    return str(path)


@pytest.fixture(scope="module")
def state_pdbs(tmp_path_factory):
    d = tmp_path_factory.mktemp("states")
    return _ca_pdb("PDB_closed", d / "closed.pdb"), _ca_pdb("PDB_small", d / "open.pdb")


def _json(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])


def test_evaluate_rollout_reports_the_distribution_with_states(tiny_run, adk_h5, state_pdbs, device):
    res = run_cli("evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all", "--rollout", "20",
                  "--rollout-starts", "2", "--states", *state_pdbs, "--json", "--device", str(device))
    r = _json(res)["rollout"]
    d = r["distribution"]
    done = [x["steps_done"] for x in r["rollouts"]]  # the divergence guard may stop a tiny model's rollout early
    with h5py.File(adk_h5, "r") as f:
        n_frames = len(f["trajectories"][list(f["trajectories"])[0]]["positions"])
    h = d["reference_frames_apart"]
    assert d["n_frames"] == {"reference": len(range(0, n_frames, h)), "model": sum(done) + 2}
    s = d["states"]
    assert s["definition"]["names"] == ["closed", "open"]
    assert s["reference"]["transitions"] == {"closed_to_open": 1, "open_to_closed": 0}  # the DIMS transition
    assert s["model"]["n_steps"] == sum(done)
    assert d["floor"]["floor_kind"] == "halves"
    assert -1 <= d["rmsf"]["pearson_r"] <= 1 and d["pca"]["w2_A"] >= 0 and 0 <= d["js"]["rg"] <= 1
    assert (tiny_run / "ensemble_all.png").stat().st_size > 10_000 and d["figure"].endswith("ensemble_all.png")


def test_evaluate_rollout_table_and_short_rollouts(tiny_run, adk_h5, device):
    res = run_cli("evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all", "--rollout", "20",
                  "--rollout-starts", "1", "--device", str(device))
    assert res.exit_code == 0, res.output
    assert "Rollouts as a distribution" in res.output and "PC1–PC2 W2" in res.output and "floor" in res.output
    short = _json(run_cli("evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all",
                          "--rollout", "6", "--rollout-starts", "1", "--json", "--device",
                          str(device)))
    assert "distribution" not in short["rollout"]  # < 20 steps: no distribution


def test_states_errors_are_one_line(tiny_run, adk_h5, state_pdbs, tmp_path):
    short = _ca_pdb("PDB_small", tmp_path / "short.pdb", drop_last=True)
    res = run_cli("evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all", "--rollout", "20",
                  "--rollout-starts", "1", "--states", state_pdbs[0], short)
    assert res.exit_code == 1 and "213 Cα nodes but the data has 214" in res.output and "--states" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    res = run_cli("evaluate", str(tiny_run / "model.pt"), adk_h5, "--states", *state_pdbs)
    assert res.exit_code == 2 and "--rollout" in res.output
    res = run_cli("evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all", "--rollout", "5",
                  "--states", *state_pdbs)
    assert res.exit_code == 2 and "--states needs rollouts of at least 20 steps" in res.output


def test_distribution_table_shows_population_errors_and_the_gap():
    """The states rows of ``evaluate --rollout``'s table: each population with its error, and the gap in errors."""
    from rich.console import Console

    from cli._ensemble_table import print_distribution

    def summary(p_open, se):
        return {"population": {"closed": 1 - p_open, "open": p_open}, "population_se": se, "dt_ps": 16.0,
                "per_1000_steps": {"closed_to_open": 30.0, "open_to_closed": 30.0},
                "mean_dwell_ps": {"closed": 230.0, "open": 270.0}}

    gap = {"state": "open", "model_minus_reference": 0.13, "se": 0.06, "z": 2.17}
    d = {"n_frames": {"model": 16008, "reference": 1251}, "n_trajectories": {"model": 8},
         "reference_frames_apart": 10, "rmsf": {"pearson_r": 0.97, "ratio": 1.1}, "pca": {"w2_A": 0.8},
         "js": {"rg": 0.3, "pairwise_distances": 0.1},
         "states": {"model": summary(0.67, 0.021), "reference": summary(0.54, None), "population_gap": gap,
                    "definition": {"names": ["closed", "open"]}}}
    console = Console(record=True, width=160)
    print_distribution(console, d)
    text = console.export_text()
    assert "population open ± standard error" in text and "0.67 ± 0.02" in text
    row = next(line for line in text.splitlines() if "population open ±" in line)
    assert "0.54 ±" not in row and "0.54" in row  # no error without complete visits of both states
    assert "+0.13 ± 0.06 (+2.2 SE)" in text

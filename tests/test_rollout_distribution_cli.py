"""`eghn-md evaluate --rollout N [--states A.pdb B.pdb]`: rollouts judged as a distribution against the data."""

from __future__ import annotations

import json
import warnings

import h5py
import pytest
from click.testing import CliRunner

from cli.main import main
from tests._data import datafile


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
    res = CliRunner().invoke(main, ["evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all", "--rollout", "20",
                                    "--rollout-starts", "2", "--states", *state_pdbs, "--json", "--device",
                                    str(device)])
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
    res = CliRunner().invoke(main, ["evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all", "--rollout", "20",
                                    "--rollout-starts", "1", "--device", str(device)])
    assert res.exit_code == 0, res.output
    assert "Rollouts as a distribution" in res.output and "PC1–PC2 W2" in res.output and "floor" in res.output
    short = _json(CliRunner().invoke(main, ["evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all",
                                            "--rollout", "6", "--rollout-starts", "1", "--json", "--device",
                                            str(device)]))
    assert "distribution" not in short["rollout"]  # < 20 steps: no distribution


def test_states_errors_are_one_line(tiny_run, adk_h5, state_pdbs, tmp_path):
    short = _ca_pdb("PDB_small", tmp_path / "short.pdb", drop_last=True)
    res = CliRunner().invoke(main, ["evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all", "--rollout", "20",
                                    "--rollout-starts", "1", "--states", state_pdbs[0], short])
    assert res.exit_code == 1 and "213 Cα nodes but the data has 214" in res.output and "--states" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["evaluate", str(tiny_run / "model.pt"), adk_h5, "--states", *state_pdbs])
    assert res.exit_code == 2 and "--rollout" in res.output
    res = CliRunner().invoke(main, ["evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all", "--rollout", "5",
                                    "--states", *state_pdbs])
    assert res.exit_code == 2 and "--states needs rollouts of at least 20 steps" in res.output

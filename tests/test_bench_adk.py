"""`eghn-md bench adk`: the paper's AdK protocol, smoke-tested on the AdK files MDAnalysisTests ships."""

from __future__ import annotations

import json

import pytest

from _data import run_cli


def test_bench_adk_runs_the_protocol_on_given_files(adk, tmp_path):
    res = run_cli(
                  "bench", "adk", "-o", str(tmp_path), "--topology", adk["psf"], "--trajectory", adk["dcd"],
                  "--model", "linear", "--model", "eghn", "--seeds", "1", "--preset", "tiny", "--horizon", "5",
                  "--epochs", "1", "--select", "protein and name CA", "--device", "cpu", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"linear", "eghn"}
    assert out["eghn"]["paper"] == pytest.approx(1.843) and out["linear"]["paper"] == pytest.approx(2.890)
    assert out["eghn"]["windows"] == 10 and out["eghn"]["mse"][0] > 0
    assert (tmp_path / "adk.h5").is_file() and (tmp_path / "eghn_s1" / "model.pt").is_file()


def test_bench_adk_without_mdanalysisdata_says_how_to_get_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "MDAnalysisData", None)  # import fails as if not installed
    res = run_cli("bench", "adk", "-o", str(tmp_path / "x"), "--quiet")
    assert res.exit_code == 2
    assert "MDAnalysisData" in res.output and "fetch_adk_equilibrium" in res.output
    assert not (tmp_path / "x").exists()


def test_bench_adk_needs_both_files(adk, tmp_path):
    res = run_cli("bench", "adk", "-o", str(tmp_path), "--topology", adk["psf"], "--quiet")
    assert res.exit_code == 2 and "--trajectory" in res.output

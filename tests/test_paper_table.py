"""`examples/paper/mcomplex_table.py`: the whole M-complex campaign at a tiny size (generation, cells, resume,
table)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "paper" / "mcomplex_table.py"
EXE = Path(sys.executable).parent / "eghn-md"


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--columns", "3x3", "--systems", "1,5",
           "--models", "linear,egnn", "--seeds", "1,2", "--epochs", "3x3=2", "--n-val", "4", "--jobs", "2",
           "--exe", str(EXE), "--extra-gen", "--n-train 6 --n-test 5 --sample-every 4",
           "--extra-train", "--hidden 8 --n-layers 1 --batch-size 3", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not EXE.exists(), reason="needs the installed eghn-md console script")
def test_campaign_runs_every_cell_resumes_and_renders(tmp_path):
    res = _run(tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    cells = sorted(p.name for p in (tmp_path / "cells").glob("*.json"))
    assert len(cells) == 8  # 1 column x 2 system kinds x 2 models x 2 seeds
    doc = json.loads((tmp_path / "cells" / "mcomplex_3_3_j5_egnn_s2.json").read_text())
    assert doc["settings"]["epochs"] == 2 and doc["settings"]["hidden"] == 8 and doc["sizes"]["val"] == 4
    assert doc["sizes"]["test"] == 5 and doc["runs"][0]["seed"] == 2
    table = (tmp_path / "mcomplex_table.md").read_text()
    assert "#### single system" in table and "#### multiple systems (J = 5)" in table
    # the paper's values sit beside ours: single (3,3) EGNN 12.69, multiple (3,3) EGNN 13.33
    assert "/ 12.69" in table and "/ 13.33" in table and "not run" not in table
    # a second run finds every cell done and runs nothing
    again = _run(tmp_path)
    assert again.returncode == 0 and "8 of 8 cells already done; 0 to run" in again.stdout


def test_bad_column_is_refused(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--columns", "4x4", "--dry-run"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "valid: 3x3, 5x5, 5x10, 10x10" in res.stderr

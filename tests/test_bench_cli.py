"""`eghn-md bench` end to end at tiny sizes (generation, training table, JSON, errors)."""

from __future__ import annotations

import json

from _data import run_cli


def test_mcomplex_generate_and_train(tmp_path):
    out = tmp_path / "mc.npz"
    r = run_cli("bench", "mcomplex", "generate", "-o", str(out), "-M", "2", "--mean-size", "3", "--n-train", "6",
                "--n-val", "4", "--n-test", "4", "--sample-every", "4", "--json", "-q")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["samples"] == {"train": 6, "val": 4, "test": 4}
    r = run_cli("bench", "mcomplex", "generate", "-o", str(out))
    assert r.exit_code == 2 and "already exists" in r.output
    r = run_cli("bench", "mcomplex", "train", str(out), "--model", "linear", "--model", "egnn", "--seeds", "1,2",
                "--epochs", "2", "--batch-size", "3", "--hidden", "8", "--n-layers", "1", "--json", "-q")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert [s["model"] for s in doc["summary"]] == ["linear", "egnn"]
    assert len(doc["runs"]) == 4 and all(run["test_mse"] > 0 for run in doc["runs"])
    r = run_cli("bench", "mcomplex", "train", str(out), "--model", "linear", "--seeds", "1", "-q")
    assert r.exit_code == 0 and "linear" in r.output
    assert "—" in r.output  # (2, 3) is not a column of the paper's table


def test_mocap_train_table():
    r = run_cli("bench", "mocap", "train", "--model", "linear", "--model", "gnn", "--seeds", "3", "--epochs", "1",
                "--hidden", "8", "--n-layers", "1", "--max-train", "10", "--max-eval", "6", "-q")
    assert r.exit_code == 0, r.output
    assert "linear" in r.output and "gnn" in r.output and "50.90" not in r.output  # paper column: egnn not run


def test_bad_seeds_is_usage_error():
    r = run_cli("bench", "mocap", "train", "--seeds", "a,b")
    assert r.exit_code == 2


def test_max_val_limits_validation_only_and_multi_system_paper_column(tmp_path):
    out = tmp_path / "mc.npz"
    r = run_cli("bench", "mcomplex", "generate", "-o", str(out), "-M", "3", "--mean-size", "3", "--system-types",
                "5", "--n-train", "6", "--n-val", "5", "--n-test", "4", "--sample-every", "4", "-q")
    assert r.exit_code == 0, r.output
    r = run_cli("bench", "mcomplex", "train", str(out), "--model", "linear", "--seeds", "1", "--max-val", "2",
                "--json", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["sizes"] == {"train": 6, "val": 2, "test": 4}
    r = run_cli("bench", "mcomplex", "train", str(out), "--model", "linear", "--seeds", "1", "-q")
    assert "35.91 ± 0.01" in r.output  # the paper's multiple-systems (3, 3) Linear


def test_paper_row_columns():
    from eghn_md.benchmarks.mcomplex import paper_row

    assert paper_row(10, 10, 1)["eghn"] == (13.09, 0.66)
    assert paper_row(10, 10, 5)["eghn"] == (13.11, 0.92)
    assert paper_row(3, 3, 2) is None and paper_row(4, 4, 1) is None


def test_schedule_option_reaches_the_training_config():
    from cli.bench import _settings

    p = {"epochs": 3, "batch_size": 100, "lr": 5e-4, "schedule": "none", "eval_every": 5, "patience": 50,
         "device": "cpu", "hidden": 16, "n_layers": 2, "clusters": None, "eghn_layers": 1}
    assert _settings(p, 3).train.schedule == "none"
    res = run_cli("bench", "mcomplex", "train", "x.npz", "--schedule", "linear")
    assert res.exit_code == 2 and "cosine" in res.output and "none" in res.output


def test_bench_options_fall_back_to_the_benchmark_settings(monkeypatch):
    """`--help` shows BENCH_TRAIN's values, and an option left out is not restated: a changed BENCH_TRAIN (its one
    home) is what `bench` runs with."""
    from eghn_md.benchmarks import runner

    r = run_cli("bench", "mocap", "train", "--help")
    text = " ".join(r.output.split())
    for flag, key in (("--batch-size", "batch_size"), ("--patience", "patience"), ("--eval-every", "eval_every")):
        shown = text[text.index(f"{flag} INTEGER RANGE"):]
        assert shown[:shown.index("[x>=")].endswith(f"[default: {runner.BENCH_TRAIN[key]}] "), (flag, shown[:120])
    monkeypatch.setitem(runner.BENCH_TRAIN, "patience", 7)
    monkeypatch.setitem(runner.BENCH_TRAIN, "batch_size", 4)
    monkeypatch.setitem(runner.BENCH_MODEL, "n_decoder_layers", 2)
    r = run_cli("bench", "mocap", "train", "--model", "linear", "--seeds", "1", "--max-train", "6", "--max-eval",
                "4", "--json", "-q")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)["settings"]
    assert (s["patience"], s["batch_size"], s["n_decoder_layers"]) == (7, 4, 2)
    assert s["lr"] == runner.TrainConfig().lr and s["device"] == runner.BENCH_TRAIN["device"]
    r = run_cli("bench", "mocap", "train", "--model", "linear", "--seeds", "1", "--max-train", "6", "--max-eval",
                "4", "--patience", "3", "--json", "-q")
    assert json.loads(r.output)["settings"]["patience"] == 3  # an option given still wins

"""``eghn-md bench``: the paper's benchmarks (M-complex simulation, CMU motion capture, AdK equilibrium).

\b
  eghn-md bench mcomplex generate -o mc33.npz --n-complex 3 --mean-size 3
  eghn-md bench mcomplex train mc33.npz --model linear --model egnn --seeds 1,2,3 --epochs 200
  eghn-md bench mocap train --model egnn --seeds 1,2,3 --epochs 200
"""

from __future__ import annotations

import click

from cli._common import emit_json, json_option, lit, overwrite_option, plain_log, quiet_option, stderr_console
from eghn_md.choices import DEVICES, MODEL_NAMES, PRESET_NAMES, SCHEDULES


def _parse_seeds(value: str) -> list[int]:
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not seeds:
        raise click.BadParameter("give at least one seed")
    return seeds


def _defaults():
    """The benchmark settings an option left out falls back to (:data:`~eghn_md.benchmarks.runner.BENCH_TRAIN` and
    ``BENCH_MODEL`` over TrainConfig's and ModelConfig's defaults): read here for ``--help``, never passed on."""
    from eghn_md.benchmarks.runner import BenchSettings

    return BenchSettings.create()


def _train_options(f):
    from eghn_md.benchmarks.runner import BENCH_MODELS, BENCH_SEEDS
    from eghn_md.models.registry import models_with

    d = _defaults()
    t, flat, pooled = d.train, d.model_fields("egnn"), d.model_fields(models_with(pools=True)[0])

    def shown(value) -> str:
        return f"[default: {value}]"

    opts = [
        click.option("--model", "models", multiple=True, type=click.Choice(MODEL_NAMES),
                     help=f"Model(s) to train; repeat the option for several. {shown(', '.join(BENCH_MODELS))}"),
        click.option("--seeds", default=None,
                     help=f"Comma-separated training seeds. {shown(','.join(map(str, BENCH_SEEDS)))}"),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help=shown(t.epochs)),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help=shown(t.batch_size)),
        click.option("--lr", type=float, default=None, help=shown(t.lr)),
        click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
                     help="Learning-rate schedule (the authors' scripts use none: a constant lr). "
                          + shown(t.schedule)),
        click.option("--hidden", type=click.IntRange(min=1), default=None, help=shown(flat["hidden"])),
        click.option("--n-layers", type=click.IntRange(min=1), default=None,
                     help=f"Layers of the flat models (EGHN uses --eghn-layers per level). {shown(flat['n_layers'])}"),
        click.option("--eghn-layers", type=click.IntRange(min=1), default=None,
                     help=f"Layers per level of the pooling models. {shown(pooled['n_layers'])}"),
        click.option("--clusters", type=click.IntRange(min=1), default=None,
                     help=f"EGHN clusters K (default: the number of complexes for M-complex, {d.model['n_clusters']} "
                          "for mocap)."),
        click.option("--eval-every", type=click.IntRange(min=1), default=None, help=shown(t.eval_every)),
        click.option("--patience", type=click.IntRange(min=0), default=None,
                     help=f"Evaluations without improvement before stopping (0: never). {shown(t.patience)}"),
        click.option("--max-train", type=click.IntRange(min=1), default=None,
                     help="Use only this many training samples."),
        click.option("--max-eval", type=click.IntRange(min=1), default=None,
                     help="Use only this many validation and test samples."),
        click.option("--max-val", type=click.IntRange(min=1), default=None,
                     help="Use only this many validation samples (the test set stays whole unless --max-eval)."),
        click.option("--device", type=click.Choice(DEVICES), default=None, help=shown(t.device)),
        json_option,
        quiet_option,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _max_val(p: dict):
    limits = [n for n in (p["max_eval"], p["max_val"]) if n is not None]
    return min(limits) if limits else None


def _given(p: dict, keys) -> dict:
    """The options of ``keys`` the user gave (None: left to the benchmark settings)."""
    return {k: p[k] for k in keys if p.get(k) is not None}


def _settings(p: dict, n_clusters: int):
    """The benchmark settings with the options the user gave on top; ``n_clusters``: the data's K when
    ``--clusters`` is not given (None: the settings')."""
    from eghn_md.benchmarks.runner import BenchSettings
    from eghn_md.models.registry import models_with

    model = {**_given(p, ("hidden", "n_layers")), **_given({"n_clusters": p["clusters"] or n_clusters},
                                                            ("n_clusters",))}
    pooled = {m: {"n_layers": p["eghn_layers"]} for m in models_with(pools=True)} if p.get("eghn_layers") else {}
    return BenchSettings.create(
        train=_given(p, ("epochs", "batch_size", "lr", "schedule", "eval_every", "patience", "device")),
        model=model, model_overrides=pooled)


def _run_and_report(title: str, train, val, test, p: dict, settings, paper) -> None:
    from eghn_md.benchmarks.runner import BENCH_MODELS, BENCH_SEEDS, format_table, run_benchmark, summarise

    console = stderr_console(p["quiet"])
    console.print(f"{lit(title)}: {len(train)} train / {len(val)} val / {len(test)} test samples")
    seeds = _parse_seeds(p["seeds"]) if p["seeds"] is not None else list(BENCH_SEEDS)
    rows = run_benchmark(train, val, test, models=list(dict.fromkeys(p["models"] or BENCH_MODELS)), seeds=seeds,
                         settings=settings, log=plain_log(console))
    summary = summarise(rows)
    if p["as_json"]:
        emit_json({"benchmark": title, "settings": settings.to_dict(), "runs": rows, "summary": summary,
                   "sizes": {"train": len(train), "val": len(val), "test": len(test)}})
    else:
        click.echo(format_table(summary, paper))


@click.group()
def bench() -> None:
    """The paper's benchmarks: M-complex simulation and CMU motion capture (AdK: see `eghn-md train`)."""


from cli.bench_equilibrium import adk_equilibrium  # noqa: E402

bench.add_command(adk_equilibrium)


@bench.group()
def mcomplex() -> None:
    """Charged particles in rigid complexes (EGHN paper, Table 1)."""


@mcomplex.command()
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Output .npz file.")
@click.option("--n-complex", "-M", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--mean-size", type=click.IntRange(min=2), default=3, show_default=True, help="N / M.")
@click.option("--system-types", type=click.IntRange(min=1), default=1, show_default=True,
              help="1: single system; 5: the paper's 'multiple systems'.")
@click.option("--n-train", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--n-val", type=click.IntRange(min=0), default=2000, show_default=True)
@click.option("--n-test", type=click.IntRange(min=0), default=2000, show_default=True)
@click.option("--dynamics", type=click.Choice(["published", "rigid"]), default="published", show_default=True,
              help="'published': the authors' rigid-body approximations (matches the paper's Linear error); "
                   "'rigid': Newton–Euler with the inertia tensor.")
@click.option("--sample-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Integration steps between samples (input = sample 10, target = sample 25).")
@click.option("--seed", type=int, default=43, show_default=True)
@overwrite_option
@json_option
@quiet_option
def generate(output, n_complex, mean_size, system_types, n_train, n_val, n_test, dynamics, sample_every, seed,
             overwrite, as_json, quiet) -> None:
    """Simulate the train / val / test systems and write them to OUTPUT."""
    from eghn_md.benchmarks import mcomplex as mc
    from eghn_md.io.atomic import check_output_path

    check_output_path(output, overwrite=overwrite)
    cfg = mc.MComplexConfig(n_complex=n_complex, mean_size=mean_size, system_types=system_types, n_train=n_train,
                            n_val=n_val, n_test=n_test, dynamics=dynamics, sample_every=sample_every, seed=seed)
    console = stderr_console(quiet)
    data = mc.generate(cfg, log=plain_log(console))
    mc.save(data, output)
    summary = {"output": str(output), "system_sizes": data["meta"]["system_sizes"],
               "samples": {s: int(len(data[f"{s}_ptr"]) - 1) for s in mc.SPLITS}, "config": data["meta"]["config"]}
    if as_json:
        emit_json(summary)
    else:
        console.print(f"wrote {lit(output)}: {summary['samples']}, complex sizes {summary['system_sizes']}")


@mcomplex.command("train")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@_train_options
def mcomplex_train(data, **p) -> None:
    """Train and test models on an M-complex file; prints test MSE (×10⁻²) mean ± std over seeds."""
    from eghn_md.benchmarks import mcomplex as mc

    raw = mc.load(data)
    cfg = raw["meta"]["config"]
    train = mc.MComplexDataset(raw, "train", max_samples=p["max_train"])
    val = mc.MComplexDataset(raw, "val", max_samples=_max_val(p))
    test = mc.MComplexDataset(raw, "test", max_samples=p["max_eval"])
    key = (cfg["n_complex"], cfg["mean_size"])
    paper = mc.paper_row(*key, cfg["system_types"])
    _run_and_report(f"M-complex {key} ({cfg['system_types']} system type(s), {cfg['dynamics']} dynamics)",
                    train, val, test, p, _settings(p, cfg["n_complex"]), paper)


@bench.group()
def mocap() -> None:
    """CMU motion capture, subject #9 run (EGHN paper, Table 2)."""


@mocap.command("train")
@click.option("--delta-frame", type=click.IntRange(min=1), default=30, show_default=True)
@_train_options
def mocap_train(delta_frame, **p) -> None:
    """Train and test models on the packaged mocap data; prints test MSE (×10⁻²) mean ± std over seeds."""
    from eghn_md.benchmarks import mocap as mo

    train = mo.MocapDataset("train", delta_frame=delta_frame, max_samples=p["max_train"])
    val = mo.MocapDataset("val", delta_frame=delta_frame, max_samples=_max_val(p))
    test = mo.MocapDataset("test", delta_frame=delta_frame, max_samples=p["max_eval"])
    _run_and_report("MoCap subject 9 run", train, val, test, p, _settings(p, None), mo.PAPER_TABLE)


def _adk_defaults() -> dict:
    """The keyword defaults of :func:`~eghn_md.benchmarks.adk.run_adk` (its signature is their one home)."""
    import inspect

    from eghn_md.benchmarks.adk import run_adk

    params = inspect.signature(run_adk).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


_ADK = _adk_defaults()


@bench.command("adk")
@click.option("-o", "--output", "out_dir", default="runs/bench/adk", show_default=True,
              type=click.Path(file_okay=False), help="Working directory (dataset + one run per model and seed).")
@click.option("--topology", default=None, type=click.Path(dir_okay=False),
              help="Topology (default: MDAnalysisData adk_equilibrium).")
@click.option("--trajectory", default=None, type=click.Path(dir_okay=False), help="Trajectory (with --topology).")
@click.option("--model", "models", multiple=True, type=click.Choice(MODEL_NAMES),
              help=f"Model(s); repeat the option for several. [default: {', '.join(_ADK['models'])}]")
@click.option("--seeds", default=None,
              help=f"Comma-separated training seeds. [default: {','.join(map(str, _ADK['seeds']))}]")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None, help=f"[default: {_ADK['preset']}]")
@click.option("--select", default=None, help=f"Node selection (the paper: backbone). [default: {_ADK['select']}]")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the preset's epoch budget.")
@click.option("--horizon", type=click.IntRange(min=1), default=None, help="Override ΔT (paper: 15 frames).")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="Where to train. [default: the preset's, else auto]")
@overwrite_option
@json_option
@quiet_option
def adk(out_dir, topology, trajectory, models, seeds, preset, select, epochs, horizon, device, overwrite, as_json,
        quiet) -> None:
    """The paper's protein-MD protocol (AdK equilibrium, backbone, ΔT = 15, 8 Å, 0.6/0.2/0.2, `paper` preset).

    \b
    pip install 'eghn-md[adk]'
    python -c "from MDAnalysisData import datasets; datasets.fetch_adk_equilibrium()"   # once, downloads
    eghn-md bench adk --model eghn --model egnn --model linear --seeds 1,2,3 --device cuda
    """
    from eghn_md.benchmarks.adk import run_adk

    console = stderr_console(quiet)
    progress_factory = None
    if not quiet:
        from cli._progress import RichProgress

        progress_factory = lambda label: RichProgress(console=console, description=label)  # noqa: E731
    overrides = {"train": _given({"device": device, "epochs": epochs}, ("device", "epochs")),
                 "data": _given({"horizon": horizon}, ("horizon",))}
    given = _given({"models": tuple(models) or None, "seeds": None if seeds is None else _parse_seeds(seeds),
                    "preset": preset, "select": select}, ("models", "seeds", "preset", "select"))
    results = run_adk(out_dir, topology=topology, trajectory=trajectory, overrides=overrides, overwrite=overwrite,
                      progress_factory=progress_factory, **given)
    if as_json:
        emit_json(results)
        return
    from rich.table import Table

    t = Table(title="AdK: test MSE per coordinate [Å²] (paper's metric)")
    for col in ("model", "ours (mean ± std)", "paper", "static", "const. velocity", "windows"):
        t.add_column(col)
    for m, r in results.items():
        t.add_row(m, f"{r['mse'][0]:.3f} ± {r['mse'][1]:.3f}", "-" if r["paper"] is None else f"{r['paper']:.3f}",
                  f"{r['static']:.3f}", f"{r['const_velocity']:.3f}", str(r["windows"]))
    console.print(t)

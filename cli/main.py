"""The ``eghn-md`` console script: a Click group whose sub-commands live one per module and load lazily.

Every command is thin: parse options, build a config, call one library function, print a summary. Errors derived
from :class:`eghn_md.errors.EghnError` become a one-line message (exit 1 for data errors, 2 for usage errors);
``--debug`` shows the traceback instead. Ctrl-C exits with 130.
"""

from __future__ import annotations

import importlib
import sys

import click

from eghn_md import __version__

# name -> "module:attribute"; imported only when the command runs (keeps `eghn-md --help` fast: no torch import).
_COMMANDS = {
    "preprocess": ("cli.preprocess:preprocess", "Turn topology + trajectories into a residue-graph dataset (HDF5)."),
    "info": ("cli.info:info", "Summarise a dataset (.h5) or a trained model (.pt)."),
    "train": ("cli.train:train", "Train a surrogate model on one or more datasets."),
    "evaluate": ("cli.evaluate:evaluate", "MSE at the horizon of a model on a dataset split, with baselines."),
    "rollout": ("cli.rollout:rollout", "Autoregressive prediction from a frame, written as DCD + PDB."),
    "fit-bias": ("cli.fit_bias:fit_bias", "Fit a generative model's pair bias to the training run's pair distances."),
    "export": ("cli.export:export", "Export pooling clusters (PDB/PyMOL/VMD) or convert predicted trajectories."),
    "plot": ("cli.plot:plot", "Figures of a training run or rollout (loss curves, RMSD vs time, errors)."),
    "bench": ("cli.bench:bench", "The paper's benchmarks: M-complex, motion capture, AdK equilibrium."),
}


class LazyGroup(click.Group):
    """A group that imports each sub-command's module only when that command is invoked or its help is shown."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str):
        if cmd_name not in _COMMANDS:
            return None
        target, _ = _COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a command whose module is not part of this build
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in _COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        from cli._common import error_line
        from eghn_md.errors import EghnError

        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except EghnError as exc:
            if debug:
                raise
            click.echo(f"Error: {error_line(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except OSError as exc:  # missing/unreadable files, full disk, I/O errors: one line, exit 1
            if debug:
                raise
            click.echo(f"Error: {_os_error_line(exc)}", err=True)
            ctx.exit(1)


def _os_error_line(exc: OSError) -> str:
    """``No space left on device [ENOSPC]: '/path' (free some space …)`` from any :class:`OSError`."""
    import errno

    text = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    code = errno.errorcode.get(exc.errno) if isinstance(exc.errno, int) else None
    line = f"{text} [{code}]" if code else text
    if exc.filename:
        line += f": {str(exc.filename)!r}"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        line += " (free some space or write the output elsewhere; existing outputs were left unchanged)"
    return line


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="eghn-md")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """eghn-md: learn an E(n)-equivariant graph hierarchy network (EGHN) surrogate of a protein trajectory.

    \b
    Typical session:
      eghn-md preprocess adk.psf adk.dcd -o adk.h5
      eghn-md train adk.h5 -o run --preset tiny
      eghn-md evaluate run/model.pt adk.h5
      eghn-md rollout run/model.pt adk.psf adk.dcd --steps 20 -o pred.dcd
      eghn-md export clusters run/model.pt adk.psf adk.dcd -o clusters/
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

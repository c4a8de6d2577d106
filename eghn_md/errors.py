"""Exception types that the command line turns into one-line messages.

``UsageError`` (exit code 2): the user asked for something impossible (bad option value, wrong file kind, an output
that exists without `overwrite`). ``DataError`` (exit code 1): the input data is unusable (unreadable file, NaN
coordinates, mismatched atom counts, a checkpoint that does not fit). ``ResourceError`` (exit code 1): the machine
ran out of something (GPU/CPU memory) and a smaller setting would work. Library code raises these with a message that
names the bad value and, where there is a finite set, the valid choices.

Messages speak in the library's parameter names, never in command-line flags: a parameter is written in backquotes
(`` `steps` ``) and listed in ``params``; ``str(error)`` shows the bare name (``steps must be >= 1``) and
:meth:`EghnError.message` can show another spelling of it (the command line passes its table of flags, so the
user reads ``--steps must be >= 1``).

Problems that do not stop a command are warnings: :func:`warn` hands them to the command's log (one line the user
reads) or, for a library caller without one, to :mod:`warnings`.
"""

from __future__ import annotations

import warnings
from typing import Callable, Mapping, Optional, Sequence

__all__ = ["EghnError", "UsageError", "DataError", "DivergenceError", "ResourceError", "warn"]


class EghnError(Exception):
    """Base class of every error eghn-md reports to the user without a traceback."""

    exit_code: int = 1

    def __init__(self, message: str = "", *, params: Sequence[str] = ()) -> None:
        self.template = str(message)
        self.params = tuple(params)  #: the parameters the message names, as `name` in ``template``
        super().__init__(self.message())

    def message(self, names: Optional[Mapping[str, str]] = None) -> str:
        """The message with every parameter of :attr:`params` spelled as ``names[param]`` (default: its name)."""
        out = self.template
        for p in self.params:
            out = out.replace(f"`{p}`", (names or {}).get(p, p))
        return out


class UsageError(EghnError, ValueError):
    """Invalid option, argument or combination of them (exit code 2)."""

    exit_code = 2


class DataError(EghnError):
    """Input data that cannot be used: unreadable, inconsistent or non-finite (exit code 1)."""

    exit_code = 1


class DivergenceError(EghnError):
    """A model's numbers ran away (exit code 1): a loss term or prediction of training became non-finite (the
    message names the epoch, the step and the term, and what to change), or an autoregressive rollout produced
    non-finite or exploding coordinates."""

    exit_code = 1


class ResourceError(EghnError):
    """Out of memory (or another machine limit); the message says which setting to lower (exit code 1)."""

    exit_code = 1


def warn(message: str, log: Optional[Callable[[str], None]] = None, *, stacklevel: int = 3) -> None:
    """Report ``message`` (``"warning: …"``): through ``log`` when given (the command line prints it), else as a
    :class:`RuntimeWarning` attributed to the caller's caller (``stacklevel``)."""
    if log is not None:
        log(message)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)

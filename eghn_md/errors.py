"""Exception types that the command line turns into one-line messages.

``UsageError`` (exit code 2): the user asked for something impossible (bad option value, wrong file kind, an output
that exists without ``--overwrite``). ``DataError`` (exit code 1): the input data is unusable (unreadable file, NaN
coordinates, mismatched atom counts, a checkpoint that does not fit). ``ResourceError`` (exit code 1): the machine
ran out of something (GPU/CPU memory) and a smaller setting would work. Library code raises these with a message that
names the bad value and, where there is a finite set, the valid choices.
"""

from __future__ import annotations

__all__ = ["EghnError", "UsageError", "DataError", "DivergenceError", "ResourceError"]


class EghnError(Exception):
    """Base class of every error eghn-md reports to the user without a traceback."""

    exit_code: int = 1


class UsageError(EghnError, ValueError):
    """Invalid option, argument or combination of them (exit code 2)."""

    exit_code = 2


class DataError(EghnError):
    """Input data that cannot be used: unreadable, inconsistent or non-finite (exit code 1)."""

    exit_code = 1


class DivergenceError(DataError):
    """An autoregressive rollout produced non-finite or exploding coordinates."""


class ResourceError(EghnError):
    """Out of memory (or another machine limit); the message says which setting to lower (exit code 1)."""

    exit_code = 1

"""Atomic output files: write to a temporary sibling, fsync, then rename over the destination.

An interrupted run (exception, SIGINT, SIGKILL, full disk) therefore never leaves a partial file that looks whole,
and a previous complete output stays intact until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from eghn_md.errors import UsageError

__all__ = ["atomic_path", "check_output_path", "fsync_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (after a rename) to disk where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_output_path(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Validate an output path before any work is done.

    Raises :class:`UsageError` if the file exists and ``overwrite`` is false, or if its directory does not exist.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"output {str(path)!r} already exists; pass `overwrite` to replace it", params=("overwrite",))
    if path.is_dir():
        raise UsageError(f"output {str(path)!r} is a directory, expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise UsageError(f"directory {str(parent)!r} of output {str(path)!r} does not exist")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it to ``path``.

    The temporary name keeps the destination's extension (``suffix`` overrides it) so that writers that pick a
    format from the extension (MDAnalysis, mdtraj) still work. On any exception (KeyboardInterrupt included) the
    temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    ext = suffix if suffix is not None else "".join(path.suffixes[-1:])
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{ext}", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise

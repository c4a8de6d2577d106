"""Build ``.devkit/``: what a CUDA machine with PyTorch but without the MD packages or a network needs for the GPU
checks of ``device_check.sh`` (the test suite on CUDA, ``train_speed.py --device cuda``).

* ``.devkit/wheels/``: binary wheels of MDAnalysis, mdtraj and the dependencies of theirs that such images lack
  (mda-xdrlib, mmtf-python), at the versions installed here, for ``--python`` (default 3.12) on manylinux x86-64,
  fetched with ``pip download`` from the package registry (run it where the registry is reachable);
* ``.devkit/site/MDAnalysisTests/``: a data-only stand-in for MDAnalysisTests (its wheel-less 60 MB sdist does not
  fit a transfer): the data files this repository names (every ``MDAnalysisTests.datafiles`` attribute that occurs
  as a word in ``tests/``, ``examples/`` or ``eghn_md/``), copied from the MDAnalysisTests installed here, and a
  ``datafiles`` module that points at them under the same names.

``.devkit/PYTHON`` records the Python version the wheels are for. ``device_check.sh`` installs the wheels (and this
package, editable) into that machine's Python and puts ``.devkit/site`` on ``PYTHONPATH``; the packages the tests
need beyond these (PyYAML, hypothesis, tqdm, msgpack, threadpoolctl, h5py, click, rich, …) must be there already,
as they are in the device machines' image here, and the script says which are missing before it runs anything.

Usage (from the repository root): ``python examples/benchmarks/device_kit.py [--python 3.12] [--out .devkit]``
or ``make device-kit``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ("MDAnalysis", "mdtraj", "mda-xdrlib", "mmtf-python")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def download_wheels(dest: Path, python: str) -> list:
    """``pip download`` of :data:`WHEELS` at this environment's versions into ``dest``; returns the files."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):  # no stale version beside the new one
        old.unlink()
    specs = [f"{name}=={metadata.version(name)}" for name in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", python,
           "--implementation", "cp", "-d", str(dest)] + [a for p in PLATFORMS for a in ("--platform", p)] + specs
    subprocess.run(cmd, check=True)
    return sorted(dest.glob("*.whl"))


def used_datafiles() -> dict:
    """``{name: path}`` of every MDAnalysisTests.datafiles entry named in this repository's code."""
    from MDAnalysisTests import datafiles

    known = {n: getattr(datafiles, n) for n in dir(datafiles) if n[:1].isupper()}
    known = {n: p for n, p in known.items() if isinstance(p, str) and os.path.isfile(p)}
    words = set()
    for folder in ("tests", "examples", "eghn_md"):
        for f in (ROOT / folder).rglob("*.py"):
            words |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", f.read_text(encoding="utf-8")))
    return {n: known[n] for n in sorted(words & set(known))}


def write_datafiles(dest: Path, files: dict) -> int:
    """The stand-in package under ``dest`` (``MDAnalysisTests/``); returns the bytes of data copied."""
    import MDAnalysisTests

    src_root = Path(MDAnalysisTests.__file__).parent
    pkg = dest / "MDAnalysisTests"
    if pkg.exists():
        shutil.rmtree(pkg)
    (pkg / "data").mkdir(parents=True)
    lines = ['"""Data-only stand-in for MDAnalysisTests, built by examples/benchmarks/device_kit.py."""', "",
             "import os", "", "_HERE = os.path.dirname(os.path.abspath(__file__))", ""]
    size = 0
    for name, path in files.items():
        rel = Path(path).resolve().relative_to(src_root.resolve())
        target = pkg / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        size += target.stat().st_size
        lines.append(f"{name} = os.path.join(_HERE, {str(rel)!r})")
    (pkg / "__init__.py").write_text(f'"""MDAnalysisTests data stand-in ({len(files)} files)."""\n')
    (pkg / "datafiles.py").write_text("\n".join(lines) + "\n")
    return size


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python", default="3.12", help="Python version of the CUDA machine (default 3.12)")
    p.add_argument("--out", type=Path, default=ROOT / ".devkit")
    a = p.parse_args(argv)
    wheels = download_wheels(a.out / "wheels", a.python)
    (a.out / "PYTHON").write_text(a.python + "\n")
    files = used_datafiles()
    size = write_datafiles(a.out / "site", files)
    wsize = sum(w.stat().st_size for w in wheels)
    print(f"{a.out}: {len(wheels)} wheels ({wsize / 2**20:.1f} MiB), {len(files)} MDAnalysisTests data files "
          f"({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()

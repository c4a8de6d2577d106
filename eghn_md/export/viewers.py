"""Viewer scripts for pooling clusters: a PyMOL ``.pml`` and a VMD ``.tcl`` that colour ``clusters.pdb`` by cluster.

Both scripts find ``clusters.pdb`` next to themselves (PyMOL: ``__script__``; VMD: ``[info script]``), so they work
from any working directory: ``pymol OUTDIR/clusters.pml`` or ``vmd -e OUTDIR/clusters.tcl``. Clusters are selected
through the B-factor column, which holds each residue's cluster id (−1 for atoms outside every node residue).

Colour choice. Up to 8 clusters use the Okabe-Ito palette (Okabe & Ito 2008), which stays distinguishable under the
common colour-vision deficiencies; 9 use Paul Tol's "muted" scheme (also colour-blind safe). No categorical palette
of more than ~9 colours stays distinct for colour-blind readers, so beyond that Tol's "light" scheme is appended
(up to 17 distinct colours) and then colours repeat: use the named selections (``cluster_3``) or ``clusters.csv``
to tell such clusters apart. Colours go to the clusters that actually hold residues (in cluster-id order), not to
all K of the model, so a model whose nodes use 6 of its 20 clusters gets the safe 6-colour palette.
``matplotlib``'s ``tab10``/``tab20`` are not used: several of their pairs merge for deuteranopes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Sequence

from eghn_md.errors import DataError, UsageError
from eghn_md.io.atomic import atomic_path

__all__ = [
    "OKABE_ITO", "TOL_MUTED", "TOL_LIGHT", "NONE_COLOUR", "cluster_palette", "hex_to_rgb", "write_pml", "write_tcl",
    "render_pymol", "pymol_available",
]  # fmt: skip

# Okabe-Ito without black (black cartoons hide the fold); order puts the most separated hues first.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
TOL_MUTED = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499")
TOL_LIGHT = ("#77AADD", "#EE8866", "#EEDD88", "#FFAABB", "#99DDFF", "#44BB99", "#BBCC33", "#AAAA00")
NONE_COLOUR = "#BBBBBB"  # atoms outside every node residue (B-factor −1)

# VMD colour ids redefined for the clusters: the 16 "extra" ids first, then basic ones except gray (2) and white (8)
_VMD_IDS = tuple(range(17, 33)) + tuple(i for i in range(0, 17) if i not in (2, 8))
_VMD_NONE_ID = 2  # gray


def cluster_palette(n: int) -> list[str]:
    """``n`` hex colours for ``n`` clusters (see the module docstring for the choice); repeats beyond 17."""
    if n < 0:
        raise UsageError(f"number of clusters must be >= 0, got {n}")
    if n <= len(OKABE_ITO):
        base: Sequence[str] = OKABE_ITO
    elif n <= len(TOL_MUTED):
        base = TOL_MUTED
    else:
        base = TOL_MUTED + TOL_LIGHT
    return [base[i % len(base)] for i in range(n)]


def hex_to_rgb(colour: str) -> tuple[float, float, float]:
    """``"#RRGGBB"`` → (r, g, b) in [0, 1]."""
    c = colour.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colour {colour!r} is not #RRGGBB")
    return tuple(int(c[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


def _b_range(k: int) -> tuple[float, float]:
    return k - 0.5, k + 0.5


def write_pml(path: str | Path, *, pdb_name: str, clusters: Sequence[int], colours: Sequence[str],
              has_unassigned: bool = False, title: str = "") -> Path:
    """Write a PyMOL script that loads ``pdb_name`` (beside the script), shows cartoon and colours every cluster.

    Args:
        clusters: cluster ids present (their B-factor value); one selection ``cluster_<id>`` each.
        colours: one ``#RRGGBB`` per entry of ``clusters``.
        has_unassigned: the PDB has atoms with B-factor −1 (outside the node residues): coloured grey.
    """
    if len(colours) != len(clusters):
        raise ValueError(f"{len(colours)} colours for {len(clusters)} clusters")
    obj = "clusters"
    lines = [
        f"# PyMOL script written by eghn-md: {title}".rstrip(": "),
        f"# Colours {obj} by learned pooling cluster (B-factor = cluster id, occupancy = assignment probability).",
        f"# Usage: pymol {Path(path).name}   (from any directory; {pdb_name} is loaded from beside this script)",
        "python",
        "import os",
        "from pymol import cmd",
        "_here = os.path.dirname(os.path.abspath(globals().get('__script__') or 'clusters.pml'))",
        f"cmd.load(os.path.join(_here, {pdb_name!r}), {obj!r})",
        "python end",
        f"hide everything, {obj}",
        f"show cartoon, {obj}",
        f"show sticks, {obj} and not polymer and not solvent",
        "set cartoon_discrete_colors, 1",
        "bg_color white",
    ]
    if has_unassigned:
        r, g, b = hex_to_rgb(NONE_COLOUR)
        lines += [f"set_color eghn_none, [{r:.3f}, {g:.3f}, {b:.3f}]",
                  f"select no_cluster, {obj} and b < -0.5", "color eghn_none, no_cluster"]
    for k, col in zip(clusters, colours, strict=True):
        r, g, b = hex_to_rgb(col)
        lo, hi = _b_range(int(k))
        lines += [
            f"set_color eghn_c{k}, [{r:.3f}, {g:.3f}, {b:.3f}]",
            f"select cluster_{k}, {obj} and b > {lo:g} and b < {hi:g}",
            f"color eghn_c{k}, cluster_{k}",
        ]
    lines += ["deselect", f"orient {obj}", ""]
    return _write(path, "\n".join(lines))


def write_tcl(path: str | Path, *, pdb_name: str, clusters: Sequence[int], colours: Sequence[str],
              has_unassigned: bool = False, title: str = "") -> Path:
    """Write a VMD script: load ``pdb_name`` (beside the script), one NewCartoon representation per cluster.

    Each cluster's ColorID is redefined (``color change rgb``) to its palette entry; ids 17–32 first.
    """
    if len(colours) != len(clusters):
        raise ValueError(f"{len(colours)} colours for {len(clusters)} clusters")
    lines = [
        f"# VMD script written by eghn-md: {title}".rstrip(": "),
        "# Colours the structure by learned pooling cluster (beta = cluster id, occupancy = assignment probability).",
        f"# Usage: vmd -e {Path(path).name}   (from any directory; {pdb_name} is loaded from beside this script)",
        "set eghn_dir [file dirname [file normalize [info script]]]",
        f"set molid [mol new [file join $eghn_dir {pdb_name}] type pdb waitfor all]",
        "mol rename $molid clusters",
        "mol delrep 0 $molid",
        "color Display Background white",
    ]
    if has_unassigned:
        lines += ["mol representation Lines", f"mol color ColorID {_VMD_NONE_ID}",
                  "mol selection {beta < -0.5}", "mol material Opaque", "mol addrep $molid"]
    for i, (k, col) in enumerate(zip(clusters, colours, strict=True)):
        cid = _VMD_IDS[i % len(_VMD_IDS)]
        r, g, b = hex_to_rgb(col)
        lo, hi = _b_range(int(k))
        lines += [
            f"# cluster_{k}",
            f"color change rgb {cid} {r:.3f} {g:.3f} {b:.3f}",
            "mol representation NewCartoon 0.300000 10.000000 4.100000 0",
            f"mol color ColorID {cid}",
            f"mol selection {{beta > {lo:g} and beta < {hi:g}}}",
            "mol material Opaque",
            "mol addrep $molid",
        ]
    lines += ["display resetview", ""]
    return _write(path, "\n".join(lines))


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def pymol_available() -> bool:
    """True if PyMOL (``pymol-open-source``) can be imported by this Python."""
    import importlib.util

    return importlib.util.find_spec("pymol") is not None


def render_pymol(pml: str | Path, png: str | Path, *, width: int = 800, height: int = 600, flat: bool = False,
                 timeout_s: float = 300.0) -> Path:
    """Run ``pml`` in headless PyMOL (a separate process) and ray-trace the scene to ``png``.

    Args:
        flat: flat lighting (no shading, shadows or specular highlights), so pixels carry the palette colours
            exactly; for automated checks.

    Raises:
        UsageError: PyMOL is not installed (``pip install pymol-open-source``).
        DataError: PyMOL failed or wrote no image.
    """
    if not pymol_available():
        raise UsageError("PyMOL is not installed; `pip install pymol-open-source` (extra: eghn-md[pymol])")
    pml, png = Path(pml).resolve(), Path(png)
    settings = ["set ray_opaque_background, 1"]
    if flat:
        settings += ["set ambient, 1", "set direct, 0", "set reflect, 0", "set specular, 0", "set ray_shadows, 0",
                     "set depth_cue, 0", "set light_count, 1", "set antialias, 0"]
    with atomic_path(png) as tmp:
        cmds = [f"@{pml}", *settings, f"png {tmp}, width={int(width)}, height={int(height)}, ray=1", "quit"]
        exe = [sys.executable, "-m", "pymol", "-cqk"]
        try:
            proc = subprocess.run(exe + ["-d", "\n".join(cmds)], capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DataError(f"PyMOL did not finish rendering {str(png)!r} within {timeout_s:g} s") from None
        if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            raise DataError(f"PyMOL failed to render {str(png)!r} (exit {proc.returncode}): {' | '.join(tail)}")
    return png

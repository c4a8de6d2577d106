"""``eghn-md export clusters``: assignment summary, full-atom PDB with cluster B-factors, viewer scripts, render."""

from __future__ import annotations

import csv
import shutil
import warnings

import numpy as np
import pytest

from _data import run_cli
from eghn_md.errors import UsageError
from eghn_md.export.clusters import (
    ClusterAssignment,
    parse_frames,
    residue_clusters,
    summarise_assignments,
)  # fmt: skip
from eghn_md.export.viewers import OKABE_ITO, cluster_palette, hex_to_rgb, pymol_available, render_pymol


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------ pure functions
def test_summary_majority_probability_stability():
    # node 0: cluster 1 in 2 of 3 frames; node 1: always cluster 0
    S = np.array([
        [[0.2, 0.8], [0.9, 0.1]],
        [[0.3, 0.7], [0.6, 0.4]],
        [[0.6, 0.4], [0.7, 0.3]],
    ])
    r = summarise_assignments(S, frames=[5, 6, 7])
    assert r.frames == (5, 6, 7)
    assert r.cluster.tolist() == [1, 0]
    np.testing.assert_allclose(r.stability, [2 / 3, 1.0])
    np.testing.assert_allclose(r.probability, [(0.8 + 0.7 + 0.4) / 3, (0.9 + 0.6 + 0.7) / 3])
    np.testing.assert_allclose(r.soft.sum(axis=1), 1.0)
    assert r.used == [0, 1] and r.n_clusters == 2


def test_summary_tie_goes_to_larger_mean_probability():
    S = np.array([[[0.9, 0.1, 0.0]], [[0.3, 0.6, 0.1]]])  # one vote each for 0 and 1; 0 has the larger mean
    r = summarise_assignments(S)
    assert r.cluster.tolist() == [0] and r.stability.tolist() == [0.5]


def test_single_frame_summary_is_argmax():
    rng = np.random.default_rng(0)
    S = rng.dirichlet(np.ones(5), size=30)
    r = summarise_assignments(S)
    assert np.array_equal(r.cluster, S.argmax(1))
    np.testing.assert_allclose(r.probability, S.max(1))
    assert np.all(r.stability == 1.0)


def test_residue_clusters_majority_of_nodes():
    soft = np.array([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])
    a = ClusterAssignment(frames=(0,), soft=soft, cluster=soft.argmax(1), probability=soft.max(1),
                          stability=np.ones(4))
    per_res = residue_clusters(np.array([10, 10, 10, 11]), a)  # residue 10: nodes 0, 1, 2 → cluster 0 (2 votes)
    assert per_res[10][0] == 0 and per_res[11][0] == 1
    assert per_res[10][1] == pytest.approx((0.7 + 0.6 + 0.2) / 3)
    assert per_res[11][1] == pytest.approx(0.9)


@pytest.mark.parametrize("frame,frames,msg", [
    (None, "3:9", "too early"), (None, "9:5", "empty"), (None, "x:5", "not a range"), (200, None, "out of range"),
    (6, "6:8", "either"), (None, "90:120", "out of range"),
])  # fmt: skip
def test_parse_frames_errors(frame, frames, msg):
    with pytest.raises(UsageError, match=msg):
        parse_frames(frame, frames, horizon=5, n_frames=98)


def test_parse_frames_ok():
    assert parse_frames(None, None, horizon=5, n_frames=98) == [5]
    assert parse_frames(None, "90:", horizon=5, n_frames=98) == list(range(90, 98))
    assert parse_frames(7, None, horizon=5, n_frames=98) == [7]


def test_palette_is_okabe_ito_for_few_clusters_and_distinct_up_to_17():
    assert cluster_palette(5) == list(OKABE_ITO[:5])
    for n in (8, 9, 12, 17):
        assert len(set(cluster_palette(n))) == n
    assert len(cluster_palette(20)) == 20


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def exported(tiny_run, adk, tmp_path_factory):
    out = tmp_path_factory.mktemp("clusters") / "cl"
    res = run_cli("export", "clusters", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"],
                  "--frame", "12", "-o", str(out), "--device", "cpu", "--json")
    assert res.exit_code == 0, res.output
    return out


def test_clusters_pdb_is_full_atom_with_csv_clusters(exported):
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(exported / "clusters.pdb"))
    assert u.atoms.n_atoms == 3341
    rows = _read_csv(exported / "clusters.csv")
    assert len(rows) == 214
    csv_clusters = {int(r["cluster"]) for r in rows}
    assert set(np.unique(u.atoms.tempfactors).astype(int)) == csv_clusters
    for res in u.residues:  # every atom of a residue shares one B-factor and one occupancy
        assert len(np.unique(res.atoms.tempfactors)) == 1
        assert len(np.unique(res.atoms.occupancies)) == 1
    by_resid = {int(r["resid"]): r for r in rows}
    for res in u.residues:
        row = by_resid[int(res.resid)]
        assert res.atoms.tempfactors[0] == int(row["cluster"])
        assert res.atoms.occupancies[0] == pytest.approx(float(row["probability"]), abs=0.006)
    # the csv's probability is the soft assignment of its cluster, and soft rows sum to 1
    k = sum(1 for c in rows[0] if c.startswith("p") and c[1:].isdigit())
    for r in rows:
        p = np.array([float(r[f"p{j}"]) for j in range(k)])
        assert p.sum() == pytest.approx(1.0, abs=1e-3)
        # the chosen cluster holds the largest probability (ties possible at the csv's 4-decimal rounding)
        assert p[int(r["cluster"])] == pytest.approx(p.max(), abs=1e-4)
        assert float(r["probability"]) == pytest.approx(p[int(r["cluster"])], abs=1e-4)
        assert float(r["stability"]) == 1.0


def test_clusters_pdb_positions_are_the_frame(exported, adk):
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(exported / "clusters.pdb"))
        ref = mda.Universe(adk["psf"], adk["dcd"])
    ref.trajectory[12]
    np.testing.assert_allclose(u.atoms.positions, ref.atoms.positions, atol=6e-3)  # PDB keeps 3 decimals


def test_viewer_scripts_select_and_colour_each_cluster(exported):
    clusters = sorted({int(r["cluster"]) for r in _read_csv(exported / "clusters.csv")})
    pml = (exported / "clusters.pml").read_text()
    tcl = (exported / "clusters.tcl").read_text()
    assert "cmd.load(os.path.join(_here, 'clusters.pdb'), 'clusters')" in pml
    assert "show cartoon, clusters" in pml
    colours = cluster_palette(len(clusters))
    for k, col in zip(clusters, colours, strict=True):
        r, g, b = hex_to_rgb(col)
        assert f"select cluster_{k}, clusters and b > {k - 0.5:g} and b < {k + 0.5:g}" in pml
        assert f"set_color eghn_c{k}, [{r:.3f}, {g:.3f}, {b:.3f}]" in pml
        assert f"color eghn_c{k}, cluster_{k}" in pml
        assert f"mol selection {{beta > {k - 0.5:g} and beta < {k + 0.5:g}}}" in tcl
    # VMD: load beside the script, drop the default representation, one NewCartoon rep per cluster with its ColorID
    assert "set eghn_dir [file dirname [file normalize [info script]]]" in tcl
    assert "set molid [mol new [file join $eghn_dir clusters.pdb] type pdb waitfor all]" in tcl
    assert tcl.count("mol delrep 0 $molid") == 1
    assert tcl.count("mol addrep $molid") == len(clusters)
    assert tcl.count("mol representation NewCartoon") == len(clusters)
    ids = [int(line.split()[-1]) for line in tcl.splitlines() if line.startswith("mol color ColorID")]
    assert len(ids) == len(set(ids)) == len(clusters)
    for cid in ids:
        assert f"color change rgb {cid} " in tcl


def test_clusters_png_written(exported):
    import matplotlib.image as mpimg

    img = mpimg.imread(exported / "clusters.png")
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # not blank


def test_frame_range_majority_and_single_frame_range(tiny_run, adk, exported, tmp_path):
    from eghn_md.export.clusters import export_clusters

    one = export_clusters(tiny_run / "model.pt", adk["psf"], [adk["dcd"]], tmp_path / "one", frames="12:13",
                          device="cpu", plot=False)
    assert one["n_frames"] == 1
    assert [r["cluster"] for r in _read_csv(tmp_path / "one" / "clusters.csv")] == \
        [r["cluster"] for r in _read_csv(exported / "clusters.csv")]
    many = export_clusters(tiny_run / "model.pt", adk["psf"], [adk["dcd"]], tmp_path / "many", frames="5:25",
                           device="cpu", plot=False)
    assert many["frames"] == [5, 24] and many["n_frames"] == 20 and many["structure_frame"] == 5
    stab = np.array([float(r["stability"]) for r in _read_csv(tmp_path / "many" / "clusters.csv")])
    k = sum(1 for c in _read_csv(tmp_path / "many" / "clusters.csv")[0] if c[0] == "p" and c[1:].isdigit())
    np.testing.assert_allclose(stab * 20, np.round(stab * 20), atol=2e-3)  # a fraction of the 20 frames
    assert np.all(stab >= 1 / k - 1e-3) and np.all(stab <= 1.0)  # the majority holds at least 1/K of the frames


def test_existing_outputs_need_overwrite(tiny_run, adk, exported, tmp_path):
    out = tmp_path / "cl"
    shutil.copytree(exported, out)
    before = (out / "clusters.csv").read_text()
    args = ["export", "clusters", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"], "-o", str(out), "--no-plot"]
    res = run_cli(*args)
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert (out / "clusters.csv").read_text() == before
    res = run_cli(*args + ["--overwrite", "--frame", "30"])
    assert res.exit_code == 0, res.output
    assert not list(out.glob(".*tmp*"))  # no temporary leftovers


def test_model_without_pooling_is_a_usage_error(adk_h5, adk, tmp_path):
    cfg = tmp_path / "egnn.yaml"
    cfg.write_text("model: {name: egnn, hidden: 8, n_layers: 1}\ndata: {horizon: 5, window_stride: 8}\n"
                   "train: {epochs: 1, batch_size: 8}\n")
    run = tmp_path / "run"
    res = run_cli("train", adk_h5, "-o", str(run), "--config", str(cfg), "--quiet", "--device", "cpu")
    assert res.exit_code == 0, res.output
    res = run_cli("export", "clusters", str(run / "model.pt"), adk["psf"], adk["dcd"],
                  "-o", str(tmp_path / "cl"))
    assert res.exit_code == 2
    assert "has no pooling clusters" in res.output
    assert not (tmp_path / "cl").exists()


# ------------------------------------------------------------------------------------------------ PyMOL
@pytest.mark.skipif(not pymol_available(), reason="PyMOL not installed (pip install pymol-open-source)")
def test_pymol_renders_every_cluster_colour(exported, tmp_path):
    import matplotlib.image as mpimg

    clusters = sorted({int(r["cluster"]) for r in _read_csv(exported / "clusters.csv")})
    png = render_pymol(exported / "clusters.pml", tmp_path / "flat.png", width=480, height=360, flat=True)
    img = mpimg.imread(png)[..., :3]
    found = 0
    for col in cluster_palette(len(clusters)):
        close = np.abs(img - np.array(hex_to_rgb(col))).max(axis=2) < 0.03
        found += int(close.sum() >= 20)
    assert found >= len(clusters)


@pytest.mark.skipif(not pymol_available(), reason="PyMOL not installed (pip install pymol-open-source)")
def test_cli_render_writes_clusters_pymol_png(tiny_run, adk, tmp_path):
    import matplotlib.image as mpimg

    out = tmp_path / "cl"
    res = run_cli("export", "clusters", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"],
                  "-o", str(out), "--render", "--no-plot", "--quiet")
    assert res.exit_code == 0, res.output
    img = mpimg.imread(out / "clusters_pymol.png")[..., :3]
    non_white = (img < 0.95).any(axis=2)
    assert non_white.mean() > 0.05  # the molecule is in the picture

"""Text from a user's file is printed as text: rich markup (``[/b]``) and emoji codes (``4AKE:X:``) in segment IDs,
chain IDs, file names and selections reach the terminal literally through preprocess, info, train, rollout and the
error paths (issue 27)."""

from __future__ import annotations

import json
import warnings

import MDAnalysis as mda
import pytest

from _data import run_cli

#: names that rich would read as a closing tag and as the emoji code ``:X:`` (❌); file names cannot hold a "/", so
#: theirs is an opening tag (rich would hide it and embolden what follows)
MARKUP, EMOJI, FILE_MARKUP = "[/b]", "4AKE:X:", "[bold]"
TINY = """\
model: {name: eghn, hidden: 8, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 3}
data: {horizon: 2, window_stride: 4}
train: {epochs: 1, batch_size: 8, patience: 0}
"""


@pytest.fixture(scope="module")
def marked_system(adk, tmp_path_factory):
    """The AdK Cα atoms as a PDB whose first half is segment ``[/b]`` and second half segment 4AKE, chain X, with a
    24-frame DCD, in a directory whose name is markup too."""
    d = tmp_path_factory.mktemp("markup") / f"in{FILE_MARKUP}{EMOJI}"
    d.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(adk["psf"], adk["dcd"])
        ca = u.select_atoms("name CA")
        half = ca.n_atoms // 2
        u.add_TopologyAttr("chainIDs", [""] * u.atoms.n_atoms)
        seg_b = u.add_Segment(segid=MARKUP)
        seg_x = u.add_Segment(segid="4AKE")
        ca[:half].residues.segments = seg_b
        ca[half:].residues.segments = seg_x
        ca[half:].chainIDs = "X"  # (MDAnalysis writes the first half's empty chain ID as X too)
        top, traj = d / "ca.pdb", d / f"ca{FILE_MARKUP}.dcd"  # the trajectory's name is shown by the progress bar
        ca.write(str(top))
        with mda.Writer(str(traj), ca.n_atoms) as w:
            for _ in u.trajectory[:24]:
                w.write(ca)
    return top, traj


def test_preprocess_and_info_show_markup_and_emoji_codes_literally(marked_system, tmp_path):
    top, traj = marked_system
    h5 = tmp_path / f"a{FILE_MARKUP}.h5"
    res = run_cli("preprocess", top, traj, "-o", h5, "--select", "name CA")
    assert res.exit_code == 0, res.output
    assert MARKUP in res.stderr and "4AKE:X: resid" in res.stderr and f"ca{FILE_MARKUP}" in res.stderr, res.stderr
    res = run_cli("info", h5)
    assert res.exit_code == 0, res.output
    out = " ".join(res.stdout.split())  # the table may wrap long cells
    assert f"{MARKUP}:X: resid" in out and "4AKE:X: resid" in out and "❌" not in out, res.stdout
    assert str(h5.name) in out


def test_train_rollout_and_errors_print_user_text_literally(marked_system, tmp_path):
    top, traj = marked_system
    h5 = tmp_path / "a.h5"
    assert run_cli("preprocess", top, traj, "-o", h5, "--select", "name CA", "--quiet").exit_code == 0
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    run = tmp_path / f"run{FILE_MARKUP}{EMOJI}"
    res = run_cli("train", h5, "-o", run, "--config", cfg, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert f"run{FILE_MARKUP}{EMOJI}/model.pt" in "".join(res.stderr.split()), res.stderr
    pred = tmp_path / f"pred{FILE_MARKUP}.dcd"
    res = run_cli("rollout", run / "model.pt", top, traj, "--steps", "2", "-o", pred, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert str(pred.with_suffix(".pdb").name) in "".join(res.stderr.split()) and "❌" not in res.stderr
    # error paths: a selection and a file name quoted in one-line errors, exit statuses unchanged
    res = run_cli("preprocess", top, traj, "-o", tmp_path / "b.h5", "--select", f"segid {EMOJI}")
    assert res.exit_code != 0 and EMOJI in res.stderr and "Traceback" not in res.output, res.output
    res = run_cli("info", tmp_path / f"missing{FILE_MARKUP}.pt")
    assert res.exit_code != 0 and f"missing{FILE_MARKUP}.pt" in res.stderr, res.output
    res = run_cli("info", tmp_path / f"run{FILE_MARKUP}{EMOJI}" / "model.pt", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)

"""``eghn-published`` is the authors' EGHN: converted weights reproduce their model's outputs to ≤ 1e-9 (float64).

The archives in ``tests/data/authors-eghn-reference/`` (see its README) hold the parameters, inputs and outputs of the
authors' released model (hanjq17/EGHN @ 2152b979) run in float64: ``decoder1`` (single decoder, 3 EGNN layers per
level, 1 pooling layer, K = 3) and ``decoder2`` (stacked decoder, 2 layers per level, 2 pooling layers, K = 4).
The comparison itself is tested to fail when one parameter is zeroed or one output is moved by 1e-6.
"""

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.models.convert import authors_model_config, convert_authors_state_dict, from_authors_state_dict
from eghn_md.models.inputs import bond_edge_scalars

DATA = Path(__file__).parent / "data" / "authors-eghn-reference"
ARCHIVES = ["decoder1", "decoder2"]
TOL = 1e-9


def _load(name):
    with np.load(DATA / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def _params(z):
    return {k[len("param/"):]: v for k, v in z.items() if k.startswith("param/")}


def _batch(z, *, h=None, edge_attr=None) -> GraphBatch:
    n, g = int(z["input/n_node"]), int(z["input/n_graphs"])
    t = lambda k: torch.from_numpy(z[k])  # noqa: E731
    return GraphBatch(pos=t("input/x"), vel=t("input/v"), h=t("input/h") if h is None else h,
                      edge_index=t("input/edge_index"),
                      edge_attr=t("input/edge_fea") if edge_attr is None else edge_attr,
                      batch=torch.arange(g).repeat_interleave(n), ptr=torch.arange(g + 1) * n,
                      local_edge_index=t("input/local_edge_index"))


def _outputs(model, batch) -> dict:
    with torch.no_grad():
        out = model(batch)
    return {"x": out.pos, "h": out.scalars, "assignment": out.assign, "cut_loss": out.reg}


def _max_errors(ours: dict, z) -> dict:
    return {k: float((v - torch.from_numpy(np.asarray(z[f"output/{k}"]))).abs().max()) for k, v in ours.items()}


def assert_matches(ours: dict, z) -> None:
    errors = _max_errors(ours, z)
    bad = {k: e for k, e in errors.items() if not e <= TOL}
    assert not bad, f"outputs differ from the authors' model by more than {TOL}: {bad}"


@pytest.fixture(scope="module", params=ARCHIVES)
def archive(request):
    z = _load(request.param)
    model = from_authors_state_dict(_params(z), json.loads(str(z["config"]))).eval()
    return request.param, z, model


def test_archives_are_the_reference_files_unchanged():
    # SHA-256 of the files as delivered (../shared/data/authors-eghn-reference/)
    expected = {
        "README.md": "2f12b7f4e6aebb1d28dfe95f1f7ae4a38c891b7628adc3f8b13a56efc3108677",
        "decoder1.npz": "18c8031eef894c9738042248fc388537be51178e1e600be63a0cefc013a54a67",
        "decoder2.npz": "c84806ac57811e72a4e7caee85662f3adf137a2daf44666f70bba3db6c4291ac",
    }
    got = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in DATA.iterdir()}
    assert got == expected


def test_converted_model_reproduces_every_output(archive):
    name, z, model = archive
    assert model.config.name == "eghn-published"
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == sum(v.size for v in _params(z).values()) == {"decoder1": 20604, "decoder2": 20343}[name]
    assert next(model.parameters()).dtype == torch.float64
    ours = _outputs(model, _batch(z))
    errors = _max_errors(ours, z)
    assert max(errors.values()) <= TOL, errors
    assert_matches(ours, z)


def test_comparison_fails_when_an_output_moves_by_1e_6(archive):
    _, z, model = archive
    ours = _outputs(model, _batch(z))
    for key in ours:
        moved = {k: v.clone() for k, v in ours.items()}
        moved[key].view(-1)[0] += 1e-6
        with pytest.raises(AssertionError, match=key):
            assert_matches(moved, z)


def test_comparison_fails_when_a_parameter_is_zeroed(archive):
    # one parameter tensor of every kind (stack indices collapsed: `low.#.coord1.weight`,
    # `decoder.layers.#.out.layers.1.bias` …), each zeroed in turn, is caught; skipped: the last pooling layer's
    # vector head, which in the authors' model too reaches no output
    _, z, model = archive
    batch = _batch(z)
    unread = f"pool_net.{model.config.n_pool_layers - 1}.coef."
    state = {k: v.clone() for k, v in model.state_dict().items()}
    kinds = {}
    for key in state:
        if not key.startswith(unread):
            kinds.setdefault(re.sub(r"^([a-z_]+(?:\.layers)?)\.\d+\.", r"\1.#.", key), key)
    assert len(kinds) >= 40
    for key in kinds.values():
        model.load_state_dict({**state, key: torch.zeros_like(state[key])})
        with pytest.raises(AssertionError, match="differ"):
            assert_matches(_outputs(model, batch), z)
    model.load_state_dict(state)
    assert_matches(_outputs(model, batch), z)


def test_paper_features_computed_in_the_model_match_the_authors_inputs(archive):
    # the archives' node scalars are [|v|, charge / max|charge|] and edge scalars [d, d²]: the model computes |v|
    # and [d, d²] itself from the same positions and velocities (speed_feature, edge_features="distance")
    _, z, model = archive
    cfg = dataclasses.replace(model.config, speed_feature=True, edge_features="distance")
    ours_model = build_model(cfg).double().eval()
    ours_model.load_state_dict(model.state_dict())
    h_charge = torch.from_numpy(z["input/h"][:, 1:])
    no_edges = torch.zeros((z["input/edge_index"].shape[1], 0), dtype=torch.float64)
    assert_matches(_outputs(ours_model, _batch(z, h=h_charge, edge_attr=no_edges)), z)
    # and the bonds' scalars looked up from the global edges are the archive's local edge features
    local = bond_edge_scalars(_batch(z)).numpy()
    np.testing.assert_allclose(local, z["input/local_edge_fea"], rtol=0, atol=1e-12)


def test_converter_rejects_incompatible_weights_and_options():
    z = _load("decoder2")
    cfg = json.loads(str(z["config"]))
    params = _params(z)
    with pytest.raises(UsageError, match="lacks 'low_pooling.layers.1"):
        convert_authors_state_dict({k: v for k, v in params.items() if not k.startswith("low_pooling.layers.1.")},
                                   authors_model_config(cfg))
    extra = {**params, "low_force_net.layers.2.coord_net.mlp.0.weight": np.zeros((16, 16))}
    with pytest.raises(UsageError, match="does not use.*layers.2"):
        convert_authors_state_dict(extra, authors_model_config(cfg))
    with pytest.raises(UsageError, match="flat=True.*flat=False"):
        authors_model_config({**cfg, "flat": True})
    with pytest.raises(UsageError, match="lacks n_cluster"):
        authors_model_config({k: v for k, v in cfg.items() if k != "n_cluster"})


def test_paper_adk_size_has_the_authors_parameter_count():
    # hidden 128, 4 EGNN layers per level, 4 pooling layers, 2 decoder layers, K = 20, 2 node and 2 edge scalars
    model = build_model(ModelConfig(name="eghn-published", node_in=2, edge_in=2, hidden=128, n_layers=4,
                                    n_pool_layers=4, n_decoder_layers=2, n_clusters=20))
    assert sum(p.numel() for p in model.parameters()) == 1_904_849
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == (128 * 128 + 128 + 128 * 9 + 9) + 2 * (128 * 128 + 128)  # the two heads no loss reaches


def test_coordinate_clamp_is_100_angstrom_whatever_the_scales():
    # the authors clamp the mean coordinate message at ±100 Å; ours acts in units of disp_scale, so 100 / disp_scale
    for disp in (1.0, 4.0):
        model = build_model(ModelConfig(name="eghn-published", node_in=2, edge_in=2, hidden=8, n_clusters=3,
                                        length_scale=3.0, disp_scale=disp))
        layers = [*model.low, *model.high]
        assert all(layer.clamp * disp == pytest.approx(100.0) for layer in layers)
        assert all(layer.coord_scale * 3.0 == pytest.approx(disp) for layer in layers)

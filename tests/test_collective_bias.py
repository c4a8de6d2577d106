"""The collective term of a pair bias (:mod:`eghn_md.models.collective_bias`): the move is −rate × the gradient of
U(ξ) (autograd reference), the contact component finds the contacts that form and break together, sampling with
the term stays E(3)- and permutation equivariant (float64), a checkpoint keeps it, and wrong shapes are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _bias import INDEX, N, bias_graphs, bias_model, sampler
from eghn_md.data.batch import collate
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig
from eghn_md.models.collective_bias import (
    CONTACT_BETA,
    CONTACT_R,
    CV_DENSITY_WIDTH,
    CV_KNOTS,
    Collective,
    collective_density,
    collective_gradient,
    collective_values,
    contact_component,
    step_width,
)
from eghn_md.models.pair_bias import KNOTS, MAX_SHIFT, bias_shift
from eghn_md.testing.equivariance import assert_equivariant, permute_batch


def _collective(seed=0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    p = INDEX.shape[1]
    w = torch.randn(p, generator=gen, dtype=torch.float64)
    return Collective(weight=w / w.norm(), mean=torch.rand(p, generator=gen, dtype=torch.float64),
                      grid=torch.tensor([-1.5, 1.5], dtype=torch.float64),
                      table=scale * torch.randn(CV_KNOTS, generator=gen, dtype=torch.float64))


def _u(x, ptr, cv):
    """Σ over graphs of U(ξ), ξ and U written out directly (the autograd reference)."""
    total = x.new_zeros(())
    spacing = (cv.grid[1] - cv.grid[0]) / (CV_KNOTS - 1)
    for a, b in zip(ptr[:-1].tolist(), ptr[1:].tolist(), strict=True):
        r = (x[a:b][INDEX[0]] - x[a:b][INDEX[1]]).norm(dim=1)
        xi = ((1.0 / (1.0 + torch.exp(CONTACT_BETA * (r - CONTACT_R))) - cv.mean) * cv.weight).sum()
        s = float((xi.detach() - cv.grid[0]) / spacing)
        k = min(max(int(np.floor(s)), 0), CV_KNOTS - 2)
        u = (xi - cv.grid[0]) / spacing - k
        total = total + cv.table[k] + u * (cv.table[k + 1] - cv.table[k])
    return total


def test_the_gradient_is_that_of_u_of_xi():
    x = 3.0 * torch.randn(2 * N, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ptr = torch.tensor([0, N, 2 * N])
    cv = _collective()
    xr = x.clone().requires_grad_(True)
    _u(xr, ptr, cv).backward()
    got = collective_gradient(x, index=INDEX, collective=cv, ptr=ptr)
    torch.testing.assert_close(got, xr.grad, atol=1e-12, rtol=0)
    small = Collective(weight=cv.weight, mean=cv.mean, grid=cv.grid, table=0.01 * cv.table)
    move = bias_shift(x, index=INDEX, table=torch.zeros(INDEX.shape[1], KNOTS, dtype=torch.float64), ptr=ptr,
                      rate=0.7, collective=small)
    assert float(move.norm(dim=1).max()) < MAX_SHIFT
    torch.testing.assert_close(move, -0.7 * 0.01 * xr.grad, atol=1e-12, rtol=0)
    # the two terms are bounded each on its own: stiff pair tables do not swamp the collective move
    stiff = 1e4 * torch.randn(INDEX.shape[1], KNOTS, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pairs_only = bias_shift(x, index=INDEX, table=stiff, ptr=ptr, rate=0.7)
    both = bias_shift(x, index=INDEX, table=stiff, ptr=ptr, rate=0.7, collective=small)
    assert float(pairs_only.norm(dim=1).max()) == pytest.approx(MAX_SHIFT)
    torch.testing.assert_close(both - pairs_only, -0.7 * 0.01 * xr.grad, atol=1e-12, rtol=0)


def test_the_contact_component_is_the_contacts_that_move_together():
    """Pairs (0, 4) and (1, 5) form and break together, (2, 6) stays formed: the component weighs the first two
    equally, with the sign that makes its largest entry positive, and ξ separates the two states."""
    rng = np.random.default_rng(0)
    frames = np.zeros((40, N, 3))
    frames[:, :, 0] = np.arange(N) * 20.0  # everything else far apart
    closed = np.arange(40) % 2 == 0
    for a, b in ((0, 4), (1, 5), (2, 6)):
        frames[:, b] = frames[:, a] + np.array([5.0, 0, 0])
    frames[~closed, 4, 1] += 8.0
    frames[~closed, 5, 1] += 8.0
    frames += 0.05 * rng.standard_normal(frames.shape)
    index = torch.tensor([[0, 1, 2], [4, 5, 6]])
    cv = contact_component(frames, index)
    assert float(cv.weight.abs()[:2].min()) > 0.69 and abs(float(cv.weight[2])) < 0.05
    assert float(cv.weight[cv.weight.abs().argmax()]) > 0
    xi = collective_values(frames, index, cv)
    assert float(xi[closed].min()) > float(xi[~closed].max())
    assert float(cv.grid[0]) < float(xi.min()) and float(cv.grid[1]) > float(xi.max())
    p = collective_density(xi, cv.grid)
    assert p.shape == (1, CV_KNOTS) and float(p.sum()) == pytest.approx(1.0)
    assert float(cv.table.abs().max()) == 0.0


@pytest.mark.parametrize("frames, pairs", [(40, 300), (500, 120)])
def test_the_leading_direction_is_the_covariances_top_eigenvector(frames, pairs):
    """Fewer frames than pairs (the T × T Gram matrix) or more (the P × P one): the covariance's top eigenvector."""
    from eghn_md.models.collective_bias import _leading_direction

    gen = torch.Generator().manual_seed(frames)
    rows = torch.randn(frames, 1, generator=gen, dtype=torch.float64) @ torch.randn(1, pairs, generator=gen,
                                                                                     dtype=torch.float64)
    rows = rows + 0.3 * torch.randn(frames, pairs, generator=gen, dtype=torch.float64)
    rows = rows - rows.mean(dim=0)
    w = _leading_direction(rows)
    top = torch.linalg.eigh(rows.T @ rows / (frames - 1))[1][:, -1]
    assert float(w.norm()) == pytest.approx(1.0) and abs(float(w @ top)) == pytest.approx(1.0, abs=1e-12)


def test_the_fit_smooths_over_one_steps_spread_of_xi():
    """One pair at 7 Å then 9 Å: ξ moves by w·(s(9) − s(7)) per step, s the switching function written out; the
    width is that in knot spacings (never under the floor), and the density of one value spreads over it."""
    index = torch.tensor([[0], [1]])
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    cv = Collective(weight=one, mean=zero, grid=torch.tensor([-0.1, 0.1], dtype=torch.float64),
                    table=torch.zeros(CV_KNOTS, dtype=torch.float64))
    frames = np.zeros((2, 2, 3))
    frames[0, 1, 0], frames[1, 1, 0] = 7.0, 9.0
    s = [1.0 / (1.0 + np.exp(CONTACT_BETA * (r - CONTACT_R))) for r in (7.0, 9.0)]
    spacing = 0.2 / (CV_KNOTS - 1)
    assert step_width(frames[:1], frames[1:], index, cv) == pytest.approx(abs(s[1] - s[0]) / spacing)
    assert step_width(frames, frames, index, cv) == CV_DENSITY_WIDTH
    centre = torch.tensor([0.0], dtype=torch.float64)  # the middle knot
    pos = torch.arange(CV_KNOTS, dtype=torch.float64) - (CV_KNOTS - 1) / 2
    for width in (1.0, 4.0):
        p = collective_density(centre, cv.grid, width=width)[0]
        assert float((p * pos.square()).sum()) == pytest.approx(width**2, rel=1e-3)
    with pytest.raises(ValueError, match="width must be > 0"):
        collective_density(centre, cv.grid, width=0.0)


def test_sampling_with_the_collective_term_is_equivariant_and_reads_it():
    model = bias_model(collective=_collective(scale=20.0))
    assert model.config.bias_collective and "collective" in repr(model)
    batch = collate(bias_graphs())
    assert_equivariant(sampler(model), batch, atol=1e-10, reflections=True, n_trials=2)
    assert float((sampler(bias_model())(batch) - sampler(model)(batch)).abs().max()) > 1e-3
    g = bias_graphs(1)[0]
    pg, perm = permute_batch(g, seed=3)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(N)
    got = sampler(bias_model(index=inv[INDEX], collective=_collective(scale=20.0)))(pg)
    torch.testing.assert_close(got, sampler(model)(g)[perm], atol=1e-10, rtol=1e-10)


def test_wrong_shapes_and_a_collective_term_without_pairs_are_refused():
    cv = _collective()
    bad = Collective(weight=cv.weight[:3], mean=cv.mean, grid=cv.grid, table=cv.table)
    with pytest.raises(ValueError, match="collective term needs weight and mean"):
        bias_model(collective=bad)
    with pytest.raises(UsageError, match="bias_collective"):
        ModelConfig(name="eghn", node_in=4, generative=True, bias_collective=True)

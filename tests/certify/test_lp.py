"""The exact LP (triangle) relaxation: CROWN <= alpha-CROWN <= LP <= every sampled point."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crop.certify import NormBall, compile_network
from crop.certify.alpha_crown import alpha_crown_margin
from crop.certify.crown import relaxed_bounds
from crop.certify.lp import lp_lower_bounds
from crop.errors import CropError

from .nets import conv_net, margins, mlp, sample_ball

pytest.importorskip("scipy")
TOL = 1e-6


def _chain(model, shape, x, eps, gen):
    net = compile_network(model, shape)
    ball = NormBall.of(x, eps, norm="linf")
    with torch.no_grad():
        y = model(x).argmax(1)
        state = relaxed_bounds(net, ball, "crown")
    crown, alpha = alpha_crown_margin(net, ball, y, iterations=20, state=state, layers=())
    n = crown.shape[1]
    for s in range(len(x)):
        others = [j for j in range(n) if j != int(y[s])]
        rows = torch.stack([torch.eye(n, dtype=x.dtype)[y[s]] - torch.eye(n, dtype=x.dtype)[j] for j in others])
        lp = torch.as_tensor(lp_lower_bounds(net, ball, state[0], rows, sample=s), dtype=x.dtype)
        assert (crown[s, others] <= alpha[s, others] + TOL).all()
        assert (alpha[s, others] <= lp + TOL).all(), "alpha-CROWN is a dual point of the LP: never above it"
        points = sample_ball(x[s : s + 1], eps, "linf", 400, gen)[:, 0]
        with torch.no_grad():
            sampled = margins(model(points), y[s].expand(len(points)))[:, others].min(0).values
        assert (lp <= sampled + TOL).all(), "the LP is a relaxation: never above a reachable margin"
    return crown, alpha


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 0.4), deep=st.booleans())
def test_conv_net_chain(seed, eps, deep):
    model, shape = conv_net(seed, 2, 8, deep=deep)
    gen = torch.Generator().manual_seed(seed)
    _chain(model, shape, torch.randn(2, *shape, generator=gen, dtype=torch.float64), eps, gen)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000), sizes=st.lists(st.integers(2, 10), min_size=2, max_size=4), eps=st.floats(0.01, 1.0)
)
def test_mlp_chain(seed, sizes, eps):
    model = mlp(seed, sizes)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, sizes[0], generator=gen, dtype=torch.float64)
    _chain(model, (sizes[0],), x, eps, gen)


def test_one_hidden_layer_lp_is_the_exact_minimum_when_every_relu_is_stable():
    """No unstable ReLU: the relaxation is exact, and the LP equals the true minimum (a linear
    function of x over the box)."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double().eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4, 3, dtype=torch.float64))
        model[0].bias.fill_(5.0)  # pre-activations near 5: all active for a small ball
    x = torch.zeros(1, 3, dtype=torch.float64)
    net = compile_network(model, (3,))
    ball = NormBall.of(x, 0.1, norm="linf")
    bounds, _ = relaxed_bounds(net, ball, "crown")
    row = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    lp = lp_lower_bounds(net, ball, bounds, row)[0]
    w = (model[2].weight[0] - model[2].weight[1]) @ model[0].weight  # the affine map's gradient
    with torch.no_grad():
        exact = float((row[0] @ model(x)[0]) - 0.1 * w.abs().sum())
    assert lp == pytest.approx(exact, abs=1e-8)


def test_l2_balls_and_other_layers_are_refused():
    model = mlp(0, [3, 4, 2])
    net = compile_network(model, (3,))
    x = torch.zeros(1, 3, dtype=torch.float64)
    ball = NormBall.of(x, 0.1, norm="l2")
    bounds, _ = relaxed_bounds(net, ball, "crown")
    with pytest.raises(CropError, match="L-inf"):
        lp_lower_bounds(net, ball, bounds, torch.ones(1, 2, dtype=torch.float64))

"""Lipschitz bounds against Jacobian norms; expected margins by Monte Carlo and in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from crop.certify.lipschitz import linf_certified, lipschitz_bound, lipschitz_radius
from crop.certify.moments import expected_margin_closed_form, expected_margin_mc
from tests.certify.nets import conv_net, mlp


def _jacobian_norms(model, X):
    norms, grads = [], []
    for x in X:
        J = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x).reshape(model(x[None]).shape[1], -1)
        norms.append(torch.linalg.matrix_norm(J, ord=2))
        y = int(model(x[None]).argmax())
        grads.extend((J[y] - J[j]).norm() for j in range(J.shape[0]) if j != y)
    return torch.stack(norms), torch.stack(grads)


@pytest.mark.parametrize("kind", ["mlp", "conv", "conv-stride"])
def test_lipschitz_bounds_dominate_jacobian_norms(kind):
    if kind == "mlp":
        model, shape = mlp(0, [5, 16, 16, 3]), (5,)
    else:
        model, shape = conv_net(1, 2, 9, stride=2 if kind == "conv-stride" else 1)
    X = torch.randn(12, *shape, dtype=torch.float64)
    norms, grads = _jacobian_norms(model, X)
    bounds = {m: lipschitz_bound(model, shape, m).value for m in ("power", "exact", "fft")}
    for value in bounds.values():
        assert norms.max() <= value + 1e-9
        assert grads.max() <= math.sqrt(2) * value + 1e-9
    # power iteration converges to the exact norm of each run; the per-layer FFT bound is looser
    assert bounds["power"] == pytest.approx(
        bounds["exact"] * 1.01 ** len(lipschitz_bound(model, shape).factors), rel=1e-3
    )
    assert bounds["fft"] >= bounds["exact"] * (1 - 1e-9)


def test_lipschitz_radius_certifies_random_points_inside_it():
    model = mlp(2, [4, 12, 12, 3])
    X = torch.randn(40, 4, dtype=torch.float64)
    with torch.no_grad():
        y = model(X).argmax(1)
        L = lipschitz_bound(model, (4,)).value
        radius = lipschitz_radius(model, X, y, L)
        assert (radius > 0).all()
        gen = torch.Generator().manual_seed(0)
        d = torch.randn(500, *X.shape, generator=gen, dtype=torch.float64)
        d = d / d.norm(dim=-1, keepdim=True) * torch.from_numpy(radius)[None, :, None] * 0.999
        assert (model(X[None] + d).argmax(-1) == y).all()
    assert linf_certified(np.array([1.0, 0.1]), 0.1, 25).tolist() == [True, False]


def test_closed_form_moments_are_exact_for_an_affine_network():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3)).double()
    X = torch.randn(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    cf = expected_margin_closed_form(model, X, y, 0.3)
    w = model[0].weight.detach()
    with torch.no_grad():
        logits = model(X)
    for i in range(4):
        for j in range(3):
            if j == y[i]:
                continue
            assert cf["pairwise_mean"][i, j] == pytest.approx(float(logits[i, y[i]] - logits[i, j]))
            assert cf["pairwise_std"][i, j] == pytest.approx(
                0.3 * math.sqrt(float(w[y[i]].square().sum() + w[j].square().sum()))
            )


def test_monte_carlo_interval_covers_the_closed_form_on_a_two_class_affine_network():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 2)).double()
    X = torch.randn(10, 6, dtype=torch.float64)
    y = torch.zeros(10, dtype=torch.long)
    mean, low, high = expected_margin_mc(model, X, y, 0.5, n=4000, confidence=0.999)
    exact = expected_margin_closed_form(model, X, y, 0.5)["expected_margin"]  # two classes: E[margin] exact
    assert ((low <= exact) & (exact <= high)).all()
    assert (low < mean).all() and (mean < high).all()


def test_closed_form_tracks_monte_carlo_on_a_relu_network(hapt_model, hapt_windows):
    X, y = hapt_windows
    mc, low, high = expected_margin_mc(hapt_model, X[:8], y[:8], 0.05, n=1000)
    cf = expected_margin_closed_form(hapt_model, X[:8], y[:8], 0.05)["expected_margin"]
    # min_j E[f_y - f_j] >= E[min_j (f_y - f_j)] up to the approximation; close at small noise
    assert np.all(np.abs(cf - mc) <= 0.05 * np.abs(mc) + 0.2)

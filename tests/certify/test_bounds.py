"""Soundness and tightness of IBP and CROWN on random small networks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import crop.certify.crown as crown_module
from crop.certify import NormBall, compile_network, margin_bounds, verified_accuracy
from crop.certify.crown import crown_output_bounds, relaxed_bounds
from crop.certify.ibp import interval_bounds
from crop.errors import CropError
from tests.certify.nets import conv_net, margins, mlp, rnn_net, sample_ball

TOL = 1e-9


def _check_layers(net, x, eps, norm, gen, n=200):
    domain = NormBall.of(x, eps, norm)
    points = sample_ball(x, eps, norm, n, gen)
    flat = points.reshape(-1, *x.shape[1:])
    ibp = interval_bounds(net, domain)
    crown, _ = relaxed_bounds(net, domain, "crown")
    act = flat
    for i, op in enumerate(net.ops):
        act = op.forward(act)
        values = act.reshape(n, *ibp[i][0].shape)
        for lower, upper in (ibp[i], crown[i]):
            assert (values >= lower[None] - TOL).all(), f"layer {i} {op}: below its lower bound"
            assert (values <= upper[None] + TOL).all(), f"layer {i} {op}: above its upper bound"
        # intermediate CROWN bounds are never looser than IBP
        assert (crown[i][0] >= ibp[i][0] - TOL).all() and (crown[i][1] <= ibp[i][1] + TOL).all()
    out_l, out_u = crown_output_bounds(net, domain)
    logits = act.reshape(n, *out_l.shape)
    assert (logits >= out_l[None] - TOL).all() and (logits <= out_u[None] + TOL).all()
    return logits


def _check_margins(model, x, y, eps, norm, logits):
    b = margin_bounds(model, x, y, eps, norm, "both")
    sampled = margins(logits, y).min(0).values
    for bound in (b.ibp, b.crown, b.lower):
        assert (bound <= sampled + TOL).all()
    assert torch.equal(b.lower, torch.maximum(b.ibp, b.crown))
    return b


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    channels=st.integers(1, 3),
    length=st.integers(5, 12),
    eps=st.floats(0.001, 0.5),
    norm=st.sampled_from(["linf", "l2"]),
    deep=st.booleans(),
    pool=st.booleans(),
    standardize=st.booleans(),
    stride=st.integers(1, 2),
)
def test_conv_net_bounds_contain_every_sampled_point(
    seed, channels, length, eps, norm, deep, pool, standardize, stride
):
    model, shape = conv_net(seed, channels, length, deep=deep, pool=pool, standardize=standardize, stride=stride)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, *shape, generator=gen, dtype=torch.float64)
    net = compile_network(model, shape)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x))
        logits = _check_layers(net, x, eps, norm, gen)
        y = model(x).argmax(1)
        _check_margins(model, x, y, eps, norm, logits)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    sizes=st.lists(st.integers(2, 12), min_size=2, max_size=5),
    eps=st.floats(0.001, 1.0),
    norm=st.sampled_from(["linf", "l2"]),
)
def test_mlp_bounds_contain_every_sampled_point(seed, sizes, eps, norm):
    model = mlp(seed, [*sizes, 3])
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, sizes[0], generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (4,), generator=gen)
    net = compile_network(model, (sizes[0],))
    with torch.no_grad():
        logits = _check_layers(net, x, eps, norm, gen)
        _check_margins(model, x, y, eps, norm, logits)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["gru", "lstm"]),
    layers=st.integers(1, 2),
    bidirectional=st.booleans(),
    eps=st.floats(0.001, 0.3),
    norm=st.sampled_from(["linf", "l2"]),
)
def test_recurrent_interval_bounds_contain_every_sampled_point(seed, kind, layers, bidirectional, eps, norm):
    model = rnn_net(seed, kind, features=3, hidden=4, layers=layers, bidirectional=bidirectional)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 3, generator=gen, dtype=torch.float64)
    net = compile_network(model, (5, 3))
    with torch.no_grad():
        assert torch.allclose(net(x), model(x))
        logits = _check_layers(net, x, eps, norm, gen, n=150)
        _check_margins(model, x, model(x).argmax(1), eps, norm, logits)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 0.5), norm=st.sampled_from(["linf", "l2"]))
def test_patch_and_dense_back_substitution_agree(seed, eps, norm):
    model, shape = conv_net(seed, 2, 10, deep=True, pool=False, stride=2)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, *shape, generator=gen, dtype=torch.float64)
    net = compile_network(model, shape)
    domain = NormBall.of(x, eps, norm)
    with torch.no_grad():
        patched, _ = relaxed_bounds(net, domain)
        original = crown_module.patch_supported
        crown_module.patch_supported = lambda *args: False
        try:
            dense, _ = relaxed_bounds(net, domain)
        finally:
            crown_module.patch_supported = original
    for (pl, pu), (dl, du) in zip(patched, dense, strict=True):
        assert torch.allclose(pl, dl, atol=1e-9) and torch.allclose(pu, du, atol=1e-9)


def test_crown_alone_is_tighter_than_ibp_on_random_relu_networks():
    gaps = []
    for seed in range(20):
        model = mlp(seed, [6, 32, 32, 32, 4])
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        y = torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(seed + 1))
        with torch.no_grad():
            b = margin_bounds(model, x, y, 0.05, "linf", "both")
        finite = torch.isfinite(b.ibp)
        gaps.append((b.crown - b.ibp)[finite].mean())
    gaps = torch.stack(gaps)
    assert gaps.mean() > 0 and (gaps > 0).float().mean() >= 0.9


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_verified_points_of_a_2d_network_have_no_counterexample_on_a_dense_grid(norm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double().eval()
    gen = torch.Generator().manual_seed(1)
    centers = torch.rand(60, 2, generator=gen, dtype=torch.float64) * 4 - 2
    eps = 0.3
    with torch.no_grad():
        y = model(centers).argmax(1)
        b = margin_bounds(model, centers, y, eps, norm)
        verified = b.verified
        assert verified.sum() >= 20 and (~verified).sum() >= 1
        ticks = torch.linspace(-eps, eps, 161, dtype=torch.float64)
        grid = torch.cartesian_prod(ticks, ticks)
        if norm == "l2":
            grid = grid[grid.norm(dim=1) <= eps]
        for center, label in zip(centers[verified], y[verified], strict=True):
            preds = model(center + grid).argmax(1)
            assert (preds == label).all()
            worst = margins(model(center + grid), label).min()
            assert worst > 0


def test_hapt_network_bounds_are_sound_in_float32(hapt_model, hapt_windows):
    X, y = hapt_windows
    net = compile_network(hapt_model, tuple(X.shape[1:]))
    gen = torch.Generator().manual_seed(0)
    eps = 0.01
    domain = NormBall.of(X, eps)
    with torch.no_grad():
        bounds, _ = relaxed_bounds(net, domain)
        points = sample_ball(X, eps, "linf", 40, gen).reshape(-1, *X.shape[1:])
        act = points
        for i, op in enumerate(net.ops):
            act = op.forward(act)
            values = act.reshape(40, *bounds[i][0].shape)
            tol = 1e-4 * (1 + values.abs())
            assert (values >= bounds[i][0] - tol).all() and (values <= bounds[i][1] + tol).all()
        b = margin_bounds(hapt_model, X, y, eps)
        sampled = margins(act.reshape(40, len(X), -1), y).min(0).values
        assert (b.lower <= sampled + 1e-3).all()
        assert verified_accuracy(hapt_model, X, y, eps) == pytest.approx(float(b.verified.float().mean()))


def test_unsupported_layer_error_names_the_layer():
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 4), nn.Tanh()), nn.Linear(4, 2))
    with pytest.raises(CropError, match=r"'1\.1' \(Tanh\)") as info:
        margin_bounds(model, torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 0.1)
    assert "\n" not in str(info.value)
    with pytest.raises(CropError, match=r"'0' \(MaxPool1d\)"):
        compile_network(nn.Sequential(nn.MaxPool1d(2), nn.Flatten()), (2, 8))
    with pytest.raises(CropError, match="GRU.*TakeOutput"):
        compile_network(nn.Sequential(nn.GRU(3, 4, batch_first=True), nn.Linear(4, 2)), (5, 3))


def test_model_with_custom_forward_is_refused(tiny_model):
    with pytest.raises(CropError, match="TinyNet defines its own forward"):
        compile_network(tiny_model, (3, 16))

    class Custom(nn.Sequential):
        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(CropError, match="overrides nn.Sequential.forward"):
        compile_network(Custom(nn.Linear(2, 2)), (2,))


def test_zero_radius_bounds_are_the_forward_pass():
    model = mlp(3, [5, 10, 10, 3])
    x = torch.randn(4, 5, dtype=torch.float64)
    with torch.no_grad():
        b = margin_bounds(model, x, model(x).argmax(1), 0.0)
        assert torch.allclose(b.lower, margins(model(x), model(x).argmax(1)))

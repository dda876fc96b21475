"""The architectures of the paper's datasets (Appendix A.1): shapes, parameter counts,
safetensors round trips, CRoP (pruning reaches convolutional, linear and recurrent weights,
never the decision layer), bound propagation (IBP through GRU / LSTM / Hardswish, CROWN where
supported) and crop-certified."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from crop.certify import compile_network, interval_bounds, margin_bounds
from crop.certify.ball import NormBall
from crop.certify.ops.activation import HardswishOp
from crop.data.sensing import SensingData, stratified_split
from crop.models.io import load_model, metadata_of, save_model
from crop.models.paper import (
    ExtraSensoryCNNGRU,
    PerceptBiLSTM,
    StressMLP,
    WidarLeNet,
    parameter_count,
)
from crop.personalization.prune import prunable_names

# (factory, the paper's input shape, parameters, a scale of realistic inputs)
ARCHS = {
    "widar": (lambda: WidarLeNet(), (22, 20, 20), 296_774, 0.01),
    "extrasensory-raw": (lambda: ExtraSensoryCNNGRU(), (6, 800), 68_210, 1.0),
    "extrasensory": (lambda: ExtraSensoryCNNGRU(channels=2, length=26, stride=1), (2, 26), 67_570, 1.0),
    "stress": (lambda: StressMLP(standardize=True), (34,), 21_250, 1.0),
    "perceptr": (lambda: PerceptBiLSTM(), (13, 50), 98_258, 1.0),
}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return ARCHS[name][0]()


@pytest.mark.parametrize("name", list(ARCHS))
def test_forward_backward_at_the_papers_input_shape(name):
    model, (_, shape, params, scale) = build(name), ARCHS[name]
    assert parameter_count(model) == params
    x = scale * torch.randn(4, *shape)
    out = model(x)
    assert out.shape == (4, 6 if name == "widar" else 2)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", list(ARCHS))
def test_files_round_trip(name, tmp_path):
    model = build(name).eval()
    path = save_model(model, tmp_path / "m.safetensors")
    again = load_model(path)
    assert type(again) is type(model) and metadata_of(path)["crop_arch"]
    x = ARCHS[name][3] * torch.randn(3, *ARCHS[name][1])
    assert torch.equal(model(x), again(x))


@pytest.mark.parametrize(
    "name, kinds",
    [
        ("widar", {nn.Conv2d: 3, nn.Linear: 1}),
        ("extrasensory", {nn.Conv1d: 3, nn.Linear: 4, nn.GRU: 2}),
        ("stress", {nn.Linear: 2}),
        ("perceptr", {nn.LSTM: 16, nn.Linear: 4}),
    ],
)
def test_pruning_covers_conv_linear_and_recurrent_weights_but_not_the_last_layer(name, kinds):
    model = build(name)
    names = prunable_names(model)
    modules = dict(model.named_modules())
    found: dict[type, int] = {}
    for n in names:
        owner = modules[n.rsplit(".", 1)[0]]
        found[type(owner)] = found.get(type(owner), 0) + 1
    assert found == kinds  # GRU: weight_ih/hh; 4 bidirectional LSTM layers: 2 x 2 x 4
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    assert f"{last}.weight" not in names


def _toy(name: str, n: int = 36) -> SensingData:
    rng = np.random.default_rng(0)
    shape = ARCHS[name][1]
    if name == "extrasensory-raw":
        shape = (6, 80)
    if name == "perceptr":
        shape = (13, 12)
    n_classes = 6 if name == "widar" else 2
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, *shape)).astype(np.float32) * ARCHS[name][3]
    X.reshape(n, -1)[np.arange(n), y] += 3 * ARCHS[name][3]
    return SensingData(X, y, f"toy {name}")


def _small(name: str) -> nn.Module:
    if name == "extrasensory-raw":
        torch.manual_seed(0)
        return ExtraSensoryCNNGRU(length=80)
    return build(name)


@pytest.mark.parametrize("name", ["widar", "extrasensory", "stress", "perceptr"])
def test_crop_prunes_every_kind_of_layer_and_mixes_back(name):
    from crop.personalization.crop import CRoPConfig, fit_crop
    from crop.personalization.loop import TrainConfig

    model = _small(name).eval()
    split = stratified_split(_toy(name), seed=0)
    config = CRoPConfig(
        tau=1.0,  # tolerate any loss: ToleratedPrune goes as far as it can, so every layer is reached
        k=0.3,
        k_step=0.3,
        initial=TrainConfig(epochs=1, lr=1e-3, select="last"),
        final=TrainConfig(epochs=1, lr=1e-3, include_initial=True),
    )
    result = fit_crop(model, split, config, seed=0)
    pruned, generic, mixed = result.states["pruned"], result.states["generic"], result.states["mixed"]
    for n in prunable_names(model):
        zeros = pruned[n] == 0
        assert zeros.any(), f"{n} never pruned"
        assert torch.equal(mixed[n][zeros], generic[n][zeros])  # mixing puts the generic weights back
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    assert torch.equal(pruned[f"{last}.weight"], result.states["initial"][f"{last}.weight"])


def test_hardswish_interval_is_sound_and_tight():
    op = HardswishOp("h")
    lower = torch.tensor([-5.0, -4.0, -2.0, -1.0, -2.0, 0.5, -3.5])
    upper = torch.tensor([-4.0, -1.0, -1.8, 2.0, 3.0, 1.0, 4.0])
    lo, hi = op.interval(lower, upper)
    grid = lower[:, None] + (upper - lower)[:, None] * torch.linspace(0, 1, 2001)[None, :]
    values = torch.nn.functional.hardswish(grid)
    assert torch.allclose(lo, values.min(1).values, atol=1e-6) and torch.allclose(hi, values.max(1).values, atol=1e-6)


@pytest.mark.parametrize("name", ["widar", "extrasensory", "stress", "perceptr"])
def test_interval_bounds_contain_every_sampled_output(name):
    model = _small(name).eval()
    x = torch.as_tensor(_toy(name, 4).X)
    eps = 1e-3 * ARCHS[name][3]
    net = compile_network(model, tuple(x.shape[1:]))
    lower, upper = interval_bounds(net, NormBall.of(x, eps, "linf"))[-1]
    with torch.no_grad():
        for _ in range(30):
            out = model(x + eps * (2 * torch.rand_like(x) - 1))
            assert bool(((out >= lower - 1e-4) & (out <= upper + 1e-4)).all())


@pytest.mark.parametrize("name", ["extrasensory", "stress", "perceptr", "widar"])
def test_ibp_and_crown_margins(name):
    model = _small(name).eval()
    data = _toy(name, 2 if name == "widar" else 4)
    x, y = torch.as_tensor(data.X), torch.as_tensor(data.y)
    bounds = margin_bounds(model, x, y, 1e-5 * ARCHS[name][3])
    assert bounds.ibp is not None and bounds.crown is not None
    assert bool((bounds.lower >= bounds.ibp).all() and (bounds.lower >= bounds.crown).all())
    logits = model(x)
    true_margin = logits.gather(1, y[:, None]) - logits
    others = torch.ones_like(true_margin, dtype=torch.bool).scatter(1, y[:, None], False)
    assert bool((bounds.lower[others] <= true_margin[others] + 1e-4).all())  # never above the clean margin


@pytest.mark.parametrize("name", ["extrasensory", "stress", "perceptr"])
def test_crop_certified_trains_through_the_recurrent_layers(name):
    from crop.certify.method import CertifiedConfig, fit_certified
    from crop.personalization.loop import TrainConfig

    model = _small(name).eval()
    split = stratified_split(_toy(name), seed=0)
    config = CertifiedConfig(
        eps=1e-3,
        density=0.5,
        robust=TrainConfig(epochs=2, lr=1e-3, select="last"),
        final=TrainConfig(epochs=1, lr=1e-3, include_initial=True),
    )
    result = fit_certified(model, split, config, seed=0)
    assert 0.4 <= result.info["density"] <= 0.6

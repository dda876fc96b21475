"""crop-certified at high sparsity: per-layer allocation, exact densities, regrowth, fixed masks
in phase 2, sparse-file round trip, and the generic model kinds of the robustness study."""

import math

import pytest
import torch

import crop
from crop.certify.method import CertifiedConfig
from crop.certify.sparse import load_sparse_model, save_sparse
from crop.certify.sparse_train import ScheduledSparsity, layer_counts
from crop.data.sensing import stratified_split
from crop.errors import CropError
from crop.generic import parse_kind
from crop.models import HAPTNet
from crop.personalization.loop import TrainConfig, train
from crop.personalization.prune import prunable_names
from tests.certify.test_sparse_certified import seq_net
from tests.conftest import make_data


def _shapes(model):
    params = dict(model.named_parameters())
    return {n: params[n].shape for n in prunable_names(model)}


@pytest.mark.parametrize("allocation", ["uniform", "erk"])
@pytest.mark.parametrize("density", [0.5, 0.1, 0.05, 0.01, 0.003])
def test_layer_counts_are_exact(allocation, density):
    shapes = _shapes(HAPTNet())
    counts = layer_counts(shapes, density, allocation)
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(counts.values()) == round(density * total)
    for n, s in shapes.items():
        assert 0 <= counts[n] <= math.prod(s)
    if allocation == "uniform":
        for n, s in shapes.items():
            assert abs(counts[n] - density * math.prod(s)) <= 1.0
    else:  # ERK: the thin input convolution keeps a larger fraction than the widest convolution
        assert counts["1.weight"] / math.prod(shapes["1.weight"]) > counts["7.weight"] / math.prod(shapes["7.weight"])


def test_erk_saturates_small_layers():
    shapes = {"a": torch.Size([4, 2]), "b": torch.Size([200, 200])}
    counts = layer_counts(shapes, 0.5, "erk")
    assert counts["a"] == 8  # share above 1 -> dense, the rest re-solved
    assert sum(counts.values()) == round(0.5 * (8 + 40000))
    assert layer_counts(shapes, 0.5, "global") is None
    with pytest.raises(CropError, match="allocation"):
        layer_counts(shapes, 0.5, "random")


@pytest.mark.parametrize("allocation", ["global", "erk"])
def test_scheduled_sparsity_with_regrowth_keeps_exact_counts(allocation):
    model = seq_net()
    split = stratified_split(make_data(), seed=0)
    names = prunable_names(model)
    pruner = ScheduledSparsity(model, names, 0.1, start=2, end=10, allocation=allocation, regrow=0.5, every=2, stop=16)
    history = []

    class Watch(ScheduledSparsity):
        def __init__(self):
            pass

        def after_backward(self, model):
            pass

        def after_step(self, model):
            history.append({n: m.clone() for n, m in pruner.masks.items()})

    train(
        model,
        split.train,
        split.val,
        TrainConfig(epochs=6, lr=1e-2, batch_size=16, select="last"),
        hooks=[pruner, Watch()],
    )
    pruner.finish(model)
    total = sum(m.numel() for m in pruner.masks.values())
    assert sum(int(m.sum()) for m in pruner.masks.values()) == round(0.1 * total)
    if allocation == "erk":
        expected = layer_counts({n: pruner.masks[n].shape for n in names}, 0.1, "erk")
        assert {n: int(m.sum()) for n, m in pruner.masks.items()} == expected
    assert pruner.regrown > 0
    changed = any(bool((b[n] & ~a[n]).any()) for a, b in zip(history, history[1:], strict=False) for n in names)
    assert changed  # regrowth really brought pruned positions back
    params = dict(model.named_parameters())
    for n in names:
        assert (params[n][~pruner.masks[n]] == 0).all()


@pytest.mark.parametrize(
    "options",
    [
        {"allocation": "erk"},
        {"allocation": "uniform", "regrow": 0.3, "regrow_every": 2},
        {"allocation": "global", "recalibrate_bn": True},
    ],
)
def test_crop_certified_options_give_exact_fixed_masks_and_round_trip(options, tmp_path):
    model = seq_net()
    split = stratified_split(make_data(), seed=0)
    config = CertifiedConfig(
        eps=0.05,
        density=0.05,
        robust=TrainConfig(epochs=4, lr=1e-2, batch_size=16, select="last"),
        final=TrainConfig(epochs=3, lr=1e-2, batch_size=16, include_initial=True),
        **options,
    )
    result = crop.personalize(model, split, config, method="crop-certified", seed=0)
    masks = result.info["masks"]
    if options["allocation"] != "global":
        expected = layer_counts({n: m.shape for n, m in masks.items()}, 0.05, options["allocation"])
        assert result.info["kept"] == expected
    if options.get("recalibrate_bn"):  # statistics re-estimated for the pruned network
        bn, start = result.model[1], model[1]
        assert not torch.allclose(bn.running_var, start.running_var)
    total = sum(m.numel() for m in masks.values())
    assert result.info["density"] == round(0.05 * total) / total
    params = dict(result.model.named_parameters())
    for name, keep in masks.items():
        assert (params[name][~keep] == 0).all()  # phase 2 kept the phase-1 mask fixed
    # the sparse file round-trips exactly and predicts the same
    path = save_sparse(result.model, tmp_path / "m.sparse.safetensors")
    loaded = load_sparse_model(path, seq_net())
    for (k, a), (k2, b) in zip(result.model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    x = torch.as_tensor(split.test.X)
    torch.testing.assert_close(loaded.eval()(x), result.model.eval()(x))


def test_crop_certified_rejects_bad_sparsity_options(tiny_split):
    for bad, msg in [
        ({"allocation": "lottery"}, "allocation"),
        ({"regrow": 1.5}, "regrow"),
        ({"regrow_end": -1}, "regrow_end"),
    ]:
        with pytest.raises(CropError, match=msg):
            crop.personalize(seq_net(), tiny_split, bad, method="crop-certified")


def test_generic_kinds_parse():
    assert parse_kind("hapt").width is None and not parse_kind("hapt").certified
    spec = parse_kind("hapt-rot-w128-cert-nobn")
    assert (spec.base, spec.width, spec.certified, spec.nobn) == ("hapt-rot", 128, True, True)
    assert spec.plain == "hapt-rot-w128-nobn"
    assert parse_kind("hapt-cert").plain == "hapt"
    for bad in ("hapt-w7", "hapt-w0", "cifar", "hapt-nobn-cert", "hapt-wide"):
        with pytest.raises(CropError, match="generic model kind"):
            parse_kind(bad)


def test_start_mask_generic_personalizes_inside_the_generic_mask():
    model = seq_net()
    names = prunable_names(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for n in names:
            params[n].mul_((torch.rand(params[n].shape, generator=gen) < 0.1).to(params[n].dtype))
    pattern = {n: params[n].detach() != 0 for n in names}
    generic_density = sum(int(p.sum()) for p in pattern.values()) / sum(p.numel() for p in pattern.values())
    split = stratified_split(make_data(), seed=0)
    phases = {
        "robust": TrainConfig(epochs=3, lr=1e-2, batch_size=16, select="last"),
        "final": TrainConfig(epochs=2, lr=1e-2, batch_size=16, include_initial=True),
    }
    config = CertifiedConfig(eps=0.05, density=generic_density, start_mask="generic", **phases)
    result = crop.personalize(model, split, config, method="crop-certified", seed=0)
    for n in names:  # the mask is the generic's, fixed: nothing regrew, nothing else was pruned
        assert torch.equal(result.info["masks"][n], pattern[n])
    assert result.info["density"] == pytest.approx(generic_density)
    # denser than the generic's mask cannot be asked for
    with pytest.raises(CropError, match="start_mask"):
        crop.personalize(
            model, split, CertifiedConfig(density=0.5, start_mask="generic", **phases), method="crop-certified"
        )


def test_sparse_generic_kind_parses():
    spec = parse_kind("hapt-w64-s5")
    assert (spec.width, spec.sparse, spec.plain) == (64, 5, "hapt-w64")
    for bad in ("hapt-s0", "hapt-s100", "hapt-s5-cert"):
        with pytest.raises(CropError, match="generic model kind"):
            parse_kind(bad)

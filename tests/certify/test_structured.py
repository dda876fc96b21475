"""Structured (channel / hidden-unit) pruning, compaction to smaller dense layers, the compact
model file, and crop-certified with ``structure="channel"``."""

import json

import pytest
import torch
from torch import nn

import crop
from crop.certify import NormBall, compile_network, crown_output_bounds, ibp_output_bounds
from crop.certify.compact import compact_model, kept_units, parameter_count
from crop.certify.method import CertifiedConfig
from crop.certify.structured import GradualChannelPrune, channel_masks, removed_units, unit_layers
from crop.data.sensing import stratified_split
from crop.errors import CropError
from crop.models import HAPTNet, load_model, save_model
from crop.models.io import metadata_of
from crop.personalization.loop import TrainConfig, train
from crop.personalization.prune import apply_masks
from tests.conftest import make_data


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (a fresh net has mean 0, var 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, nn.Linear | nn.Conv1d):
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def seq_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(3, 8, 3, padding=1),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3, padding=1),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.AvgPool1d(2),
        nn.Flatten(),
        nn.Linear(8 * 8, 24),
        nn.ReLU(),
        nn.Linear(24, 3),
    )


def _masked(model: nn.Module, density: float) -> nn.Module:
    _, fixed = channel_masks(model, density)
    return apply_masks(model, fixed).eval()


def test_unit_layers_follow_the_hapt_network():
    units = unit_layers(HAPTNet())
    assert [(u.index, u.consumer, u.norm, u.block) for u in units] == [
        (1, 4, 2, 1),
        (4, 7, 5, 1),
        (7, 12, 8, 4),  # Flatten: each of conv3's channels feeds 4 consecutive columns
        (12, 15, None, 1),
    ]
    with pytest.raises(CropError, match="nn.Sequential"):
        channel_masks(nn.Module(), 0.5)


@pytest.mark.parametrize("density", [0.5, 0.1, 0.05, 0.01])
def test_channel_masks_reach_density_and_remove_whole_units(density):
    model = _randomize(HAPTNet())
    weights, fixed = channel_masks(model, density)
    kept = sum(int(m.sum()) for m in weights.values()) / sum(m.numel() for m in weights.values())
    assert kept <= density + 1e-9
    assert kept >= 0.7 * density or density == 0.01  # rounding to whole units, filled back up
    removed = removed_units(model, fixed)
    for index, gone in removed.items():
        assert (~gone).sum() >= 1  # never an empty layer
        w = weights[f"{index}.weight"]
        assert not w[gone].any()  # a removed unit's whole row is masked
        assert torch.equal(fixed[f"{index}.bias"], ~gone)
    assert torch.equal(fixed["2.weight"], ~removed[1]) and torch.equal(fixed["2.bias"], ~removed[1])
    cols = weights["12.weight"].reshape(weights["12.weight"].shape[0], -1, 4)  # conv3 channel -> 4 columns
    assert not cols[:, removed[7]].any()
    assert "15.weight" not in weights  # the decision layer is not pruned


@pytest.mark.parametrize("density", [0.5, 0.1, 0.05])
@pytest.mark.parametrize("make", [lambda: _randomize(HAPTNet()), lambda: _randomize(seq_net())])
def test_compact_model_matches_masked_model(density, make):
    masked = _masked(make(), density)
    small = compact_model(masked)
    assert type(small) is type(masked)
    assert parameter_count(small) < parameter_count(masked)
    x = torch.randn(32, 6, 128) if isinstance(masked, HAPTNet) else torch.randn(32, 3, 16)
    with torch.no_grad():
        assert torch.allclose(small(x), masked(x), atol=1e-5, rtol=0)
    widths = [int((~g).sum()) for g in removed_units(masked, channel_masks(masked, density)[1]).values()]
    assert [len(k) for k in kept_units(masked).values()][::-1] == widths


def test_compaction_keeps_units_that_are_not_exactly_zero():
    """A zero weight row with a BatchNorm shift that is not zero still outputs a constant: kept."""
    model = _randomize(HAPTNet())
    with torch.no_grad():
        model[1].weight[3].zero_()
        model[1].bias[3] = 0.0
    assert 3 in kept_units(model)[1].tolist()
    with torch.no_grad():
        model[2].weight[3] = 0.0
        model[2].bias[3] = 0.0
    assert 3 not in kept_units(model)[1].tolist()
    with torch.no_grad():
        model[4].weight[:, 5].zero_()  # nothing reads conv1's channel 5: removable as well
    assert 5 not in kept_units(model)[1].tolist()
    small = compact_model(model)
    x = torch.randn(8, 6, 128)
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5, rtol=0)


def test_compact_model_file_round_trips(tmp_path):
    masked = _masked(_randomize(HAPTNet()), 0.05)
    small = compact_model(masked)
    dense = save_model(masked, tmp_path / "dense.safetensors")
    path = save_model(small, tmp_path / "compact.safetensors")
    assert path.stat().st_size * 10 < dense.stat().st_size
    config = json.loads(metadata_of(path)["crop_config"])
    assert config["widths"] == small.config["widths"] and len(config["widths"]) == 4
    loaded = load_model(path)
    assert isinstance(loaded, HAPTNet)
    for (k, a), (k2, b) in zip(small.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(4, 6, 128)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
    assert "widths" not in json.loads(metadata_of(save_model(HAPTNet(), tmp_path / "plain.safetensors"))["crop_config"])


def test_bad_widths_in_a_file_are_one_line_errors(tmp_path):
    path = save_model(compact_model(_masked(_randomize(HAPTNet()), 0.1)), tmp_path / "c.safetensors")
    raw, meta = crop.models.io.read_file(path)
    for widths in ([3, 4], [0, 1, 2, 3], "[1, 2]"):
        bad = {**meta, "crop_config": json.dumps({**json.loads(meta["crop_config"]), "widths": widths})}
        target = crop.models.io.write_tensors(raw, tmp_path / "bad.safetensors", bad)
        with pytest.raises(CropError):
            load_model(target)
    with pytest.raises(ValueError, match="widths"):
        HAPTNet(widths=(4, 4, 4))


@pytest.mark.parametrize("eps", [0.01, 0.03])
def test_certified_bounds_of_compact_and_masked_models_are_equal(eps):
    masked = _masked(_randomize(HAPTNet(), seed=1), 0.1)
    small = compact_model(masked)
    x = torch.randn(6, 6, 128) * 0.5
    ball = NormBall.of(x, eps, "linf")
    net_masked, net_small = compile_network(masked, (6, 128)), compile_network(small, (6, 128))
    for bound in (ibp_output_bounds, crown_output_bounds):
        (lo_a, up_a), (lo_b, up_b) = bound(net_masked, ball), bound(net_small, ball)
        assert torch.allclose(lo_a, lo_b, atol=1e-5, rtol=1e-5)
        assert torch.allclose(up_a, up_b, atol=1e-5, rtol=1e-5)
        assert (up_a - lo_a).min() > 0  # real intervals, not a degenerate comparison


def test_gradual_channel_pruning_keeps_removed_units_at_zero_while_finetuning():
    model = seq_net()
    split = stratified_split(make_data(), seed=0)
    pruner = GradualChannelPrune(model, 0.2, start=2, end=8)
    seen = []

    class Watch(GradualChannelPrune):  # records the removed units after every step
        def __init__(self):
            pass

        def after_backward(self, model):
            pass

        def after_step(self, model):
            seen.append(removed_units(model, pruner.fixed_masks))

    train(
        model,
        split.train,
        split.val,
        TrainConfig(epochs=4, lr=1e-2, batch_size=16, select="last", optimizer="sgd", weight_decay=1e-3),
        hooks=[pruner, Watch()],
    )
    for before, after in zip(seen, seen[1:], strict=False):
        for index in before:
            assert not (before[index] & ~after[index]).any()  # a removed unit never returns
    params = dict(model.named_parameters())
    for name, keep in pruner.fixed_masks.items():
        assert (params[name][~keep] == 0).all()
    assert sum(int(m.sum()) for m in pruner.masks.values()) / sum(m.numel() for m in pruner.masks.values()) <= 0.2


def test_crop_certified_channel_structure_gives_an_equivalent_compact_model():
    model = seq_net()
    split = stratified_split(make_data(), seed=0)
    config = CertifiedConfig(
        eps=0.05,
        density=0.25,
        structure="channel",
        robust=TrainConfig(epochs=3, lr=1e-2, batch_size=16, select="last"),
        final=TrainConfig(epochs=2, lr=1e-3, batch_size=16, include_initial=True),
    )
    result = crop.personalize(model, split, config, method="crop-certified", seed=0)
    info = result.info
    assert 0.15 <= info["density"] <= 0.25
    params = dict(result.model.named_parameters())
    removed = removed_units(result.model, info["masks"])
    assert any(g.any() for g in removed.values())
    for index, gone in removed.items():  # masks stayed fixed through the masked finetuning phase
        assert (params[f"{index}.weight"][gone] == 0).all() and (params[f"{index}.bias"][gone] == 0).all()
    small = info["compact_model"]
    x = torch.as_tensor(split.val.X)
    with torch.no_grad():
        assert torch.allclose(small(x), result.model.eval()(x), atol=1e-5, rtol=0)
    with pytest.raises(CropError, match="structure"):
        crop.personalize(model, split, {"structure": "2:4"}, method="crop-certified")

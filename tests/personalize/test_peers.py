"""The five robust-finetuning peers: one matrix over the methods, then each method's own invariants."""

import dataclasses
import inspect

import pytest
import torch
from torch import nn

import crop
from crop.errors import CropError
from crop.models.utils import state_copy
from crop.personalization.norm import recalibrate_batchnorm
from crop.personalization.peers import StartingPointPenalty, blocks
from crop.personalization.registry import PersonalizationResult, config_from_dict, get_method
from tests.conftest import TinyNet, make_data

PEERS = ["wise-ft", "l2-sp", "lp-ft", "surgical", "tpgm"]
QUICK = {"epochs": 3, "lr": 1e-2, "batch_size": 16}
CONFIGS = {
    "wise-ft": {"train": QUICK},
    "l2-sp": {"train": QUICK},
    "lp-ft": {"probe": QUICK, "finetune": {**QUICK, "epochs": 2, "lr": 3e-3}},
    "surgical": {"train": QUICK},
    "tpgm": {"train": QUICK, "projection_steps": 3, "projection_lr": 0.1},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tinynet() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


def sequential_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(3, 4, 3, padding=1),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 16, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


@pytest.fixture(scope="module")
def split():
    return crop.stratified_split(make_data(n=90, seed=1), seed=0)


def fit(method: str, model: nn.Module, split, seed: int = 0, **overrides) -> PersonalizationResult:
    values = {**CONFIGS.get(method, {}), **overrides}
    return crop.personalize(model, split, values, method=method, seed=seed)


def finetune(split, train=QUICK, seed: int = 0) -> dict:
    return state_copy(crop.personalize(tinynet(), split, {"train": train}, method="finetune", seed=seed).model)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def distance(a: dict, b: dict, names) -> float:
    return sum(float(((a[n] - b[n]) ** 2).sum()) for n in names) ** 0.5


def changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


# ---------------------------------------------------------------- the matrix


@pytest.mark.parametrize("method", PEERS)
def test_peer_is_registered_runs_and_is_deterministic(method, split):
    assert method in crop.available_methods()
    spec = get_method(method)
    assert dataclasses.is_dataclass(spec.config_class) and spec.description
    config_from_dict(spec.config_class, {})  # every option has a default
    generic = tinynet()
    before = state_copy(generic)
    result = fit(method, generic, split)
    assert isinstance(result, PersonalizationResult) and result.method == method
    assert_same_state(state_copy(generic), before)
    assert not result.model.training
    logits = result.model(torch.as_tensor(split.test.X))
    assert logits.shape == (len(split.test), 3) and torch.isfinite(logits).all()
    assert all(torch.isfinite(v).all() for v in state_copy(result.model).values() if v.is_floating_point())
    assert_same_state(result.states["generic"], before)
    assert_same_state(result.states["final"], state_copy(result.model))
    assert changed(result.states["final"], before)  # it personalized something
    again = fit(method, tinynet(), split)
    assert_same_state(state_copy(again.model), state_copy(result.model))
    # the held-out test split never reaches the method
    other_test = dataclasses.replace(split, test=make_data(n=30, seed=7))
    assert_same_state(state_copy(fit(method, tinynet(), other_test).model), state_copy(result.model))


# ---------------------------------------------------------------- WiSE-FT


def test_wise_ft_mix_zero_is_generic_and_mix_one_is_finetune(split):
    generic = tinynet()
    zero = fit("wise-ft", generic, split, mix=0.0)
    assert_same_state(state_copy(zero.model), state_copy(generic))
    one = fit("wise-ft", tinynet(), split, mix=1.0)
    assert_same_state(state_copy(one.model), finetune(split))
    assert not zero.info["recalibrated_bn"] and not one.info["recalibrated_bn"]


def test_wise_ft_interpolates_every_float_tensor_exactly(split):
    generic = state_copy(tinynet())
    result = fit("wise-ft", tinynet(), split, mix=0.3, recalibrate_bn=False)
    tuned, final = finetune(split), state_copy(result.model)
    assert_same_state(result.states["finetuned"], tuned)
    for key, value in final.items():
        if value.is_floating_point():
            assert torch.equal(value, (1.0 - 0.3) * generic[key] + 0.3 * tuned[key]), key
        else:  # num_batches_tracked
            assert torch.equal(value, tuned[key]), key
    assert not torch.equal(final["fc1.weight"], tuned["fc1.weight"])


def test_wise_ft_recalibrates_batchnorm_on_training_windows_only(split):
    result = fit("wise-ft", tinynet(), split, mix=0.5)
    assert result.info["recalibrated_bn"]
    interpolated, final = result.states["interpolated"], result.states["final"]
    assert changed(final, interpolated) == {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    model = tinynet()
    model.load_state_dict(interpolated)
    recalibrate_batchnorm(model, split.train.X)
    assert_same_state(state_copy(model), final)


# ---------------------------------------------------------------- L2-SP


def test_l2_sp_penalty_value():
    model = tinynet()
    hook = StartingPointPenalty(model, beta=0.4)
    assert float(hook.penalty(model).detach()) == 0.0
    with torch.no_grad():
        model.fc1.weight.add_(0.5)
    expected = 0.5 * 0.4 * 0.25 * model.fc1.weight.numel()
    assert float(hook.penalty(model).detach()) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(CropError, match="beta"):
        StartingPointPenalty(model, beta=-1.0)


def test_l2_sp_beta_zero_is_finetune(split):
    result = fit("l2-sp", tinynet(), split, beta=0.0)
    assert_same_state(state_copy(result.model), finetune(split))


def test_l2_sp_large_beta_stays_near_generic(split):
    # SGD: the pull is then the original's (with Adam each step has about lr's size whatever beta)
    sgd = {**QUICK, "optimizer": "sgd"}
    generic = state_copy(tinynet())
    names = [n for n, _ in tinynet().named_parameters()]
    free = distance(finetune(split, train=sgd), generic, names)
    pulled = state_copy(fit("l2-sp", tinynet(), split, beta=100.0, train=sgd).model)
    assert 0 < distance(pulled, generic, names) < free / 10


# ---------------------------------------------------------------- LP-FT


@pytest.mark.parametrize("make", [tinynet, sequential_net], ids=["tinynet", "sequential"])
def test_lp_ft_probe_changes_only_the_head(make, split):
    generic = make()
    head = "head" if isinstance(generic, TinyNet) else "6"
    result = fit("lp-ft", generic, split)
    probed, g = result.states["probed"], state_copy(generic)
    # BatchNorm running statistics (and their counter) stay the generic ones as well
    assert changed(probed, g) == {f"{head}.weight", f"{head}.bias"}
    assert changed(result.states["final"], probed) - {f"{head}.weight", f"{head}.bias"}  # then everything trains
    assert all(p.requires_grad for p in result.model.parameters())  # flags restored


# ---------------------------------------------------------------- surgical


def test_blocks_follow_weighted_layers_with_their_normalization():
    assert blocks(tinynet()) == [["conv", "bn"], ["fc1"], ["head"]]
    assert blocks(sequential_net()) == [["0", "1"], ["4"], ["6"]]
    model = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.GRU(8, 8), nn.GroupNorm(2, 8), nn.Linear(8, 2))
    assert blocks(model) == [["0", "1"], ["2", "3"], ["4"]]


@pytest.mark.parametrize("block", [0, 1, -1])
def test_surgical_changes_only_the_chosen_block(block, split):
    generic = tinynet()
    g = state_copy(generic)
    result = fit("surgical", generic, split, block=block)
    chosen = {0: {"conv", "bn"}, 1: {"fc1"}, -1: {"head"}}[block]
    moved = changed(state_copy(result.model), g)
    assert moved and {key.split(".")[0] for key in moved} <= chosen
    if block == 0:  # the block's BatchNorm trains and tracks the person's statistics
        assert {"conv.weight", "bn.weight", "bn.running_mean"} <= moved
    assert result.info["block_modules"] == sorted(chosen, key=["conv", "bn", "fc1", "head"].index)


def test_surgical_rejects_missing_block(split):
    with pytest.raises(CropError, match="out of range"):
        fit("surgical", tinynet(), split, block=3)


# ---------------------------------------------------------------- TPGM


def test_tpgm_weights_lie_within_learned_radii(split):
    result = fit("tpgm", tinynet(), split)
    final, generic = state_copy(result.model), state_copy(tinynet())
    radii = result.info["radii"]
    assert set(radii) == {n for n, _ in tinynet().named_parameters()}
    for name, radius in radii.items():
        assert distance(final, generic, [name]) <= radius + 1e-5, name
    assert result.info["projections"] == QUICK["epochs"] + 1


def test_tpgm_without_projection_steps_is_finetune(split):
    result = fit("tpgm", tinynet(), split, projection_steps=0)
    assert_same_state(state_copy(result.model), finetune(split))


def test_tpgm_shrinks_towards_generic_when_training_labels_mislead():
    # a generic model that already fits the task; the "person's" training labels are shifted
    # by one class, so the validation split (true labels) favours staying near the generic model
    data = make_data(n=150, seed=2)
    pretrain = crop.stratified_split(make_data(n=150, seed=3), seed=0)
    generic = crop.personalize(tinynet(), pretrain, {"train": {**QUICK, "epochs": 6}}, method="finetune", seed=0).model
    split = crop.stratified_split(data, seed=0)
    misled = dataclasses.replace(split, train=crop.SensingData(split.train.X, (split.train.y + 1) % 3, "misled"))
    cfg = {"train": {**QUICK, "select": "last"}, "projection_steps": 10, "projection_lr": 0.1}
    result = crop.personalize(generic, misled, cfg, method="tpgm", seed=0)
    g = state_copy(generic)
    free = state_copy(crop.personalize(generic, misled, {"train": cfg["train"]}, method="finetune", seed=0).model)
    names = list(result.info["radii"])
    assert distance(state_copy(result.model), g, names) < 0.9 * distance(free, g, names)
    for name, radius in result.info["radii"].items():
        assert distance(state_copy(result.model), g, [name]) <= radius + 1e-5, name


# ---------------------------------------------------------------- BatchNorm re-estimation


def test_recalibrate_batchnorm_is_one_label_free_pass_giving_the_data_statistics(split):
    assert [p for p in inspect.signature(recalibrate_batchnorm).parameters] == ["model", "X", "batch_size"]
    model = tinynet()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    X = torch.as_tensor(split.train.X)
    recalibrate_batchnorm(model, split.train.X)
    assert len(calls) == 1 and not model.training
    with torch.no_grad():
        z = model.conv(X)  # (batch, 4, time)
    torch.testing.assert_close(model.bn.running_mean, z.mean(dim=(0, 2)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.bn.running_var, z.var(dim=(0, 2), unbiased=True), rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        assert torch.equal(p, weights[name]), name

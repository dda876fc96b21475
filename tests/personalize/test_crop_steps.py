"""Each step of Algorithm 1/2 on tiny models, with assertions that can fail."""

import math

import pytest
import torch
from torch import nn

import crop
from crop.errors import CropError
from crop.models.utils import score, state_copy
from crop.personalization.crop import CRoPConfig
from crop.personalization.loop import TrainConfig, train
from crop.personalization.mix import mix
from crop.personalization.prune import apply_masks, global_masks, magnitude_scores, prunable_names, tolerated_prune
from crop.personalization.regularize import WeightPenalty, penalty_value


def test_prunable_names_exclude_last_layer_and_biases(tiny_model):
    names = prunable_names(tiny_model)
    assert names == ["conv.weight", "fc1.weight"]
    assert prunable_names(tiny_model, exclude_last=False) == ["conv.weight", "fc1.weight", "head.weight"]


def test_prunable_names_cover_gru_and_lstm():
    model = nn.Sequential(nn.GRU(3, 4, batch_first=True), nn.LSTM(4, 4), nn.Linear(4, 2))
    names = prunable_names(model)
    assert "0.weight_ih_l0" in names and "0.weight_hh_l0" in names and "1.weight_hh_l0" in names
    assert not any("bias" in n for n in names) and "2.weight" not in names


def test_global_masks_remove_exactly_the_smallest():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([[0.5, 4.0], [2.0, 6.0]])}
    masks = global_masks(scores, 3 / 7)
    assert masks["a"].tolist() == [True, False, True]
    assert masks["b"].tolist() == [[False, True], [False, True]]
    top = global_masks(scores, 2 / 7, prune_lowest=False)  # removes the two largest: 6 and 5
    assert top["a"].tolist() == [False, True, True]
    assert top["b"].tolist() == [[True, True], [True, False]]


def test_tolerated_prune_returns_largest_amount_within_tolerance(tiny_model, tiny_split, quick):
    train(tiny_model, tiny_split.train, tiny_split.val, TrainConfig(epochs=15, lr=1e-2, batch_size=16))
    tau, k, k_step = 0.1, 0.1, 0.1
    result = tolerated_prune(tiny_model, tiny_split.train, tau, k, k_step)
    # recompute every tested amount independently
    names = prunable_names(tiny_model)
    ref = score(tiny_model, tiny_split.train)
    assert result.reference == pytest.approx(ref)
    original = state_copy(tiny_model)
    accs = {}
    for amount, _ in result.history:
        tiny_model.load_state_dict(original)
        apply_masks(tiny_model, global_masks(magnitude_scores(tiny_model, names), amount))
        accs[amount] = score(tiny_model, tiny_split.train)
    tiny_model.load_state_dict(original)
    within = [a for a in sorted(accs) if accs[a] >= ref - tau]
    broke = [a for a in sorted(accs) if accs[a] < ref - tau]
    # the search stops at the first amount that breaks the tolerance and returns the one before it
    if broke:
        assert broke == [max(accs)]
        assert result.amount == pytest.approx(max(within) if within else 0.0)
    else:
        assert result.amount == pytest.approx(max(accs))
    assert result.amount > 0
    assert [a for a, _ in result.history] == pytest.approx([k + i * k_step for i in range(len(result.history))])
    # the returned state is the model pruned at that amount, and the model itself is untouched
    n_zero = sum(int((result.state[n] == 0).sum()) for n in names)
    n_total = sum(result.state[n].numel() for n in names)
    assert n_zero / n_total >= result.amount - 1e-6
    for key, value in original.items():
        assert torch.equal(tiny_model.state_dict()[key], value)


def test_tolerated_prune_returns_unpruned_when_first_step_breaks(tiny_model, tiny_split):
    train(tiny_model, tiny_split.train, tiny_split.val, TrainConfig(epochs=15, lr=1e-2, batch_size=16))
    result = tolerated_prune(tiny_model, tiny_split.train, tau=0.0, k=0.95, k_step=0.01)
    if result.history[0][1] < result.reference:
        assert result.amount == 0.0
        assert all(bool(m.all()) for m in result.masks.values())


def test_mixed_weights_are_generic_at_pruned_positions_and_personal_elsewhere(tiny_model, tiny_split):
    generic = state_copy(tiny_model)
    train(tiny_model, tiny_split.train, tiny_split.val, TrainConfig(epochs=3, lr=1e-2, batch_size=16))
    pruned = tolerated_prune(tiny_model, tiny_split.train, tau=0.5, k=0.3, k_step=0.3)
    assert pruned.amount > 0
    mixed = mix(pruned.state, generic, pruned.masks)
    for name, value in mixed.items():
        if name in pruned.masks:
            keep = pruned.masks[name]
            assert torch.equal(value[~keep], generic[name][~keep])
            assert torch.equal(value[keep], pruned.state[name][keep])
            assert (~keep).any()
        else:
            assert torch.equal(value, pruned.state[name])  # biases, BN, last layer: personalized


def test_penalty_values_against_direct_formulas():
    w = [torch.tensor([1.0, -2.0]), torch.tensor([[0.5]])]
    assert float(penalty_value(w, "l1")) == pytest.approx(3.5)
    assert float(penalty_value(w, "l2")) == pytest.approx(5.25)
    assert float(penalty_value(w, "l0", l0_beta=0.01)) == pytest.approx(
        3 - sum(math.exp(-a / 0.01) for a in (1, 2, 0.5))
    )


@pytest.mark.parametrize("param", ["log", "clamp"])
def test_alpha_stays_non_negative_by_default(tiny_model, tiny_split, param):
    hook = WeightPenalty(alpha=1e-3, alpha_param=param)
    train(tiny_model, tiny_split.train, tiny_split.val, TrainConfig(epochs=5, lr=0.1, batch_size=16), hooks=[hook])
    assert hook.alpha >= 0
    assert min(hook.trace) >= 0
    assert hook.alpha < 1e-3  # alpha is trained: it moved (down, as minimizing the loss demands)


def test_unconstrained_alpha_goes_negative_like_the_reference_code(tiny_model, tiny_split):
    hook = WeightPenalty(alpha=1e-3, alpha_param="unconstrained")
    train(tiny_model, tiny_split.train, tiny_split.val, TrainConfig(epochs=5, lr=0.1, batch_size=16), hooks=[hook])
    assert hook.alpha < 0


def test_fixed_alpha_does_not_move(tiny_model, tiny_split):
    hook = WeightPenalty(alpha=1e-3, alpha_param="fixed")
    train(tiny_model, tiny_split.train, tiny_split.val, TrainConfig(epochs=2, lr=0.1, batch_size=16), hooks=[hook])
    assert hook.alpha == pytest.approx(1e-3)


def test_penalty_shrinks_weights(tiny_split):
    from tests.conftest import TinyNet

    l1 = {}
    for alpha in (None, 0.05):
        torch.manual_seed(0)
        m = TinyNet()
        hooks = [WeightPenalty(alpha, alpha_param="fixed")] if alpha else []
        train(
            m,
            tiny_split.train,
            tiny_split.val,
            TrainConfig(epochs=5, lr=1e-2, batch_size=16, select="last"),
            hooks=hooks,
        )
        l1[alpha] = sum(float(p.detach().abs().sum()) for p in m.parameters())
    assert l1[0.05] < l1[None]


def test_crop_end_to_end_states_and_selection(tiny_model, tiny_split):
    generic = state_copy(tiny_model)
    cfg = CRoPConfig(
        alpha=1e-3,
        tau=0.2,
        initial=TrainConfig(epochs=4, lr=1e-2, batch_size=16, select="last"),
        final=TrainConfig(epochs=3, lr=1e-2, batch_size=16, include_initial=True),
    )
    r = crop.personalize(tiny_model, tiny_split, cfg, seed=3)
    assert set(r.states) == {"generic", "initial", "pruned", "mixed", "final"}
    for key, value in generic.items():  # the input model is untouched
        assert torch.equal(tiny_model.state_dict()[key], value)
    masks = r.info["masks"]
    for name, keep in masks.items():
        assert torch.equal(r.states["mixed"][name][~keep], generic[name][~keep])
        assert (r.states["pruned"][name][~keep] == 0).all()
    assert r.prune_amount == pytest.approx(
        1 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values()), abs=1e-3
    )
    # the final model is the best validation checkpoint among the mixed model and every epoch
    hist = r.info["history_final"]
    assert hist[0]["epoch"] == 0
    best = max(h["val_metric"] for h in hist)
    assert hist[r.info["final_epoch"]]["val_metric"] == best
    final_val = score(r.model.personal, tiny_split.val)  # the personalized network the routed model serves
    assert final_val == pytest.approx(best)
    if r.info["mixed_selected"]:
        for k, v in r.states["mixed"].items():
            assert torch.equal(r.states["final"][k], v)


def test_final_phase_with_zero_epochs_returns_the_mixed_model(tiny_model, tiny_split):
    cfg = CRoPConfig(initial=TrainConfig(epochs=2, lr=1e-2), final=TrainConfig(epochs=0, include_initial=True))
    r = crop.personalize(tiny_model, tiny_split, cfg)
    for k, v in r.states["mixed"].items():
        assert torch.equal(r.states["final"][k], v)


def test_conventional_finetuning_has_no_penalty_and_selects_best(tiny_model, tiny_split):
    r = crop.personalize(tiny_model, tiny_split, {"train": {"epochs": 5, "lr": 1e-2}}, method="finetune")
    hist = r.info["history"]
    assert "alpha" not in hist[0]
    assert score(r.model, tiny_split.val) == pytest.approx(max(h["val_metric"] for h in hist))


def test_same_seed_same_weights_different_seed_differs(tiny_model, tiny_split):
    cfg = {"initial": {"epochs": 3}, "final": {"epochs": 2}}
    a = crop.personalize(tiny_model, tiny_split, cfg, seed=1)
    b = crop.personalize(tiny_model, tiny_split, cfg, seed=1)
    c = crop.personalize(tiny_model, tiny_split, cfg, seed=2)
    for k in a.states["final"]:
        assert torch.equal(a.states["final"][k], b.states["final"][k])
    assert any(not torch.equal(a.states["initial"][k], c.states["initial"][k]) for k in a.states["initial"])


def test_prune_from_best_uses_best_validation_epoch(tiny_model, tiny_split):
    cfg = CRoPConfig(
        prune_from="best", initial=TrainConfig(epochs=6, lr=5e-2), final=TrainConfig(epochs=0, include_initial=True)
    )
    r = crop.personalize(tiny_model, tiny_split, cfg)
    hist = r.info["history_initial"]
    assert hist[r.info["initial_epoch"] - 1]["val_metric"] == max(h["val_metric"] for h in hist)


def test_bad_config_values_are_one_line_errors(tiny_model, tiny_split):
    with pytest.raises(CropError, match="unknown option 'tua'"):
        crop.personalize(tiny_model, tiny_split, {"tua": 0.1})
    with pytest.raises(CropError, match="alpha"):
        crop.personalize(tiny_model, tiny_split, {"alpha": -1.0})
    with pytest.raises(CropError, match=r"k = 0.0 is not allowed: must be a number in \(0, 1\)"):
        crop.personalize(tiny_model, tiny_split, {"k": 0.0, "initial": {"epochs": 1}})

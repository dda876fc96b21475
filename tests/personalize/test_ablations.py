"""Section 8 ablations: each registered variant differs from CRoP exactly in the step it changes."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import crop
from crop.models.utils import clone_model, state_copy
from crop.personalization.ablations import VARIANTS, IterativeConfig
from crop.personalization.crop import CRoPConfig
from crop.personalization.loop import TrainConfig, train
from crop.personalization.prune import FreezePruned, global_masks, prunable_names
from crop.personalization.registry import config_from_dict, get_method
from crop.personalization.regularize import WeightPenalty

QUICK = {  # plain cross-entropy: the invariance term has its own tests (test_invariance_contrastive.py)
    "invariance": {"weight": 0.0},
    "tau": 0.2,
    "initial": {"epochs": 3, "lr": 1e-2, "batch_size": 16},
    "final": {"epochs": 2, "lr": 1e-2, "batch_size": 16},
}
SEED = 5


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(method, model, split, **extra):
    spec = get_method(method)
    cfg = config_from_dict(spec.config_class, {**QUICK, **extra})
    return crop.personalize(model, split, cfg, method=method, seed=SEED)


@pytest.fixture
def reference(tiny_model, tiny_split):
    return run("crop", tiny_model, tiny_split)


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_every_variant_is_registered_and_differs_from_crop_in_its_documented_fields():
    expected = {
        "crop-gp": {"prune_criterion": "gradient"},
        "crop-mpt": {"prune_criterion": "top_magnitude"},
        "crop-l0": {"penalty": "l0"},
        "crop-l2": {"penalty": "l2"},
        "crop-polar": {"penalty": "polarization"},
        "crop-partial": {"final_finetune": "partial"},
        "crop-fixed-alpha": {"alpha_param": "fixed"},
        "crop-prune-best": {"prune_from": "best"},
        "crop-stale-bn": {"recalibrate_bn": False},
        "crop-no-invariance": {
            "invariance": {"weight": 0.0, "families": ("orientation", "perturbation"), "threshold": 0.5, "draws": 4}
        },
        "crop-unrouted": {"route": {**dataclasses.asdict(CRoPConfig().route), "enabled": False}},
    }
    assert set(VARIANTS) == set(expected)
    base = dataclasses.asdict(CRoPConfig())
    for name, diff in expected.items():
        cfg = dataclasses.asdict(get_method(name).config_class())
        assert {k: v for k, v in cfg.items() if base[k] != v} == diff, name
    mpi = dataclasses.asdict(IterativeConfig())
    assert {k: v for k, v in mpi.items() if k not in base} == {"cycles": 3, "cycle_epochs": None}
    assert all(mpi[k] == v for k, v in base.items())
    assert set(crop.available_methods()) >= set(expected) | {"crop-mpi", "crop"}


def test_gradient_pruning_keeps_step1_and_prunes_lowest_w_times_grad(tiny_model, tiny_split, reference):
    r = run("crop-gp", tiny_model, tiny_split)
    assert r.method == "crop-gp"
    assert same(r.states["initial"], reference.states["initial"])  # step 1 unchanged
    # independent saliency: per-batch backward of the mean loss on the train split, eval mode
    model = clone_model(tiny_model)
    model.load_state_dict(r.states["initial"])
    model.eval()
    model.zero_grad()
    F.cross_entropy(model(torch.as_tensor(tiny_split.train.X)), torch.as_tensor(tiny_split.train.y)).backward()
    names = prunable_names(model)
    params = dict(model.named_parameters())
    saliency = {n: (params[n].detach() * params[n].grad).abs() for n in names}
    masks = global_masks(saliency, r.prune_amount)
    for n in names:
        assert torch.equal(masks[n], r.info["masks"][n])
    assert r.prune_amount > 0
    assert any(not torch.equal(r.info["masks"][n], reference.info["masks"][n]) for n in names)  # step 3 changed


def test_top_magnitude_pruning_removes_the_largest_weights(tiny_model, tiny_split, reference):
    r = run("crop-mpt", tiny_model, tiny_split, tau=0.5, k=0.02, k_step=0.02)
    assert same(r.states["initial"], reference.states["initial"])
    assert r.prune_amount > 0
    init = r.states["initial"]
    removed = torch.cat([init[n][~m].abs() for n, m in r.info["masks"].items()])
    kept = torch.cat([init[n][m].abs() for n, m in r.info["masks"].items()])
    assert removed.min() >= kept.max()


def test_iterative_pruning_reaches_the_one_shot_amount_in_cycles(tiny_model, tiny_split, reference):
    r = run("crop-mpi", tiny_model, tiny_split, cycles=3, cycle_epochs=1)
    assert r.method == "crop-mpi"
    assert same(r.states["initial"], reference.states["initial"])
    assert r.prune_amount == reference.prune_amount > 0
    amounts = [c["amount"] for c in r.info["cycles"]]
    assert amounts == pytest.approx([reference.prune_amount * c / 3 for c in (1, 2, 3)])
    masks = r.info["masks"]
    n_removed = sum(int((~m).sum()) for m in masks.values())
    assert n_removed == round(reference.prune_amount * sum(m.numel() for m in masks.values()))
    for n, keep in masks.items():  # mixing in the last cycle restored the generic weights there
        assert torch.equal(r.states["mixed"][n][~keep], r.states["generic"][n][~keep])
    assert 0.0 <= r.info["overlap_with_one_shot"] <= 1.0


@pytest.mark.parametrize(
    "method, penalty, alpha_param",
    [
        ("crop-l0", "l0", "log"),
        ("crop-l2", "l2", "log"),
        ("crop-polar", "polarization", "log"),
        ("crop-fixed-alpha", "l1", "fixed"),
    ],
)
def test_penalty_variants_change_step1_by_their_penalty_only(
    tiny_model, tiny_split, reference, method, penalty, alpha_param
):
    r = run(method, tiny_model, tiny_split)
    # independent reproduction of step 1 with the variant's penalty
    model = clone_model(tiny_model)
    hook = WeightPenalty(1e-3, penalty, alpha_param)
    train(
        model,
        tiny_split.train,
        tiny_split.val,
        TrainConfig(epochs=3, lr=1e-2, batch_size=16, select="last"),
        seed=SEED,
        hooks=[hook],
    )
    assert same(r.states["initial"], state_copy(model))
    assert not same(r.states["initial"], reference.states["initial"])
    if alpha_param == "fixed":
        assert r.info["alpha_initial_phase"] == pytest.approx([1e-3] * 3)
        assert r.info["alpha_final_phase"] == pytest.approx([1e-3] * 2)


def test_partial_finetuning_keeps_pruned_positions_generic(tiny_model, tiny_split, reference):
    r = run("crop-partial", tiny_model, tiny_split, final={**QUICK["final"], "epochs": 4, "include_initial": False})
    ref = run("crop", tiny_model, tiny_split, final={**QUICK["final"], "epochs": 4, "include_initial": False})
    for state in ("initial", "pruned", "mixed"):
        assert same(r.states[state], ref.states[state])
    generic = r.states["generic"]
    moved = False
    for n, keep in r.info["masks"].items():
        assert torch.equal(r.states["final"][n][~keep], generic[n][~keep])
        moved |= not torch.equal(r.states["final"][n][keep], r.states["mixed"][n][keep])
    assert moved  # the kept positions were trained
    assert any(not torch.equal(ref.states["final"][n][~k], generic[n][~k]) for n, k in ref.info["masks"].items())


def test_freeze_pruned_hook_survives_weight_decay_and_momentum(tiny_model, tiny_split):
    names = prunable_names(tiny_model)
    masks = {n: torch.rand_like(p) > 0.5 for n, p in tiny_model.named_parameters() if n in names}
    before = state_copy(tiny_model)
    cfg = TrainConfig(epochs=2, lr=0.1, batch_size=16, optimizer="sgd", weight_decay=0.1, select="last")
    train(tiny_model, tiny_split.train, tiny_split.val, cfg, hooks=[FreezePruned(tiny_model, masks)])
    after = tiny_model.state_dict()
    for n, keep in masks.items():
        assert torch.equal(after[n][~keep], before[n][~keep])
        assert not torch.equal(after[n][keep], before[n][keep])


def test_prune_best_prunes_the_best_validation_epoch_of_step1(tiny_model, tiny_split):
    step1 = {**QUICK["initial"], "epochs": 5, "lr": 3e-2}
    r = run("crop-prune-best", tiny_model, tiny_split, initial=step1)
    hist = r.info["history_initial"]
    best = r.info["initial_epoch"]
    assert hist[best - 1]["val_metric"] == max(h["val_metric"] for h in hist)
    assert best < 5  # otherwise best and last coincide and the test would prove nothing
    # same trajectory: CRoP stopped after `best` epochs keeps exactly that model as its last epoch
    short = run("crop", tiny_model, tiny_split, initial={**step1, "epochs": best})
    last = run("crop", tiny_model, tiny_split, initial=step1)
    assert same(r.states["initial"], short.states["initial"])
    assert not same(r.states["initial"], last.states["initial"])


def test_unknown_step_options_fail_before_training(tiny_model, tiny_split):
    with pytest.raises(crop.CropError, match="prune_criterion"):
        crop.personalize(tiny_model, tiny_split, {"prune_criterion": "random"})
    with pytest.raises(crop.CropError, match="cycles"):
        crop.personalize(tiny_model, tiny_split, {"cycles": 0}, method="crop-mpi")


def test_crop_paper_is_algorithm_1_as_written_and_crop_differs_in_three_documented_fields():
    paper = dataclasses.asdict(get_method("crop-paper").config_class())
    assert paper["recalibrate_bn"] is False and paper["invariance"]["weight"] == 0.0
    assert (paper["alpha"], paper["alpha_param"], paper["penalty"], paper["tau"]) == (1e-3, "log", "l1", 0.05)
    assert (paper["k"], paper["k_step"], paper["prune_from"], paper["prune_eval"]) == (0.05, 0.05, "last", "pruned")
    assert paper["contrastive"]["weight"] == 0.0 and paper["initial"]["select"] == "last"
    assert paper["final"]["include_initial"] is True
    default = dataclasses.asdict(CRoPConfig())
    differs = {k for k in default if default[k] != paper[k]}
    assert differs == {"recalibrate_bn", "invariance", "route"}
    assert default["invariance"] == {**paper["invariance"], "weight": 1.0}
    assert paper["route"] == {**default["route"], "enabled": False} and default["route"]["enabled"] is True


def test_crop_paper_runs_the_paper_configuration(tiny_model, tiny_split):
    paper = run("crop-paper", tiny_model, tiny_split)
    literal = run("crop", tiny_model, tiny_split, recalibrate_bn=False)  # QUICK already has no invariance
    assert paper.method == "crop-paper" and same(paper.states["final"], literal.states["final"])

"""The ablations of Section 8, each a registered method that changes exactly one step of CRoP.

==================  =================================================  ==========================
method              what differs from ``crop``                         step of Algorithm 1
==================  =================================================  ==========================
crop-gp             prune the smallest ``|w * grad|`` (GP, 8.1)        3 (ToleratedPrune)
crop-mpt            prune the *largest* magnitudes (MP-T, 8.1)         3 (ToleratedPrune)
crop-mpi            reach the same amount in several                   3-5 (prune, mix, finetune)
                    prune -> mix -> finetune cycles (MP-I, 8.1)
crop-l0             differentiable L0 penalty (8.2)                    2 and 5 (penalty)
crop-l2             L2 penalty (8.2)                                   2 and 5 (penalty)
crop-polar          polarization penalty, Zhuang et al. 2020 (8.2)     2 and 5 (penalty)
crop-partial        pruned positions frozen at their generic values    5 (final finetuning)
                    during final finetuning (8.3)
crop-fixed-alpha    alpha a constant, not trained                      2 and 5 (penalty)
crop-prune-best     prune the best-validation epoch of step 1,         2 (checkpoint kept)
                    not the last one (the DESIGN's pitfall list)
crop-stale-bn       no BatchNorm re-estimation after mixing            4 (mixing)
crop-no-invariance  plain cross-entropy, no invariance term            2 and 5 (objective)
crop-unrouted       the personalized model alone, no per-window        after 5 (routing)
                    routing to the generic model
finetune-invariant  conventional finetuning *with* the invariance      (not CRoP: what the
                    term (crop's objective without its steps)          invariance term alone buys)
finetune-routed     conventional finetuning with crop's routing        (not CRoP: what routing
                                                                        alone buys)
==================  =================================================  ==========================

``crop-stale-bn``, ``crop-no-invariance`` and ``crop-unrouted`` each remove one of the three
departures of the default ``crop`` from the paper; ``crop-paper`` removes all three
(:mod:`crop.personalization.crop`).

Every variant but ``crop-mpi`` is CRoP (:func:`~crop.personalization.crop.fit_crop`) with a config
whose defaults differ in one field, so all other options (and, with the same seed, every
unchanged step's result) stay those of ``crop``. Penalty variants keep CRoP's ``alpha``: the
paper compares the norms at one coefficient.

``crop-mpi`` (Section 8.1, "one shot vs iterative") runs CRoP's steps 1-2 to find the
ToleratedPrune amount ``p*`` of the initial model, then reaches ``p*`` in ``cycles`` equal
increments. Cycle ``c`` prunes the ``c * p* / cycles`` lowest-scoring weights of the *current*
model (generic weights restored by earlier cycles compete again, as the paper describes),
mixes the generic weights back in and finetunes with the CRoP objective: intermediate cycles
keep their last epoch (the paper's "no early stopping"), the last one is CRoP's final phase.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import clone_model, state_copy
from crop.personalization.crop import CRoPConfig, _penalty, fit_crop
from crop.personalization.finetune import FinetuneConfig, fit_finetune
from crop.personalization.invariance import InvarianceConfig
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.mix import mix
from crop.personalization.prune import FreezePruned, PruneCriterion, global_masks, prunable_names, prune_scores
from crop.personalization.registry import PersonalizationResult, register_method, register_variant
from crop.personalization.regularize import AlphaParam, PenaltyKind
from crop.personalization.route import RouteConfig, route


@dataclass
class GPConfig(CRoPConfig):
    """CRoP with gradient-based pruning: ToleratedPrune removes the smallest ``|w * grad|``."""

    prune_criterion: PruneCriterion = "gradient"


@dataclass
class MPTConfig(CRoPConfig):
    """CRoP pruning the top-magnitude weights (MP-T)."""

    prune_criterion: PruneCriterion = "top_magnitude"


@dataclass
class L0Config(CRoPConfig):
    """CRoP with the differentiable L0 penalty ``sum(1 - exp(-|w| / beta))``."""

    penalty: PenaltyKind = "l0"


@dataclass
class L2Config(CRoPConfig):
    """CRoP with an L2 penalty ``sum(w^2)``."""

    penalty: PenaltyKind = "l2"


@dataclass
class PolarizationConfig(CRoPConfig):
    """CRoP with the polarization penalty ``t * ||w||_1 - ||w - mean(w)||_1`` per tensor."""

    penalty: PenaltyKind = "polarization"


@dataclass
class PartialConfig(CRoPConfig):
    """CRoP whose final finetuning leaves the pruned (now generic) positions untouched."""

    final_finetune: Literal["full", "partial"] = "partial"


@dataclass
class FixedAlphaConfig(CRoPConfig):
    """CRoP with a constant penalty coefficient."""

    alpha_param: AlphaParam = "fixed"


@dataclass
class PruneBestConfig(CRoPConfig):
    """CRoP pruning the best-validation epoch of step 1."""

    prune_from: Literal["last", "best"] = "best"


@dataclass
class StaleBNConfig(CRoPConfig):
    """CRoP keeping the initial model's BatchNorm statistics after mixing (as the paper does)."""

    recalibrate_bn: bool = False


@dataclass
class NoInvarianceConfig(CRoPConfig):
    """CRoP with plain cross-entropy in both phases (no invariance term, as the paper does)."""

    invariance: InvarianceConfig = field(default_factory=InvarianceConfig)


@dataclass
class UnroutedConfig(CRoPConfig):
    """CRoP serving the personalized model alone (no per-window routing to the generic model)."""

    route: RouteConfig = field(default_factory=lambda: RouteConfig(enabled=False))


VARIANTS: dict[str, tuple[type, str]] = {
    "crop-gp": (GPConfig, "ablation: gradient-based pruning |w*grad| (GP) instead of magnitude"),
    "crop-mpt": (MPTConfig, "ablation: prune the top-magnitude weights (MP-T)"),
    "crop-l0": (L0Config, "ablation: L0 (relaxed) penalty instead of L1"),
    "crop-l2": (L2Config, "ablation: L2 penalty instead of L1"),
    "crop-polar": (PolarizationConfig, "ablation: polarization penalty instead of L1"),
    "crop-partial": (PartialConfig, "ablation: final finetuning with the pruned positions frozen"),
    "crop-fixed-alpha": (FixedAlphaConfig, "ablation: alpha fixed instead of trainable"),
    "crop-prune-best": (PruneBestConfig, "ablation: prune the best-validation model of step 1, not the last"),
    "crop-stale-bn": (StaleBNConfig, "ablation: no BatchNorm re-estimation after mixing"),
    "crop-no-invariance": (NoInvarianceConfig, "ablation: plain cross-entropy, no invariance term"),
    "crop-unrouted": (UnroutedConfig, "ablation: the personalized model alone, no routing to the generic model"),
}


for _name, (_cls, _description) in VARIANTS.items():
    register_variant(
        _name,
        _cls,
        _description,
        fit_crop,
        f"{_description.capitalize()} (CRoP otherwise; see :mod:`crop.personalization.ablations`).",
    )


@dataclass
class InvariantFinetuneConfig(FinetuneConfig):
    """Conventional finetuning with CRoP's invariance term (weight 1)."""

    invariance: InvarianceConfig = field(default_factory=lambda: InvarianceConfig(weight=1.0))


fit_finetune_invariant = register_variant(
    "finetune-invariant",
    InvariantFinetuneConfig,
    "ablation: conventional finetuning with crop's invariance term",
    fit_finetune,
    "Finetuning with the invariance term: what that term buys without CRoP's steps.",
)


@dataclass
class RoutedFinetuneConfig(FinetuneConfig):
    """Conventional finetuning served through crop's per-window routing."""

    route: RouteConfig = field(default_factory=RouteConfig)


fit_finetune_routed = register_variant(
    "finetune-routed",
    RoutedFinetuneConfig,
    "conventional finetuning with crop's per-window routing to the generic model",
    fit_finetune,
    "Finetuning served through crop's routing: what routing buys without CRoP's steps.",
)


@dataclass
class IterativeConfig(CRoPConfig):
    """CRoP reaching its pruning amount in several prune -> mix -> finetune cycles (MP-I).

    Attributes:
        cycles: number of cycles (1 is one-shot CRoP up to the seed of the final phase).
        cycle_epochs: epochs of each intermediate finetuning (``None``: ``final.epochs``); they
            keep their last epoch. The last cycle runs the ``final`` phase unchanged.
    """

    cycles: int = 3
    cycle_epochs: int | None = None


def _pruned_positions(masks: dict[str, torch.Tensor]) -> int:
    return sum(int((~m).sum()) for m in masks.values())


def _overlap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Jaccard index of the pruned positions of two mask sets (1 when both prune nothing)."""
    inter = sum(int((~a[n] & ~b[n]).sum()) for n in a)
    union = sum(int((~a[n] | ~b[n]).sum()) for n in a)
    return inter / union if union else 1.0


@register_method("crop-mpi", IterativeConfig, "ablation: iterative prune-mix-finetune cycles (MP-I)")
def fit_crop_mpi(
    generic: nn.Module,
    available: ContextSplit,
    config: IterativeConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """MP-I: CRoP's steps 1-2 give the amount ``p*``; ``cycles`` cycles reach it gradually."""
    if config.cycles < 1:
        raise CropError(f"cycles must be >= 1, got {config.cycles}")
    if config.cycle_epochs is not None and config.cycle_epochs < 0:
        raise CropError(f"cycle_epochs must be >= 0, got {config.cycle_epochs}")
    from crop.personalization.mitigation import is_active

    if is_active(config.mitigation):
        raise CropError("crop-mpi: fairness mitigation options are not supported (its cycles train without them)")
    # Steps 1-2 exactly as CRoP (same seed): the initial model and the one-shot amount.
    one_shot_cfg = dataclasses.replace(config, final=dataclasses.replace(config.final, epochs=0))
    base = fit_crop(generic, available, one_shot_cfg, seed=seed, metric=metric)
    target = float(base.prune_amount or 0.0)
    generic_state = base.states["generic"]
    alpha_after_step1 = base.info["alpha_initial_phase"][-1] if base.info["alpha_initial_phase"] else config.alpha
    final_alpha = alpha_after_step1 if config.final_alpha == "continue" else config.alpha

    t0 = time.perf_counter()
    model = clone_model(generic)
    model.load_state_dict(base.states["initial"])
    names = prunable_names(model, exclude_last=config.exclude_last)
    prune_data = available.train if config.prune_data == "train" else available.val
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n in names}
    cycles: list[dict] = []
    pruned_state = mixed_state = state_copy(model)
    step = None
    alpha_traces: list[list[float]] = []
    for c in range(1, config.cycles + 1):
        amount = round(target * c / config.cycles, 10)
        previous = masks
        scores, prune_lowest = prune_scores(model, names, config.prune_criterion, prune_data)
        masks = global_masks(scores, amount, prune_lowest)
        pruned_state = state_copy(model)
        for n, keep in masks.items():
            pruned_state[n] = pruned_state[n] * keep
        mixed_state = mix(pruned_state, generic_state, masks)
        model.load_state_dict(mixed_state)
        last = c == config.cycles
        phase = config.final
        if not last:
            epochs = config.final.epochs if config.cycle_epochs is None else config.cycle_epochs
            intermediate = {"epochs": epochs, "select": "last", "include_initial": False, "patience": None}
            phase = TrainConfig(**{**config.final.__dict__, **intermediate})
        penalty = _penalty(config, final_alpha)
        hooks: list[Hook] = [penalty]
        if config.final_finetune == "partial":
            hooks.append(FreezePruned(model, masks))
        step = train(model, available.train, available.val, phase, seed=seed + c, metric=metric, hooks=hooks)
        alpha_traces.append(penalty.trace)
        again = sum(int((~previous[n] & ~masks[n]).sum()) for n in masks)
        cycles.append(
            {
                "cycle": c,
                "amount": amount,
                "pruned": _pruned_positions(masks),
                "pruned_again": again,  # positions pruned in the previous cycle and again in this one
                "pruned_before": _pruned_positions(previous),
                "val_metric": float(step.best_score) if last else float("nan"),
            }
        )
    assert step is not None
    final_state = state_copy(model)
    served, route_info = route(generic, model, available.train.X, available.val.X, config.route)
    return PersonalizationResult(
        "crop-mpi",
        served,
        states={
            "generic": generic_state,
            "initial": base.states["initial"],
            "pruned": pruned_state,
            "mixed": mixed_state,
            "final": final_state,
        },
        prune_amount=target,
        info={
            "masks": masks,
            "one_shot_masks": base.info["masks"],
            "overlap_with_one_shot": _overlap(masks, base.info["masks"]),
            "cycles": cycles,
            "prune_history": base.info["prune_history"],
            "prune_reference": base.info["prune_reference"],
            "alpha_initial_phase": base.info["alpha_initial_phase"],
            "alpha_final_phase": alpha_traces[-1],
            "alpha_cycles": alpha_traces,
            "initial_epoch": base.info["initial_epoch"],
            "final_epoch": step.best_epoch,
            "mixed_selected": step.best_epoch == 0,
            "history_initial": base.info["history_initial"],
            "history_final": step.history,
            "timings": {**base.info["timings"], "cycles": time.perf_counter() - t0},
            **route_info,
        },
    )

"""CRoP, Algorithm 1 of the paper, composed from the step modules.

1. finetune the generic model with ``alpha * ||M||_1`` (alpha trainable)   -> ``initial``
2. ToleratedPrune(initial, tau) on available-context data                  -> ``pruned``
3. replace the pruned positions by the generic weights                     -> ``mixed``
4. finetune again with the same objective, selecting the best validation
   checkpoint among the mixed model and every epoch                        -> ``final``

Choices the paper leaves open are options of :class:`CRoPConfig`; see the field docs. Three
defaults go beyond the paper, each backed by an experiment on all HAPT users
(docs/RESULTS.md, "Choosing the first two additions" and "Do no harm where nobody recorded"):

* ``recalibrate_bn=True``: after mixing, BatchNorm statistics are re-estimated on the
  available-context training windows. Mixing replaces most weights outside training and leaves
  the statistics of the weights it replaced (the paper's networks have no BatchNorm).
* ``invariance.weight=1``: both finetuning phases keep the invariances the generic model has on
  the person's windows (:mod:`crop.personalization.invariance`).
* ``route.enabled=True``: after step 4, each window is served by the personalized network where
  it resembles the person's enrollment data and by the generic model where it does not
  (:mod:`crop.personalization.route`); ``result.model`` is then a routed model and
  ``result.network`` the CRoP network the states belong to.

With none of them, CRoP is exactly the paper's Algorithm 1; that configuration is registered as
``crop-paper`` (:class:`CRoPPaperConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from torch import nn

from crop.data.sensing import ContextSplit, SensingData
from crop.errors import CropError
from crop.models.utils import clone_model, state_copy
from crop.personalization.contrastive import ContrastiveConfig, contrastive_objective
from crop.personalization.invariance import InvarianceConfig, invariance_objective, training_windows
from crop.personalization.loop import TrainConfig, train
from crop.personalization.mitigation import MitigationConfig, do_no_harm, mitigation_objective
from crop.personalization.mix import mix
from crop.personalization.norm import recalibrate_batchnorm
from crop.personalization.prune import FreezePruned, PruneCriterion, prunable_names, prune_scores, tolerated_prune
from crop.personalization.registry import PersonalizationResult, check_available, register_method
from crop.personalization.regularize import AlphaParam, PenaltyKind, WeightPenalty
from crop.personalization.route import RouteConfig, check_route_config, route


def _initial_phase() -> TrainConfig:
    return TrainConfig(select="last")


def _final_phase() -> TrainConfig:
    return TrainConfig(select="best", include_initial=True)


@dataclass
class CRoPConfig:
    """Hyperparameters of CRoP (Algorithm 1, Appendix A.3).

    Attributes:
        alpha: initial regularization coefficient.
        alpha_param: how alpha is kept trainable: ``"log"`` (default, alpha = exp(a) > 0),
            ``"clamp"``, ``"unconstrained"`` (the reference code), ``"fixed"``.
        penalty: ``"l1"`` (CRoP); ``"l2"``, ``"l0"``, ``"polarization"`` for ablations.
        penalty_scope: ``"all"`` parameters (``||M||_1``) or ``"prunable"`` weights only.
        tau: ToleratedPrune tolerance in accuracy units (0.05 = 5 points).
        k, k_step: first pruning amount and its increment (the paper's k and k').
        prune_from: prune the ``"last"`` epoch of step 1 (Algorithm 1 has no selection there,
            and the reference code does this) or its ``"best"`` validation epoch.
        prune_data: the available-context split ToleratedPrune measures accuracy on:
            ``"train"`` (D_i^a, the data of Algorithm 1) or ``"val"``.
        exclude_last: never prune the decision layer.
        prune_criterion: what ToleratedPrune removes first: the smallest ``|w|``
            (``"magnitude"``, CRoP), the largest (``"top_magnitude"``, MP-T ablation) or the
            smallest ``|w * grad|`` on the prune data (``"gradient"``, GP ablation).
        final_finetune: step 4 trains every weight (``"full"``, CRoP) or freezes the pruned
            positions at their mixed-in generic values (``"partial"``, Section 8.3 ablation).
        final_alpha: step 4 restarts alpha at ``alpha`` (``"reset"``) or continues from the
            value step 1 ended with (``"continue"``).
        recalibrate_bn: after mixing, re-estimate BatchNorm running statistics on the windows
            the phases train on (no labels; :mod:`crop.personalization.norm`). Mixing sets most
            weights outside training, which leaves the statistics stale. Default on (beyond
            the paper); no effect on networks without BatchNorm.
        invariance: keep the generic model's invariances in both finetuning phases
            (:mod:`crop.personalization.invariance`; off when its ``weight`` is 0). Default weight 1
            (beyond the paper).
        contrastive: hold the embeddings to the generic model's class prototypes in both
            phases (:mod:`crop.personalization.contrastive`; off when its ``weight`` is 0).
        prune_eval: what ToleratedPrune scores at each candidate amount: the ``"pruned"`` model
            with the removed positions at zero (Algorithm 2 as written), or the ``"mixed"``
            model with the generic weights there (and, with ``recalibrate_bn``, re-estimated
            normalization statistics), i.e. the model CRoP goes on with.
        initial, final: the two finetuning phases. ``initial.select`` is set from ``prune_from``;
            ``final`` keeps the best validation checkpoint with the mixed model as a candidate.
        mitigation: fairness mitigation (:mod:`crop.personalization.mitigation`; off by default): a
            group objective in both finetuning phases and/or the do-no-harm guard after step 4.
        route: after step 4, serve each window by the personalized model where it is like the
            person's enrollment data and by the generic model where it is not
            (:mod:`crop.personalization.route`). Default on (beyond the paper).
    """

    alpha: float = 1e-3
    alpha_param: AlphaParam = "log"
    penalty: PenaltyKind = "l1"
    penalty_scope: Literal["all", "prunable"] = "all"
    tau: float = 0.05
    k: float = 0.05
    k_step: float = 0.05
    prune_from: Literal["last", "best"] = "last"
    prune_data: Literal["train", "val"] = "train"
    exclude_last: bool = True
    prune_criterion: PruneCriterion = "magnitude"
    final_finetune: Literal["full", "partial"] = "full"
    final_alpha: Literal["reset", "continue"] = "reset"
    recalibrate_bn: bool = True
    prune_eval: Literal["pruned", "mixed"] = "pruned"
    invariance: InvarianceConfig = field(default_factory=lambda: InvarianceConfig(weight=1.0))
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    initial: TrainConfig = field(default_factory=_initial_phase)
    final: TrainConfig = field(default_factory=_final_phase)
    mitigation: MitigationConfig = field(default_factory=MitigationConfig)
    route: RouteConfig = field(default_factory=RouteConfig)


def _penalty(config: CRoPConfig, alpha: float) -> WeightPenalty:
    return WeightPenalty(
        alpha, config.penalty, config.alpha_param, config.penalty_scope, exclude_last=config.exclude_last
    )


def check_crop_config(config: CRoPConfig, generic: nn.Module | None = None) -> None:
    """Reject unknown step options (and, with ``generic``, a model the routing cannot read)
    before any training starts (one-line errors)."""
    if config.prune_criterion not in ("magnitude", "gradient", "top_magnitude"):
        raise CropError(
            f"unknown prune_criterion {config.prune_criterion!r}; choose magnitude, gradient or top_magnitude"
        )
    if config.final_finetune not in ("full", "partial"):
        raise CropError(f"unknown final_finetune {config.final_finetune!r}; choose full or partial")
    if config.prune_eval not in ("pruned", "mixed"):
        raise CropError(f"unknown prune_eval {config.prune_eval!r}; choose pruned or mixed")
    check_route_config(config.route, generic)


@register_method("crop", CRoPConfig, "CRoP: penalized finetuning, ToleratedPrune, mixing, final finetuning")
def fit_crop(
    generic: nn.Module,
    available: ContextSplit,
    config: CRoPConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
    method_name: str = "crop",
) -> PersonalizationResult:
    """Algorithm 1. ``generic`` is not modified."""
    import time

    n_classes = check_available(generic, available)
    check_crop_config(config, generic)
    timings: dict[str, float] = {}
    generic_state = state_copy(generic)
    invariance, invariance_info = invariance_objective(generic, available.train.X, config.invariance, seed)
    objective = contrastive_objective(generic, available.train.X, available.train.y, config.contrastive, invariance)
    recal_windows = training_windows(available.train.X, invariance, seed) if config.recalibrate_bn else None
    objective, train_data, group_objective = mitigation_objective(
        config.mitigation, objective, available.train, n_classes
    )

    # Line 2: finetune with the trainable-alpha penalty.
    t0 = time.perf_counter()
    model = clone_model(generic)
    penalty = _penalty(config, config.alpha)
    initial_cfg = TrainConfig(**{**config.initial.__dict__, "select": config.prune_from})
    step1 = train(
        model,
        train_data,
        available.val,
        initial_cfg,
        seed=seed,
        metric=metric,
        hooks=[penalty],
        objective=objective,
    )
    initial_state = state_copy(model)
    timings["initial_finetune"] = time.perf_counter() - t0

    # Line 3: ToleratedPrune on available-context data.
    t0 = time.perf_counter()
    names = prunable_names(model, exclude_last=config.exclude_last)
    prune_data = available.train if config.prune_data == "train" else available.val
    scores, prune_lowest = prune_scores(model, names, config.prune_criterion, prune_data)
    tolerance = dict(metric=metric, names=names, scores=scores, prune_lowest=prune_lowest)
    if config.prune_eval == "mixed":
        tolerance["fill"] = {n: generic_state[n] for n in names}
        tolerance["recalibrate"] = (
            SensingData(recal_windows, np.zeros(len(recal_windows))) if config.recalibrate_bn else None
        )
    pruned = tolerated_prune(model, prune_data, config.tau, config.k, config.k_step, **tolerance)
    timings["tolerated_prune"] = time.perf_counter() - t0

    # Line 4: mixing by replacement.
    t0 = time.perf_counter()
    mixed_state = mix(pruned.state, generic_state, pruned.masks)
    model.load_state_dict(mixed_state)
    if config.recalibrate_bn:
        recalibrate_batchnorm(model, recal_windows)
        mixed_state = state_copy(model)
    timings["mix"] = time.perf_counter() - t0

    # Line 5: final finetuning, same objective, best validation checkpoint (mixed model included).
    t0 = time.perf_counter()
    final_alpha = penalty.alpha if config.final_alpha == "continue" else config.alpha
    penalty2 = _penalty(config, final_alpha)
    hooks2 = [penalty2] + ([FreezePruned(model, pruned.masks)] if config.final_finetune == "partial" else [])
    step2 = train(
        model,
        train_data,
        available.val,
        config.final,
        seed=seed + 1,
        metric=metric,
        hooks=hooks2,
        objective=objective,
    )
    timings["final_finetune"] = time.perf_counter() - t0
    extra: dict = {}
    if group_objective is not None and group_objective.trace:
        extra["group_weights"] = group_objective.trace[-1]
    if config.mitigation.guard:
        guard_windows = recal_windows if recal_windows is not None else available.train.X
        _, extra["guard"] = do_no_harm(generic, model, available.val, guard_windows, config.mitigation)
    final_state = state_copy(model)
    served, route_info = route(generic, model, available.train.X, available.val.X, config.route)

    return PersonalizationResult(
        method_name,
        served,
        states={
            "generic": generic_state,
            "initial": initial_state,
            "pruned": pruned.state,
            "mixed": mixed_state,
            "final": final_state,
        },
        prune_amount=pruned.amount,
        info={
            "masks": pruned.masks,
            "prune_history": pruned.history,
            "prune_reference": pruned.reference,
            "alpha_initial_phase": penalty.trace,
            "alpha_final_phase": penalty2.trace,
            "initial_epoch": step1.best_epoch,
            "final_epoch": step2.best_epoch,
            "mixed_selected": step2.best_epoch == 0,
            **invariance_info,
            **extra,
            **route_info,
            "history_initial": step1.history,
            "history_final": step2.history,
            "timings": {
                **timings,
                "selection_initial": step1.selection_seconds,
                "selection_final": step2.selection_seconds,
            },
        },
    )


@dataclass
class CRoPPaperConfig(CRoPConfig):
    """CRoP exactly as the paper's Algorithm 1 and 2 read: no normalization re-estimation after
    mixing, ToleratedPrune scoring the zero-pruned model, cross-entropy objective (no
    invariance or contrastive term), no routing, every other option at its paper value. Registered as
    ``crop-paper`` so the paper-literal configuration stays available by name whatever the
    defaults of ``crop`` become."""

    alpha: float = 1e-3
    alpha_param: AlphaParam = "log"
    penalty: PenaltyKind = "l1"
    penalty_scope: Literal["all", "prunable"] = "all"
    tau: float = 0.05
    k: float = 0.05
    k_step: float = 0.05
    prune_from: Literal["last", "best"] = "last"
    prune_data: Literal["train", "val"] = "train"
    exclude_last: bool = True
    prune_criterion: PruneCriterion = "magnitude"
    final_finetune: Literal["full", "partial"] = "full"
    final_alpha: Literal["reset", "continue"] = "reset"
    recalibrate_bn: bool = False
    prune_eval: Literal["pruned", "mixed"] = "pruned"
    invariance: InvarianceConfig = field(default_factory=InvarianceConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    initial: TrainConfig = field(default_factory=_initial_phase)
    final: TrainConfig = field(default_factory=_final_phase)
    route: RouteConfig = field(default_factory=lambda: RouteConfig(enabled=False))


@register_method("crop-paper", CRoPPaperConfig, "CRoP with the paper-literal configuration (Algorithms 1 and 2)")
def fit_crop_paper(
    generic: nn.Module,
    available: ContextSplit,
    config: CRoPPaperConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Algorithm 1 with the paper's configuration (see :class:`CRoPPaperConfig`)."""
    return fit_crop(generic, available, config, seed=seed, metric=metric, method_name="crop-paper")

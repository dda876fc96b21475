"""Conventional finetuning, the paper's ``M^C``: the shared loop without any penalty,
keeping the best-validation epoch; and the ``generic`` pseudo-method (no personalization)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from crop.data.sensing import ContextSplit
from crop.models.utils import clone_model, state_copy
from crop.personalization.contrastive import ContrastiveConfig, contrastive_objective
from crop.personalization.invariance import InvarianceConfig, invariance_objective
from crop.personalization.loop import TrainConfig, train
from crop.personalization.mitigation import MitigationConfig, do_no_harm, mitigation_objective
from crop.personalization.registry import PersonalizationResult, check_available, register_method
from crop.personalization.route import RouteConfig, check_route_config, route


@dataclass
class FinetuneConfig:
    """Conventional finetuning: one phase of the shared loop, best validation epoch kept.

    ``invariance`` and ``contrastive`` (off by default) add the generic model's invariances
    (:mod:`crop.personalization.invariance`) or its class structure
    (:mod:`crop.personalization.contrastive`) to the objective, so their effect can be measured
    without CRoP's steps. ``mitigation`` (off by default): group-balanced reweighting, group
    DRO and the do-no-harm guard (:mod:`crop.personalization.mitigation`). ``route`` (off by
    default; on in ``finetune-routed``): serve each window by the finetuned or the generic model by
    its distance from the enrollment data (:mod:`crop.personalization.route`).
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    invariance: InvarianceConfig = field(default_factory=InvarianceConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    mitigation: MitigationConfig = field(default_factory=MitigationConfig)
    route: RouteConfig = field(default_factory=lambda: RouteConfig(enabled=False))


@register_method("finetune", FinetuneConfig, "conventional finetuning (M^C)")
def fit_finetune(
    generic: nn.Module,
    available: ContextSplit,
    config: FinetuneConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Finetune all parameters on the available context with cross-entropy."""
    n_classes = check_available(generic, available)
    check_route_config(config.route, generic)
    model = clone_model(generic)
    objective, invariance_info = invariance_objective(generic, available.train.X, config.invariance, seed)
    objective = contrastive_objective(generic, available.train.X, available.train.y, config.contrastive, objective)
    objective, train_data, group_objective = mitigation_objective(
        config.mitigation, objective, available.train, n_classes
    )
    out = train(model, train_data, available.val, config.train, seed=seed, metric=metric, objective=objective)
    extra: dict = {}
    if group_objective is not None and group_objective.trace:
        extra["group_weights"] = group_objective.trace[-1]
    if config.mitigation.guard:
        _, extra["guard"] = do_no_harm(generic, out.model, available.val, available.train.X, config.mitigation)
    final_state = state_copy(out.model)
    served, route_info = route(generic, out.model, available.train.X, available.val.X, config.route)
    return PersonalizationResult(
        "finetune",
        served,
        states={"generic": state_copy(generic), "final": final_state},
        info={"best_epoch": out.best_epoch, "history": out.history, **invariance_info, **extra, **route_info},
    )


@dataclass
class GenericConfig:
    """The generic model, unchanged (the reference of Delta_P)."""


@register_method("generic", GenericConfig, "the generic model, not personalized")
def fit_generic(
    generic: nn.Module,
    available: ContextSplit,
    config: GenericConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Return a copy of the generic model."""
    model = clone_model(generic).eval()
    return PersonalizationResult("generic", model, states={"generic": state_copy(generic), "final": state_copy(model)})

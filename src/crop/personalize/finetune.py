"""Conventional finetuning, the paper's ``M^C``: the shared loop without any penalty,
keeping the best-validation epoch; and the ``generic`` pseudo-method (no personalization)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from crop.data.sensing import ContextSplit
from crop.models.utils import clone_model, state_copy
from crop.personalize.contrastive import ContrastiveConfig, contrastive_objective
from crop.personalize.invariance import InvarianceConfig, invariance_objective
from crop.personalize.loop import TrainConfig, train
from crop.personalize.registry import PersonalizationResult, check_available, register_method


@dataclass
class FinetuneConfig:
    """Conventional finetuning: one phase of the shared loop, best validation epoch kept.

    ``invariance`` and ``contrastive`` (off by default) add the generic model's invariances
    (:mod:`crop.personalize.invariance`) or its class structure
    (:mod:`crop.personalize.contrastive`) to the objective, so their effect can be measured
    without CRoP's steps.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    invariance: InvarianceConfig = field(default_factory=InvarianceConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)


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
    check_available(generic, available)
    model = clone_model(generic)
    objective, invariance_info = invariance_objective(generic, available.train.X, config.invariance, seed)
    objective = contrastive_objective(generic, available.train.X, available.train.y, config.contrastive, objective)
    out = train(model, available.train, available.val, config.train, seed=seed, metric=metric, objective=objective)
    return PersonalizationResult(
        "finetune",
        out.model,
        states={"generic": state_copy(generic), "final": state_copy(out.model)},
        info={"best_epoch": out.best_epoch, "history": out.history, **invariance_info},
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

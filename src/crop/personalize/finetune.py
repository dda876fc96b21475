"""Conventional finetuning, the paper's ``M^C``: the shared loop without any penalty,
keeping the best-validation epoch; and the ``generic`` pseudo-method (no personalization)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from crop.data.sensing import ContextSplit
from crop.models.utils import clone_model, state_copy
from crop.personalize.loop import TrainConfig, train
from crop.personalize.registry import PersonalizationResult, check_available, register_method


@dataclass
class FinetuneConfig:
    """Conventional finetuning: one phase of the shared loop, best validation epoch kept."""

    train: TrainConfig = field(default_factory=TrainConfig)


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
    out = train(model, available.train, available.val, config.train, seed=seed, metric=metric)
    return PersonalizationResult(
        "finetune",
        out.model,
        states={"generic": state_copy(generic), "final": state_copy(out.model)},
        info={"best_epoch": out.best_epoch, "history": out.history},
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

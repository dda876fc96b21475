"""Personalization methods: CRoP (Algorithm 1), conventional finetuning and the baselines."""

from crop.personalization.crop import CRoPConfig, fit_crop
from crop.personalization.finetune import FinetuneConfig, GenericConfig
from crop.personalization.loop import Hook, TrainConfig, TrainResult, train
from crop.personalization.mix import mix
from crop.personalization.prune import PruneResult, global_masks, prunable_names, tolerated_prune
from crop.personalization.registry import (
    METHODS,
    PersonalizationResult,
    available_methods,
    get_method,
    register_method,
)
from crop.personalization.regularize import WeightPenalty

__all__ = [
    "METHODS",
    "CRoPConfig",
    "FinetuneConfig",
    "GenericConfig",
    "Hook",
    "PersonalizationResult",
    "PruneResult",
    "TrainConfig",
    "TrainResult",
    "WeightPenalty",
    "available_methods",
    "fit_crop",
    "get_method",
    "global_masks",
    "mix",
    "prunable_names",
    "register_method",
    "tolerated_prune",
    "train",
]

"""Personalization methods: CRoP (Algorithm 1), conventional finetuning and the baselines."""

from crop.personalize.crop import CRoPConfig, fit_crop
from crop.personalize.finetune import FinetuneConfig, GenericConfig
from crop.personalize.loop import Hook, TrainConfig, TrainResult, train
from crop.personalize.mix import mix
from crop.personalize.prune import PruneResult, global_masks, prunable_names, tolerated_prune
from crop.personalize.registry import (
    METHODS,
    PersonalizationResult,
    available_methods,
    get_method,
    register_method,
)
from crop.personalize.regularize import WeightPenalty

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

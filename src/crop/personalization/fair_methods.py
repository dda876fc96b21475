"""Conventional finetuning and CRoP with one fairness mitigation switched on, registered by name
so that a benchmark can run them beside the unmitigated methods (``crop bench --methods
generic,finetune,crop,finetune-guard,crop-guard,...``).

===================  ===========================================================
method               what it is
===================  ===========================================================
finetune-guard       finetune + the do-no-harm guard
finetune-reweight    finetune with group-balanced reweighting (groups: classes)
finetune-dro         finetune with online group DRO (groups: classes)
crop-guard           crop + the do-no-harm guard
crop-reweight        crop with group-balanced reweighting in both phases
crop-dro             crop with online group DRO in both phases
===================  ===========================================================

Each is its base method with one field of ``mitigation`` changed
(:class:`~crop.personalization.mitigation.MitigationConfig`; sources and details in
:mod:`crop.personalization.mitigation`); every other option keeps the base method's default and
can be set the same way (``[crop-guard.mitigation] guard_tolerance = 0.1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crop.personalization.crop import CRoPConfig, fit_crop
from crop.personalization.finetune import FinetuneConfig, fit_finetune
from crop.personalization.mitigation import MitigationConfig
from crop.personalization.registry import register_variant


@dataclass
class FinetuneGuardConfig(FinetuneConfig):
    """Finetuning followed by the do-no-harm guard."""

    mitigation: MitigationConfig = field(default_factory=lambda: MitigationConfig(guard=True))


@dataclass
class FinetuneReweightConfig(FinetuneConfig):
    """Finetuning with group-balanced reweighting."""

    mitigation: MitigationConfig = field(default_factory=lambda: MitigationConfig(objective="reweight"))


@dataclass
class FinetuneDROConfig(FinetuneConfig):
    """Finetuning with online group DRO."""

    mitigation: MitigationConfig = field(default_factory=lambda: MitigationConfig(objective="group-dro"))


@dataclass
class CRoPGuardConfig(CRoPConfig):
    """CRoP followed by the do-no-harm guard."""

    mitigation: MitigationConfig = field(default_factory=lambda: MitigationConfig(guard=True))


@dataclass
class CRoPReweightConfig(CRoPConfig):
    """CRoP with group-balanced reweighting in both finetuning phases."""

    mitigation: MitigationConfig = field(default_factory=lambda: MitigationConfig(objective="reweight"))


@dataclass
class CRoPDROConfig(CRoPConfig):
    """CRoP with online group DRO in both finetuning phases."""

    mitigation: MitigationConfig = field(default_factory=lambda: MitigationConfig(objective="group-dro"))


VARIANTS: dict[str, tuple[str, type, str]] = {
    "finetune-guard": ("finetune", FinetuneGuardConfig, "fairness: finetune + do-no-harm guard"),
    "finetune-reweight": ("finetune", FinetuneReweightConfig, "fairness: finetune with group-balanced reweighting"),
    "finetune-dro": ("finetune", FinetuneDROConfig, "fairness: finetune with group DRO"),
    "crop-guard": ("crop", CRoPGuardConfig, "fairness: crop + do-no-harm guard"),
    "crop-reweight": ("crop", CRoPReweightConfig, "fairness: crop with group-balanced reweighting"),
    "crop-dro": ("crop", CRoPDROConfig, "fairness: crop with group DRO"),
}


for _name, (_base, _cls, _description) in VARIANTS.items():
    register_variant(
        _name,
        _cls,
        _description,
        fit_crop if _base == "crop" else fit_finetune,
        f"{_description.capitalize()} (see :mod:`crop.personalization.fair_methods`).",
    )

"""Personalization that survives a failing sensor: ``coteach`` and the ``modality-dropout`` baseline.

Both run on the networks of :mod:`crop.models.modality`, which detect a faulty sensor per window
(:mod:`crop.data.detect`) and stop reading it. What they learn, on the generic training data
(generic model kinds ``hapt-coteach`` / ``hapt-dropout``, :mod:`crop.generic`) and again on the
person's available windows:

``modality-dropout``
    Cross-entropy on windows whose accelerometer or gyroscope is masked at random (each with
    probability ``p_drop / 2`` per window), so the network knows how to classify with one sensor
    missing. The simple baseline (e.g. Neverova et al., "ModDrop", 2016).

``coteach``
    Cross-modal co-teaching (:class:`~crop.models.modality.CoTeachNet`): per window,

    ``L = CE(h(a, g), y) + missing * [CE(h(a, E_g(a)), y) + CE(h(E_a(g), g), y)] / 2
    + teach * [w * (|E_g(a) - sg(g)|^2 + |E_a(g) - sg(a)|^2)] / 2``

    with ``a``, ``g`` the accelerometer and gyroscope embeddings, ``E_a``/``E_g`` the emulators,
    ``h`` the classifier and ``sg`` stop-gradient: each sensor teaches the emulator of itself that
    the other sensor drives (Xiao et al., IMWUT 2023/24: a sensor available in training teaches
    another branch to emulate its representation), and the classifier learns to work from an
    emulated embedding. *Dynamic* weighting (``dynamic=True``): ``w`` is the fused model's
    probability of the true class (detached, normalised to mean 1 in the batch), so teaching comes
    from the windows the model gets right, the small-loss selection of co-teaching (Han et al.,
    NeurIPS 2018), and a confused window teaches less.

The person's data is never faulted: masking and emulation are what these methods are, chosen by
name; no other method sees masked windows. Validation and checkpoint selection use the clean
available-context validation split through the routed forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.hapt import HAPTNet
from crop.models.modality import CoTeachNet, MaskedHAPTNet, mask_sensors
from crop.models.utils import clone_model, state_copy
from crop.personalization.loop import TrainConfig, train
from crop.personalization.registry import PersonalizationResult, check_available, register_method


@dataclass
class ModalityDropoutConfig:
    """Finetuning with one sensor masked at random (``p_drop``: share of windows with a sensor
    masked, split evenly between accelerometer and gyroscope)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    p_drop: float = 0.5


@dataclass
class CoTeachConfig:
    """Co-teaching finetuning: ``missing`` weighs the classification from one sensor plus an
    emulated one, ``teach`` the emulation (teaching) term, ``dynamic`` its per-window weighting."""

    train: TrainConfig = field(default_factory=TrainConfig)
    missing: float = 1.0
    teach: float = 1.0
    dynamic: bool = True


class ModalityDropout:
    """Objective: cross-entropy of a :class:`MaskedHAPTNet` on windows with a random sensor masked."""

    def __init__(self, p_drop: float, seed: int, transform=None) -> None:
        self.p_drop = p_drop
        self.gen = torch.Generator().manual_seed(seed + 4243)
        self.transform = transform

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            x = self.transform(x)
        u = torch.rand(len(x), generator=self.gen)
        acc_off = u < self.p_drop / 2
        gyro_off = (u >= self.p_drop / 2) & (u < self.p_drop)
        return F.cross_entropy(model.net(mask_sensors(x, model.mean, acc_off, gyro_off)), y)


class CoTeaching:
    """Objective: the co-teaching loss of a :class:`CoTeachNet` (module docstring)."""

    def __init__(self, missing: float, teach: float, dynamic: bool, transform=None) -> None:
        self.missing, self.teach, self.dynamic = missing, teach, dynamic
        self.transform = transform

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            x = self.transform(x)
        acc, gyro = model.embed_sensors(x)
        acc_e, gyro_e = model.emulate(acc, gyro)
        fused = model.classify(acc, gyro)
        loss = F.cross_entropy(fused, y)
        if self.missing > 0:
            only_acc = F.cross_entropy(model.classify(acc, gyro_e), y)
            only_gyro = F.cross_entropy(model.classify(acc_e, gyro), y)
            loss = loss + self.missing * (only_acc + only_gyro) / 2
        if self.teach > 0:
            err = ((gyro_e - gyro.detach()) ** 2).mean(1) + ((acc_e - acc.detach()) ** 2).mean(1)
            if self.dynamic:
                w = F.softmax(fused.detach(), dim=1).gather(1, y[:, None]).squeeze(1)
                w = w / w.mean().clamp_min(1e-8)
                err = err * w
            loss = loss + self.teach * err.mean() / 2
        return loss


def _result(name: str, generic: nn.Module, model: nn.Module, out) -> PersonalizationResult:
    return PersonalizationResult(
        name,
        out.model,
        states={"generic": state_copy(generic), "final": state_copy(out.model)},
        info={"best_epoch": out.best_epoch, "history": out.history},
    )


@register_method(
    "modality-dropout", ModalityDropoutConfig, "finetuning with a random sensor masked; routes around a faulty sensor"
)
def fit_modality_dropout(
    generic: nn.Module,
    available: ContextSplit,
    config: ModalityDropoutConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Finetune a :class:`MaskedHAPTNet` (a plain HAPTNet generic model is wrapped) with random
    sensor masking; the result masks the sensor the fault detector flags."""
    check_available(generic, available)
    if isinstance(generic, HAPTNet):
        model: nn.Module = MaskedHAPTNet.wrap(generic)
    elif isinstance(generic, MaskedHAPTNet):
        model = clone_model(generic)
    else:
        raise CropError("modality-dropout personalizes a HAPT network (kind hapt or hapt-dropout)")
    objective = ModalityDropout(config.p_drop, seed)
    out = train(model, available.train, available.val, config.train, seed=seed, metric=metric, objective=objective)
    return _result("modality-dropout", generic, model, out)


@register_method("coteach", CoTeachConfig, "cross-modal co-teaching; a faulty sensor is emulated from the other")
def fit_coteach(
    generic: nn.Module,
    available: ContextSplit,
    config: CoTeachConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Finetune a co-teaching network (generic model kind ``hapt-coteach``) with the co-teaching loss."""
    if not isinstance(generic, CoTeachNet):
        raise CropError(
            "coteach needs a co-teaching generic model (kind hapt-coteach: crop train-generic --kind hapt-coteach; "
            "crop bench picks it for this method)"
        )
    check_available(generic, available)
    model = clone_model(generic)
    objective = CoTeaching(config.missing, config.teach, config.dynamic)
    out = train(model, available.train, available.val, config.train, seed=seed, metric=metric, objective=objective)
    return _result("coteach", generic, model, out)

"""``crop-certified``: sparse certified personalization (research programme, Aim 2).

Starting from the generic model, two phases of the shared training loop:

1. **robust sparse training** -- ``kappa * CE(clean) + (1 - kappa) * CE(worst-case logits)``,
   the worst case from IBP or CROWN-IBP margin bounds on the L-inf (or L2) ball of radius
   ``eps`` (ramped linearly from 0, ``kappa`` from 1 to ``kappa_end``), while gradual magnitude
   pruning (cubic schedule) removes prunable weights down to ``density`` -- by default by global
   magnitude; optionally with a per-layer density allocation (``allocation = "erk"`` or
   ``"uniform"``) and RigL-style regrowth of the mask under the certified loss (``regrow``), see
   :mod:`crop.certify.sparse_train`;
2. **masked robust finetuning** -- same objective at full ``eps`` with the mask fixed; the
   checkpoint with the best clean validation score is kept (the phase-1 result included).

Pruned weights stay exactly zero throughout and are **not** mixed back from the generic model
(CRoP's Mixed Model would make the model dense again; here sparsity is the deliverable).
Batch-norm statistics are frozen (eval mode) so the trained network is the one the bounds
describe. Density counts the prunable weights (all Linear / Conv weights but the decision
layer, as in CRoP's pruning); ``info["density_all"]`` counts every parameter.

``structure="channel"`` prunes whole units instead of single weights (output channels of the
convolutions, hidden units of the dense layer; :mod:`crop.certify.structured`): on the same
cubic schedule, to at most ``density`` of the same weights, removed units' weights, biases and
BatchNorm scale / shift held at zero through both phases. ``info["compact_model"]`` is then the
network rebuilt with physically smaller dense layers (:func:`crop.certify.compact.compact_model`),
which computes the same outputs and is faster on CPU.

``info`` reports the density, and the clean and verified accuracy on the available-context
validation split (the only held-out data a method may see).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from crop.certify.compact import compact_model
from crop.certify.gradual_prune import FixedMask, FreezeBatchNormStatistics, GradualMagnitudePrune, density_of
from crop.certify.margin import verified_accuracy
from crop.certify.sparse_train import ScheduledSparsity, kept_counts
from crop.certify.structured import GradualChannelPrune
from crop.certify.training import CertifiedObjective
from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import clone_model, score, state_copy
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.norm import recalibrate_batchnorm
from crop.personalization.prune import prunable_names
from crop.personalization.registry import PersonalizationResult, check_available, register_method, register_variant


def _robust_phase() -> TrainConfig:
    return TrainConfig(epochs=40, lr=1e-3, select="last")


def _final_phase() -> TrainConfig:
    return TrainConfig(epochs=20, lr=5e-4, select="best", include_initial=True)


@dataclass
class CertifiedConfig:
    """Hyperparameters of ``crop-certified``.

    Attributes:
        eps: radius of the robust loss, in input units (HAPT: g and rad/s per sample).
        norm: ``"linf"`` or ``"l2"``.
        bound: ``"ibp"`` or ``"crown-ibp"`` margin bounds in the robust loss.
        kappa_end: weight of the clean loss once ``eps`` is reached (1 - robust weight).
        warmup: fraction of phase-1 steps trained clean before the ramp.
        ramp: fraction of phase-1 steps over which ``eps`` grows from 0 to its final value.
        density: fraction of prunable weights kept (1.0: dense certified model).
        prune_start, prune_end: fractions of phase-1 steps where the cubic pruning schedule
            starts and reaches ``density``.
        exclude_last: never prune the decision layer.
        structure: ``"none"`` (single weights, by magnitude) or ``"channel"`` (whole channels /
            hidden units, by effective L1 norm; the decision layer is never pruned).
        allocation: how the kept weights are shared among layers: ``"global"`` (one magnitude
            ranking over all prunable weights; the original behaviour), ``"uniform"`` (the same
            density in every layer) or ``"erk"`` (Erdos-Renyi-Kernel: thin layers such as the
            first convolution denser). Per-layer and total counts are exact.
        regrow: RigL-style mask regrowth during phase 1: fraction (cosine-decayed) of each
            layer's kept weights whose smallest-magnitude members are dropped and replaced by the
            pruned positions with the largest certified-loss gradient, every ``regrow_every``
            optimizer steps from ``prune_start`` until ``regrow_end`` (fractions of phase-1
            steps). 0 (default): masks only shrink. The mask is fixed after ``regrow_end`` and
            in phase 2 in every case.
        start_mask: ``"dense"`` (default): phase 1 starts from every weight of the generic model.
            ``"generic"``: the generic model's zero prunable weights (a sparse generic model such
            as the ``hapt-s5`` kind of :mod:`crop.generic`) are pruned from the first step and
            never come back; the schedule goes on from the generic's density down to
            ``density`` (equal densities: personalization inside the generic's mask).
        recalibrate_bn: re-estimate the batch-norm running statistics on the available-context
            training windows whenever the pruning schedule removes weights (and once when phase 1
            ends), so the frozen statistics describe the pruned network rather than the dense
            generic one. Off by default (the original behaviour).
        robust, final: the two training phases (phase 1 keeps its last epoch, phase 2 the best
            clean validation score, the phase-1 model included).
    """

    eps: float = 0.01
    norm: Literal["linf", "l2"] = "linf"
    bound: Literal["ibp", "crown-ibp"] = "crown-ibp"
    kappa_end: float = 0.5
    warmup: float = 0.0
    ramp: float = 0.5
    density: float = 0.1
    prune_start: float = 0.1
    prune_end: float = 0.6
    exclude_last: bool = True
    structure: Literal["none", "channel"] = "none"
    allocation: Literal["global", "uniform", "erk"] = "global"
    regrow: float = 0.0
    regrow_every: int = 10
    regrow_end: float = 0.8
    start_mask: Literal["dense", "generic"] = "dense"
    recalibrate_bn: bool = False
    robust: TrainConfig = field(default_factory=_robust_phase)
    final: TrainConfig = field(default_factory=_final_phase)


def _check(config: CertifiedConfig) -> None:
    if not 0 < config.density <= 1:
        raise CropError(f"density must lie in (0, 1], got {config.density}")
    if config.eps < 0:
        raise CropError(f"eps must be >= 0, got {config.eps}")
    if config.bound not in ("ibp", "crown-ibp"):
        raise CropError(f"unknown bound {config.bound!r}; choose ibp or crown-ibp")
    if config.norm not in ("linf", "l2"):
        raise CropError(f"unknown norm {config.norm!r}; choose linf or l2")
    if not 0 <= config.prune_start <= config.prune_end <= 1:
        raise CropError("need 0 <= prune_start <= prune_end <= 1")
    if config.structure not in ("none", "channel"):
        raise CropError(f"unknown structure {config.structure!r}; choose none or channel")
    if config.structure == "channel" and (
        config.allocation != "global" or config.regrow or config.start_mask != "dense"
    ):
        raise CropError(
            "structure = 'channel' prunes whole units by its own rule: keep allocation, regrow, start_mask at defaults"
        )
    if config.allocation not in ("global", "uniform", "erk"):
        raise CropError(f"unknown allocation {config.allocation!r}; choose global, uniform or erk")
    if not 0 <= config.regrow <= 1:
        raise CropError(f"regrow must lie in [0, 1], got {config.regrow}")
    if config.start_mask not in ("dense", "generic"):
        raise CropError(f"unknown start_mask {config.start_mask!r}; choose dense or generic")
    if config.regrow_every < 1:
        raise CropError(f"regrow_every must be >= 1, got {config.regrow_every}")
    if not 0 <= config.regrow_end <= 1:
        raise CropError(f"regrow_end must lie in [0, 1], got {config.regrow_end}")


class RecalibrateOnPrune(Hook):
    """Re-estimate batch-norm statistics on ``X`` after every optimizer step at which ``pruner``
    removed weights; the training mode (and the frozen batch-norm layers) are restored."""

    def __init__(self, pruner: GradualMagnitudePrune | ScheduledSparsity, X: np.ndarray) -> None:
        self.pruner, self.X, self.last = pruner, X, pruner.density
        self.count = 0

    def recalibrate(self, model: nn.Module) -> None:
        training = model.training
        recalibrate_batchnorm(model, self.X)
        self.count += 1
        if training:
            model.train()
            FreezeBatchNormStatistics().on_epoch_start(model)

    def after_step(self, model: nn.Module) -> None:
        if self.pruner.density < self.last - 1e-12:
            self.last = self.pruner.density
            self.recalibrate(model)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 or (rest == 1 and n < 2) else 0)


@register_method("crop-certified", CertifiedConfig, "sparse certified personalization: robust loss + gradual pruning")
def fit_certified(
    generic: nn.Module,
    available: ContextSplit,
    config: CertifiedConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Personalize with a certified-robust objective while pruning to ``config.density``."""
    check_available(generic, available)
    _check(config)
    timings: dict[str, float] = {}
    model = clone_model(generic)
    names = prunable_names(model, exclude_last=config.exclude_last)
    if config.density < 1 and not names:
        raise CropError("the model has no prunable weights (Linear/Conv layers besides the last)")

    t0 = time.perf_counter()
    steps = config.robust.epochs * _steps_per_epoch(len(available.train), config.robust.batch_size)
    objective = CertifiedObjective(
        config.eps,
        config.norm,
        config.bound,
        warmup_steps=int(config.warmup * steps),
        ramp_steps=max(1, int(config.ramp * steps)),
        kappa_end=config.kappa_end,
    )
    start, end = int(config.prune_start * steps), max(1, int(config.prune_end * steps))
    pruner: GradualMagnitudePrune | ScheduledSparsity | GradualChannelPrune
    if config.structure == "channel":
        pruner = GradualChannelPrune(model, config.density, start, end)
    elif config.allocation == "global" and config.regrow == 0:
        pruner = GradualMagnitudePrune(model, names, config.density, start, end)  # the original behaviour
    else:
        pruner = ScheduledSparsity(
            model,
            names,
            config.density,
            start,
            end,
            allocation=config.allocation,
            regrow=config.regrow,
            every=config.regrow_every,
            stop=int(config.regrow_end * steps),
        )
    if config.start_mask == "generic":
        params = dict(model.named_parameters())
        pruner.masks = {n: params[n].detach() != 0 for n in names}
        start_density = density_of(pruner.masks)
        if start_density < config.density - 1e-3:
            raise CropError(
                f"start_mask = 'generic': the generic model keeps {start_density:.4f} of its prunable weights, "
                f"less than density = {config.density}"
            )
        pruner.density = min(pruner.density, start_density)
    freeze = FreezeBatchNormStatistics()
    robust_cfg = TrainConfig(**{**config.robust.__dict__, "select": "last"})
    recal = RecalibrateOnPrune(pruner, available.train.X) if config.recalibrate_bn else None
    phase1 = train(
        model,
        available.train,
        available.val,
        robust_cfg,
        seed=seed,
        metric=metric,
        objective=objective,
        hooks=[freeze, pruner] + ([recal] if recal else []),
    )
    pruner.finish(model)  # a schedule longer than the phase ends here
    if recal is not None:
        recal.recalibrate(model)
        model.eval()
    masks = pruner.masks
    timings["robust_sparse"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    final_objective = CertifiedObjective(
        config.eps, config.norm, config.bound, ramp_steps=1, kappa_end=config.kappa_end
    )
    final_objective.step = 1
    phase2 = train(
        model,
        available.train,
        available.val,
        config.final,
        seed=seed + 1,
        metric=metric,
        objective=final_objective,
        hooks=[freeze, FixedMask(getattr(pruner, "fixed_masks", masks))],
    )
    timings["masked_finetune"] = time.perf_counter() - t0

    model.eval()
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    val = available.val
    X_val = torch.as_tensor(val.X)
    t0 = time.perf_counter()
    verified = (
        verified_accuracy(model, X_val, torch.as_tensor(val.y), config.eps, config.norm) if len(val) else math.nan
    )
    timings["verify_val"] = time.perf_counter() - t0
    return PersonalizationResult(
        "crop-certified",
        model,
        states={"generic": state_copy(generic), "final": state_copy(model)},
        prune_amount=1.0 - density_of(masks),
        info={
            "density": density_of(masks),
            "density_all": nonzero / total,
            "masks": masks,
            "eps": config.eps,
            "norm": config.norm,
            "clean_val": score(model, val, metric),
            "verified_val": verified,
            "final_epoch": phase2.best_epoch,
            "history_robust": phase1.history,
            "history_final": phase2.history,
            "timings": timings,
            "nonzero_parameters": int(nonzero),
            "parameters": int(total),
            "prunable": float(np.sum([m.numel() for m in masks.values()])),
            "kept": kept_counts(masks),
            "regrown": getattr(pruner, "regrown", 0),
            **(
                {"structure": "channel", "compact_model": compact_model(model)} if config.structure == "channel" else {}
            ),
        },
    )


@dataclass
class DenseCertifiedConfig(CertifiedConfig):
    """``crop-certified``'s configuration with ``density = 1.0``: no pruning."""

    density: float = 1.0


fit_finetune_certified = register_variant(
    "finetune-certified",
    DenseCertifiedConfig,
    "finetune with the certified (CROWN-IBP) objective, dense: crop-certified at density 1",
    fit_certified,
    "Finetuning with the robust objective of crop-certified and no pruning (density 1.0): the "
    "'finetune with a robust objective' of the research programme's claim (crop docs ROBUSTNESS).",
)

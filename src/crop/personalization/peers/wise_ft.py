"""WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022), adapted to
static personalization.

WiSE-FT finetunes a zero-shot model end to end, then averages the weights of the zero-shot and
the finetuned model: ``theta = (1 - mix) * theta_zero_shot + mix * theta_finetuned``. The
interpolation keeps much of the zero-shot model's robustness to distribution shift while
gaining most of the finetuned model's accuracy on the target distribution.

Here the generic model plays the zero-shot model and the finetuning is the library's
conventional finetuning (:mod:`crop.personalization.finetune`): the shared loop on
``available.train`` with the best epoch on ``available.val``. Nothing else is ever seen.

Adaptations, and why:

- The generic model already has the person's label set, so there is no zero-shot head to
  build from class names; the generic decision layer is finetuned and interpolated like every
  other tensor (WiSE-FT's "end-to-end" variant).
- Every floating-point entry of the state dict is interpolated, BatchNorm running statistics
  included (CLIP has none). Integer buffers (``num_batches_tracked``) cannot be averaged; they
  take the finetuned value.
- Interpolated weights feed each BatchNorm layer inputs whose statistics neither model's
  running statistics describe, so by default (``recalibrate_bn``) the statistics are
  re-estimated on the available-context training windows (no labels, no weight change; see
  :mod:`crop.personalization.norm`). This happens only when ``0 < mix < 1``: at the ends the model
  *is* the generic or the finetuned model, whose statistics are already consistent.
- ``mix`` is fixed (default 0.5, a fixed value the paper reports alongside the tuned
  optimum), not tuned on unseen contexts, which personalization never sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import State, clone_model, state_copy
from crop.personalization.loop import TrainConfig, train
from crop.personalization.norm import has_batchnorm, recalibrate_batchnorm
from crop.personalization.peers._common import weight_distance
from crop.personalization.registry import PersonalizationResult, check_available, register_method


@dataclass
class WiseFTConfig:
    """Hyperparameters of WiSE-FT.

    Attributes:
        mix: interpolation coefficient in ``[0, 1]``: 0 is the generic model, 1 the finetuned
            one; 0.5 is the fixed value the paper reports alongside the best-tuned one.
        recalibrate_bn: re-estimate BatchNorm running statistics on ``available.train``'s
            windows after interpolating (only when ``0 < mix < 1``).
        train: the finetuning phase, conventional finetuning's defaults
            (:class:`~crop.personalization.finetune.FinetuneConfig`).
    """

    mix: float = 0.5
    recalibrate_bn: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)


def interpolate_states(generic: State, finetuned: State, mix: float) -> State:
    """``(1 - mix) * generic + mix * finetuned`` for every floating-point entry; integer entries
    take the finetuned value. ``mix`` 0 and 1 return exact copies of ``generic`` / ``finetuned``."""
    if mix == 0.0:
        return {k: v.clone() for k, v in generic.items()}
    if mix == 1.0:
        return {k: v.clone() for k, v in finetuned.items()}
    out: State = {}
    for key, value in finetuned.items():
        if value.is_floating_point():
            out[key] = (1.0 - mix) * generic[key] + mix * value
        else:
            out[key] = value.clone()
    return out


@register_method("wise-ft", WiseFTConfig, "WiSE-FT: finetune, then interpolate generic and finetuned weights")
def fit_wise_ft(
    generic: nn.Module,
    available: ContextSplit,
    config: WiseFTConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Finetune a copy of ``generic``, then interpolate its weights with the generic ones.

    States: ``generic``, ``finetuned``, ``interpolated`` (before re-estimating BatchNorm
    statistics) and ``final``.
    """
    check_available(generic, available)
    if not 0.0 <= config.mix <= 1.0:
        raise CropError(f"wise-ft: mix must lie in [0, 1], got {config.mix}")
    generic_state = state_copy(generic)
    model = clone_model(generic)
    out = train(model, available.train, available.val, config.train, seed=seed, metric=metric)
    finetuned = state_copy(model)
    interpolated = interpolate_states(generic_state, finetuned, config.mix)
    with torch.no_grad():
        model.load_state_dict(interpolated)
    recalibrated = config.recalibrate_bn and 0.0 < config.mix < 1.0 and has_batchnorm(model)
    if recalibrated:
        recalibrate_batchnorm(model, available.train.X)
    model.eval()
    final = state_copy(model)
    weights = [n for n, _ in model.named_parameters()]
    return PersonalizationResult(
        "wise-ft",
        model,
        states={"generic": generic_state, "finetuned": finetuned, "interpolated": interpolated, "final": final},
        info={
            "mix": config.mix,
            "recalibrated_bn": recalibrated,
            "best_epoch": out.best_epoch,
            "history": out.history,
            "distance_finetuned": weight_distance(finetuned, generic_state, weights),
            "distance_final": weight_distance(final, generic_state, weights),
        },
    )

"""LP-FT (Kumar et al., "Fine-tuning can distort pretrained features and underperform
out-of-distribution", ICLR 2022), adapted to static personalization.

Kumar et al. show that finetuning a pretrained network with a freshly initialised head
distorts the pretrained features: early in training the head is poor, its large gradients
change the features of the in-distribution data, and features of other distributions are left
behind. LP-FT first fits a linear probe (only the head trains, on frozen features), then
finetunes everything from there; the head is already good, the gradients reaching the
features are small, and the features move less.

Here the pretrained network is the generic model:

1. *probe*: only the decision layer (the last Linear/Conv/RNN module, as in
   :mod:`crop.personalization.baselines._common`) trains; every other module stays in eval mode,
   so the features are exactly those the generic model computes at inference (dropout off,
   BatchNorm on its frozen running statistics) and every other tensor of the state dict stays
   the generic one;
2. *finetune*: all parameters train from the probed model, with a smaller learning rate.

Both phases run on the shared loop with ``available.train`` and keep their best epoch on
``available.val``; nothing else is seen.

Adaptations, and why:

- The head is not new: the generic decision layer already fits the generic features and the
  person's label set, so the probe starts from it rather than from zero or at random, and
  refines it to the person's context.
- The original fits the probe as L2-regularised logistic regression to convergence (sklearn);
  here it is a short phase of the shared loop (Adam, best validation epoch), which works for
  any head (a recurrent head is not a logistic regression) and needs no feature cache.
- The finetuning phase keeps conventional finetuning's objective; only its learning rate is
  smaller: the probed head needs no large correction, and small steps are what keep the
  features close to the generic ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from crop.data.sensing import ContextSplit
from crop.models.utils import clone_model, state_copy
from crop.personalization.baselines._common import head_name, head_parameter_names
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.peers._common import only_these_require_grad
from crop.personalization.registry import PersonalizationResult, check_available, register_method


def _probe_phase() -> TrainConfig:
    return TrainConfig(epochs=20, lr=1e-2, select="best")


def _finetune_phase() -> TrainConfig:
    return TrainConfig(epochs=40, lr=3e-4, select="best")


@dataclass
class LPFTConfig:
    """Hyperparameters of LP-FT.

    Attributes:
        probe: the linear-probe phase (only the head trains): a convex problem for a linear
            head on fixed features, so a large learning rate (1e-2) and 20 epochs converge;
            best validation epoch kept.
        finetune: the full finetuning phase from the probed model: conventional finetuning's
            40 epochs with a learning rate about 3x smaller (3e-4 instead of 1e-3), since the
            head is already fitted and only small feature changes are wanted; best epoch kept.
    """

    probe: TrainConfig = field(default_factory=_probe_phase)
    finetune: TrainConfig = field(default_factory=_finetune_phase)


class FrozenFeatures(Hook):
    """Puts every module but the decision layer in eval mode at the start of each epoch:
    dropout off, BatchNorm normalising with (and not updating) its running statistics."""

    def __init__(self, head: str) -> None:
        self.head = head

    def on_epoch_start(self, model: nn.Module) -> None:
        model.eval()
        model.get_submodule(self.head).train()


@register_method("lp-ft", LPFTConfig, "LP-FT: train the head on frozen features, then finetune everything")
def fit_lp_ft(
    generic: nn.Module,
    available: ContextSplit,
    config: LPFTConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Linear probe (head only) then full finetuning of a copy of ``generic``.

    States: ``generic``, ``probed`` (after phase 1) and ``final``.
    """
    check_available(generic, available)
    model = clone_model(generic)
    head = head_name(model)
    with only_these_require_grad(model, head_parameter_names(model)) as head_params:
        probe = train(
            model,
            available.train,
            available.val,
            config.probe,
            seed=seed,
            metric=metric,
            hooks=[FrozenFeatures(head)],
            trainable=head_params,
        )
    probed = state_copy(model)
    tuned = train(model, available.train, available.val, config.finetune, seed=seed + 1, metric=metric)
    return PersonalizationResult(
        "lp-ft",
        model,
        states={"generic": state_copy(generic), "probed": probed, "final": state_copy(model)},
        info={
            "head": head,
            "probe_epoch": probe.best_epoch,
            "finetune_epoch": tuned.best_epoch,
            "history_probe": probe.history,
            "history_finetune": tuned.history,
        },
    )

"""Piggyback (Mallya, Davis & Lazebnik, "Piggyback: Adapting a single network to multiple tasks
by learning to mask weights", ECCV 2018), adapted to static personalization.

Piggyback never changes the backbone. For each weight tensor ``W`` it learns a real-valued mask
``m`` (initialised at ``mask_init``), binarised by a hard threshold; the layer computes with
``W * 1[m > threshold]``. The threshold has no useful gradient, so ``m`` is trained with the
straight-through estimator (the gradient with respect to the binary mask is applied to ``m``).
Only the masks and a task-specific classifier are trained.

Here the person is the new task:

- masks cover every prunable weight (each Linear/Conv weight and GRU/LSTM ``weight_ih``/
  ``weight_hh``) except the decision layer; biases and BatchNorm parameters are frozen and
  BatchNorm stays in eval mode (the generic running statistics), so every backbone tensor of
  the result is the generic one or that tensor with some positions zeroed;
- the classifier: the person's task has the generic label set, so by default (``head="copy"``)
  it starts as a copy of the generic decision layer and is trained; ``head="reinit"`` gives a
  freshly initialised one, as Piggyback does for a new dataset;
- one learning rate for masks and classifier (Piggyback: 1e-4 for masks over many thousand
  steps). With ~100 windows the loop makes a few hundred steps, so the default 1e-3 lets a mask
  cross the threshold (0.01 -> 0.005) after a handful of consistent steps.

The masked model is evaluated through ``torch.func.functional_call`` (the module itself is never
re-parametrised), and the learnt binary masks are finally multiplied into a copy of the generic
model, which is what is returned: an ordinary module with the generic architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import clone_model, state_copy
from crop.personalization.baselines._common import FreezeBatchNorm, head_module, split_parameters
from crop.personalization.loop import TrainConfig, train
from crop.personalization.prune import prunable_names
from crop.personalization.registry import PersonalizationResult, check_available, register_method


@dataclass
class PiggybackConfig:
    """Hyperparameters of Piggyback (defaults of the paper's Section 4).

    Attributes:
        mask_init: initial value of every real-valued mask entry.
        threshold: a weight is used when its mask entry exceeds this value.
        head: the person's classifier starts as a ``"copy"`` of the generic decision layer or
            is ``"reinit"``-ialised (seeded).
        train: the training phase (masks and classifier), best validation epoch kept.
    """

    mask_init: float = 1e-2
    threshold: float = 5e-3
    head: Literal["copy", "reinit"] = "copy"
    train: TrainConfig = field(default_factory=TrainConfig)


def binarize(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """``1[scores > threshold]`` in the forward pass, identity gradient (straight-through)."""
    hard = (scores > threshold).to(scores.dtype)
    return hard + scores - scores.detach()


class MaskedNetwork(nn.Module):
    """``net`` computed with each masked weight replaced by ``weight * binarize(mask)``.

    ``net``'s own tensors are never modified by the masks; :meth:`bake` returns a copy with the
    binary masks multiplied in.
    """

    def __init__(self, net: nn.Module, names: list[str], mask_init: float, threshold: float) -> None:
        super().__init__()
        self.net = net
        self.names = list(names)
        self.threshold = threshold
        params = dict(net.named_parameters())
        self.masks = nn.ParameterList([nn.Parameter(torch.full_like(params[n], mask_init)) for n in self.names])

    def effective_weights(self) -> dict[str, torch.Tensor]:
        params = dict(self.net.named_parameters())
        return {n: params[n] * binarize(m, self.threshold) for n, m in zip(self.names, self.masks, strict=True)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.effective_weights(), (x,))

    def binary_masks(self) -> dict[str, torch.Tensor]:
        return {n: (m.detach() > self.threshold) for n, m in zip(self.names, self.masks, strict=True)}

    @torch.no_grad()
    def bake(self) -> nn.Module:
        out = clone_model(self.net)
        params = dict(out.named_parameters())
        for name, keep in self.binary_masks().items():
            params[name].mul_(keep.to(params[name].dtype))
        return out.eval()


@register_method("piggyback", PiggybackConfig, "Piggyback: learnt binary masks on the frozen generic backbone")
def fit_piggyback(
    generic: nn.Module,
    available: ContextSplit,
    config: PiggybackConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Learn the person's masks and classifier. ``generic`` is not modified."""
    check_available(generic, available)
    if not config.threshold < config.mask_init:
        raise CropError(
            f"piggyback: mask_init ({config.mask_init}) must exceed threshold ({config.threshold}), "
            "or the network starts with every weight masked out"
        )
    net = clone_model(generic)
    names = prunable_names(net)
    if not names:
        raise CropError("piggyback: the model has no prunable weights (Linear/Conv/RNN layers besides the last)")
    if config.head == "reinit":
        torch.manual_seed(seed)
        for module in head_module(net).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    masked = MaskedNetwork(net, names, config.mask_init, config.threshold)
    head_params, _ = split_parameters(net)
    out = train(
        masked,
        available.train,
        available.val,
        config.train,
        seed=seed,
        metric=metric,
        hooks=[FreezeBatchNorm()],
        trainable=list(masked.masks) + head_params,
    )
    model = masked.bake()
    keep = masked.binary_masks()
    total = sum(k.numel() for k in keep.values())
    masked_out = 1.0 - sum(int(k.sum()) for k in keep.values()) / total
    return PersonalizationResult(
        "piggyback",
        model,
        states={"generic": state_copy(generic), "final": state_copy(model)},
        prune_amount=masked_out,
        info={
            "masks": keep,
            "fraction_masked": masked_out,
            "best_epoch": out.best_epoch,
            "history": out.history,
        },
    )

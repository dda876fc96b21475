"""Surgical fine-tuning (Lee et al., "Surgical fine-tuning improves adaptation to distribution
shifts", ICLR 2023), adapted to static personalization.

Lee et al. finetune a *single block* of a pretrained network and freeze the rest, and find
that which block is best depends on the kind of shift: the first block for input-level shifts
(image corruptions), middle blocks for feature-level shifts, the last layer for output-level
shifts (label shift). A person's context shift in human sensing (another sensor placement,
another device's noise) is mostly input-level, hence the default ``block = 0``.

Blocks are defined for any ``nn.Module`` from its structure (:func:`blocks`): walking
``named_modules()`` in registration order, each weighted layer (Linear, Bilinear, Conv1d/2d/3d,
RNN/GRU/LSTM) starts a new block, and every normalization layer (BatchNorm, InstanceNorm,
LayerNorm, GroupNorm) that follows it joins that block, so a "conv + batchnorm" pair is one
block. Any other module with parameters of its own also joins the block it follows, and a
module met before the first weighted layer (e.g. an input normalization) joins the first
block: every parameter and buffer belongs to exactly one block.

The chosen block trains on ``available.train`` with the shared loop (best epoch on
``available.val``); nothing else is seen.

Adaptations, and why:

- Lee et al. use ResNet stages / transformer blocks chosen by hand; here a block is one
  weighted layer with its normalization, which is the natural unit of the small HAR
  networks and needs no architecture-specific table.
- BatchNorm layers outside the block stay in eval mode, so their running statistics remain
  the generic model's: the frozen part of the network is then exactly the generic one, at
  training time and at inference. Dropout keeps its usual training behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import clone_model, state_copy
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.peers._common import only_these_require_grad
from crop.personalization.registry import PersonalizationResult, check_available, register_method

WEIGHTED = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.RNNBase)
NORMALIZATION = (_NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class SurgicalConfig:
    """Hyperparameters of surgical fine-tuning.

    Attributes:
        block: index of the block that trains (:func:`blocks`); 0 = the first block, which Lee
            et al. find best for input-level shifts such as a sensor's placement or noise;
            negative indices count from the end (-1 = the decision layer).
        train: the finetuning phase, conventional finetuning's defaults.
    """

    block: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)


def blocks(model: nn.Module) -> list[list[str]]:
    """The blocks of ``model``: lists of module names (as in ``named_modules``), in order.

    Each weighted layer starts a block; normalization layers and other modules with
    parameters or buffers of their own join the current block (the first one if no weighted
    layer came yet). Modules without tensors of their own (containers, activations) belong
    to no block.
    """
    out: list[list[str]] = []
    leading: list[str] = []  # tensor-holding modules before the first weighted layer
    for name, module in model.named_modules():
        if isinstance(module, WEIGHTED):
            out.append([name])
        elif isinstance(module, NORMALIZATION) or _owns_tensors(module):
            (out[-1] if out else leading).append(name)
    if not out:
        raise CropError("surgical: the model has no Linear/Conv/RNN layer to define blocks with")
    out[0] = leading + out[0]
    return out


def _owns_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def block_tensor_names(model: nn.Module, block: list[str]) -> tuple[list[str], list[str]]:
    """``(parameter names, buffer names)`` of the tensors the block's modules own directly."""
    params, buffers = [], []
    for mod_name in block:
        module = model.get_submodule(mod_name)
        prefix = f"{mod_name}." if mod_name else ""
        params += [prefix + n for n, _ in module.named_parameters(recurse=False)]
        buffers += [prefix + n for n, _ in module.named_buffers(recurse=False)]
    return params, buffers


class FreezeOtherBatchNorm(Hook):
    """Keeps every BatchNorm layer outside ``block`` in eval mode while the loop trains."""

    def __init__(self, model: nn.Module, block: list[str]) -> None:
        inside = set(block)
        self.frozen = [m for n, m in model.named_modules() if isinstance(m, _BatchNorm) and n not in inside]

    def on_epoch_start(self, model: nn.Module) -> None:
        for module in self.frozen:
            module.eval()


@register_method("surgical", SurgicalConfig, "surgical fine-tuning: train one block, freeze the rest")
def fit_surgical(
    generic: nn.Module,
    available: ContextSplit,
    config: SurgicalConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Finetune only block ``config.block`` of a copy of ``generic``.

    ``info["blocks"]`` lists every block's modules and ``info["block"]`` the trained one's
    (non-negative) index.
    """
    check_available(generic, available)
    model = clone_model(generic)
    every = blocks(model)
    if not -len(every) <= config.block < len(every):
        raise CropError(f"surgical: block {config.block} out of range; the model has {len(every)} blocks")
    index = config.block % len(every)
    chosen = every[index]
    param_names, buffer_names = block_tensor_names(model, chosen)
    with only_these_require_grad(model, param_names) as trainable:
        if not trainable:
            raise CropError(f"surgical: block {index} ({', '.join(chosen)}) has no trainable parameters")
        out = train(
            model,
            available.train,
            available.val,
            config.train,
            seed=seed,
            metric=metric,
            hooks=[FreezeOtherBatchNorm(model, chosen)],
            trainable=trainable,
        )
    return PersonalizationResult(
        "surgical",
        model,
        states={"generic": state_copy(generic), "final": state_copy(model)},
        info={
            "block": index,
            "block_modules": chosen,
            "block_parameters": param_names,
            "block_buffers": buffer_names,
            "blocks": every,
            "best_epoch": out.best_epoch,
            "history": out.history,
        },
    )

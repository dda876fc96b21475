"""Helpers the baselines share: the decision layer ("head") versus the rest of the model,
frozen BatchNorm, and label-free training data.

The head is the last Linear / Conv / RNN module in registration order, the same layer that
:func:`crop.personalization.prune.prunable_names` leaves out with ``exclude_last=True``; it is found
from the model's structure, never from output sizes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from crop.data.sensing import SensingData
from crop.errors import CropError
from crop.personalization.loop import Hook
from crop.personalization.prune import prunable_names


def head_name(model: nn.Module) -> str:
    """Module name of the decision layer (``"head"``, ``"15"``, ``"classifier.fc"``...)."""
    every = prunable_names(model, exclude_last=False)
    body = set(prunable_names(model, exclude_last=True))
    last = [n for n in every if n not in body]
    if not last:
        raise CropError("the model has no Linear/Conv/RNN layer to use as its decision layer")
    return last[0].rsplit(".", 1)[0] if "." in last[0] else ""


def head_module(model: nn.Module) -> nn.Module:
    return model.get_submodule(head_name(model))


def head_parameter_names(model: nn.Module) -> list[str]:
    """Names (as in ``named_parameters``) of every parameter of the decision layer."""
    name = head_name(model)
    prefix = f"{name}." if name else ""
    return [prefix + n for n, _ in model.get_submodule(name).named_parameters()]


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(head parameters, backbone parameters)``, each in registration order."""
    head = set(head_parameter_names(model))
    named = list(model.named_parameters())
    return [p for n, p in named if n in head], [p for n, p in named if n not in head]


def replace_head(model: nn.Module, replacement: nn.Module) -> nn.Module:
    """Swap the decision layer of ``model`` (in place) for ``replacement``; return the old one."""
    name = head_name(model)
    if not name:
        raise CropError("the model is a single layer; it has no feature extractor besides its decision layer")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    old = parent.get_submodule(child)
    setattr(parent, child, replacement)
    return old


class FreezeBatchNorm(Hook):
    """Keeps every BatchNorm layer in eval mode while the loop trains the rest.

    The running statistics then stay those of the generic model (and the normalisation used in
    training is the one used at inference). Whether BatchNorm's affine parameters train is a
    separate choice, made with the loop's ``trainable`` argument.
    """

    def on_epoch_start(self, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.eval()


def without_labels(data: SensingData) -> SensingData:
    """The windows of ``data`` with each label replaced by the window's index.

    Unsupervised baselines train on this: the objective receives window indices instead of
    classes (to look up per-window state such as pseudo-labels), so the true labels provably
    never reach it.
    """
    return SensingData(data.X, np.arange(len(data), dtype=np.int64), f"{data.name} [unlabelled]")


@torch.no_grad()
def batched(model: nn.Module, X: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """``model(X)`` in chunks, without gradients, in whatever mode the model is in."""
    return torch.cat([model(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])

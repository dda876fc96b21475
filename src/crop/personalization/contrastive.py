"""Prototype-contrastive adaptation: hold the person's embeddings to the generic model's class
structure (research programme, Aim 1(a): adaptation that keeps the generic attributes).

Before training, the generic model embeds the person's available training windows (the input
of its decision layer, eval mode); the normalized mean embedding of each class is that class's
*prototype*. During finetuning a supervised-contrastive term is added to the objective:
``weight * CE(cos(z_i, P) / temperature, y_i)``, where ``z_i`` is the current model's embedding
of window ``i`` and ``P`` the fixed generic prototypes: each embedding is pulled towards its
own class's generic prototype and pushed from the others' (the InfoNCE form of supervised
contrastive learning with class prototypes as the positives and negatives, e.g. Khosla et al.,
NeurIPS 2020; Li et al., ICLR 2021). The decision layer may still move; the geometry of the
feature space the generic model learned from many people stays.

Only the person's labelled available-context windows are used. The term wraps any objective
(plain cross-entropy, or :class:`~crop.personalization.invariance.InvarianceObjective`) and reads
the embeddings of the clean windows of the same forward pass, so it costs no extra forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crop.errors import CropError

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ContrastiveConfig:
    """Prototype-contrastive term (off when ``weight`` is 0).

    Attributes:
        weight: weight of the contrastive term.
        temperature: softmax temperature of the cosine similarities.
    """

    weight: float = 0.0
    temperature: float = 0.1


def _decision_layer(model: nn.Module) -> nn.Module:
    from crop.personalization.baselines._common import head_module

    return head_module(model)


@torch.no_grad()
def class_prototypes(generic: nn.Module, X: np.ndarray, y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Normalized mean generic embedding per class, ``(n_classes, features)`` (zero rows for
    absent classes)."""
    captured: list[torch.Tensor] = []
    handle = _decision_layer(generic).register_forward_pre_hook(lambda _m, inp: captured.append(inp[0].flatten(1)))
    was_training = generic.training
    generic.eval()
    try:
        generic(torch.as_tensor(X, dtype=torch.float32))
    finally:
        handle.remove()
        generic.train(was_training)
    z = F.normalize(captured[0], dim=1)
    labels = torch.as_tensor(y)
    protos = torch.zeros(n_classes, z.shape[1])
    for c in range(n_classes):
        if (labels == c).any():
            protos[c] = F.normalize(z[labels == c].mean(0), dim=0)
    return protos


class PrototypeContrast:
    """``inner(model, x, y) + weight * CE(cos(z, P) / temperature, y)`` (see the module docstring)."""

    def __init__(self, prototypes: torch.Tensor, config: ContrastiveConfig, inner: Objective | None = None) -> None:
        if not config.weight >= 0 or not config.temperature > 0:
            raise CropError(f"contrastive weight must be >= 0 and temperature > 0, got {config}")
        self.prototypes = prototypes
        self.config = config
        self.inner = inner

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = _decision_layer(model).register_forward_pre_hook(lambda _m, inp: captured.append(inp[0]))
        try:
            loss = self.inner(model, x, y) if self.inner is not None else F.cross_entropy(model(x), y)
        finally:
            handle.remove()
        z = F.normalize(captured[0][: len(x)].flatten(1), dim=1)  # the clean windows come first
        logits = z @ self.prototypes.T / self.config.temperature
        return loss + self.config.weight * F.cross_entropy(logits, y)


def contrastive_objective(
    generic: nn.Module, X: np.ndarray, y: np.ndarray, config: ContrastiveConfig, inner: Objective | None
) -> Objective | None:
    """Wrap ``inner`` with the prototype-contrastive term (``inner`` unchanged when off)."""
    if config.weight == 0:
        return inner
    from crop.models.utils import n_classes_of

    prototypes = class_prototypes(generic, X, y, n_classes_of(generic, X))
    return PrototypeContrast(prototypes, config, inner)

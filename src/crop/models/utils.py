"""Small helpers shared by every method: inference in eval mode, state copies."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from crop.data.sensing import SensingData
from crop.errors import CropError
from crop.metrics import get_metric

State = dict[str, torch.Tensor]


def state_copy(model: nn.Module) -> State:
    """A detached copy of ``model.state_dict()`` (parameters and buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that shares no storage with it."""
    return copy.deepcopy(model)


@torch.no_grad()
def predict_logits(model: nn.Module, X: np.ndarray | torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Logits of ``model`` in eval mode for ``X`` (restores the model's train/eval mode)."""
    was_training = model.training
    model.eval()
    X = torch.as_tensor(X, dtype=torch.float32)
    try:
        out = torch.cat([model(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])
    finally:
        model.train(was_training)
    return out


def predict(model: nn.Module, X: np.ndarray | torch.Tensor) -> np.ndarray:
    """Predicted class per window."""
    return predict_logits(model, X).argmax(dim=1).numpy()


def score(model: nn.Module, data: SensingData, metric: str = "balanced_accuracy") -> float:
    """``metric`` of ``model`` on ``data`` (a fraction in [0, 1])."""
    return get_metric(metric)(data.y, predict(model, data.X))


def n_classes_of(model: nn.Module, example: np.ndarray, name: str = "data") -> int:
    """Number of outputs of ``model`` for one example window."""
    try:
        out = predict_logits(model, example[:1])
    except RuntimeError as exc:
        raise CropError(
            f"{name}: the model cannot process windows of shape {tuple(example.shape[1:])} ({str(exc).splitlines()[0]})"
        ) from None
    if out.ndim != 2:
        raise CropError(f"the model must output logits of shape (batch, classes), got {tuple(out.shape)}")
    return int(out.shape[1])

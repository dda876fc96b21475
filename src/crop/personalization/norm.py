"""Normalization statistics after weight surgery.

Mixing (CRoP's step 3), weight interpolation (WiSE-FT) and pruning set weights outside
training. A BatchNorm layer's running mean and variance were estimated for the weights that
fed it during training; after surgery its input has another distribution and the stale
statistics mis-normalize it (on HAPT that alone can cost 30 points on an unseen context). The
remedy is to re-estimate the statistics with a forward pass over the person's
available-context training windows: no labels, no gradient step, no weight changes.

Why not ``torch.optim.swa_utils.update_bn``: it puts the whole model in training mode, so
dropout placed before a normalization layer would perturb the statistics; here only the
normalization layers run in training mode and every other module stays in eval mode.

The estimate is the cumulative one (``momentum=None``): with ``batch_size=None`` (default) the
windows go through in one batch, so each layer's running mean is exactly the mean of its input
over all windows (and positions), and its running variance the unbiased variance, as a fresh
pass over the data gives.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from crop.errors import CropError


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a normalization layer with running statistics."""
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, X: np.ndarray | torch.Tensor, batch_size: int | None = None) -> nn.Module:
    """Re-estimate every BatchNorm layer's running statistics on windows ``X`` (in place).

    Takes windows only (no labels). Weights, biases and affine parameters are untouched; the
    model is returned in eval mode. A model without BatchNorm is returned unchanged.
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not layers:
        return model.eval()
    X = torch.as_tensor(X, dtype=torch.float32)
    if len(X) < 2:
        raise CropError("re-estimating normalization statistics needs at least 2 windows")
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches of this pass
        m.train()
    try:
        step = len(X) if batch_size is None else batch_size
        for start in range(0, len(X), step):
            batch = X[start : start + step]
            if len(batch) >= 2:
                model(batch)
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return model

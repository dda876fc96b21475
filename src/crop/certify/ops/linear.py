"""``nn.Linear`` (optionally with the eval-mode ``BatchNorm1d`` that follows it folded in).

Acts on the last axis, so any leading per-sample axes (e.g. time steps) are allowed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crop.certify.ops.base import AffineOp
from crop.certify.ops.diagonal import batchnorm_scale_shift


class LinearOp(AffineOp):
    def __init__(self, name: str, module: nn.Linear, bn: nn.BatchNorm1d | None = None) -> None:
        super().__init__(name)
        self.module, self.bn = module, bn

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Effective ``(W, b)`` of shape ``(out, in)``, ``(out,)`` (batch-norm folded)."""
        w = self.module.weight
        b = self.module.bias if self.module.bias is not None else w.new_zeros(w.shape[0])
        if self.bn is not None:
            scale, shift = batchnorm_scale_shift(self.bn)
            w, b = w * scale[:, None], b * scale + shift
        return w, b

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_bias()[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, *self.weight_bias())

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        return a @ self.weight_bias()[0]

    def abs_linear(self, r: torch.Tensor) -> torch.Tensor:
        return F.linear(r, self.weight_bias()[0].abs())

    def sq_linear(self, v: torch.Tensor) -> torch.Tensor:
        return F.linear(v, self.weight_bias()[0].square())

    def offset(self) -> torch.Tensor:
        return self.weight_bias()[1].expand(self.out_shape)

"""Per-channel affine layers: batch normalisation in eval mode and crop's ``Standardize``.

Both are ``x * scale + shift`` with ``scale`` / ``shift`` broadcast over the channel axis
(axis 0 of a sample): a diagonal linear map, so intervals, linear bounds and variances pass
through them exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from crop.certify.ops.base import AffineOp


def batchnorm_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` of shape ``(C,)`` with ``bn(x) == x * scale + shift`` in eval mode.

    Built from the live parameters, so gradients flow to ``bn.weight`` / ``bn.bias``.
    """
    inv = torch.rsqrt(bn.running_var + bn.eps)
    scale = inv * bn.weight if bn.weight is not None else inv
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


class DiagonalOp(AffineOp):
    """``x * scale + shift`` per channel; ``scale_fn`` returns ``(scale, shift)`` of shape ``(C,)``."""

    diagonal = True

    def __init__(self, name: str, scale_fn) -> None:
        super().__init__(name)
        self._scale_fn = scale_fn

    def _params(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self._scale_fn()
        view = (-1,) + (1,) * (len(self.in_shape) - 1)
        return scale.reshape(view), shift.reshape(view)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._params()[0]

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        return a * self._params()[0]

    def abs_linear(self, r: torch.Tensor) -> torch.Tensor:
        return r * self._params()[0].abs()

    def sq_linear(self, v: torch.Tensor) -> torch.Tensor:
        return v * self._params()[0].square()

    def offset(self) -> torch.Tensor:
        return self._params()[1].expand(self.out_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self._params()
        return x * scale + shift


def batchnorm_op(name: str, bn: nn.modules.batchnorm._BatchNorm) -> DiagonalOp:
    return DiagonalOp(name, lambda: batchnorm_scale_shift(bn))


def standardize_op(name: str, module: nn.Module) -> DiagonalOp:
    """crop's ``Standardize``: ``(x - mean) / std`` with buffers of shape ``(C, 1)``."""

    def params() -> tuple[torch.Tensor, torch.Tensor]:
        scale = 1.0 / module.std.reshape(-1)
        return scale, -module.mean.reshape(-1) * scale

    return DiagonalOp(name, params)

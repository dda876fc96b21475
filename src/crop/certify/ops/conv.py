"""Convolutions (``Conv1d`` / ``Conv2d``, eval-mode batch-norm folded in) and average pooling.

Average pooling with ``count_include_pad=True`` is a depthwise convolution with weight
``1 / prod(kernel)``, so both share one implementation. The transpose of a convolution is the
transposed convolution with the same weight; ``output_padding`` restores the exact input length
that strided convolutions lose.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from crop.certify.ops.base import AffineOp

_CONV = {1: F.conv1d, 2: F.conv2d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d}

WeightFn = Callable[[], tuple[torch.Tensor, torch.Tensor | None]]


class ConvOp(AffineOp):
    """``dim``-D convolution whose ``(weight, bias)`` come from ``weight_fn`` at every call
    (so trained parameters and folded batch-norm stay live and differentiable)."""

    def __init__(
        self,
        name: str,
        dim: int,
        weight_fn: WeightFn,
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
    ) -> None:
        super().__init__(name)
        self.dim, self.weight_fn = dim, weight_fn
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return _CONV[self.dim](x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight_fn()[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, *self.weight_fn())

    def abs_linear(self, r: torch.Tensor) -> torch.Tensor:
        return self._conv(r, self.weight_fn()[0].abs())

    def sq_linear(self, v: torch.Tensor) -> torch.Tensor:
        return self._conv(v, self.weight_fn()[0].square())

    def output_padding(self) -> tuple[int, ...]:
        w = self.weight_fn()[0]
        out = []
        for i in range(self.dim):
            n_in, n_out, k = self.in_shape[1 + i], self.out_shape[1 + i], w.shape[2 + i]
            covered = (n_out - 1) * self.stride[i] - 2 * self.padding[i] + self.dilation[i] * (k - 1) + 1
            out.append(n_in - covered)
        return tuple(out)

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        w = self.weight_fn()[0]
        return _CONV_T[self.dim](
            a, w, None, self.stride, self.padding, self.output_padding(), self.groups, self.dilation
        )

    def offset(self) -> torch.Tensor:
        b = self.weight_fn()[1]
        if b is None:
            return self.weight_fn()[0].new_zeros(self.out_shape)
        return b.reshape((-1,) + (1,) * self.dim).expand(self.out_shape)


def avgpool_weight(channels: int, kernel: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Depthwise weight ``(C, 1, *kernel)`` filled with ``1 / prod(kernel)``."""
    size = 1
    for k in kernel:
        size *= k
    return like.new_full((channels, 1, *kernel), 1.0 / size)

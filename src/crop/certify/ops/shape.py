"""Layers that only move, copy or drop entries: identity (``Dropout`` in eval mode,
``nn.Identity``), ``Flatten``, axis swaps and last-time-step selection.

Each is a 0/1 matrix with at most one non-zero per row and column (``diagonal``), so
``|L| = L * L = L`` and the transpose is the inverse reshape / permutation / scatter.
"""

from __future__ import annotations

import torch

from crop.certify.ops.base import AffineOp


class _Structural(AffineOp):
    diagonal = True

    def abs_linear(self, r: torch.Tensor) -> torch.Tensor:
        return self.linear(r)

    def sq_linear(self, v: torch.Tensor) -> torch.Tensor:
        return self.linear(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    has_offset = False

    def offset(self) -> torch.Tensor:
        """``c = 0`` (never called: ``has_offset`` is false)."""
        return torch.zeros(self.out_shape)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(lower), self.linear(upper)


class IdentityOp(_Structural):
    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        return a


class ReshapeOp(_Structural):
    """``Flatten`` (or any reshape): per-sample shape ``in_shape -> out_shape``."""

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.out_shape)

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        return a.reshape(a.shape[0], *self.in_shape)


class TransposeOp(_Structural):
    """Swap per-sample axes ``dim0`` and ``dim1`` (given with the batch axis counted)."""

    def __init__(self, name: str, dim0: int, dim1: int) -> None:
        super().__init__(name)
        self.dim0, self.dim1 = dim0, dim1

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        return a.transpose(self.dim0, self.dim1)


class LastStepOp(_Structural):
    """``(time, features) -> (features,)``: keep the last time step."""

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        out = a.new_zeros(a.shape[0], *self.in_shape)
        out[:, -1] = a
        return out

"""What every layer looks like to the bound propagators.

A network is a list of :class:`Op` (one per layer, batch-norm folded into the convolution or
linear layer before it). Three kinds exist:

* :class:`AffineOp` -- ``f(x) = L x + c`` for a linear map ``L`` and an offset ``c``. Interval
  and linear bounds pass through it exactly; each subclass gives ``L``, its transpose, and the
  maps with element-wise ``|L|`` and ``L**2`` (all batched over a leading dimension).
* ``ReLUOp`` -- the only piecewise-linear activation; CROWN relaxes it (see ``relu.py``).
* ``RecurrentOp`` -- GRU / LSTM, bounded by interval arithmetic only; CROWN treats its output
  interval as the domain it back-substitutes to.

Shapes: ``in_shape`` / ``out_shape`` are per-sample (no batch dimension). Every tensor method
takes and returns a batch ``(N, *shape)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Op(ABC):
    """One layer. ``name`` is the module's path in the model (``"4"``, ``"encoder.1"``)."""

    kind = "op"

    def __init__(self, name: str) -> None:
        self.name = name
        self.in_shape: tuple[int, ...] = ()
        self.out_shape: tuple[int, ...] = ()

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output for a batch ``x`` of shape ``(N, *in_shape)``."""

    @abstractmethod
    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Element-wise bounds of the output for inputs in the box ``[lower, upper]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.in_shape} -> {self.out_shape})"


class AffineOp(Op):
    """``f(x) = L x + c``.

    ``diagonal`` is true when ``L`` has at most one non-zero per row and per column (scaling,
    permutation, selection): an axis-aligned ellipsoid then maps to an axis-aligned ellipsoid,
    which lets IBP stay exact on an L2 ball until the first mixing layer.
    """

    kind = "affine"
    diagonal = False
    has_offset = True  # False when ``c`` is identically zero (then ``offset`` is never called)

    @abstractmethod
    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """``L x`` for ``x`` of shape ``(N, *in_shape)``."""

    @abstractmethod
    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        """``L^T a`` for ``a`` of shape ``(N, *out_shape)``; returns ``(N, *in_shape)``."""

    @abstractmethod
    def abs_linear(self, r: torch.Tensor) -> torch.Tensor:
        """``|L| r`` (element-wise absolute entries of ``L``)."""

    @abstractmethod
    def sq_linear(self, v: torch.Tensor) -> torch.Tensor:
        """``(L * L) v`` (element-wise squared entries): output variances of independent inputs."""

    @abstractmethod
    def offset(self) -> torch.Tensor:
        """``c = f(0)``, shape ``out_shape``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.offset() if self.has_offset else self.linear(x)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        center = self.forward((upper + lower) / 2)
        radius = self.abs_linear((upper - lower) / 2)
        return center - radius, center + radius

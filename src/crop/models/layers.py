"""Small ``nn.Module`` s that let recurrent models be written as an ``nn.Sequential``.

``nn.GRU`` / ``nn.LSTM`` return a tuple, so a sequential model needs a layer that picks the
output sequence (:class:`TakeOutput`), and usually one that keeps the last time step
(:class:`LastStep`); a CNN front end needs its channel and time axes swapped
(:class:`Transpose`). The bound propagators of :mod:`crop.certify` understand all three (they
are re-exported as :mod:`crop.certify.modules`).

Example::

    nn.Sequential(Transpose(1, 2), nn.GRU(6, 32, batch_first=True), TakeOutput(), LastStep(), nn.Linear(32, 6))
"""

from __future__ import annotations

import torch
from torch import nn


class TakeOutput(nn.Module):
    """``(output, hidden) -> output``: the per-step outputs ``(batch, time, features)`` of an RNN."""

    def forward(self, x: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return x[0]


class LastStep(nn.Module):
    """``(batch, time, features) -> (batch, features)``: the last time step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]


class Transpose(nn.Module):
    """Swap two axes of the batch tensor (axis numbers include the batch axis)."""

    def __init__(self, dim0: int = 1, dim1: int = 2) -> None:
        super().__init__()
        self.dim0, self.dim1 = dim0, dim1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)

"""ReLU: exact on intervals, relaxed by two lines for CROWN.

For a pre-activation ``h`` with bounds ``l <= h <= u``:

* ``l >= 0`` (active): ``relu(h) = h``; ``u <= 0`` (inactive): ``relu(h) = 0``.
* ``l < 0 < u`` (unstable): the upper line is the chord ``s (h - l)`` with ``s = u / (u - l)``,
  the lower line ``alpha h`` with the adaptive slope of CROWN (Zhang et al., 2018):
  ``alpha = 1`` if ``u >= -l`` else ``0``, the choice that minimises the area between the lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crop.certify.ops.base import Op


@dataclass
class ReLURelaxation:
    """``lower_slope * h <= relu(h) <= upper_slope * h + upper_intercept`` on ``[l, u]``.

    All three tensors have the shape of the bounds, ``(B, *shape)``.
    """

    lower_slope: torch.Tensor
    upper_slope: torch.Tensor
    upper_intercept: torch.Tensor


def relu_relaxation(lower: torch.Tensor, upper: torch.Tensor) -> ReLURelaxation:
    """The CROWN relaxation of ``relu`` on ``[lower, upper]`` (element-wise)."""
    active = lower >= 0
    unstable = (lower < 0) & (upper > 0)
    denom = torch.where(unstable, upper - lower, torch.ones_like(upper))
    chord = torch.where(unstable, upper / denom, active.to(upper.dtype))
    intercept = torch.where(unstable, -chord * lower, torch.zeros_like(lower))
    alpha = torch.where(unstable, (upper >= -lower).to(upper.dtype), active.to(upper.dtype))
    return ReLURelaxation(alpha, chord, intercept)


class ReLUOp(Op):
    kind = "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.relu(lower), torch.relu(upper)

"""Hardswish (``x * relu6(x + 3) / 6``, the PERCEPT-R BiLSTM's activation): exact on intervals.

Hardswish is 0 up to -3, falls to its minimum -0.375 at -1.5 and rises from there (quasi-convex),
so on ``[l, u]`` its minimum is at ``clamp(-1.5, l, u)`` and its maximum at ``l`` or ``u``.
It has no CROWN relaxation here: like a recurrent layer it is a wall where back-substitution
stops and starts again from its output interval (``crown.domain_for``), which is sound but no
tighter than IBP through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crop.certify.ops.base import Op

HARDSWISH_ARGMIN = -1.5


class HardswishOp(Op):
    kind = "interval"  # bounded by interval arithmetic only; CROWN stops at its output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = F.hardswish(torch.minimum(torch.clamp(lower, min=HARDSWISH_ARGMIN), upper))
        return low, torch.maximum(F.hardswish(lower), F.hardswish(upper))

"""The weight penalty of CRoP's finetuning phases, with a trainable coefficient alpha.

Algorithm 1 (lines 2 and 5) minimizes ``sum_d loss(M, d) + alpha * ||M||_1`` and Section 5
says alpha "is a trainable parameter optimized during training to minimize the overall loss".
Minimizing the loss over alpha always pushes it down (the gradient is ``||M||_1 >= 0``); the
paper's public code trains alpha unconstrained, so it crosses zero and the term then *rewards*
large weights. ``alpha_param`` chooses how alpha is represented:

* ``"log"`` (default): ``alpha = exp(a)``, ``a`` trained. Alpha stays positive and, with Adam,
  shrinks by a bounded factor per step: the reading that keeps the penalty meaningful.
* ``"clamp"``: alpha trained directly and projected to ``max(alpha, 0)`` after each step.
* ``"unconstrained"``: the reference code's variant; alpha may become negative.
* ``"fixed"``: alpha is a constant (the "alpha fixed" ablation).

``kind`` selects the norm: ``"l1"`` (CRoP), with ``"l2"``, ``"l0"`` and ``"polarization"`` for
the Section 8 ablations (see :func:`penalty_value`). ``scope`` selects the penalized tensors:
``"all"`` parameters (the paper's ``||M||_1``) or only the ``"prunable"`` weights.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from crop.errors import CropError
from crop.personalization.loop import Hook
from crop.personalization.prune import prunable_names

AlphaParam = Literal["log", "clamp", "unconstrained", "fixed"]
PenaltyKind = Literal["l1", "l2", "l0", "polarization"]


def penalty_value(
    tensors: list[torch.Tensor], kind: str, l0_beta: float = 0.01, polarization_t: float = 1.0
) -> torch.Tensor:
    """The un-scaled norm of ``tensors``.

    * ``l1``: ``sum |w|``; ``l2``: ``sum w^2``;
    * ``l0``: the differentiable relaxation ``sum (1 - exp(-|w| / beta))`` (counts weights
      clearly away from zero, smooth near zero);
    * ``polarization``: Zhuang et al. 2020, ``t * ||w||_1 - ||w - mean(w)||_1`` per tensor.
    """
    terms = []
    for w in tensors:
        if kind == "l1":
            terms.append(w.abs().sum())
        elif kind == "l2":
            terms.append((w * w).sum())
        elif kind == "l0":
            terms.append((1 - torch.exp(-w.abs() / l0_beta)).sum())
        elif kind == "polarization":
            terms.append(polarization_t * w.abs().sum() - (w - w.mean()).abs().sum())
        else:
            raise CropError(f"unknown penalty {kind!r}; choose l1, l2, l0 or polarization")
    return torch.stack(terms).sum() if terms else torch.zeros(())


class WeightPenalty(Hook):
    """``alpha * norm(M)`` as a :class:`~crop.personalization.loop.Hook` with a trainable alpha."""

    def __init__(
        self,
        alpha: float,
        kind: PenaltyKind = "l1",
        alpha_param: AlphaParam = "log",
        scope: Literal["all", "prunable"] = "all",
        exclude_last: bool = True,
    ) -> None:
        if alpha < 0 or not math.isfinite(alpha):
            raise CropError(f"alpha must be a finite non-negative number, got {alpha}")
        if alpha_param not in ("log", "clamp", "unconstrained", "fixed"):
            raise CropError(f"unknown alpha_param {alpha_param!r}")
        if alpha_param == "log" and alpha == 0:
            raise CropError("alpha_param='log' needs alpha > 0")
        self.kind = kind
        self.alpha_param = alpha_param
        self.scope = scope
        self.exclude_last = exclude_last
        init = math.log(alpha) if alpha_param == "log" else alpha
        self.raw = nn.Parameter(torch.tensor(float(init)), requires_grad=alpha_param != "fixed")
        self.trace: list[float] = []

    @property
    def alpha(self) -> float:
        return float(self._alpha().detach())

    def _alpha(self) -> torch.Tensor:
        return torch.exp(self.raw) if self.alpha_param == "log" else self.raw

    def parameters(self) -> list[nn.Parameter]:
        return [] if self.alpha_param == "fixed" else [self.raw]

    def _tensors(self, model: nn.Module) -> list[torch.Tensor]:
        if self.scope == "all":
            return [p for p in model.parameters() if p.requires_grad]
        names = set(prunable_names(model, exclude_last=self.exclude_last))
        return [p for n, p in model.named_parameters() if n in names]

    def penalty(self, model: nn.Module) -> torch.Tensor:
        return self._alpha() * penalty_value(self._tensors(model), self.kind)

    def after_step(self, model: nn.Module) -> None:
        if self.alpha_param == "clamp":
            with torch.no_grad():
                self.raw.clamp_(min=0.0)

    def on_epoch_end(self, model: nn.Module, record: dict) -> None:
        record["alpha"] = self.alpha
        self.trace.append(self.alpha)

"""Training objectives for robustness, used with :func:`crop.personalization.loop.train`.

* :class:`GaussianNoiseObjective` -- Gaussian data augmentation, the base-classifier training of
  randomized smoothing (Cohen et al., 2019): cross-entropy on ``x + N(0, sigma^2 I)``.
* :class:`CertifiedObjective` -- ``kappa * CE(f(x), y) + (1 - kappa) * CE(-m(x, eps), y)`` where
  ``m`` are the margin lower bounds of IBP (Gowal et al., 2018) or CROWN-IBP (Zhang et al., 2020),
  with ``eps`` ramped linearly from 0 and ``kappa`` from 1 to ``kappa_end`` over the ramp.

Noise and batch order come from the loop's seeded global generator, so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from crop.certify.ball import NormBall
from crop.certify.crown import crown_linear_bounds
from crop.certify.margin import ibp_margin, margin_spec
from crop.certify.network import compile_network


class GaussianNoiseObjective:
    """Cross-entropy on inputs with additive ``N(0, sigma^2)`` noise (``sigma`` in input units)."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x + self.sigma * torch.randn_like(x)), y)


def robust_cross_entropy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str = "linf",
    bound: str = "ibp",
    beta: float = 1.0,
) -> torch.Tensor:
    """Cross-entropy of the worst-case logits ``-m`` (``m`` the margin lower bounds, 0 at ``y``).

    ``bound="crown-ibp"`` mixes ``beta * CROWN-IBP + (1 - beta) * IBP`` margins. Differentiable;
    bounds are for the eval-mode network (batch-norm on running statistics, no dropout).
    """
    net = compile_network(model, tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    domain = NormBall.of(x, eps, norm)
    margin = ibp_margin(net, domain, y)
    if bound == "crown-ibp" and beta > 0:
        spec = margin_spec(y, margin.shape[1], x.dtype)
        crown, _ = crown_linear_bounds(net, domain, spec, "ibp", lower_only=True)
        crown = crown.scatter(1, y[:, None], torch.inf)
        margin = beta * crown + (1 - beta) * margin if beta < 1 else crown
    worst = -margin.masked_fill(torch.isinf(margin), 0.0)
    return F.cross_entropy(worst, y)


@dataclass
class CertifiedObjective:
    """Clean + robust cross-entropy with a linear ``eps`` / ``kappa`` ramp over optimizer steps.

    Attributes:
        eps: final radius (input units). norm: ``"linf"`` or ``"l2"``.
        bound: ``"ibp"`` or ``"crown-ibp"`` (then ``beta`` decays from 1 to 0 over the ramp,
            as in CROWN-IBP).
        warmup_steps: clean steps before the ramp; ramp_steps: steps to reach ``eps``.
        kappa_end: weight of the clean loss after the ramp.
    """

    eps: float
    norm: str = "linf"
    bound: Literal["ibp", "crown-ibp"] = "ibp"
    warmup_steps: int = 0
    ramp_steps: int = 100
    kappa_end: float = 0.5
    step: int = 0

    def progress(self) -> float:
        if self.step < self.warmup_steps:
            return 0.0
        return min(1.0, (self.step - self.warmup_steps + 1) / max(self.ramp_steps, 1))

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = self.progress()
        self.step += 1
        clean = F.cross_entropy(model(x), y)
        if t == 0.0:
            return clean
        kappa = 1.0 - t * (1.0 - self.kappa_end)
        robust = robust_cross_entropy(model, x, y, t * self.eps, self.norm, self.bound, beta=1.0 - t)
        return kappa * clean + (1 - kappa) * robust

"""Expected margin under Gaussian input noise, by Monte Carlo and by moment propagation.

The *expected margin* ``E[f_y(x + delta) - max_{j != y} f_j(x + delta)]``,
``delta ~ N(0, sigma^2 I)``, sits between the worst-case and the average-case views of
robustness (Rodrigues Crespo's smoothed robustness analysis).

* :func:`expected_margin_mc` estimates it from ``n`` samples with a Student-t confidence
  interval (the margin of a bounded-logit network has finite variance).
* :func:`gaussian_moments` propagates mean and variance in closed form: affine layers exactly
  for the mean and, **assuming independent (diagonal-covariance) coordinates**, as
  ``var' = (L * L) var`` for the variance; ReLU by the moments of a rectified Gaussian,
  ``E = mu Phi(a) + s phi(a)``, ``E[relu^2] = (mu^2 + s^2) Phi(a) + mu s phi(a)``, ``a = mu / s``,
  assuming its input Gaussian. Both assumptions ignore the correlations that layers create, so
  the variance is an approximation (exact for one affine layer, and the mean exact up to the
  first ReLU). :func:`expected_margin_closed_form` turns the output moments into the expected
  pairwise margins ``E[f_y - f_j] = mu_y - mu_j`` and reports ``min_j E[f_y - f_j]``, which is
  at least the expected margin ``E[min_j (f_y - f_j)]`` (Jensen), with the pairwise standard
  deviations ``sqrt(var_y + var_j)``. Recurrent layers are not supported.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import t as student_t
from torch import nn

from crop.certify.network import Network, compile_network
from crop.errors import CropError


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    other = logits.scatter(-1, y.expand(logits.shape[:-1]).unsqueeze(-1), -torch.inf).amax(-1)
    return logits.gather(-1, y.expand(logits.shape[:-1]).unsqueeze(-1))[..., 0] - other


@torch.no_grad()
def expected_margin_mc(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    n: int = 1000,
    *,
    confidence: float = 0.95,
    batch_size: int = 10_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monte-Carlo expected margin per window: ``(mean, low, high)``, each ``(N,)``, with a
    two-sided ``confidence`` Student-t interval over ``n`` noise draws."""
    if n < 2:
        raise CropError("the Monte-Carlo expected margin needs n >= 2 samples")
    gen = torch.Generator(device=X.device).manual_seed(seed)
    y = torch.as_tensor(y, device=X.device)
    was_training = model.training
    model.eval()
    total = torch.zeros(len(X), dtype=torch.float64, device=X.device)
    total_sq = torch.zeros_like(total)
    try:
        per_pass = max(1, batch_size // n)
        draws = min(n, batch_size)
        for start in range(0, len(X), per_pass):
            x, yy = X[start : start + per_pass], y[start : start + per_pass]
            left = n
            while left > 0:
                m = min(draws, left)
                noise = torch.randn((m, *x.shape), generator=gen, device=X.device, dtype=X.dtype) * sigma
                logits = model((x[None] + noise).reshape(-1, *x.shape[1:])).reshape(m, len(x), -1)
                margin = _margin(logits, yy).double()
                total[start : start + len(x)] += margin.sum(0)
                total_sq[start : start + len(x)] += margin.square().sum(0)
                left -= m
    finally:
        model.train(was_training)
    mean = total / n
    var = ((total_sq - n * mean.square()) / (n - 1)).clamp(min=0)
    half = student_t.ppf(0.5 + confidence / 2, n - 1) * (var / n).sqrt()
    return mean.cpu().numpy(), (mean - half).cpu().numpy(), (mean + half).cpu().numpy()


def _relu_moments(mu: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = var.clamp_min(1e-30).sqrt()
    a = mu / s
    cdf = 0.5 * (1 + torch.erf(a / math.sqrt(2)))
    pdf = torch.exp(-0.5 * a.square()) / math.sqrt(2 * math.pi)
    mean = mu * cdf + s * pdf
    second = (mu.square() + var) * cdf + mu * s * pdf
    return mean, (second - mean.square()).clamp_min(0)


@torch.no_grad()
def gaussian_moments(net: Network, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output mean and variance ``(B, *output_shape)`` for independent Gaussian inputs with
    element-wise ``mean`` and ``var`` (see the module docstring for the assumptions)."""
    for op in net.ops:
        if op.kind == "affine":
            mean, var = op.forward(mean), op.sq_linear(var)
        elif op.kind == "relu":
            mean, var = _relu_moments(mean, var)
        else:
            raise CropError(f"no closed-form moments through layer {op.name!r} ({type(op).__name__})")
    return mean, var


@torch.no_grad()
def expected_margin_closed_form(
    model: nn.Module | Network, X: torch.Tensor, y: torch.Tensor, sigma: float
) -> dict[str, np.ndarray]:
    """Closed-form (moment propagation) expected margins under ``N(0, sigma^2 I)`` input noise.

    Returns ``pairwise_mean`` / ``pairwise_std`` ``(N, K)`` (``+inf`` / 0 at the true class) and
    ``expected_margin`` ``(N,)`` = ``min_j E[f_y - f_j]``.
    """
    net = compile_network(model, tuple(X.shape[1:]), dtype=X.dtype, device=X.device)
    y = torch.as_tensor(y, device=X.device)
    mean, var = gaussian_moments(net, X, torch.full_like(X, sigma**2))
    true_mean = mean.gather(1, y[:, None])
    true_var = var.gather(1, y[:, None])
    pair_mean = (true_mean - mean).scatter(1, y[:, None], torch.inf)
    pair_std = (true_var + var).sqrt().scatter(1, y[:, None], 0.0)
    return {
        "pairwise_mean": pair_mean.cpu().numpy(),
        "pairwise_std": pair_std.cpu().numpy(),
        "expected_margin": pair_mean.min(1).values.cpu().numpy(),
    }

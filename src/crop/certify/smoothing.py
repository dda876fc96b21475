"""Randomized smoothing (Cohen, Rosenfeld & Kolter, 2019, "Certified Adversarial Robustness via
Randomized Smoothing"), named after the paper's symbols.

The smoothed classifier ``g(x) = argmax_c P(f(x + delta) = c)``, ``delta ~ N(0, sigma^2 I)``,
is certified at ``x`` with L2 radius ``R = sigma * Phi^-1(pA_lower)`` whenever the one-sided
``1 - alpha`` Clopper-Pearson lower bound ``pA_lower`` of the top class probability exceeds
1/2: with probability at least ``1 - alpha`` over the sampling, ``g`` predicts ``cA`` for every
``x'`` with ``||x' - x||_2 < R``. ``certify`` selects ``cA`` with ``n0`` samples and estimates
``pA`` with ``n`` fresh ones (Cohen's CERTIFY); ``predict`` answers with a binomial test
(Cohen's PREDICT). Both return :data:`ABSTAIN` (-1) when they cannot answer.

Everything is device- and shape-agnostic (noise is drawn like the input, on its device, from a
seeded generator) and batched: several windows share one forward pass of up to ``batch_size``
noisy copies. ``sigma`` and radii are in input units (raw sensor units for HAPT).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from crop.certify.fast_forward import fast_forward
from crop.errors import CropError

ABSTAIN = -1


def lower_confidence_bound(n_a: int | np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided ``1 - alpha`` Clopper-Pearson lower bound of a binomial proportion ``n_a / n``."""
    n_a = np.asarray(n_a)
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(alpha, n_a, n - n_a + 1)
    return np.where(n_a > 0, bound, 0.0)


def certified_radius(p_a_lower: float | np.ndarray, sigma: float) -> np.ndarray:
    """``sigma * Phi^-1(pA_lower)`` where ``pA_lower > 1/2``, else 0."""
    p = np.asarray(p_a_lower, dtype=float)
    return np.where(p > 0.5, sigma * norm.ppf(np.clip(p, 0.5, 1.0)), 0.0)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def sample_counts(
    model: nn.Module,
    X: torch.Tensor,
    sigma: float,
    num: int,
    *,
    batch_size: int = 10_000,
    generator: torch.Generator | None = None,
    n_classes: int | None = None,
    fast: bool = True,
) -> np.ndarray:
    """Class counts of ``f(x + delta)`` over ``num`` noise draws for each window: ``(N, K)``.

    ``X`` has shape ``(N, *input_shape)``. Up to ``batch_size`` noisy copies go through the model
    at once (several windows per pass when ``num < batch_size``).

    With ``fast`` (default), a float32 CPU model that is a 1-D convolutional ``nn.Sequential``
    runs through :func:`~crop.certify.fast_forward.fast_forward` (channels-last oneDNN
    convolutions, folded batch-norm) and the noise is drawn directly in that layout, ``(L, C)``
    per copy: the same Gaussian distribution, a different (but equally seeded, reproducible)
    stream of draws than the plain path. Any other model takes the plain path.
    """
    if sigma <= 0:
        raise CropError(f"sigma must be > 0, got {sigma}")
    if num < 1:
        raise CropError(f"the number of noise samples must be >= 1, got {num}")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if n_classes is None:
                n_classes = int(model(X[:1]).shape[-1])
            forward = fast_forward(model, X[:8]) if fast else None
            counts = torch.zeros(len(X), n_classes, dtype=torch.long, device=X.device)
            per_pass = max(1, batch_size // num)  # windows per forward pass
            draws = min(num, batch_size)  # noise draws per window per pass
            for start in range(0, len(X), per_pass):
                x = X[start : start + per_pass]
                left = num
                while left > 0:
                    m = min(draws, left)
                    if forward is not None:
                        pred = _fast_predictions(forward, x, sigma, m, generator)
                    else:
                        noise = torch.randn((m, *x.shape), generator=generator, device=X.device, dtype=X.dtype) * sigma
                        pred = model((x[None] + noise).reshape(-1, *x.shape[1:])).argmax(-1)
                    # pred is (m, len(x)) flattened: copy-major, window-minor
                    window = torch.arange(len(x), device=X.device).repeat(m)
                    flat = torch.bincount(window * n_classes + pred, minlength=len(x) * n_classes)
                    counts[start : start + len(x)] += flat.reshape(len(x), n_classes)
                    left -= m
    finally:
        model.train(was_training)
    return counts.cpu().numpy()


def _fast_predictions(
    forward, x: torch.Tensor, sigma: float, m: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Top classes ``(m * len(x),)`` (copy-major) of ``m`` noisy copies of each window of ``x``
    ``(n, C, L)``, the noise drawn as ``(m, n, L, C)`` so that the batch is channels-last."""
    n, channels, length = x.shape
    noise = torch.randn((m, n, length, channels), generator=generator, device=x.device, dtype=x.dtype)
    noisy = noise.mul_(sigma).add_(x.transpose(1, 2)[None])
    h = noisy.reshape(m * n, length, channels).permute(0, 2, 1).unsqueeze(2)
    h = h.contiguous(memory_format=torch.channels_last)  # already so: a no-op
    return forward(h).argmax(-1)


def predict(
    model: nn.Module,
    X: torch.Tensor,
    sigma: float,
    n: int,
    alpha: float,
    *,
    batch_size: int = 10_000,
    seed: int = 0,
) -> np.ndarray:
    """Cohen's PREDICT for each window of ``X``: the top class, or ``ABSTAIN`` when a two-sided
    binomial test of the top two counts cannot reject equality at level ``alpha``.

    Returns int array ``(N,)``. The probability of returning a class other than ``g(x)`` is at
    most ``alpha``.
    """
    counts = sample_counts(model, X, sigma, n, batch_size=batch_size, generator=_generator(seed, X.device))
    order = np.argsort(-counts, axis=1, kind="stable")
    out = np.full(len(X), ABSTAIN, dtype=np.int64)
    for i, (top, second) in enumerate(order[:, :2]):
        n_a, n_b = int(counts[i, top]), int(counts[i, second])
        if binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha:
            out[i] = top
    return out


def certify(
    model: nn.Module,
    X: torch.Tensor,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    *,
    batch_size: int = 10_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's CERTIFY for each window of ``X`` ``(N, *input_shape)``.

    Returns ``(prediction, radius)``, int ``(N,)`` and float ``(N,)``: ``prediction`` is ``cA`` or
    ``ABSTAIN``; ``radius`` is ``sigma * Phi^-1(pA_lower)`` (0 when abstaining, i.e. whenever
    ``pA_lower <= 1/2``). With probability ``>= 1 - alpha`` per window, the smoothed classifier
    is constant (``= cA``) on the open L2 ball of that radius.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
        >>> pred, radius = certify(net, torch.zeros(3, 2), sigma=0.5, n0=10, n=100, alpha=0.001)
        >>> pred.shape, radius.shape
        ((3,), (3,))
    """
    if not 0 < alpha < 1:
        raise CropError(f"alpha must lie in (0, 1), got {alpha}")
    gen = _generator(seed, X.device)
    counts0 = sample_counts(model, X, sigma, n0, batch_size=batch_size, generator=gen)
    c_a = counts0.argmax(1)
    counts = sample_counts(model, X, sigma, n, batch_size=batch_size, generator=gen, n_classes=counts0.shape[1])
    n_a = counts[np.arange(len(X)), c_a]
    p_a = lower_confidence_bound(n_a, n, alpha)
    radius = certified_radius(p_a, sigma)
    prediction = np.where(p_a > 0.5, c_a, ABSTAIN)
    return prediction.astype(np.int64), radius


def certified_accuracy(prediction: np.ndarray, radius: np.ndarray, y: np.ndarray, radii: Sequence[float]) -> np.ndarray:
    """Fraction of windows correctly predicted with certified radius ``>= r``, for each ``r`` in ``radii``."""
    prediction, radius, y = np.asarray(prediction), np.asarray(radius), np.asarray(y)
    correct = (prediction == y) & (prediction != ABSTAIN)
    return np.array([float(np.mean(correct & (radius >= r))) for r in radii])

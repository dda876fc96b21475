"""Projected gradient descent (Madry et al., 2018) for empirical robust accuracy.

An upper bound on robust accuracy (an attack can only find counterexamples, never prove there
are none), the complement of the verified accuracy lower bound of ``margin.py``:
``verified <= robust <= pgd-robust <= clean``.

L-inf steps move by ``step_size * sign(grad)`` and clip to ``[-eps, eps]``; L2 steps move by
``step_size * grad / ||grad||_2`` and rescale onto the ball. Random starts are uniform in the
ball. Inputs are not clipped to a data range (sensor signals have none). A window counts as
broken as soon as any iterate of any restart is misclassified.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crop.certify.ball import check_norm
from crop.errors import CropError


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).reshape(-1, *([1] * (t.dim() - 1)))


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _per_sample_norm(delta).clamp_min(1e-12)).clamp(max=1.0)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    if norm == "linf":
        return (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    d = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    d = d / _per_sample_norm(d).clamp_min(1e-12)
    u = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype)
    radius = eps * u ** (1.0 / x[0].numel())
    return d * radius.reshape(-1, *([1] * (x.dim() - 1)))


def _loss(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "ce":
        return F.cross_entropy(logits, y, reduction="sum")
    other = logits.scatter(1, y[:, None], -torch.inf).amax(1)
    return (other - logits.gather(1, y[:, None])[:, 0]).sum()  # minus the margin


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str = "linf",
    *,
    steps: int = 20,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    loss: str = "ce",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Search the ``norm`` ball of radius ``eps`` around each window for a misclassified point.

    Returns ``(x_adv, broken)``: ``x_adv`` ``(B, *shape)`` is the first misclassified iterate
    found (or the last iterate), ``broken`` ``(B,)`` whether one was found. ``step_size``
    defaults to ``2.5 * eps / steps``. ``loss`` is ``"ce"`` (cross-entropy) or ``"margin"``.
    """
    norm = check_norm(norm)
    if loss not in ("ce", "margin"):
        raise CropError(f"unknown attack loss {loss!r}; choose ce or margin")
    step_size = step_size if step_size is not None else 2.5 * eps / max(steps, 1)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    x, y = x.detach(), torch.as_tensor(y, device=x.device)
    best = x.clone()
    with torch.no_grad():
        broken = model(x).argmax(1) != y
    try:
        for _ in range(max(restarts, 1)):
            delta = _random_start(x, eps, norm, gen) if random_start and eps > 0 else torch.zeros_like(x)
            for _ in range(steps):
                delta.requires_grad_(True)
                with torch.enable_grad():
                    logits = model(x + delta)
                    grad = torch.autograd.grad(_loss(logits, y, loss), delta)[0]
                with torch.no_grad():
                    wrong = logits.argmax(1) != y
                    fresh = wrong & ~broken
                    best[fresh] = (x + delta)[fresh]
                    broken |= wrong
                    if norm == "linf":
                        step = step_size * grad.sign()
                    else:
                        step = step_size * grad / _per_sample_norm(grad).clamp_min(1e-12)
                    delta = _project(delta.detach() + step, eps, norm)
            with torch.no_grad():
                wrong = model(x + delta).argmax(1) != y
                fresh = wrong & ~broken
                best[fresh] = (x + delta)[fresh]
                broken |= wrong
    finally:
        model.train(was_training)
    return best, broken


def pgd_robust_accuracy(
    model: nn.Module,
    X: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    eps: float,
    norm: str = "linf",
    *,
    batch_size: int = 512,
    **kwargs,
) -> float:
    """Fraction of windows PGD does not break (an upper bound on the true robust accuracy)."""
    X = torch.as_tensor(X, dtype=torch.float32) if not torch.is_tensor(X) else X
    y = torch.as_tensor(y, device=X.device)
    kept = 0
    for start in range(0, len(X), batch_size):
        _, broken = pgd_attack(model, X[start : start + batch_size], y[start : start + batch_size], eps, norm, **kwargs)
        kept += int((~broken).sum())
    return kept / max(len(X), 1)

"""Margin lower bounds, verification and verified accuracy.

For a window ``x`` of true class ``y`` and every other class ``j``, a margin lower bound
``m_j <= f_y(x') - f_j(x')`` holds for every ``x'`` in the ball around ``x``. The model is
*verified* at ``x`` when ``m_j > 0`` for all ``j != y``: no point of the ball changes the
prediction away from ``y``.

* IBP bounds the margin with the last affine layers folded into the specification ("elision",
  Gowal et al., 2018): the margin matrix is multiplied into the final linear layer and bounded
  over the interval of its input, which is never looser than ``lower_y - upper_j``.
* CROWN back-substitutes the margin specification matrix ``C`` (rows ``e_y - e_j``) directly.
* The reported bound is their element-wise maximum: both are sound, so is the larger one.

Margin arrays have shape ``(B, K)``; the entry of the true class is ``+inf`` (no constraint), so
``margin.min(1)`` is the worst-case margin and ``(margin > 0).all(1)`` the verified mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from crop.certify.ball import Box, NormBall, check_norm
from crop.certify.crown import Intermediate, backsubstitute, crown_linear_bounds
from crop.certify.ibp import interval_bounds
from crop.certify.network import Network, compile_network
from crop.errors import CropError

Method = Literal["ibp", "crown", "both"]


def margin_spec(y: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``C`` of shape ``(B, K, K)``: row ``j`` is ``e_y - e_j`` (the row of ``y`` is zero)."""
    eye = torch.eye(n_classes, dtype=dtype, device=y.device)
    return eye[y][:, None, :] - eye[None, :, :]


def _finish(lower: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return lower.scatter(1, y[:, None], torch.inf)


def _check(net: Network, y: torch.Tensor) -> int:
    if len(net.output_shape) != 1:
        raise CropError(f"margin bounds need logits of shape (batch, classes), the network gives {net.output_shape}")
    return net.output_shape[0]


def ibp_margin(net: Network, domain: NormBall | Box, y: torch.Tensor) -> torch.Tensor:
    """IBP margin lower bounds ``(B, K)`` with the trailing affine layers elided."""
    n_classes = _check(net, y)
    bounds = interval_bounds(net, domain)
    last = max((i for i, op in enumerate(net.ops) if op.kind != "affine"), default=-1)
    spec = margin_spec(y, n_classes, domain.box()[0].dtype)
    sub_domain = Box(*bounds[last]) if last >= 0 else domain
    batch = spec.shape[0]
    index = torch.arange(batch, device=y.device).repeat_interleave(n_classes)
    lower = backsubstitute(
        net, spec.reshape(batch * n_classes, n_classes), index, len(net.ops) - 1, {}, sub_domain, last
    )
    return _finish(lower.reshape(batch, n_classes), y)


def crown_margin(
    net: Network, domain: NormBall | Box, y: torch.Tensor, intermediate: Intermediate = "crown"
) -> torch.Tensor:
    """CROWN margin lower bounds ``(B, K)`` (the margin matrix back-substituted directly)."""
    n_classes = _check(net, y)
    spec = margin_spec(y, n_classes, domain.box()[0].dtype)
    lower, _ = crown_linear_bounds(net, domain, spec, intermediate, lower_only=True)
    return _finish(lower, y)


@dataclass
class MarginBounds:
    """Margin lower bounds ``(B, K)``: ``lower`` is the element-wise max of ``ibp`` and ``crown``
    (those computed); ``verified`` ``(B,)`` is ``lower > 0`` for every other class."""

    lower: torch.Tensor
    ibp: torch.Tensor | None = None
    crown: torch.Tensor | None = None

    @property
    def verified(self) -> torch.Tensor:
        return (self.lower > 0).all(1)


def margin_bounds(
    model: nn.Module | Network,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    norm: str = "linf",
    method: Method = "both",
    intermediate: Intermediate = "crown",
) -> MarginBounds:
    """Margin lower bounds of ``model`` (eval semantics) on the ``norm`` ball of radius ``eps``
    around each window of ``x`` ``(B, *input_shape)`` with labels ``y`` ``(B,)``.

    ``eps`` is in input units (raw sensor units for HAPT: g and rad/s), a number or one per window.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> b = margin_bounds(net, torch.zeros(4, 2), torch.tensor([0, 1, 2, 0]), eps=0.01)
        >>> b.lower.shape, bool((b.lower >= b.crown).all() and (b.lower >= b.ibp).all())
        ((4, 3), True)
    """
    if method not in ("ibp", "crown", "both"):
        raise CropError(f"unknown bound method {method!r}; choose ibp, crown or both")
    net = compile_network(model, tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    y = torch.as_tensor(y, device=x.device)
    domain = NormBall.of(x, eps, check_norm(norm))
    ibp = ibp_margin(net, domain, y) if method in ("ibp", "both") else None
    crown = crown_margin(net, domain, y, intermediate) if method in ("crown", "both") else None
    if ibp is not None and crown is not None:
        lower = torch.maximum(ibp, crown)
    else:
        lower = ibp if ibp is not None else crown
    return MarginBounds(lower, ibp, crown)


@torch.no_grad()
def verify(
    model: nn.Module | Network,
    X: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    eps: float,
    norm: str = "linf",
    method: Method = "both",
    *,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Per-window verification: ``{"ibp", "crown", "both"}`` -> bool arrays ``(n,)`` (those computed)
    and ``"margin"`` -> the reported worst-case margin lower bound ``(n,)``."""
    X = torch.as_tensor(X, dtype=torch.float32) if not torch.is_tensor(X) else X
    y = torch.as_tensor(y)
    if len(X) == 0:
        raise CropError("no windows to verify")
    net = compile_network(model, tuple(X.shape[1:]), dtype=X.dtype, device=X.device)
    out: dict[str, list] = {"margin": []}
    for start in range(0, len(X), batch_size):
        b = margin_bounds(net, X[start : start + batch_size], y[start : start + batch_size], eps, norm, method)
        out["margin"].append(b.lower.min(1).values)
        for key, value in (("ibp", b.ibp), ("crown", b.crown)):
            if value is not None:
                out.setdefault(key, []).append((value > 0).all(1))
        if method == "both":
            out.setdefault("both", []).append(b.verified)
    return {k: torch.cat(v).cpu().numpy() for k, v in out.items()}


def verified_accuracy(
    model: nn.Module | Network,
    X: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    eps: float,
    norm: str = "linf",
    method: Method = "both",
    *,
    batch_size: int = 256,
) -> float:
    """Fraction of windows verified at ``eps`` (verified implies correctly classified)."""
    result = verify(model, X, y, eps, norm, method, batch_size=batch_size)
    return float(result["both" if method == "both" else method].mean())

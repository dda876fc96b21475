"""Margin lower bounds, verification and verified accuracy.

For a window ``x`` of true class ``y`` and every other class ``j``, a margin lower bound
``m_j <= f_y(x') - f_j(x')`` holds for every ``x'`` in the ball around ``x``. The model is
*verified* at ``x`` when ``m_j > 0`` for all ``j != y``: no point of the ball changes the
prediction away from ``y``.

* IBP bounds the margin with the last affine layers folded into the specification ("elision",
  Gowal et al., 2018): the margin matrix is multiplied into the final linear layer and bounded
  over the interval of its input, which is never looser than ``lower_y - upper_j``.
* CROWN back-substitutes the margin specification matrix ``C`` (rows ``e_y - e_j``) directly.
* alpha-CROWN (``method="alpha-crown"``, :mod:`crop.certify.alpha_crown`) optimises CROWN's
  ReLU lower slopes per margin row and the intermediate bounds per neuron. It is run only on
  the windows that need it: those classified correctly at the centre and not yet verified by
  IBP or CROWN (the others keep their CROWN bound), which makes it cheap where CROWN already
  verifies most windows.
* The reported bound is their element-wise maximum: all are sound, so is the largest.

Margin arrays have shape ``(B, K)``; the entry of the true class is ``+inf`` (no constraint), so
``margin.min(1)`` is the worst-case margin and ``(margin > 0).all(1)`` the verified mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from crop.certify.alpha_crown import ITERATIONS, LR, alpha_crown_margin, check_alpha_options, select
from crop.certify.ball import Box, NormBall, check_norm
from crop.certify.crown import Intermediate, backsubstitute, crown_linear_bounds, relaxed_bounds
from crop.certify.ibp import interval_bounds
from crop.certify.network import Network, compile_network
from crop.errors import CropError

Method = Literal["ibp", "crown", "both", "alpha-crown"]
METHODS = ("ibp", "crown", "both", "alpha-crown")


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
    net: Network, domain: NormBall | Box, y: torch.Tensor, intermediate: Intermediate = "crown", *, state=None
) -> torch.Tensor:
    """CROWN margin lower bounds ``(B, K)`` (the margin matrix back-substituted directly);
    ``state`` as :func:`~crop.certify.crown.crown_linear_bounds` takes it."""
    n_classes = _check(net, y)
    spec = margin_spec(y, n_classes, domain.box()[0].dtype)
    lower, _ = crown_linear_bounds(net, domain, spec, intermediate, state=state, lower_only=True)
    return _finish(lower, y)


@dataclass
class MarginBounds:
    """Margin lower bounds ``(B, K)``: ``lower`` is the element-wise max of ``ibp``, ``crown``
    and ``alpha`` (those computed); ``verified`` ``(B,)`` is ``lower > 0`` for every other class."""

    lower: torch.Tensor
    ibp: torch.Tensor | None = None
    crown: torch.Tensor | None = None
    alpha: torch.Tensor | None = None

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
    *,
    iterations: int = ITERATIONS,
    lr: float = LR,
) -> MarginBounds:
    """Margin lower bounds of ``model`` (eval semantics) on the ``norm`` ball of radius ``eps``
    around each window of ``x`` ``(B, *input_shape)`` with labels ``y`` ``(B,)``.

    ``eps`` is in input units (raw sensor units for HAPT: g and rad/s), a number or one per window.
    ``method="alpha-crown"`` computes IBP, CROWN and alpha-CROWN (``iterations`` Adam steps of
    learning rate ``lr``; see the module docstring for which windows it works on).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> b = margin_bounds(net, torch.zeros(4, 2), torch.tensor([0, 1, 2, 0]), eps=0.01)
        >>> b.lower.shape, bool((b.lower >= b.crown).all() and (b.lower >= b.ibp).all())
        ((4, 3), True)
    """
    if method not in METHODS:
        raise CropError(f"unknown bound method {method!r}; choose {', '.join(METHODS)}")
    check_alpha_options(iterations, lr)
    net = compile_network(model, tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    y = torch.as_tensor(y, device=x.device)
    domain = NormBall.of(x, eps, check_norm(norm))
    ibp = ibp_margin(net, domain, y) if method in ("ibp", "both", "alpha-crown") else None
    crown = alpha = None
    if method in ("crown", "both"):
        crown = crown_margin(net, domain, y, intermediate)
    elif method == "alpha-crown":
        with torch.no_grad():
            state = relaxed_bounds(net, domain, intermediate)
            crown = crown_margin(net, domain, y, intermediate, state=state)
            assert ibp is not None
            center = net(x).gather(1, y[:, None]) - net(x)
        alpha = crown.clone()
        need = ~(torch.maximum(ibp, crown) > 0).all(1) & (center.scatter(1, y[:, None], torch.inf) > 0).all(1)
        if bool(need.any()):
            sub_domain, sub_state = select(domain, state, need)
            _, alpha[need] = alpha_crown_margin(
                net, sub_domain, y[need], intermediate, iterations=iterations, lr=lr, state=sub_state
            )
    parts = [b for b in (ibp, crown, alpha) if b is not None]
    lower = parts[0]
    for b in parts[1:]:
        lower = torch.maximum(lower, b)
    return MarginBounds(lower, ibp, crown, alpha)


def routed_parts(model: Any) -> tuple[nn.Module, nn.Module] | None:
    """``(generic, personalized)`` networks of a routed model; ``None`` for any other model."""
    from crop.models.routed import RoutedModel

    return (model.generic, model.personal) if isinstance(model, RoutedModel) else None


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
    iterations: int = ITERATIONS,
    lr: float = LR,
) -> dict[str, np.ndarray]:
    """Per-window verification: ``{"ibp", "crown", "alpha-crown", "both"}`` -> bool arrays
    ``(n,)`` (those computed; ``"both"``, with methods ``both`` and ``alpha-crown``, is the
    reported certificate: the best of every bound computed) and ``"margin"`` -> the reported
    worst-case margin lower bound ``(n,)``. ``iterations`` and ``lr`` are alpha-CROWN's.

    A routed model (:class:`~crop.models.routed.RoutedModel`) is verified through its two
    networks: a window counts as verified when both the generic and the personalized network are
    verified for its label. That is sound whatever the routing weights do inside the ball: if
    both networks rank the label first at a point, so does every mixture ``w p_P + (1 - w) p_G``
    of their class probabilities (a convex combination keeps each inequality). Its margin is the
    smaller of the two networks' margins (a bound on the networks, not on the blend)."""
    X = torch.as_tensor(X, dtype=torch.float32) if not torch.is_tensor(X) else X
    y = torch.as_tensor(y)
    if len(X) == 0:
        raise CropError("no windows to verify")
    parts = routed_parts(model)
    if parts is not None:
        a, b = (verify(p, X, y, eps, norm, method, batch_size=batch_size, iterations=iterations, lr=lr) for p in parts)
        return {k: (np.minimum(a[k], b[k]) if k == "margin" else a[k] & b[k]) for k in a}
    net = compile_network(model, tuple(X.shape[1:]), dtype=X.dtype, device=X.device)
    out: dict[str, list] = {"margin": []}
    for start in range(0, len(X), batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        b = margin_bounds(net, xb, yb, eps, norm, method, iterations=iterations, lr=lr)
        out["margin"].append(b.lower.min(1).values)
        for key, value in (("ibp", b.ibp), ("crown", b.crown), ("alpha-crown", b.alpha)):
            if value is not None:
                out.setdefault(key, []).append((value > 0).all(1))
        if method in ("both", "alpha-crown"):
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
    iterations: int = ITERATIONS,
    lr: float = LR,
) -> float:
    """Fraction of windows verified at ``eps`` (verified implies correctly classified); with
    ``both`` or ``alpha-crown`` by the best of the bounds that method computes."""
    result = verify(model, X, y, eps, norm, method, batch_size=batch_size, iterations=iterations, lr=lr)
    return float(result["both" if method in ("both", "alpha-crown") else method].mean())

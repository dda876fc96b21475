"""Interval bound propagation (IBP; Gowal et al., 2018; Mirman et al., 2018).

Pushes a box through the network layer by layer: affine layers by centre / radius
(``c' = f(c)``, ``r' = |L| r``, exact for one affine layer), ReLU by clamping, GRU / LSTM by
interval arithmetic (``ops/recurrent.py``).

An L2 ball is not a box. It is tracked exactly as an axis-aligned ellipsoid
``{c + s * u : ||u||_2 <= 1}`` through scaling / permutation layers (``Standardize``, eval
batch-norm, flatten) and its image under the first mixing layer is bounded exactly,
``r_i = sqrt(sum_j L_ij^2 s_j^2)``; from there on it is a box. Starting from the bounding box
``c -+ eps`` instead would lose a factor up to ``sqrt(d)`` at the first layer.

Guarantee: for every ``x`` in the input set and every layer ``i``,
``bounds[i][0] <= layer_i(x) <= bounds[i][1]`` (up to floating-point rounding; no outward
rounding is done).
"""

from __future__ import annotations

import torch

from crop.certify.ball import Box, NormBall
from crop.certify.network import Network

Interval = tuple[torch.Tensor, torch.Tensor]


def interval_bounds(net: Network, domain: NormBall | Box) -> list[Interval]:
    """Bounds ``(lower, upper)`` of the output of every layer, each ``(B, *ops[i].out_shape)``."""
    bounds: list[Interval] = []
    ellipsoid = isinstance(domain, NormBall) and domain.norm == "l2"
    if ellipsoid:
        center = domain.center
        scale = domain.eps.reshape((-1,) + (1,) * (center.dim() - 1)).expand_as(center)
    else:
        lower, upper = domain.box()
    for op in net.ops:
        if ellipsoid:
            if op.kind == "affine" and op.diagonal:
                center, scale = op.forward(center), op.abs_linear(scale)
                bounds.append((center - scale, center + scale))
                continue
            ellipsoid = False
            if op.kind == "affine":
                c = op.forward(center)
                r = torch.sqrt(op.sq_linear(scale.square()).clamp_min(1e-30))
                lower, upper = c - r, c + r
                bounds.append((lower, upper))
                continue
            lower, upper = center - scale, center + scale
        lower, upper = op.interval(lower, upper)
        bounds.append((lower, upper))
    return bounds


def ibp_output_bounds(net: Network, domain: NormBall | Box) -> Interval:
    """Bounds of the network output, ``(B, *output_shape)`` each."""
    return interval_bounds(net, domain)[-1]


def repropagate(net: Network, bounds: list[Interval], start: int) -> None:
    """After ``bounds[start]`` was tightened, recompute the later layers from it by IBP and keep
    the element-wise tighter of old and new (both are sound, so their intersection is)."""
    lower, upper = bounds[start]
    for i in range(start + 1, len(net.ops)):
        lower, upper = net.ops[i].interval(lower, upper)
        old_l, old_u = bounds[i]
        lower, upper = torch.maximum(lower, old_l), torch.minimum(upper, old_u)
        bounds[i] = (lower, upper)

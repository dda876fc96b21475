"""CROWN back-substitution in *patch* form for chains of 1-D convolutions.

Every neuron ``(c, t)`` of a convolutional layer depends on a short window of each earlier
layer: its coefficients over layer ``i`` are non-zero only on positions
``start(t) .. start(t) + P - 1`` with ``start(t) = step * t + offset``. Storing just that
window (a "patch", as auto_LiRPA does) instead of the whole layer turns the bounds of all
neurons of a layer into a few small batched operations:

* through a convolution (stride ``s``, padding ``p``, dilation ``d``, kernel ``K``) a patch of
  length ``P`` becomes one of length ``(P - 1) s + d (K - 1) + 1`` by a transposed convolution of
  the ``B * S * T`` patches as independent maps; ``step *= s``, ``offset = offset * s - p``;
  positions that fall in the zero padding are masked out (they are constants, not inputs);
* through a per-channel or per-position diagonal layer (batch-norm, ``Standardize``, a ReLU
  relaxation) the diagonal is cut into the same windows with ``Tensor.unfold``.

Shapes: coefficients ``(R, C, P)`` -- one row per bounded neuron (its sample and time
position kept alongside), channels of the current layer, patch length; constants ``(R,)``.

Used for the intermediate bounds of HAPTNet-like networks; anything else (linear layers,
flatten, 2-D convolutions, recurrent walls) goes through the dense path in ``crown.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crop.certify.ball import NormBall
from crop.certify.network import Network
from crop.certify.ops import ConvOp, DiagonalOp, IdentityOp
from crop.certify.ops.relu import ReLURelaxation


def windows(t: torch.Tensor, offset: int, step: int, size: int, count: int) -> torch.Tensor:
    """Windows ``t[..., offset + step * j : ... + size]`` for ``j < count`` with zeros outside
    ``[0, L)``: ``(N, C, L) -> (N, C, count, size)``."""
    length = t.shape[-1]
    left = max(0, -offset)
    right = max(0, offset + step * (count - 1) + size - length)
    padded = F.pad(t, (left, right)) if left or right else t
    return padded[..., offset + left :].unfold(-1, size, step)[..., :count, :]


def patch_supported(net: Network, end: int, domain) -> bool:
    """True when layers ``0 .. end`` are 1-D convolutions / diagonal layers / ReLUs on
    ``(channels, time)`` maps and the input set is a norm ball."""
    if not isinstance(domain, NormBall) or len(net.input_shape) != 2:
        return False
    for op in net.ops[: end + 1]:
        if len(op.out_shape) != 2 or len(op.in_shape) != 2:
            return False
        if op.kind == "affine" and not isinstance(op, (IdentityOp, DiagonalOp)):
            if not (isinstance(op, ConvOp) and op.dim == 1):
                return False
        elif op.kind not in ("affine", "relu"):
            return False
    return True


def patch_row_size(net: Network, end: int) -> int:
    """Largest number of coefficients one row holds on its way back from layer ``end``."""
    size, largest = 1, net.ops[end].out_shape[0]
    for op in net.ops[end::-1]:
        if isinstance(op, ConvOp):
            kernel = op.weight_fn()[0].shape[-1]
            size = (size - 1) * op.stride[0] + op.dilation[0] * (kernel - 1) + 1
            largest = max(largest, op.in_shape[0] * size)
    return largest


def _transpose(a: torch.Tensor, op: ConvOp) -> torch.Tensor:
    """Transposed convolution of patches ``(R, C_out, P) -> (R, C_in, (P-1)s + d(K-1) + 1)``, no padding.

    The rows are the batch of one ``conv_transpose1d`` (faster on CPU than a matrix product
    followed by strided col2im additions at every shape HAPTNet produces)."""
    weight = op.weight_fn()[0]
    return F.conv_transpose1d(a, weight, None, op.stride[0], 0, 0, op.groups, op.dilation[0])


def _rows(t: torch.Tensor, offset: int, step: int, size: int, steps: int, flat_row: torch.Tensor) -> torch.Tensor:
    """Window of ``t`` ``(B, C, L)`` for each row (``flat_row = sample * steps + position``): ``(R, C, size)``."""
    cut = windows(t, offset, step, size, steps)  # (B, C, T, size), a view
    cut = cut.permute(0, 2, 1, 3).reshape(-1, t.shape[1] * size)  # (B * T, C * size), one copy
    return cut.index_select(0, flat_row).reshape(-1, t.shape[1], size)


def patch_bounds(
    net: Network,
    end: int,
    relaxations: dict[int, ReLURelaxation],
    domain: NormBall,
    sample: torch.Tensor,
    neuron: torch.Tensor,
    sign: torch.Tensor | None = None,
    slope_hook=None,
) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
    """CROWN lower and upper bounds of the neurons ``neuron`` (flat index into ``(C, T)``) of
    layer ``end`` for the inputs of ``sample``; ``(R,)`` each.

    With ``sign`` (``(R,)`` of +1 / -1) only one bound per row is computed and returned: the
    lower bound of ``sign * z`` (so ``-result`` is the upper bound where ``sign`` is -1).
    ``slope_hook`` is :func:`~crop.certify.crown.backsubstitute`'s, called with the patch-shaped
    ``(R, C, size)`` slopes and intercepts of each ReLU."""
    channels, steps = net.ops[end].out_shape
    center = domain.center
    n = len(sample)
    both = sign is None
    if both:
        sample, neuron = torch.cat([sample, sample]), torch.cat([neuron, neuron])
        sign = torch.cat([center.new_ones(n), -center.new_ones(n)])  # lower bounds of -z give upper bounds of z
    rows_sample = sample
    position = neuron % steps
    flat_row = rows_sample * steps + position
    channel = neuron // steps
    rows = len(sample)
    first = net.ops[end]
    if isinstance(first, ConvOp) and first.groups == 1:
        # the identity specification through the layer's own convolution is its filter
        weight, b = first.weight_fn()
        a = weight[channel] * sign[:, None, None]
        bias = b[channel] * sign if b is not None else center.new_zeros(rows)
        offset, step = -first.padding[0], first.stride[0]
        valid = windows(center.new_ones(1, 1, first.in_shape[1]), offset, step, a.shape[-1], steps)[0, 0]
        a = a * valid[position][:, None, :]
        end -= 1
    else:
        a = center.new_zeros(rows, channels, 1)
        a[torch.arange(rows, device=center.device), channel, 0] = sign
        bias = center.new_zeros(rows)
        offset, step = 0, 1
    for i in range(end, -1, -1):
        op = net.ops[i]
        size = a.shape[-1]
        if isinstance(op, IdentityOp):
            continue
        if isinstance(op, DiagonalOp):
            scale, shift = (p.reshape(1, -1, 1) for p in op._params())
            bias = bias + (a * shift).sum((1, 2))
            a = a * scale
        elif op.kind == "relu":
            rel = relaxations[i]
            stacked = torch.cat([rel.lower_slope, rel.upper_slope, rel.upper_intercept], 1)
            alpha, slope, intercept = _rows(stacked, offset, step, size, steps, flat_row).chunk(3, 1)
            if slope_hook is not None:
                alpha = slope_hook(i, alpha, intercept)
            neg = a.clamp(max=0)
            bias = bias + (neg * intercept).sum((1, 2))
            a = torch.where(a >= 0, a * alpha, neg * slope)
        else:
            assert isinstance(op, ConvOp)
            b = op.weight_fn()[1]
            if b is not None:
                bias = bias + a.sum(2) @ b
            a = _transpose(a, op)
            offset, step = offset * op.stride[0] - op.padding[0], step * op.stride[0]
            valid = windows(center.new_ones(1, 1, op.in_shape[1]), offset, step, a.shape[-1], steps)[0, 0]
            a = a * valid[position][:, None, :]
    x0 = _rows(center, offset, step, a.shape[-1], steps, flat_row)
    value = (a * x0).sum((1, 2))
    # vector_norm, not sqrt(sum of squares): its gradient at a zero row is 0, where the other's is
    # NaN (0 * inf), which alpha-CROWN's slope optimisation would carry into every later bound
    dual = a.abs().sum((1, 2)) if domain.norm == "linf" else torch.linalg.vector_norm(a.flatten(1), dim=-1)
    lower = bias + value - domain.eps[rows_sample] * dual
    return (lower[:n], -lower[n:]) if both else lower

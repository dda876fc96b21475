"""CROWN: backward linear relaxation (Zhang et al., 2018, "Efficient Neural Network Robustness
Certification with General Activation Functions").

To lower-bound ``a . z_k`` (``z_k`` the output of layer ``k``) over the input set, ``a`` is
carried backwards: through an affine layer ``z = L x + c`` it becomes ``L^T a`` plus the
constant ``a . c``; through a ReLU each coefficient picks the relaxation line that keeps the
bound sound (the lower line where it is positive, the upper chord where it is negative). At the
input the resulting linear function is minimised in closed form over the ball (``ball.py``).
Upper bounds are ``-lower(-a)``.

The relaxation of a ReLU needs bounds on its input. ``intermediate="crown"`` (full CROWN)
computes them by the same back-substitution, but only for the neurons that the best bounds so
far leave unstable (stable neurons have an exact relaxation whatever their bounds), in chunks,
with IBP re-propagated after each layer; every bound is the intersection of its IBP and CROWN
values. Layers reached from the input by one mixing layer are bounded exactly by IBP and are not
re-done; convolutional layers use the patch form of ``patches.py``. ``intermediate="ibp"`` uses
IBP bounds (CROWN-IBP, Zhang et al., 2020): cheap and differentiable, for training. A recurrent
layer (and a Hardswish) is a wall: back-substitution stops at its output and uses its interval there.

Coefficients travel as rows ``a`` of shape ``(R, *shape)``, row ``r`` belonging to sample
``index[r]``; a convolution transposes all rows at once as ``R`` maps.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Literal

import torch

from crop.certify.ball import Box, NormBall
from crop.certify.ibp import Interval, interval_bounds, repropagate
from crop.certify.network import Network
from crop.certify.ops.relu import ReLURelaxation, relu_relaxation
from crop.certify.patches import patch_bounds, patch_row_size, patch_supported

Intermediate = Literal["crown", "ibp"]
SlopeHook = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
Optimizer = Callable[[Callable[[SlopeHook | None], torch.Tensor]], torch.Tensor]
CHUNK_ELEMENTS = 1 << 21


def backsubstitute(
    net: Network,
    a: torch.Tensor,
    index: torch.Tensor,
    end: int,
    relaxations: dict[int, ReLURelaxation],
    domain: NormBall | Box,
    domain_index: int = -1,
    slope_hook: SlopeHook | None = None,
) -> torch.Tensor:
    """Lower bound of ``a[r] . z_end(x)`` over the inputs of sample ``index[r]``.

    ``a`` has shape ``(R, *ops[end].out_shape)``. Goes back through layers
    ``end, ..., domain_index + 1`` and minimises over ``domain``, the set ``z_{domain_index}``
    lies in (the network input when ``domain_index == -1``). Every ReLU in between needs its
    entry in ``relaxations``. ``slope_hook(i, slopes, intercepts)``, where given, returns the
    lower-line slopes ``(R, *shape)`` to use at ReLU ``i`` instead of CROWN's ``slopes``
    (alpha-CROWN; ``intercepts > 0`` marks the unstable neurons, where any slope in ``[0, 1]``
    is sound). Returns ``(R,)``.
    """
    bias = a.new_zeros(a.shape[0])
    for i in range(end, domain_index, -1):
        op = net.ops[i]
        if op.kind == "affine":
            if op.has_offset:
                bias = bias + (a * op.offset()).flatten(1).sum(-1)
            a = op.transpose(a)
        elif op.kind == "relu":
            rel = relaxations[i]
            neg = a.clamp(max=0)
            bias = bias + (neg * rel.upper_intercept[index]).flatten(1).sum(-1)
            slope = rel.lower_slope[index]
            if slope_hook is not None:
                slope = slope_hook(i, slope, rel.upper_intercept[index])
            a = torch.where(a >= 0, a * slope, neg * rel.upper_slope[index])
        else:
            raise ValueError(f"cannot back-substitute through {op!r}; stop at it")
    return bias + domain.lower(a, index)


def domain_for(net: Network, bounds: list[Interval], domain: NormBall | Box, index: int) -> tuple[NormBall | Box, int]:
    """The set back-substitution from layer ``index`` ends in, and its layer index: the interval
    of the last recurrent (or other interval-only) layer before it, or the input ``domain`` (-1)."""
    for i in range(index - 1, -1, -1):
        if net.ops[i].kind not in ("affine", "relu"):
            return Box(*bounds[i]), i
    return domain, -1


def _ibp_exact(net: Network, index: int, domain: NormBall | Box, bounds: list[Interval]) -> bool:
    """True when IBP is already exact for the output of layer ``index``: only affine layers since
    the domain, at most one of them mixing (IBP bounds one affine image of a box or ball exactly)."""
    start = domain_for(net, bounds, domain, index + 1)[1]
    mixing = 0
    for op in net.ops[start + 1 : index + 1]:
        if op.kind != "affine":
            return False
        mixing += not op.diagonal
    return mixing <= 1


def _largest(net: Network, index: int) -> int:
    largest = 1
    for op in net.ops[: index + 1]:
        n = 1
        for s in op.in_shape:
            n *= s
        largest = max(largest, n)
    return largest


def _refine(
    net: Network,
    bounds: list[Interval],
    index: int,
    relaxations: dict[int, ReLURelaxation],
    domain: NormBall | Box,
    optimize: Optimizer | None = None,
) -> Interval:
    """CROWN bounds for the unstable entries of ``z_index``, intersected with ``bounds[index]``.

    With ``optimize`` (alpha-CROWN) each chunk's bounds are ``optimize(bound_fn)``, where
    ``bound_fn(slope_hook)`` computes them with the hook's lower slopes."""
    lower, upper = bounds[index]
    batch, shape = lower.shape[0], lower.shape[1:]
    flat_l, flat_u = lower.reshape(batch, -1).clone(), upper.reshape(batch, -1).clone()
    rows = ((flat_l < 0) & (flat_u > 0)).nonzero()  # (N, 2): sample, neuron
    if len(rows) == 0:
        return lower, upper
    numel = flat_l.shape[1]
    patched = patch_supported(net, index, domain)
    sub_domain, sub_index = domain_for(net, bounds, domain, index)
    per_row = patch_row_size(net, index) if patched else max(numel, _largest(net, index))
    chunk = max(1, CHUNK_ELEMENTS // per_row)

    def one_side(sample: torch.Tensor, neuron: torch.Tensor, sign: float) -> torch.Tensor:
        """Lower bounds of ``sign * z`` for the given (sample, neuron) rows."""
        out = []
        for start in range(0, len(sample), chunk):
            s, nrn = sample[start : start + chunk], neuron[start : start + chunk]
            signs = lower.new_full((len(s),), sign)
            if patched:

                def bound_fn(hook, s=s, nrn=nrn, signs=signs):
                    return patch_bounds(net, index, relaxations, domain, s, nrn, signs, slope_hook=hook)
            else:
                a = lower.new_zeros(len(s), numel)
                a[torch.arange(len(s), device=lower.device), nrn] = signs
                a = a.reshape(len(s), *shape)

                def bound_fn(hook, a=a, s=s):
                    return backsubstitute(net, a, s, index, relaxations, sub_domain, sub_index, hook)

            out.append(bound_fn(None) if optimize is None else optimize(bound_fn))
        return torch.cat(out) if out else lower.new_zeros(0)

    # Upper bounds first: a neuron whose upper bound drops to <= 0 is inactive, its relaxation
    # is zero whatever its lower bound, so the lower bound is computed only for the others.
    sample, neuron = rows.unbind(1)
    ub = -one_side(sample, neuron, -1.0)
    # fmin / fmax: a NaN from the refinement (never a bound) keeps the sound bound it would replace
    flat_u[sample, neuron] = torch.fmin(flat_u[sample, neuron], ub)
    alive = flat_u[sample, neuron] > 0
    sample, neuron = sample[alive], neuron[alive]
    lb = one_side(sample, neuron, 1.0)
    flat_l[sample, neuron] = torch.fmax(flat_l[sample, neuron], lb)
    return flat_l.reshape(lower.shape), flat_u.reshape(upper.shape)


def relaxed_bounds(
    net: Network,
    domain: NormBall | Box,
    intermediate: Intermediate = "crown",
    *,
    start: list[Interval] | None = None,
    optimize: Optimizer | None = None,
    optimize_layers: Container[int] | None = None,
) -> tuple[list[Interval], dict[int, ReLURelaxation]]:
    """Bounds of every layer and the ReLU relaxations built from them.

    With ``intermediate="crown"`` the input bounds of each ReLU are tightened by CROWN (see the
    module docstring); with ``"ibp"`` they are the IBP bounds. A neuron that CROWN proves
    inactive (upper bound <= 0) keeps its IBP lower bound: its relaxation is zero either way, so
    only that (sound, looser) pre-activation lower bound differs from two-sided CROWN.

    ``start`` (sound bounds of every layer, e.g. an earlier result) replaces the IBP bounds the
    refinement starts from; ``optimize`` is handed to the refinement of every layer in
    ``optimize_layers`` (all when ``None``; alpha-CROWN, see :mod:`crop.certify.alpha_crown`).
    """
    bounds = list(start) if start is not None else interval_bounds(net, domain)
    relaxations: dict[int, ReLURelaxation] = {}
    for i, op in enumerate(net.ops):
        if op.kind != "relu":
            continue
        if i == 0:
            pre = domain.box()
        else:
            if intermediate == "crown" and not _ibp_exact(net, i - 1, domain, bounds):
                use = optimize if optimize_layers is None or i - 1 in optimize_layers else None
                bounds[i - 1] = _refine(net, bounds, i - 1, relaxations, domain, use)
                repropagate(net, bounds, i - 1)
            pre = bounds[i - 1]
        relaxations[i] = relu_relaxation(*pre)
    return bounds, relaxations


def crown_linear_bounds(
    net: Network,
    domain: NormBall | Box,
    spec: torch.Tensor,
    intermediate: Intermediate = "crown",
    *,
    state: tuple[list[Interval], dict[int, ReLURelaxation]] | None = None,
    lower_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """CROWN bounds of ``spec . f(x)``: ``spec`` ``(B, S, *output_shape)``; returns
    ``(lower, upper)``, ``(B, S)`` each (``upper`` is ``None`` with ``lower_only``).

    ``state`` reuses the output of :func:`relaxed_bounds` for the same network and domain.
    """
    bounds, relaxations = state if state is not None else relaxed_bounds(net, domain, intermediate)
    end = len(net.ops) - 1
    sub_domain, sub_index = domain_for(net, bounds, domain, end)
    batch, n_spec = spec.shape[:2]
    index = torch.arange(batch, device=spec.device).repeat_interleave(n_spec)
    a = spec.reshape(batch * n_spec, *spec.shape[2:])
    if lower_only:
        lb = backsubstitute(net, a, index, end, relaxations, sub_domain, sub_index)
        return lb.reshape(batch, n_spec), None
    lb = backsubstitute(net, torch.cat([a, -a]), torch.cat([index, index]), end, relaxations, sub_domain, sub_index)
    rows = batch * n_spec
    return lb[:rows].reshape(batch, n_spec), -lb[rows:].reshape(batch, n_spec)


def crown_output_bounds(
    net: Network,
    domain: NormBall | Box,
    intermediate: Intermediate = "crown",
    *,
    iterations: int = 0,
    lr: float = 0.5,
) -> Interval:
    """Bounds of every output, shape ``(B, *output_shape)`` each: CROWN's (alpha-CROWN's with
    ``iterations > 0``, :mod:`crop.certify.alpha_crown`) intersected element-wise with the
    interval bounds computed on the way (IBP, tightened after every CROWN refinement), so
    they are never looser than either.

    Example:
        >>> import torch
        >>> from crop.certify import NormBall, compile_network, ibp_output_bounds
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> net = compile_network(model, (4,))
        >>> ball = NormBall.of(torch.zeros(2, 4), 0.1)
        >>> lower, upper = crown_output_bounds(net, ball)
        >>> ibp_lower, ibp_upper = ibp_output_bounds(net, ball)
        >>> lower.shape, bool((lower >= ibp_lower).all() and (upper <= ibp_upper).all())
        (torch.Size([2, 3]), True)
    """
    ref = domain.box()[0]
    batch, out_shape = ref.shape[0], net.output_shape
    n = 1
    for s in out_shape:
        n *= s
    eye = torch.eye(n, dtype=ref.dtype, device=ref.device).reshape(1, n, *out_shape).expand(batch, n, *out_shape)
    state = relaxed_bounds(net, domain, intermediate)
    if iterations > 0:
        from crop.certify.alpha_crown import alpha_crown_linear_bounds  # imports this module

        lower, upper = alpha_crown_linear_bounds(
            net, domain, eye, intermediate, iterations=iterations, lr=lr, state=state
        )
    else:
        lower, upper = crown_linear_bounds(net, domain, eye, intermediate, state=state)
    assert upper is not None
    ibp_lower, ibp_upper = state[0][-1]
    lower = torch.fmax(lower.reshape(batch, *out_shape), ibp_lower)
    upper = torch.fmin(upper.reshape(batch, *out_shape), ibp_upper)
    return lower, upper

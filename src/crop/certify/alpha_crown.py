"""alpha-CROWN: CROWN with optimised ReLU lower-bound slopes (Xu et al., 2021, "Fast and
Complete: Enabling Complete Neural Network Verification with Rapid and Massively Parallel
Incomplete Verifiers", the optimised-CROWN part).

For an unstable ReLU (``l < 0 < u``) every line ``alpha * h`` with ``alpha`` in ``[0, 1]`` lies
below ``relu(h)`` on ``[l, u]``, so each choice of slopes gives a sound CROWN bound. CROWN fixes
``alpha`` by a heuristic (1 when ``u >= -l``, else 0; ``ops/relu.py``); alpha-CROWN treats the
slopes as variables and maximises the lower bound of the objective by projected gradient ascent
(Adam, then clipping to ``[0, 1]``). The slopes are separate for every row of the
specification (every output, or every margin ``f_y - f_j``) and every neuron, because the best
line for one objective is not the best for another.

Guarantees: the first iterate uses CROWN's own slopes, and the best bound seen over the
iterations is kept row by row, so the result is never looser than CROWN's (with the same
intermediate bounds) and every iterate is sound. The optimisation is deterministic (no random
initialisation; Adam on fixed data).

What is optimised here: the slopes used to bound the final objective, with the intermediate
(pre-activation) bounds kept as CROWN (or IBP) computed them. The full method of the paper
also optimises separate slopes for every intermediate bound; that costs one slope per pair of
(bounded neuron, earlier neuron) and is left out (see docs/ROBUSTNESS.md for what this
version gains and costs on HAPT).

Hand-written because auto_LiRPA, the maintained implementation, would replace the whole bound
stack (patch-form CROWN, folded batch-norm, recurrent walls) that :mod:`crop.certify` already
has; alpha-CROWN on top of it is the few lines below.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container

import torch

from crop.certify.ball import Box, NormBall
from crop.certify.crown import Intermediate, Optimizer, SlopeHook, backsubstitute, domain_for, relaxed_bounds
from crop.certify.ibp import Interval
from crop.certify.network import Network
from crop.certify.ops.relu import ReLURelaxation
from crop.errors import CropError

ITERATIONS = 20
LR = 0.5


def check_alpha_options(iterations: int, lr: float) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise CropError(f"alpha-CROWN iterations must be an integer >= 0, got {iterations!r}")
    if not (isinstance(lr, (int, float)) and 0 < float(lr) <= 10):
        raise CropError(f"alpha-CROWN lr must lie in (0, 10], got {lr!r}")


def optimize_slopes(
    bound_fn: Callable[[SlopeHook | None], torch.Tensor], *, iterations: int = ITERATIONS, lr: float = LR
) -> torch.Tensor:
    """Best lower bounds ``(R,)`` of ``bound_fn`` over the lower slopes of its unstable ReLUs.

    ``bound_fn(slope_hook)`` computes ``R`` lower bounds, each row independent of the others,
    calling ``slope_hook(i, slopes, intercepts)`` at every ReLU ``i`` (see
    :func:`~crop.certify.crown.backsubstitute`). The first call records CROWN's slopes and the
    unstable neurons (``intercepts > 0``) and gives CROWN's bounds; then ``iterations`` Adam
    steps on ``-sum(bounds)`` (the rows are independent, so each row follows its own gradient),
    each followed by clipping to ``[0, 1]``. Returns the element-wise best bound seen, never
    below CROWN's. Nothing is written to the model's ``.grad``.
    """
    fixed: dict[int, torch.Tensor] = {}
    masks: dict[int, torch.Tensor] = {}

    def record(i: int, slopes: torch.Tensor, intercepts: torch.Tensor) -> torch.Tensor:
        fixed[i], masks[i] = slopes.detach(), intercepts.detach() > 0
        return slopes

    with torch.no_grad():
        best = bound_fn(record)
    params = {i: fixed[i].clone().requires_grad_(True) for i in fixed if bool(masks[i].any())}
    if iterations == 0 or not params:
        return best

    def use(i: int, slopes: torch.Tensor, intercepts: torch.Tensor) -> torch.Tensor:
        return torch.where(masks[i], params[i], fixed[i]) if i in params else slopes

    optimizer = torch.optim.Adam(params.values(), lr=lr)
    for step in range(iterations + 1):
        last = step == iterations
        with torch.enable_grad() if not last else torch.no_grad():
            lower = bound_fn(use)
            if not last:
                grads = torch.autograd.grad(-lower.sum(), list(params.values()))
        with torch.no_grad():
            if step:  # the first iterate is CROWN itself, already in ``best``
                best = torch.fmax(best, lower.detach())  # a NaN row (never a bound) keeps the best so far
            if last:
                break
            for p, g in zip(params.values(), grads, strict=True):
                p.grad = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
            optimizer.step()
            for p in params.values():
                p.clamp_(0.0, 1.0)
    return best


def optimizer_for(iterations: int = ITERATIONS, lr: float = LR) -> Optimizer:
    """:func:`optimize_slopes` with these options, as ``relaxed_bounds(optimize=...)`` takes it."""
    check_alpha_options(iterations, lr)
    return functools.partial(optimize_slopes, iterations=iterations, lr=lr)


def alpha_relaxed_bounds(
    net: Network,
    domain: NormBall | Box,
    intermediate: Intermediate = "crown",
    *,
    iterations: int = ITERATIONS,
    lr: float = LR,
    state: tuple[list[Interval], dict[int, ReLURelaxation]] | None = None,
    layers: Container[int] | None = None,
) -> tuple[list[Interval], dict[int, ReLURelaxation]]:
    """Layer bounds and relaxations with the refined intermediate bounds optimised (those of the
    layers ``layers`` by op index, all when ``None``).

    Starts from the bounds of ``state`` (CROWN's, computed if not given) and tightens the
    pre-activation bounds of every unstable neuron again, layer by layer, each neuron's lower
    and upper bound with its own slopes for every earlier ReLU, so each bound is at least as
    tight as in ``state``. With ``intermediate="ibp"`` the bounds are IBP's, nothing to refine.
    """
    with torch.no_grad():
        if state is None:
            state = relaxed_bounds(net, domain, intermediate)
        if intermediate != "crown" or iterations == 0:
            return state
        return relaxed_bounds(
            net, domain, "crown", start=state[0], optimize=optimizer_for(iterations, lr), optimize_layers=layers
        )


State = tuple[list[Interval], dict[int, ReLURelaxation]]


def _final_rows(
    net: Network,
    domain: NormBall | Box,
    a: torch.Tensor,
    index: torch.Tensor,
    intermediate: Intermediate,
    iterations: int,
    lr: float,
    state: State | None,
    layers: Container[int] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN and alpha-CROWN lower bounds ``(R,)`` of the output rows ``a`` (alpha >= CROWN)."""
    check_alpha_options(iterations, lr)
    if state is None:
        with torch.no_grad():
            state = relaxed_bounds(net, domain, intermediate)
    end = len(net.ops) - 1
    bounds, relaxations = state
    sub_domain, sub_index = domain_for(net, bounds, domain, end)
    with torch.no_grad():
        crown = backsubstitute(net, a, index, end, relaxations, sub_domain, sub_index)
    if layers is None or any(True for _ in layers):
        state = alpha_relaxed_bounds(
            net, domain, intermediate, iterations=iterations, lr=lr, state=state, layers=layers
        )
    bounds, relaxations = state
    sub_domain, sub_index = domain_for(net, bounds, domain, end)

    def bound_fn(hook: SlopeHook | None) -> torch.Tensor:
        return backsubstitute(net, a, index, end, relaxations, sub_domain, sub_index, hook)

    best = optimize_slopes(bound_fn, iterations=iterations, lr=lr)
    # tighter intermediate bounds change CROWN's own slope choice, which is not monotone: keep CROWN's bound too
    return crown, torch.maximum(best, crown)


def alpha_crown_linear_bounds(
    net: Network,
    domain: NormBall | Box,
    spec: torch.Tensor,
    intermediate: Intermediate = "crown",
    *,
    iterations: int = ITERATIONS,
    lr: float = LR,
    state: State | None = None,
    lower_only: bool = False,
    layers: Container[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """alpha-CROWN bounds of ``spec . f(x)``: ``spec`` ``(B, S, *output_shape)``; returns
    ``(lower, upper)``, ``(B, S)`` each (``upper`` is ``None`` with ``lower_only``), never
    looser than :func:`~crop.certify.crown.crown_linear_bounds` with the same arguments.

    ``state`` is CROWN's :func:`~crop.certify.crown.relaxed_bounds` for this network and domain
    (computed if not given). The pre-activation bounds of the layers ``layers`` (op indices;
    every refined layer when ``None``) are optimised too (:func:`alpha_relaxed_bounds`);
    ``layers=()`` optimises only the slopes of the final objective. The lower and the upper
    bound of every row get their own slopes.
    """
    batch, n_spec = spec.shape[:2]
    index = torch.arange(batch, device=spec.device).repeat_interleave(n_spec)
    a = spec.reshape(batch * n_spec, *spec.shape[2:])
    rows = batch * n_spec
    if not lower_only:
        a, index = torch.cat([a, -a]), torch.cat([index, index])
    _, best = _final_rows(net, domain, a, index, intermediate, iterations, lr, state, layers)
    lower = best[:rows].reshape(batch, n_spec)
    return lower, None if lower_only else -best[rows:].reshape(batch, n_spec)


def alpha_crown_margin(
    net: Network,
    domain: NormBall | Box,
    y: torch.Tensor,
    intermediate: Intermediate = "crown",
    *,
    iterations: int = ITERATIONS,
    lr: float = LR,
    state: State | None = None,
    layers: Container[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN and alpha-CROWN margin lower bounds ``(B, K)`` (``+inf`` at the true class);
    ``alpha >= crown`` element-wise. Only the ``K - 1`` rows ``e_y - e_j``, ``j != y``, are
    bounded. Arguments as :func:`alpha_crown_linear_bounds`."""
    n_classes = net.output_shape[0]
    batch = y.shape[0]
    dtype = domain.box()[0].dtype
    eye = torch.eye(n_classes, dtype=dtype, device=y.device)
    others = torch.arange(n_classes, device=y.device).expand(batch, n_classes)
    others = others[others != y[:, None]].reshape(batch, n_classes - 1)
    a = (eye[y][:, None, :] - eye[others]).reshape(-1, n_classes)
    index = torch.arange(batch, device=y.device).repeat_interleave(n_classes - 1)
    crown, best = _final_rows(net, domain, a, index, intermediate, iterations, lr, state, layers)
    out = []
    for rows in (crown, best):
        full = torch.full((batch, n_classes), torch.inf, dtype=dtype, device=y.device)
        out.append(full.scatter(1, others, rows.reshape(batch, n_classes - 1)))
    return out[0], out[1]


def select(domain: NormBall | Box, state: State, keep: torch.Tensor) -> tuple[NormBall | Box, State]:
    """The input sets and CROWN state of the samples ``keep`` (bool ``(B,)``) of a batch."""
    bounds, relaxations = state
    sub_bounds = [(lo[keep], hi[keep]) for lo, hi in bounds]
    sub_relax = {
        i: ReLURelaxation(r.lower_slope[keep], r.upper_slope[keep], r.upper_intercept[keep])
        for i, r in relaxations.items()
    }
    if isinstance(domain, NormBall):
        sub_domain: NormBall | Box = NormBall(domain.center[keep], domain.eps[keep], domain.norm)
    else:
        sub_domain = Box(domain.lower_bound[keep], domain.upper_bound[keep])
    return sub_domain, (sub_bounds, sub_relax)

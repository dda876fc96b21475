"""The LP (triangle) relaxation of a ReLU network, solved exactly: a reference for how tight
CROWN and alpha-CROWN are.

Given sound pre-activation bounds ``[l, u]`` of every ReLU (from :func:`~crop.certify.crown.
relaxed_bounds`, with or without alpha-CROWN), the triangle relaxation replaces each unstable
ReLU ``h = relu(z)`` by ``h >= 0, h >= z, h <= u (z - l) / (u - l)`` and keeps every affine
layer exact. Minimising a linear objective of the output over the input box under these
constraints is a linear program. Every CROWN bound with any choice of lower slopes in
``[0, 1]`` is a feasible dual point of that program, so for the same intermediate bounds::

    CROWN <= alpha-CROWN <= LP optimum <= true minimum

and the gap between alpha-CROWN and the LP optimum is exactly what a better slope optimiser
could still gain (Salman et al., NeurIPS 2019, "A Convex Relaxation Barrier to Tight
Robustness Verification of Neural Networks"). ``tests/certify/test_lp.py`` checks the chain;
``benchmarks/alpha_crown_lp.py`` measures the gap on HAPT.

Only L-inf balls and boxes (the LP has no L2 constraint), and only networks of affine layers and
ReLUs (the HAPT model, the MLPs); one sample and one objective row per program, so this is a
measuring instrument for small networks, not a verifier to run on data sets (one program on the
HAPT model has about 6,000 variables and takes a fraction of a second to seconds with HiGHS).

Written here because no maintained package solves this LP for a compiled ``crop`` network:
scipy's HiGHS solves it; the constraints are built from the network's own operators.
"""

from __future__ import annotations

import numpy as np
import torch

from crop.certify.ball import Box, NormBall
from crop.certify.ibp import Interval
from crop.certify.network import Network
from crop.certify.ops.base import AffineOp
from crop.errors import CropError

SLACK = 1e-6  # relative widening of the (float32) layer bounds used as variable bounds
LP_METHOD = "highs-ipm"  # interior point: several times faster than simplex on these programs


def _affine_matrix(op: AffineOp, in_shape: tuple[int, ...], dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(M, b)`` with ``op(x).flatten() = M @ x.flatten() + b``: the operator's own linear part
    (in the network's arithmetic, the one CROWN bounds) applied to every unit vector, and its
    offset."""
    n_in = int(np.prod(in_shape))
    with torch.no_grad():
        columns = op.linear(torch.eye(n_in, dtype=dtype).reshape(n_in, *in_shape)).flatten(1)
        bias = op.offset().flatten() if op.has_offset else torch.zeros(columns.shape[1])
    return columns.T.double().numpy(), bias.detach().double().numpy()


def _flat(t: torch.Tensor, sample: int) -> np.ndarray:
    """Sample ``sample`` of a batched bound tensor, flattened, as float64."""
    return t[sample].detach().double().flatten().numpy()


def lp_lower_bounds(
    net: Network,
    domain: NormBall | Box,
    bounds: list[Interval],
    objective: torch.Tensor,
    sample: int = 0,
) -> np.ndarray:
    """Minimum of ``objective[r] . f(x)`` over the triangle relaxation, for each row ``r``.

    ``objective`` is ``(R, *output_shape)``; ``bounds`` are sound bounds of every layer's output
    for the batch of ``domain`` (``relaxed_bounds(...)[0]``), of which sample ``sample`` is
    used. Returns ``(R,)`` float64 optima. Raises :class:`CropError` for an L2 ball, a layer
    other than affine or ReLU, or a program the solver cannot finish.
    """
    from scipy import sparse
    from scipy.optimize import linprog

    if isinstance(domain, NormBall) and domain.norm != "linf":
        raise CropError("the LP relaxation is built for L-inf balls and boxes only")
    dtype = domain.box()[0].dtype
    lo, hi = (_flat(t, sample) for t in domain.box())
    var_lo, var_hi = [lo], [hi]
    eq_rows, eq_rhs, ub_rows, ub_rhs = [], [], [], []
    n_vars = lo.size
    current = np.arange(lo.size)  # variable indices of the current layer's (flattened) values
    shape = tuple(net.input_shape)

    def new_vars(low: np.ndarray, high: np.ndarray) -> np.ndarray:
        nonlocal n_vars
        index = np.arange(n_vars, n_vars + low.size)
        n_vars += low.size
        var_lo.append(low)
        var_hi.append(high)
        return index

    for i, op in enumerate(net.ops):
        if op.kind == "relu":
            pre_lo, pre_hi = (lo, hi) if i == 0 else (_flat(t, sample) for t in bounds[i - 1])
            h = new_vars(np.zeros_like(pre_lo), np.where(pre_hi <= 0, 0.0, np.inf))
            for k in range(h.size):
                z, low, up = current[k], pre_lo[k], pre_hi[k]
                if low >= 0:  # active: h = z
                    eq_rows.append(((h[k], z), (1.0, -1.0)))
                    eq_rhs.append(0.0)
                elif up <= 0:  # inactive: h = 0 (its bounds are [0, 0])
                    continue
                else:  # h >= z, h <= u (z - l) / (u - l)
                    ub_rows.append(((z, h[k]), (1.0, -1.0)))
                    ub_rhs.append(0.0)
                    s = up / (up - low)
                    ub_rows.append(((h[k], z), (1.0, -s)))
                    ub_rhs.append(-s * low)
            current = h
        elif op.kind == "affine":
            M, b = _affine_matrix(op, shape, dtype)
            out_lo, out_hi = (_flat(t, sample) for t in bounds[i])
            slack = SLACK * (1.0 + np.abs(out_lo) + np.abs(out_hi))  # float32 bounds, float64 program
            y = new_vars(out_lo - slack, out_hi + slack)
            for k in range(y.size):
                nz = np.flatnonzero(M[k])
                eq_rows.append(((y[k], *current[nz]), (1.0, *(-M[k, nz]))))
                eq_rhs.append(b[k])
            current = y
        else:
            raise CropError(f"the LP relaxation covers affine layers and ReLUs only, not {type(op).__name__}")
        shape = tuple(op.out_shape)

    def matrix(rows) -> sparse.csr_matrix:
        data, cols, ptr = [], [], [0]
        for index, values in rows:
            cols.extend(index)
            data.extend(values)
            ptr.append(len(cols))
        return sparse.csr_matrix((data, cols, ptr), shape=(len(rows), n_vars))

    A_eq, A_ub = matrix(eq_rows), matrix(ub_rows)
    var_bounds = np.stack([np.concatenate(var_lo), np.concatenate(var_hi)], axis=1)
    rows = objective.double().flatten(1).numpy()
    optima = np.empty(len(rows))
    for r, row in enumerate(rows):
        c = np.zeros(n_vars)
        c[current] = row
        result = linprog(
            c,
            A_ub=A_ub if A_ub.shape[0] else None,
            b_ub=np.asarray(ub_rhs) if ub_rhs else None,
            A_eq=A_eq,
            b_eq=np.asarray(eq_rhs),
            bounds=var_bounds,
            method=LP_METHOD,
        )
        if result.status != 0:
            raise CropError(f"the LP solver did not finish (row {r}): {result.message}")
        optima[r] = result.fun
    return optima

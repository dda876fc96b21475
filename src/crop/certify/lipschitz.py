"""An upper bound ``L`` of the network's L2 Lipschitz constant, and the margin certificate
``R = margin / (sqrt(2) L)`` (Tsuzuku, Sato & Sugiyama, 2018, "Lipschitz-Margin Training").

ReLU is 1-Lipschitz, so ``L <= prod_k ||A_k||_2`` over the maximal runs ``A_k`` of affine layers
between activations (batch-norm in eval mode is a diagonal scaling, ``Standardize`` too, average
pooling a fixed convolution, flatten / dropout isometries or contractions). Two ways to get each
``||A_k||_2``:

* ``method="power"`` (default): power iteration on ``A_k^T A_k``, with ``A_k`` applied as the
  layers themselves (convolution forward, transposed convolution backward), so the norm of
  the run as a whole is estimated, which is tighter than multiplying per-layer norms. Power
  iteration converges to the spectral norm from below; it is run to a relative tolerance of
  ``1e-6`` and the result is multiplied by ``1 + slack`` (default 1 %). This is the standard
  practice (Miyato et al., 2018; Tsuzuku et al., 2018), not a proof.
* ``method="exact"``: the spectral norm of each run from its explicit matrix (the run applied to
  the identity basis, then an SVD), for runs whose matrix has at most ``2**22`` entries; exact up
  to floating-point rounding, and what ``power`` converges to.
* ``method="fft"``: a guaranteed bound, the product over layers of: the exact spectral norm of
  a linear layer (SVD); for a convolution, the largest singular value of the kernel's discrete
  Fourier transform over a circular domain long enough to hold the zero-padded input (a
  zero-padded, strided convolution is a restriction of that circular one, Sedghi et al., 2019);
  ``max |scale|`` for diagonal layers.

The margin certificate: ``f_y - f_j`` is ``sqrt(2) L``-Lipschitz (its gradient is the difference
of two rows of the Jacobian), so no ``x'`` with ``||x' - x||_2 < margin / (sqrt(2) L)`` changes the
prediction. For an L-inf ball of radius ``eps`` the enclosing L2 ball has radius
``eps * sqrt(d)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from crop.certify._threads import single_thread
from crop.certify.network import Network, compile_network
from crop.certify.ops import AffineOp, ConvOp, DiagonalOp, LinearOp
from crop.errors import CropError


def _blocks(net: Network) -> list[list[AffineOp]]:
    blocks: list[list[AffineOp]] = [[]]
    for op in net.ops:
        if op.kind == "affine":
            blocks[-1].append(op)
        elif op.kind == "relu":
            blocks.append([])
        else:
            raise CropError(
                f"no Lipschitz bound for layer {op.name!r} ({type(op).__name__}): only affine layers and ReLU are supported"
            )
    return [b for b in blocks if b]


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


@torch.no_grad()
def explicit_norm(block: list[AffineOp]) -> float:
    """Spectral norm of the linear part of a run of affine layers from its explicit matrix."""
    n = _numel(block[0].in_shape)
    if n * _numel(block[-1].out_shape) > 1 << 22:
        raise CropError(f"layers {block[0].name}..{block[-1].name}: matrix too large for the exact norm; use power")
    ref = next((t for op in block for t in _tensors(op)), torch.zeros(()))
    with single_thread():
        out = torch.eye(n, dtype=ref.dtype, device=ref.device).reshape(n, *block[0].in_shape)
        for op in block:
            out = op.linear(out)
        return float(torch.linalg.matrix_norm(out.reshape(n, -1).double(), ord=2))


@torch.no_grad()
def power_iteration_norm(block: list[AffineOp], iters: int = 1000, tol: float = 1e-7, seed: int = 0) -> float:
    """Spectral norm of the linear part of a run of affine layers, by power iteration on ``A^T A``
    (converges from below)."""
    with single_thread():
        return _power_iteration(block, iters, tol, seed)


def _power_iteration(block: list[AffineOp], iters: int, tol: float, seed: int) -> float:
    first = block[0]
    weight = next((t for op in block for t in _tensors(op)), None)
    dtype = weight.dtype if weight is not None else torch.float32
    device = weight.device if weight is not None else None
    gen = torch.Generator(device=device).manual_seed(seed)
    v = torch.randn((1, *first.in_shape), generator=gen, dtype=dtype, device=device)
    v = v / v.norm()
    sigma = 0.0
    for _ in range(iters):
        u = v
        for op in block:
            u = op.linear(u)
        new_sigma = float(u.norm())
        for op in reversed(block):
            u = op.transpose(u)
        norm = u.norm()
        if float(norm) == 0.0:
            return 0.0
        v = u / norm
        if abs(new_sigma - sigma) <= tol * max(new_sigma, 1e-30):
            sigma = new_sigma
            break
        sigma = new_sigma
    return sigma


def _tensors(op: AffineOp) -> list[torch.Tensor]:
    if isinstance(op, LinearOp):
        return [op.weight_bias()[0]]
    if isinstance(op, ConvOp):
        return [op.weight_fn()[0]]
    if isinstance(op, DiagonalOp):
        return [op._params()[0]]
    return []


@torch.no_grad()
def _conv_fft_norm(op: ConvOp) -> float:
    weight = op.weight_fn()[0].double()
    c_out, c_in_g = weight.shape[:2]
    groups = op.groups
    # dilate the kernel, then take its DFT over a circular domain covering input + padding
    kernel = [(k - 1) * d + 1 for k, d in zip(weight.shape[2:], op.dilation, strict=True)]
    dilated = weight.new_zeros(c_out, c_in_g, *kernel)
    index = (slice(None), slice(None)) + tuple(slice(None, None, d) for d in op.dilation)
    dilated[index] = weight
    size = [n + 2 * p + k for n, p, k in zip(op.in_shape[1:], op.padding, kernel, strict=True)]
    spectrum = torch.fft.fftn(dilated, s=size, dim=tuple(range(2, 2 + op.dim)))  # (C_out, C_in/g, *freq)
    spectrum = spectrum.movedim(0, -1).movedim(0, -1)  # (*freq, C_out, C_in/g)
    per_group = c_out // groups
    best = 0.0
    for g in range(groups):
        block = spectrum[..., g * per_group : (g + 1) * per_group, :]
        best = max(best, float(torch.linalg.matrix_norm(block, ord=2).max()))
    return best


@torch.no_grad()
def guaranteed_norm(op: AffineOp) -> float:
    """A guaranteed upper bound of one layer's spectral norm (see the module docstring)."""
    if isinstance(op, LinearOp):
        return float(torch.linalg.matrix_norm(op.weight_bias()[0].double(), ord=2))
    if isinstance(op, ConvOp):
        return _conv_fft_norm(op)
    if isinstance(op, DiagonalOp):
        return float(op._params()[0].abs().max())
    return 1.0  # identity, reshape, transpose, last-step selection: norm <= 1


@dataclass
class LipschitzBound:
    """``value`` = product of ``factors`` (one per run of affine layers, or per layer for ``fft``)."""

    value: float
    method: str
    factors: list[float] = field(default_factory=list)
    names: list[list[str]] = field(default_factory=list)


def lipschitz_bound(
    model: nn.Module | Network,
    input_shape: tuple[int, ...],
    method: Literal["power", "exact", "fft"] = "power",
    *,
    slack: float = 0.01,
    iters: int = 1000,
) -> LipschitzBound:
    """Upper bound of the L2 Lipschitz constant of ``model`` (eval semantics) on inputs of
    per-sample shape ``input_shape``; see the module docstring for the two methods."""
    net = compile_network(model, tuple(input_shape))
    blocks = _blocks(net)
    factors, names = [], []
    for block in blocks:
        if method == "power":
            factors.append(power_iteration_norm(block, iters) * (1 + slack))
        elif method == "exact":
            factors.append(explicit_norm(block))
        elif method == "fft":
            factors.append(math.prod(guaranteed_norm(op) for op in block))
        else:
            raise CropError(f"unknown Lipschitz method {method!r}; choose power, exact or fft")
        names.append([op.name for op in block])
    return LipschitzBound(math.prod(factors), method, factors, names)


@torch.no_grad()
def lipschitz_radius(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, lipschitz: float, *, batch_size: int = 1024
) -> np.ndarray:
    """Certified L2 radius ``max(margin, 0) / (sqrt(2) L)`` per window (0 when misclassified)."""
    was_training = model.training
    model.eval()
    try:
        logits = torch.cat([model(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])
    finally:
        model.train(was_training)
    y = torch.as_tensor(y, device=logits.device)
    other = logits.scatter(1, y[:, None], -torch.inf).amax(1)
    margin = logits.gather(1, y[:, None])[:, 0] - other
    return (margin.clamp(min=0) / (math.sqrt(2) * lipschitz)).cpu().numpy()


def linf_certified(radius_l2: np.ndarray, eps: float, dim: int) -> np.ndarray:
    """L-inf certificate from an L2 one: the L-inf ball of radius ``eps`` lies in the L2 ball of
    radius ``eps * sqrt(d)``."""
    return np.asarray(radius_l2) > eps * math.sqrt(dim)

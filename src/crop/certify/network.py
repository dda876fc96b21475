"""Turn an ``nn.Sequential`` into the list of operators the bound propagators walk.

Nested ``nn.Sequential`` s are flattened; an eval-mode batch-norm right after a convolution or
linear layer is folded into it (exact, and one layer fewer to back-substitute through). Any
other layer stops the compilation with a one-line :class:`~crop.errors.CropError` that names
it. Models whose ``forward`` is not the plain sequential one are refused, because their layer
order cannot be read off the module tree.

Certificates are for the model in **eval mode**: batch-norm uses its running statistics and
dropout is the identity, whatever ``model.training`` says.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.utils import _pair, _single

from crop.certify.ops import (
    ConvOp,
    HardswishOp,
    IdentityOp,
    LastStepOp,
    LinearOp,
    Op,
    RecurrentOp,
    ReLUOp,
    ReshapeOp,
    TransposeOp,
)
from crop.certify.ops.conv import avgpool_weight
from crop.certify.ops.diagonal import batchnorm_op, batchnorm_scale_shift, standardize_op
from crop.errors import CropError
from crop.models.hapt import Standardize
from crop.models.layers import LastStep, TakeOutput, Transpose

SUPPORTED = (
    "Linear, Conv1d, Conv2d, BatchNorm1d/2d (eval), ReLU, AvgPool1d/2d, Flatten, Dropout, Identity, "
    "crop Standardize, GRU/LSTM + TakeOutput and Hardswish (interval bounds only), Transpose, LastStep"
)


class Network:
    """A sequential network as a list of :class:`~crop.certify.ops.Op` with known shapes.

    ``input_shape`` is per-sample; ``ops[i].out_shape`` the per-sample shape after layer ``i``.
    """

    def __init__(self, ops: list[Op], input_shape: tuple[int, ...]) -> None:
        self.ops = ops
        self.input_shape = input_shape

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run layers ``start .. stop - 1`` (eval-mode semantics) on a batch."""
        for op in self.ops[start:stop]:
            x = op.forward(x)
        return x

    __call__ = forward

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.ops[-1].out_shape if self.ops else self.input_shape

    def __repr__(self) -> str:
        return "Network(\n  " + "\n  ".join(map(repr, self.ops)) + "\n)"


def _unsupported(name: str, module: nn.Module, reason: str = "not supported") -> CropError:
    return CropError(f"cannot bound layer {name!r} ({type(module).__name__}): {reason}; supported: {SUPPORTED}")


def sequential_layers(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every layer in execution order, nested ``Sequential`` s flattened."""
    if isinstance(model, nn.Sequential):
        if type(model).forward is not nn.Sequential.forward:
            raise CropError(
                f"{type(model).__name__} overrides nn.Sequential.forward; bound propagation needs the plain "
                "sequential order of layers"
            )
        out: list[tuple[str, nn.Module]] = []
        for child_name, child in model.named_children():
            out.extend(sequential_layers(child, f"{prefix}{child_name}."))
        return out
    if not prefix:
        if any(True for _ in model.children()) or not _is_leaf_supported(model):
            raise CropError(
                f"{type(model).__name__} defines its own forward(); bound propagation needs an nn.Sequential "
                "of supported layers (rebuild the model as nn.Sequential to certify it)"
            )
    return [(prefix.rstrip(".") or type(model).__name__, model)]


def _is_leaf_supported(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ReLU))


def _conv_padding(name: str, conv: nn.modules.conv._ConvNd) -> tuple[int, ...]:
    if conv.padding_mode != "zeros":
        raise _unsupported(name, conv, f"padding_mode={conv.padding_mode!r} (only 'zeros')")
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0,) * len(conv.kernel_size)
        pads = []
        for k, d, s in zip(conv.kernel_size, conv.dilation, conv.stride, strict=True):
            total = d * (k - 1)
            if total % 2 or s != 1:
                raise _unsupported(name, conv, "asymmetric 'same' padding")
            pads.append(total // 2)
        return tuple(pads)
    return tuple(conv.padding)


def _conv_op(name: str, conv: nn.modules.conv._ConvNd, bn=None) -> ConvOp:
    dim = 1 if isinstance(conv, nn.Conv1d) else 2

    def weight_fn():
        w, b = conv.weight, conv.bias
        if bn is not None:
            scale, shift = batchnorm_scale_shift(bn)
            w = w * scale.reshape((-1,) + (1,) * (w.dim() - 1))
            b = shift if b is None else b * scale + shift
        return w, b

    op = ConvOp(name, dim, weight_fn, tuple(conv.stride), _conv_padding(name, conv), tuple(conv.dilation), conv.groups)
    op.source, op.bn = conv, bn
    return op


def _avgpool_op(name: str, pool: nn.Module, channels: int, like: torch.Tensor) -> ConvOp:
    dim = 1 if isinstance(pool, nn.AvgPool1d) else 2
    tup = _single if dim == 1 else _pair
    kernel = tup(pool.kernel_size)
    stride = tup(pool.stride if pool.stride is not None else pool.kernel_size)
    padding = tup(pool.padding)
    if pool.ceil_mode:
        raise _unsupported(name, pool, "ceil_mode=True")
    if any(padding) and not pool.count_include_pad:
        raise _unsupported(name, pool, "count_include_pad=False with padding")
    if getattr(pool, "divisor_override", None):
        raise _unsupported(name, pool, "divisor_override")
    weight = avgpool_weight(channels, kernel, like)
    op = ConvOp(name, dim, lambda: (weight, None), stride, padding, (1,) * dim, channels)
    op.source, op.bn = None, None
    return op


def _foldable(prev: Op | None, bn: nn.Module, shape: tuple[int, ...]) -> bool:
    if isinstance(prev, ConvOp) and prev.source is not None and prev.bn is None:
        return (isinstance(bn, nn.BatchNorm1d) and prev.dim == 1) or (isinstance(bn, nn.BatchNorm2d) and prev.dim == 2)
    if isinstance(prev, LinearOp) and prev.bn is None:
        return isinstance(bn, nn.BatchNorm1d) and len(shape) == 1
    return False


def compile_network(
    model: nn.Module, input_shape: Sequence[int], *, dtype: torch.dtype | None = None, device=None
) -> Network:
    """Compile ``model`` for bound propagation on inputs of per-sample shape ``input_shape``.

    Raises :class:`~crop.errors.CropError` naming the first unsupported layer.
    """
    if isinstance(model, Network):
        return model
    layers = sequential_layers(model)
    if not layers:
        raise CropError("the model has no layers to bound")
    first = next(iter(model.parameters()), None)
    first = first if first is not None else next(iter(model.buffers()), None)
    dtype = dtype or (first.dtype if first is not None else torch.float32)
    device = device or (first.device if first is not None else None)
    example = torch.zeros(1, *input_shape, dtype=dtype, device=device)
    ops: list[Op] = []
    i = 0
    with torch.no_grad():
        x = example
        while i < len(layers):
            name, module = layers[i]
            in_shape = tuple(x.shape[1:])
            prev = ops[-1] if ops else None
            op: Op
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if module.running_mean is None:
                    raise _unsupported(name, module, "track_running_stats=False")
                if x.shape[1] != module.num_features:
                    raise _unsupported(name, module, f"expects {module.num_features} channels, gets shape {in_shape}")
                if _foldable(prev, module, in_shape):
                    if isinstance(prev, ConvOp):
                        folded: Op = _conv_op(prev.name, prev.source, module)
                    else:
                        folded = LinearOp(prev.name, prev.module, module)
                    folded.in_shape, folded.out_shape = prev.in_shape, prev.out_shape
                    ops[-1] = folded
                    x = folded.forward(_rerun(ops[:-1], example))
                    i += 1
                    continue
                op = batchnorm_op(name, module)
            elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
                op = _conv_op(name, module)
            elif isinstance(module, nn.Linear):
                op = LinearOp(name, module)
            elif isinstance(module, nn.ReLU):
                op = ReLUOp(name)
            elif isinstance(module, nn.Hardswish):
                op = HardswishOp(name)
            elif isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
                op = _avgpool_op(name, module, x.shape[1], x)
            elif isinstance(module, (nn.Flatten, nn.Unflatten)):
                op = ReshapeOp(name)
                op.out_shape = tuple(module(x).shape[1:])
            elif isinstance(module, (nn.modules.dropout._DropoutNd, nn.Identity)):
                op = IdentityOp(name)
            elif isinstance(module, Standardize):
                op = standardize_op(name, module)
            elif isinstance(module, Transpose):
                if module.dim0 == 0 or module.dim1 == 0 or module.dim0 == -x.dim() or module.dim1 == -x.dim():
                    raise _unsupported(name, module, "cannot swap the batch axis")
                op = TransposeOp(name, module.dim0, module.dim1)
            elif isinstance(module, LastStep):
                if x.dim() != 3:
                    raise _unsupported(name, module, f"needs (batch, time, features), gets {tuple(x.shape)}")
                op = LastStepOp(name)
            elif isinstance(module, (nn.GRU, nn.LSTM)):
                if not module.batch_first:
                    raise _unsupported(name, module, "batch_first=False")
                if getattr(module, "proj_size", 0):
                    raise _unsupported(name, module, "proj_size > 0")
                nxt = layers[i + 1][1] if i + 1 < len(layers) else None
                if not isinstance(nxt, TakeOutput):
                    raise _unsupported(name, module, "must be followed by crop.certify.modules.TakeOutput")
                op = RecurrentOp(name, module)
                i += 1  # TakeOutput is part of the recurrent op
            else:
                raise _unsupported(name, module)
            op.in_shape = in_shape
            try:
                x = op.forward(x)
            except RuntimeError as exc:
                raise _unsupported(
                    name, module, f"cannot process inputs of shape {in_shape} ({str(exc).splitlines()[0]})"
                ) from None
            op.out_shape = tuple(x.shape[1:])
            ops.append(op)
            i += 1
    return Network(ops, tuple(input_shape))


def _rerun(ops: list[Op], x: torch.Tensor) -> torch.Tensor:
    for op in ops:
        x = op.forward(x)
    return x

"""A faster eval-mode forward pass for many copies of a 1-D convolutional network (randomized
smoothing classifies 100,000 noisy copies of each window).

Where the time goes on CPU for HAPTNet (10,000 copies of a window, one thread; see
docs/BENCHMARKS.md): PyTorch's ``conv1d`` runs at about 9 GMAC/s, while ``conv2d`` on a
channels-last ``(N, C, 1, L)`` tensor goes through oneDNN at 40+; batch-norm, ``Standardize``
and ReLU each add a full pass over activations of tens of MB. So this module rebuilds the network
from :func:`~crop.certify.network.compile_network` (batch-norm folded into the convolution before
it) and runs its leading run of 1-D convolutions, per-channel affine layers, average pooling and
ReLUs as channels-last 2-D convolutions with in-place ReLUs, then the rest (flatten, linear
layers) as usual. It computes the same function as ``model.eval()`` up to float rounding (the
folded batch-norm and oneDNN's summation order); :func:`fast_forward` checks that on a probe
batch and falls back to the module itself when the network cannot be compiled or the check
fails.

Hand-written because ``torch.compile`` needs a C++ tool chain at run time and minutes of
compilation, and TorchScript / ONNX export do not fold these layers into oneDNN's fast path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from crop.certify.network import compile_network
from crop.certify.ops import ConvOp, DiagonalOp, IdentityOp
from crop.errors import CropError

Forward = Callable[[torch.Tensor], torch.Tensor]


def _conv_step(op: ConvOp) -> Forward:
    w, b = (t.detach() if t is not None else None for t in op.weight_fn())
    w4 = w[:, :, None, :].contiguous(memory_format=torch.channels_last)
    stride, padding, dilation = (1, op.stride[0]), (0, op.padding[0]), (1, op.dilation[0])
    return lambda h: F.conv2d(h, w4, b, stride, padding, dilation, op.groups)


def _diagonal_step(op: DiagonalOp) -> Forward:
    scale, shift = (t.detach().reshape(1, -1, 1, 1) for t in op._scale_fn())
    return lambda h: torch.addcmul(shift, h, scale)


def _relu_step(h: torch.Tensor) -> torch.Tensor:
    return h.relu_()


def build_channels_last(model: nn.Module, input_shape: Sequence[int]) -> tuple[Forward, Forward]:
    """``(prefix, rest)``: ``prefix`` maps ``(N, C, 1, L)`` channels-last inputs through the
    leading convolution stack, ``rest`` maps its ``(N, C', L')`` output to logits. Raises
    :class:`~crop.errors.CropError` when the network does not start with such a stack."""
    if len(input_shape) != 2:
        raise CropError("the channels-last path needs (channels, time) inputs")
    net = compile_network(model, tuple(input_shape))
    steps: list[Forward] = []
    n_conv = 0
    k = 0
    for k, op in enumerate(net.ops):  # noqa: B007 - k is used after the loop
        if isinstance(op, ConvOp) and op.dim == 1:
            steps.append(_conv_step(op))
            n_conv += 1
        elif isinstance(op, DiagonalOp) and len(op.in_shape) == 2:
            steps.append(_diagonal_step(op))
        elif op.kind == "relu" and len(op.in_shape) == 2:
            steps.append(_relu_step)
        elif isinstance(op, IdentityOp):
            continue
        else:
            break
    else:
        k = len(net.ops)
    if n_conv == 0:
        raise CropError("no leading 1-D convolution")
    tail = net.ops[k:]

    def prefix(h: torch.Tensor) -> torch.Tensor:
        for step in steps:
            h = step(h)
        return h

    def rest(h: torch.Tensor) -> torch.Tensor:
        for op in tail:
            h = op.forward(h)
        return h

    return prefix, rest


def fast_forward(model: nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function ``f(h)`` of a channels-last ``(N, C, 1, L)`` batch giving ``model``'s eval-mode
    logits, or ``None`` when ``model`` has no such fast path (then call the model itself).

    ``example`` ``(N, C, L)`` are inputs the result is checked on (logits within ``1e-4`` relative
    tolerance of ``model(example)``)."""
    if example.device.type != "cpu" or example.dtype != torch.float32 or example.dim() != 3:
        return None
    try:
        prefix, rest = build_channels_last(model, tuple(example.shape[1:]))
    except CropError:
        return None

    def forward(h: torch.Tensor) -> torch.Tensor:
        return rest(prefix(h).squeeze(2))

    with torch.inference_mode():
        expected = model.eval()(example)
        got = forward(example[:, :, None, :].contiguous(memory_format=torch.channels_last))
    scale = expected.abs().max().clamp_min(1.0)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(scale)):
        return None
    return forward

"""Compaction: rebuild a channel-pruned network with physically smaller dense layers.

A unit (output channel of a ``Conv1d``, hidden unit of a ``Linear``) can be removed **exactly**
when either

* its output is identically zero: its weight row is all zero and the constant it then
  produces (its bias, through the BatchNorm and ReLU that follow in eval mode) is exactly 0,
  which is what :mod:`crop.certify.structured` masks guarantee; or
* nothing reads it: the consumer layer's input columns for it (kept rows only) are all zero.

Removing it drops the unit's weight row and bias entry, the matching entries of the BatchNorm
that follows (scale, shift, running mean and variance), and the consumer's input columns: one
column for a Linear after a Linear, one input channel for a Conv1d after a Conv1d, and the block
of ``time`` consecutive columns a Flatten maps channel ``c`` to (``[c * time, (c + 1) * time)``)
for a Linear after a Conv1d. Only the units of :func:`crop.certify.structured.unit_layers` are
considered; the model's inputs and the decision layer's outputs are never touched. At least
one unit per layer is kept (a layer of width 0 is not a network).

The compact model is a copy of the same class (a :class:`~crop.models.hapt.HAPTNet` stays a
HAPTNet, with ``config["widths"]`` set so :func:`crop.models.io.save_model` records the
compact shape and :func:`crop.models.io.load_model` rebuilds it). In eval mode it computes the
same function as the masked model (up to float rounding of the shorter sums), so bound
propagation on it gives the same bounds: the removed neurons' bounds are exactly ``[0, 0]``.

Why by hand: ``torch.nn.utils.prune`` only masks, and pruning libraries that rebuild layers
(e.g. torch-pruning) trace dependency graphs with their own importance rules; here the network
is a plain ``nn.Sequential`` and the exactness condition above is the whole rule.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from crop.certify.structured import unit_layers
from crop.errors import CropError


def _constant_output(layers: list[nn.Module], index: int, consumer: int) -> torch.Tensor:
    """Per unit, the value it outputs (at the consumer's input) when its weight row is zero."""
    layer = layers[index]
    units = layer.weight.shape[0]
    v = layer.bias.detach().clone() if layer.bias is not None else torch.zeros(units, dtype=layer.weight.dtype)
    for module in layers[index + 1 : consumer]:
        if isinstance(module, nn.BatchNorm1d):
            v = (v - module.running_mean) / torch.sqrt(module.running_var + module.eps)
            if module.weight is not None:
                v = v * module.weight.detach() + module.bias.detach()
        elif isinstance(module, nn.ReLU):
            v = torch.relu(v)
        # Dropout (eval), Identity, pooling of a constant and Flatten leave a constant unchanged
    return v.detach()


def kept_units(model: nn.Module) -> dict[int, torch.Tensor]:
    """Index of each unit layer -> indices of the units :func:`compact_model` keeps."""
    layers = list(model)
    units = unit_layers(model)
    rows_kept: dict[int, torch.Tensor] = {}
    for u in reversed(units):  # consumers first: a consumer's removed rows do not count as readers
        layer, consumer = layers[u.index], layers[u.consumer]
        w = layer.weight.detach()
        row_zero = ~(w.reshape(w.shape[0], -1) != 0).any(1)
        dead = row_zero & (_constant_output(layers, u.index, u.consumer) == 0)
        cw = consumer.weight.detach()
        if u.consumer in rows_kept:
            cw = cw[rows_kept[u.consumer]]
        cols = cw.reshape(cw.shape[0], w.shape[0], u.block, -1) if cw.dim() == 2 else cw
        if cw.dim() == 2:  # Linear consumer: columns grouped in blocks of u.block per unit
            read = (cols != 0).any(3).any(2).any(0) if cols.numel() else torch.zeros(w.shape[0], dtype=torch.bool)
        else:  # Conv1d consumer: (out, in, kernel)
            read = (cw != 0).any(2).any(0)
        keep = (~dead & read).nonzero().flatten()
        if keep.numel() == 0:
            keep = torch.zeros(1, dtype=torch.long)
        rows_kept[u.index] = keep
    return rows_kept


def _conv(old: nn.Conv1d, rows: torch.Tensor, cols: torch.Tensor) -> nn.Conv1d:
    new = nn.Conv1d(
        len(cols),
        len(rows),
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(old.weight[rows][:, cols])
        if old.bias is not None:
            new.bias.copy_(old.bias[rows])
    return new


def _linear(old: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(cols), len(rows), bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[rows][:, cols])
        if old.bias is not None:
            new.bias.copy_(old.bias[rows])
    return new


def _norm(old: nn.BatchNorm1d, rows: torch.Tensor) -> nn.BatchNorm1d:
    new = nn.BatchNorm1d(
        len(rows),
        eps=old.eps,
        momentum=old.momentum,
        affine=old.affine,
        track_running_stats=old.track_running_stats,
        device=old.running_mean.device,
        dtype=old.running_mean.dtype,
    )
    with torch.no_grad():
        if old.affine:
            new.weight.copy_(old.weight[rows])
            new.bias.copy_(old.bias[rows])
        new.running_mean.copy_(old.running_mean[rows])
        new.running_var.copy_(old.running_var[rows])
        new.num_batches_tracked.copy_(old.num_batches_tracked)
    return new


def compact_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) without the units that provably contribute nothing.

    ``model`` must be a flat ``nn.Sequential`` (as :class:`~crop.models.hapt.HAPTNet` is).
    Example::

        masks, fixed = channel_masks(model, 0.05)
        apply_masks(model, fixed)
        small = compact_model(model)          # same outputs, smaller dense layers
        save_model(small, "small.safetensors")  # load_model rebuilds the compact HAPTNet
    """
    if not isinstance(model, nn.Sequential):
        raise CropError(f"compaction needs an nn.Sequential network, got {type(model).__name__}")
    out = copy.deepcopy(model).eval()
    layers = list(out)
    units = unit_layers(out)
    rows_kept = kept_units(out)
    cols_kept: dict[int, torch.Tensor] = {}
    for u in units:
        rows = rows_kept[u.index]
        cols_kept[u.consumer] = (rows[:, None] * u.block + torch.arange(u.block)).flatten()
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Linear | nn.Conv1d) or (i not in rows_kept and i not in cols_kept):
            continue
        rows = rows_kept.get(i, torch.arange(layer.weight.shape[0]))
        cols = cols_kept.get(i, torch.arange(layer.weight.shape[1]))
        out[i] = _linear(layer, rows, cols) if isinstance(layer, nn.Linear) else _conv(layer, rows, cols)
    for u in units:
        if u.norm is not None:
            out[u.norm] = _norm(layers[u.norm], rows_kept[u.index])
    config = getattr(out, "config", None)
    if isinstance(config, dict) and "width" in config:  # HAPTNet: record the compact widths
        from crop.models.hapt import HAPTNet

        if isinstance(out, HAPTNet):
            weighted = [m for m in out if isinstance(m, nn.Linear | nn.Conv1d)]
            config["widths"] = [int(m.weight.shape[0]) for m in weighted[:-1]]
    return out.eval()


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (the compact model's size, buffers excluded)."""
    return sum(p.numel() for p in model.parameters())

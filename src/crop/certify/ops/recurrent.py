"""Interval bounds through ``nn.GRU`` and ``nn.LSTM`` (``batch_first``, any number of layers,
uni- or bidirectional, zero initial state), followed by :class:`~crop.certify.modules.TakeOutput`.

Interval arithmetic, step by step:

* gate pre-activations are affine in ``(x_t, h_{t-1})``: centre / radius propagation;
* ``sigmoid`` and ``tanh`` are monotone: ``[f(l), f(u)]``;
* products of two bounded quantities (``r * (W_hn h + b_hn)``, ``f * c``, ``i * g``,
  ``o * tanh(c)``) are bilinear, so their extremes over a box are at its four corners;
* the GRU update ``(1 - z) n + z h`` is multilinear in ``(z, n, h)``: extremes at the eight
  corners, which is tighter than bounding the two products separately.

The bounds are sound for every input in the box; they are not tight (the dependency between
``z`` and ``1 - z`` and across time steps is lost), which is why CROWN does not go through a
recurrent layer but starts from the interval of its output.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from crop.certify.ops.base import Op


def _affine(lower: torch.Tensor, upper: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None):
    center = (upper + lower) / 2 @ w.T
    radius = (upper - lower) / 2 @ w.abs().T
    if b is not None:
        center = center + b
    return center - radius, center + radius


def _product(al, au, bl, bu):
    corners = torch.stack([al * bl, al * bu, au * bl, au * bu])
    return corners.amin(0), corners.amax(0)


def _gru_update(zl, zu, nl, nu, hl, hu):
    values = [(1 - z) * n + z * h for z, n, h in itertools.product((zl, zu), (nl, nu), (hl, hu))]
    corners = torch.stack(values)
    return corners.amin(0), corners.amax(0)


def _params(module: nn.RNNBase, layer: int, suffix: str):
    w_ih = getattr(module, f"weight_ih_l{layer}{suffix}")
    w_hh = getattr(module, f"weight_hh_l{layer}{suffix}")
    b_ih = getattr(module, f"bias_ih_l{layer}{suffix}", None) if module.bias else None
    b_hh = getattr(module, f"bias_hh_l{layer}{suffix}", None) if module.bias else None
    return w_ih, w_hh, b_ih, b_hh


def _direction(module: nn.RNNBase, layer: int, suffix: str, xl: torch.Tensor, xu: torch.Tensor):
    """Bounds of the outputs ``(B, T, H)`` of one direction of one layer, inputs ``(B, T, in)``."""
    w_ih, w_hh, b_ih, b_hh = _params(module, layer, suffix)
    hidden = module.hidden_size
    gl, gu = _affine(xl, xu, w_ih, b_ih)  # input part of every gate, all steps at once
    batch, steps = xl.shape[0], xl.shape[1]
    hl = hu = xl.new_zeros(batch, hidden)
    cl = cu = xl.new_zeros(batch, hidden)
    outs_l, outs_u = [], []
    lstm = isinstance(module, nn.LSTM)
    for t in range(steps):
        ol_t, ou_t = gl[:, t], gu[:, t]
        if lstm:
            rl, ru = _affine(hl, hu, w_hh, b_hh)
            pl, pu = ol_t + rl, ou_t + ru
            il, fl, ggl, ool = pl.split(hidden, dim=1)
            iu, fu, ggu, oou = pu.split(hidden, dim=1)
            il, iu, fl, fu = torch.sigmoid(il), torch.sigmoid(iu), torch.sigmoid(fl), torch.sigmoid(fu)
            ggl, ggu = torch.tanh(ggl), torch.tanh(ggu)
            ool, oou = torch.sigmoid(ool), torch.sigmoid(oou)
            al, au = _product(fl, fu, cl, cu)
            bl, bu = _product(il, iu, ggl, ggu)
            cl, cu = al + bl, au + bu
            hl, hu = _product(ool, oou, torch.tanh(cl), torch.tanh(cu))
        else:
            w_r, w_z, w_n = w_hh.split(hidden, dim=0)
            b_r, b_z, b_n = b_hh.split(hidden) if b_hh is not None else (None, None, None)
            i_rl, i_zl, i_nl = ol_t.split(hidden, dim=1)
            i_ru, i_zu, i_nu = ou_t.split(hidden, dim=1)
            rl, ru = _affine(hl, hu, w_r, b_r)
            zl, zu = _affine(hl, hu, w_z, b_z)
            rl, ru = torch.sigmoid(i_rl + rl), torch.sigmoid(i_ru + ru)
            zl, zu = torch.sigmoid(i_zl + zl), torch.sigmoid(i_zu + zu)
            al, au = _affine(hl, hu, w_n, b_n)
            ml, mu = _product(rl, ru, al, au)
            nl, nu = torch.tanh(i_nl + ml), torch.tanh(i_nu + mu)
            hl, hu = _gru_update(zl, zu, nl, nu, hl, hu)
        outs_l.append(hl)
        outs_u.append(hu)
    return torch.stack(outs_l, 1), torch.stack(outs_u, 1)


def recurrent_interval(
    module: nn.RNNBase, lower: torch.Tensor, upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of ``module(x)[0]`` for every ``x`` in ``[lower, upper]`` (shape ``(B, T, in)``)."""
    xl, xu = lower, upper
    for layer in range(module.num_layers):
        parts_l, parts_u = [], []
        fl, fu = _direction(module, layer, "", xl, xu)
        parts_l.append(fl)
        parts_u.append(fu)
        if module.bidirectional:
            bl, bu = _direction(module, layer, "_reverse", xl.flip(1), xu.flip(1))
            parts_l.append(bl.flip(1))
            parts_u.append(bu.flip(1))
        xl, xu = torch.cat(parts_l, -1), torch.cat(parts_u, -1)
    return xl, xu


class RecurrentOp(Op):
    """A GRU or LSTM followed by ``TakeOutput``: ``(T, in) -> (T, H * directions)``."""

    kind = "recurrent"

    def __init__(self, name: str, module: nn.RNNBase) -> None:
        super().__init__(name)
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)[0]

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return recurrent_interval(self.module, lower, upper)

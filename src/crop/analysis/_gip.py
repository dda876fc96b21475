"""Gradient inner product (GIP), Section 7.1 of the paper (after Shi et al., Fish).

For a model state and two contexts, ``G_a`` and ``G_u`` are the gradients of the mean
cross-entropy over all of the available-context and all of the unseen-context windows (one
backward pass each, eval mode: dropout off, BatchNorm on its running statistics) and

``GIP = ||G_a + G_u||^2 - (||G_a||^2 + ||G_u||^2)``  ( = 2 <G_a, G_u> ),

summed over every parameter, or over a selected subset of positions (Table 4's "weights removed
by pruning" and "the corresponding generic weights"). GIP > 0: a gradient step on one context
also helps the other. Its size scales with both gradient norms, so the tables also give the
norms and the cosine ``<G_a, G_u> / (||G_a|| ||G_u||)``, which does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from crop.data.sensing import SensingData
from crop.models.utils import State, clone_model
from crop.personalization.prune import Masks, loss_gradients

Gradients = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Alignment:
    """GIP of two gradients and the quantities that explain its size."""

    gip: float
    norm_a: float
    norm_u: float

    @property
    def cosine(self) -> float:
        """``GIP / (2 ||G_a|| ||G_u||)``; NaN when a gradient is zero."""
        denom = 2.0 * self.norm_a * self.norm_u
        return self.gip / denom if denom > 0 else float("nan")


def _selected(g: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    g = g.detach().to(torch.float64).reshape(-1)
    return g if keep is None else g[keep.reshape(-1)]


def gradient_alignment(g_a: Gradients, g_u: Gradients, select: Masks | None = None) -> Alignment:
    """GIP (the paper's norm formula) and both norms of ``g_a`` and ``g_u``.

    Args:
        g_a, g_u: gradients by parameter name (same names and shapes).
        select: optional ``{name: bool tensor}``; only positions where it is ``True`` count, and
            names absent from it are left out. ``None``: every position of every name.
    """
    names = list(g_a) if select is None else [n for n in g_a if n in select]
    both = a2 = u2 = 0.0
    for n in names:
        keep = None if select is None else select[n]
        a, u = _selected(g_a[n], keep), _selected(g_u[n], keep)
        both += float(((a + u) ** 2).sum())
        a2 += float((a**2).sum())
        u2 += float((u**2).sum())
    return Alignment(both - (a2 + u2), math.sqrt(a2), math.sqrt(u2))


def gip(g_a: Gradients, g_u: Gradients, select: Masks | None = None) -> float:
    """``||G_a + G_u||^2 - (||G_a||^2 + ||G_u||^2)`` over all (or the ``select``-ed) positions."""
    return gradient_alignment(g_a, g_u, select).gip


def state_gradients(model: nn.Module, state: State, data: SensingData) -> dict[str, torch.Tensor]:
    """Mean cross-entropy gradient on ``data`` of ``model``'s architecture holding ``state`` (a
    routed model: its personalized network's)."""
    from crop.models.routed import network_of

    probe = clone_model(network_of(model))
    probe.load_state_dict(state)
    return loss_gradients(probe, data)


def removed_positions(masks: Masks) -> Masks:
    """``True`` where pruning removed a weight (the complement of the keep-masks)."""
    return {n: ~keep for n, keep in masks.items()}


def gip_table(
    model: nn.Module,
    states: Mapping[str, State],
    available: SensingData,
    unseen: Mapping[str, SensingData],
    masks: Masks | None = None,
    *,
    order: Sequence[str] = ("generic", "initial", "pruned", "mixed", "final"),
) -> list[dict]:
    """Table 4: GIP between ``available`` and each unseen context for every model state.

    Rows (one per state and unseen context) hold ``state, subset, context, gip, norm_a,
    norm_u, cosine``; ``subset`` is ``"all"`` for the whole model. With ``masks`` (the keep-masks
    of ToleratedPrune, some position pruned) three more rows per context restrict the sum to the
    pruned positions: of the initial model (the weights pruning removed, ``M' - M_down``), of the
    generic model (the weights mixing restores) and of the mixed model (those weights in place).
    """
    names = [n for n in order if n in states] + [n for n in states if n not in order]
    cache: dict[tuple[str, str], dict[str, torch.Tensor]] = {}

    def grads(state: str, context: str, data: SensingData) -> dict[str, torch.Tensor]:
        if (state, context) not in cache:
            cache[(state, context)] = state_gradients(model, states[state], data)
        return cache[(state, context)]

    rows: list[dict] = []

    def add(state: str, subset: str, context: str, data: SensingData, select: Masks | None) -> None:
        al = gradient_alignment(grads(state, "available", available), grads(state, context, data), select)
        rows.append(
            {
                "state": state,
                "subset": subset,
                "context": context,
                "gip": al.gip,
                "norm_a": al.norm_a,
                "norm_u": al.norm_u,
                "cosine": al.cosine,
            }
        )

    for context, data in unseen.items():
        for state in names:
            add(state, "all", context, data, None)
        if masks and any(bool((~m).any()) for m in masks.values()):
            removed = removed_positions(masks)
            for state, subset in (
                ("initial", "removed by pruning"),
                ("generic", "pruned positions"),
                ("mixed", "pruned positions"),
            ):
                if state in states:
                    add(state, subset, context, data, removed)
    return rows

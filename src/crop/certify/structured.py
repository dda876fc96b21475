"""Structured (channel / hidden-unit) pruning masks for sequential networks.

Unstructured sparsity (:mod:`crop.certify.gradual_prune`) leaves every layer its full shape, so
a CPU still multiplies the zeros (or pays for CSR indexing, which is slower than dense here:
docs/BENCHMARKS.md). Structured pruning removes whole **units**: an output channel of a
``Conv1d`` or a hidden unit of a ``Linear``. A removed unit's weight row, its bias entry and
the scale and shift of the ``BatchNorm1d`` that follows it are all held at zero, so the unit
outputs exactly 0 whatever the input (BatchNorm of anything with scale 0 and shift 0 is 0;
ReLU(0) = 0), and the next layer's input columns for it (a whole block of columns after a
``Flatten``) are held at zero too, since they only ever multiply zeros. Such a network is
then rebuilt with physically smaller dense layers by :func:`crop.certify.compact.compact_model`,
with the same outputs.

Which units: the layers whose outputs can be removed are found by :func:`unit_layers` (a
``Conv1d`` / ``Linear`` followed, through BatchNorm1d, ReLU, Dropout, Identity, average / max
pooling and at most one Flatten, by another ``Conv1d`` / ``Linear``). The decision layer has no
such consumer, so it is never pruned, as in crop-certified's unstructured pruning. Every such
layer keeps the same fraction ``r`` of its units (at least one), with ``r`` the largest value
whose kept weights are at most ``density`` of the weights of these layers (the same weights
unstructured pruning counts on HAPTNet: all Conv / Linear weights but the decision layer); the
room rounding leaves is then filled one unit at a time, least-kept layer first, while the
density stays at most ``density``.
Within a layer the units with the largest **effective L1 norm** are kept: the L1 norm of the
unit's incoming weights times ``|gamma| / sqrt(running_var + eps)`` of the BatchNorm that
follows it (the scale its output actually gets), the unit-level analogue of the magnitude
criterion crop-certified prunes weights with. A uniform fraction per layer rather than one
global ranking because layer norms are not comparable across fan-ins (a global L1 ranking
empties the wide layers first).

Masks here are boolean keep-masks over named parameters (``True`` = kept), the same convention
as :mod:`crop.personalization.prune`, so :func:`~crop.personalization.prune.apply_masks` and
:class:`~crop.certify.gradual_prune.FixedMask` use them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from crop.certify.gradual_prune import FixedMask, ScheduledPruning, gmp_density
from crop.errors import CropError
from crop.personalization.prune import Masks

_PASSTHROUGH = (nn.ReLU, nn.Dropout, nn.Identity, nn.AvgPool1d, nn.MaxPool1d)


@dataclass(frozen=True)
class UnitLayer:
    """A layer whose output units may be removed.

    ``index`` and ``consumer`` are positions in the ``nn.Sequential``; ``norm`` the position of
    the BatchNorm1d between them (if any); ``block`` the number of consumer input columns per
    unit (1, or the time steps per channel when a Flatten sits between a Conv1d and a Linear);
    ``prefix`` the module name prefix of the sequential's children (``""`` at top level).
    """

    index: int
    consumer: int
    norm: int | None
    block: int
    prefix: str = ""

    def name(self, i: int, leaf: str) -> str:
        return f"{self.prefix}{i}.{leaf}"


def _weighted(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (
        isinstance(module, nn.Conv1d)
        and module.groups == 1
        and not isinstance(module.padding, str)
        and module.padding_mode == "zeros"
    )


def unit_layers(model: nn.Module) -> list[UnitLayer]:
    """The layers of a flat ``nn.Sequential`` whose output units can be removed, in order."""
    if not isinstance(model, nn.Sequential):
        raise CropError(f"structured pruning needs an nn.Sequential network, got {type(model).__name__}")
    layers = list(model)
    found: list[UnitLayer] = []
    for a, module in enumerate(layers):
        if not _weighted(module):
            continue
        norm, flatten = None, False
        for b in range(a + 1, len(layers)):
            nxt = layers[b]
            if _weighted(nxt):
                units = module.out_features if isinstance(module, nn.Linear) else module.out_channels
                if isinstance(nxt, nn.Conv1d):
                    ok, block = not flatten and isinstance(module, nn.Conv1d), 1
                    ok = ok and nxt.in_channels == units
                else:
                    ok = nxt.in_features % units == 0 and (flatten or nxt.in_features == units)
                    block = nxt.in_features // units
                    ok = ok and (isinstance(module, nn.Conv1d) or block == 1)
                if ok:
                    found.append(UnitLayer(a, b, norm, block))
                break
            if isinstance(nxt, nn.BatchNorm1d) and norm is None and nxt.track_running_stats:
                norm = b
            elif isinstance(nxt, nn.Flatten) and not flatten and nxt.start_dim == 1 and nxt.end_dim == -1:
                flatten = True
            elif not isinstance(nxt, _PASSTHROUGH):
                break
    return found


def prunable_unit_names(model: nn.Module) -> list[str]:
    """Names of the weights structured pruning counts (those of :func:`unit_layers`)."""
    return [f"{u.index}.weight" for u in unit_layers(model)]


def _units(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def unit_scores(model: nn.Module) -> dict[int, torch.Tensor]:
    """Effective L1 norm of each unit's incoming weights, per unit layer (keyed by index)."""
    layers = list(model)
    scores: dict[int, torch.Tensor] = {}
    for u in unit_layers(model):
        w = layers[u.index].weight.detach()
        s = w.abs().reshape(w.shape[0], -1).sum(1)
        if u.norm is not None:
            bn = layers[u.norm]
            scale = torch.ones_like(s) if bn.weight is None else bn.weight.detach().abs()
            s = s * scale / torch.sqrt(bn.running_var.detach() + bn.eps)
        scores[u.index] = s
    return scores


def _keep_counts(sizes: list[int], r: float) -> list[int]:
    return [max(1, min(n, int(round(r * n)))) for n in sizes]


def unit_masks(model: nn.Module, keep: dict[int, torch.Tensor]) -> tuple[Masks, Masks]:
    """``(weight_masks, fixed_masks)`` for kept units ``keep`` (index -> boolean per unit).

    ``weight_masks`` covers the weights of the unit layers (rows of removed units and the input
    columns fed by removed units of the previous unit layer): density is counted on these.
    ``fixed_masks`` adds the removed units' bias entries and BatchNorm scale / shift: the
    parameters that must stay zero for a removed unit to output exactly 0.
    """
    layers = list(model)
    units = unit_layers(model)
    by_consumer = {u.consumer: u for u in units}
    weight_masks: Masks = {}
    fixed: Masks = {}
    for u in units:
        layer = layers[u.index]
        rows = keep[u.index]
        mask = rows.reshape(-1, *([1] * (layer.weight.dim() - 1))).expand_as(layer.weight).clone()
        producer = by_consumer.get(u.index)
        if producer is not None:
            cols = keep[producer.index].repeat_interleave(producer.block)
            shape = [1, -1] + [1] * (layer.weight.dim() - 2)
            mask &= cols.reshape(shape).expand_as(layer.weight)
        weight_masks[u.name(u.index, "weight")] = mask
        if layer.bias is not None:
            fixed[u.name(u.index, "bias")] = rows.clone()
        if u.norm is not None and layers[u.norm].weight is not None:
            fixed[u.name(u.norm, "weight")] = rows.clone()
            fixed[u.name(u.norm, "bias")] = rows.clone()
    return weight_masks, {**weight_masks, **fixed}


def _density(masks: Masks) -> float:
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 1.0


def channel_masks(
    model: nn.Module, density: float, *, pruned: dict[int, torch.Tensor] | None = None
) -> tuple[Masks, Masks]:
    """Structured keep-masks reaching at most ``density`` of the unit layers' weights.

    ``pruned`` (index -> boolean, ``True`` = already removed) forces units removed earlier to
    stay removed (they rank below every other unit), so successive calls with falling
    ``density`` give nested masks. Returns ``(weight_masks, fixed_masks)`` as
    :func:`unit_masks`. Raises :class:`CropError` if the model has no unit layers.
    """
    if not 0 < density <= 1:
        raise CropError(f"density must lie in (0, 1], got {density}")
    units = unit_layers(model)
    if not units:
        raise CropError("structured pruning found no Conv1d / Linear layer whose units another layer consumes")
    layers = list(model)
    scores = unit_scores(model)
    if pruned:
        scores = {
            i: torch.where(pruned[i], torch.full_like(s, -1.0), s) if i in pruned else s for i, s in scores.items()
        }
    order = {i: torch.sort(-s, stable=True).indices for i, s in scores.items()}  # best first
    sizes = [_units(layers[u.index]) for u in units]

    limit = [
        n if not pruned or u.index not in pruned else max(1, int((~pruned[u.index]).sum()))
        for u, n in zip(units, sizes, strict=True)
    ]

    def build(counts: list[int]) -> tuple[Masks, Masks]:
        keep = {}
        for u, n, k in zip(units, sizes, counts, strict=True):
            rows = torch.zeros(n, dtype=torch.bool)
            rows[order[u.index][:k]] = True
            keep[u.index] = rows
        return unit_masks(model, keep)

    def counts_at(r: float) -> list[int]:
        return [min(k, m) for k, m in zip(_keep_counts(sizes, r), limit, strict=True)]

    lo, hi = 0.0, 1.0  # largest uniform fraction r whose density is <= the target
    for _ in range(40):
        mid = (lo + hi) / 2
        if _density(build(counts_at(mid))[0]) <= density + 1e-12:
            lo = mid
        else:
            hi = mid
    counts = counts_at(lo)
    # rounding leaves room: add single units, least-kept layer (by fraction) first, while the
    # density stays <= the target
    grown = True
    while grown:
        grown = False
        for j in sorted(range(len(units)), key=lambda j: counts[j] / sizes[j]):
            if counts[j] < limit[j]:
                trial = counts[:j] + [counts[j] + 1] + counts[j + 1 :]
                if _density(build(trial)[0]) <= density + 1e-12:
                    counts, grown = trial, True
                    break
    return build(counts)


def removed_units(model: nn.Module, fixed_masks: Masks) -> dict[int, torch.Tensor]:
    """Index -> boolean ``True`` where a unit's weight row is entirely masked out."""
    out = {}
    for u in unit_layers(model):
        mask = fixed_masks.get(u.name(u.index, "weight"))
        if mask is not None:
            out[u.index] = ~mask.reshape(mask.shape[0], -1).any(1)
    return out


class GradualChannelPrune(ScheduledPruning):
    """Structured counterpart of :class:`~crop.certify.gradual_prune.GradualMagnitudePrune`:
    units are removed on the same cubic schedule from step ``start`` to ``end`` until the unit
    layers keep ``final_density`` of their weights; removed units never return, and every
    parameter in ``fixed_masks`` stays exactly zero (gradients zeroed after backward, mask
    re-applied after each optimizer step).

    ``masks`` holds the weight masks (density is counted on them), ``fixed_masks`` those plus
    the biases and BatchNorm scale / shift of removed units (pass these to ``FixedMask``).
    """

    def __init__(self, model: nn.Module, final_density: float, start: int, end: int) -> None:
        self.final_density, self.start, self.end = final_density, start, end
        params = dict(model.named_parameters())
        self.masks, self.fixed_masks = unit_masks(
            model, {u.index: torch.ones(_units(list(model)[u.index]), dtype=torch.bool) for u in unit_layers(model)}
        )
        missing = [n for n in self.fixed_masks if n not in params]
        if missing:
            raise CropError(f"structured pruning: parameters {missing[:3]} not found (nested Sequential?)")
        self.step = 0
        self.density = 1.0
        if start <= 0:
            self._prune(model, gmp_density(0, start, end, final_density))

    @torch.no_grad()
    def _prune(self, model: nn.Module, density: float) -> None:
        self.masks, self.fixed_masks = channel_masks(model, density, pruned=removed_units(model, self.fixed_masks))
        self.density = density
        self.apply(model)

    def finish(self, model: nn.Module) -> None:
        """Prune to the final density now (when training ended before the schedule did)."""
        if self.density > self.final_density + 1e-9:
            self._prune(model, self.final_density)

    def apply(self, model: nn.Module) -> None:
        FixedMask(self.fixed_masks).after_step(model)

    def after_backward(self, model: nn.Module) -> None:
        FixedMask(self.fixed_masks).after_backward(model)

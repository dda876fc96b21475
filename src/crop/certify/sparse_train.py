"""Sparse training for ``crop-certified`` at 20-100x sparsity: per-layer density allocation,
a gradual schedule with exact per-layer counts, and mask regrowth under the training objective.

Three pieces, each a documented option of :class:`crop.certify.method.CertifiedConfig`:

* **Per-layer allocation** (:func:`layer_counts`). ``"global"`` ranks all prunable weights by
  magnitude together (the original behaviour; small layers such as the first convolution can
  lose almost everything). ``"uniform"`` keeps the same fraction of every layer. ``"erk"``
  (Erdos-Renyi-Kernel, Evci et al. 2020, "Rigging the lottery") keeps a fraction proportional
  to ``sum(shape) / prod(shape)`` of each weight tensor, so thin layers (the 6-channel input
  convolution) stay denser than wide ones; layers whose share would exceed 1 are kept dense and
  the rest re-solved. Counts are integers that add up to exactly ``round(density * total)``.
* **Schedule** (:class:`ScheduledSparsity`). Zhu & Gupta's cubic schedule, applied per layer
  towards that layer's final count (for ``"global"``, to the global count), magnitude pruning
  within the currently kept positions.
* **Regrowth** (RigL, Evci et al. 2020, as used for verified-robust sparse training by
  VeriSparse / SparseVLR, Kaur, Xiao & Salekin, arXiv 2211.09945). Every ``every`` steps until
  ``stop``, each layer drops the ``fraction`` (cosine-decayed) of its kept weights with the
  smallest magnitude and regrows as many pruned positions where the gradient of the *training
  objective* (here the certified loss) is largest, starting at zero. The per-layer count does
  not change, so the final densities are exact; after ``stop`` the mask only shrinks by the
  schedule and is then fixed.

Why hand-written: ``torch.nn.utils.prune`` adds re-parametrisations that safetensors export and
the bound propagation do not handle (see :mod:`crop.personalization.prune`), and it has no
regrowth; the logic is a few tensor ops on boolean masks.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from crop.certify.gradual_prune import ScheduledPruning, gmp_density
from crop.errors import CropError
from crop.personalization.prune import Masks

Allocation = Literal["global", "uniform", "erk"]


def _erk_weight(shape: torch.Size) -> float:
    return sum(shape) / math.prod(shape)


def layer_counts(shapes: dict[str, torch.Size], density: float, allocation: Allocation) -> dict[str, int] | None:
    """Kept weights per tensor at ``density`` (``None`` for ``"global"``: decided by magnitude).

    The counts add up to exactly ``round(density * total)`` and none exceeds its tensor.
    """
    if allocation == "global":
        return None
    if allocation not in ("uniform", "erk"):
        raise CropError(f"unknown allocation {allocation!r}; choose global, uniform or erk")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = sum(sizes.values())
    target = round(density * total)
    raw = {n: (1.0 if allocation == "uniform" else _erk_weight(s)) for n, s in shapes.items()}
    dense: set[str] = set()
    while True:  # scale the free layers so the total is met; saturate layers that would exceed 1
        free = [n for n in shapes if n not in dense]
        budget = target - sum(sizes[n] for n in dense)
        scale = budget / max(sum(raw[n] * sizes[n] for n in free), 1e-12)
        over = [n for n in free if raw[n] * scale > 1.0]
        if not over:
            break
        dense.update(over)
    share = {n: (1.0 if n in dense else raw[n] * scale) for n in shapes}
    exact = {n: share[n] * sizes[n] for n in shapes}
    counts = {n: min(sizes[n], int(math.floor(exact[n]))) for n in shapes}
    # largest remainders get the leftover units, so the total is exact
    order = sorted(shapes, key=lambda n: exact[n] - counts[n], reverse=True)
    missing = target - sum(counts.values())
    for n in order:
        if missing <= 0:
            break
        if counts[n] < sizes[n]:
            counts[n] += 1
            missing -= 1
    return counts


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries (ties broken by position)."""
    flat = scores.flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        keep[torch.topk(flat, k, sorted=False).indices] = True
    return keep.view_as(scores)


class ScheduledSparsity(ScheduledPruning):
    """Prune ``names`` of ``model`` to ``density`` on a cubic schedule, with optional regrowth.

    Args:
        allocation: ``"global"``, ``"uniform"`` or ``"erk"`` (see the module docstring).
        start, end: optimizer steps where the schedule starts and reaches ``density``.
        regrow: fraction of each layer's kept weights swapped per update (0: no regrowth).
        every: steps between regrowth updates. stop: last step at which regrowth may happen.

    ``masks`` (``True`` = kept) is the current state; removed positions are exactly zero after
    every step (gradients masked, weights re-masked).
    """

    def __init__(
        self,
        model: nn.Module,
        names: list[str],
        density: float,
        start: int,
        end: int,
        *,
        allocation: Allocation = "global",
        regrow: float = 0.0,
        every: int = 10,
        stop: int = 0,
    ) -> None:
        params = dict(model.named_parameters())
        self.names, self.final_density, self.start, self.end = names, density, start, end
        self.allocation, self.regrow, self.every, self.stop = allocation, regrow, max(1, every), stop
        self.sizes = {n: params[n].numel() for n in names}
        self.total = sum(self.sizes.values())
        self.final_counts = layer_counts({n: params[n].shape for n in names}, density, allocation)
        self.masks: Masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
        self.step = 0
        self.density = 1.0
        self.regrown = 0  # positions swapped in by regrowth so far
        if start <= 0:
            self._prune(model, gmp_density(0, start, end, density))

    def _counts_at(self, density: float) -> dict[str, int] | int:
        if self.final_counts is None:
            return round(density * self.total)
        progress = 0.0 if self.final_density >= 1 else (1.0 - density) / (1.0 - self.final_density)
        return {
            n: round(self.sizes[n] - progress * (self.sizes[n] - self.final_counts[n]))
            if progress < 1
            else self.final_counts[n]
            for n in self.names
        }

    @torch.no_grad()
    def _prune(self, model: nn.Module, density: float) -> None:
        params = dict(model.named_parameters())
        counts = self._counts_at(density)
        # scores: magnitude within the kept positions; removed ones can never come back here
        scores = {n: params[n].detach().abs().masked_fill(~self.masks[n], -1.0) for n in self.names}
        if isinstance(counts, int):
            flat = torch.cat([scores[n].flatten() for n in self.names])
            keep = _top(flat, counts)
            offset = 0
            for n in self.names:
                size = self.sizes[n]
                self.masks[n] = keep[offset : offset + size].view_as(self.masks[n]) & self.masks[n]
                offset += size
        else:
            for n in self.names:
                self.masks[n] = _top(scores[n], min(counts[n], int(self.masks[n].sum()))) & self.masks[n]
        self.density = density
        self.apply(model)

    def finish(self, model: nn.Module) -> None:
        """Prune to the final density now (when training ended before the schedule did)."""
        if self.density > self.final_density + 1e-12 or self._over(self.final_density):
            self._prune(model, self.final_density)

    def _over(self, density: float) -> bool:
        counts = self._counts_at(density)
        kept = {n: int(self.masks[n].sum()) for n in self.names}
        if isinstance(counts, int):
            return sum(kept.values()) > counts
        return any(kept[n] > counts[n] for n in self.names)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, keep in self.masks.items():
            params[name].mul_(keep.to(params[name].dtype))

    @torch.no_grad()
    def _regrow(self, model: nn.Module) -> None:
        """Drop the smallest kept weights and regrow where the objective's gradient is largest."""
        params = dict(model.named_parameters())
        decay = 0.5 * (1 + math.cos(math.pi * min(1.0, (self.step - self.start) / max(self.stop - self.start, 1))))
        for n in self.names:
            p, keep = params[n], self.masks[n]
            if p.grad is None:
                continue
            kept = int(keep.sum())
            swap = min(int(round(self.regrow * decay * kept)), self.sizes[n] - kept)
            if swap <= 0:
                continue
            drop = _top(-p.detach().abs().masked_fill(~keep, math.inf), swap) & keep
            grow_scores = p.grad.detach().abs().masked_fill(keep, -1.0)
            grow = _top(grow_scores, swap) & ~keep
            new = (keep & ~drop) | grow
            p.masked_fill_(~new | grow, 0.0)  # dropped weights vanish, regrown ones start at zero
            self.masks[n] = new
            self.regrown += int(grow.sum())

    def after_backward(self, model: nn.Module) -> None:
        if self.regrow > 0 and self.start <= self.step < self.stop and (self.step - self.start) % self.every == 0:
            self._regrow(model)
        params = dict(model.named_parameters())
        for name, keep in self.masks.items():
            if params[name].grad is not None:
                params[name].grad.mul_(keep.to(params[name].grad.dtype))


def kept_counts(masks: Masks) -> dict[str, int]:
    """Kept positions per masked tensor."""
    return {n: int(m.sum()) for n, m in masks.items()}

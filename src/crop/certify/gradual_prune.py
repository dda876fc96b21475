"""Gradual magnitude pruning (Zhu & Gupta, 2018, "To prune, or not to prune") as a training hook.

The kept fraction of the prunable weights follows the cubic schedule

    density(t) = d_f + (1 - d_f) * (1 - (t - t_0) / (t_1 - t_0))**3,   t_0 <= t <= t_1,

(1 before ``t_0``, ``d_f`` after ``t_1``; ``t`` counts optimizer steps). Whenever the schedule
moves, the smallest-magnitude weights across all prunable tensors are removed (global
magnitude pruning, as in CRoP's ToleratedPrune). Masks only ever shrink: a removed weight is
never revived. Removed positions stay exactly zero: their gradients are zeroed after every
backward pass and the mask is re-applied after every optimizer step (so momentum or weight
decay cannot move them).

Unlike CRoP, pruned positions are **not** refilled with generic weights (no mixing): mixing
would make the model dense again, and the point of this method is a sparse model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from crop.personalization.loop import Hook
from crop.personalization.prune import Masks, global_masks


def gmp_density(step: int, start: int, end: int, final: float) -> float:
    """Target density after ``step`` optimizer steps (cubic schedule from 1 to ``final``)."""
    if step < start:
        return 1.0
    if step >= end or end <= start:
        return final
    progress = (step - start) / (end - start)
    return final + (1.0 - final) * (1.0 - progress) ** 3


class ScheduledPruning(Hook, ABC):
    """The pruning schedule shared by the gradual pruners: after each optimizer step, prune to the
    cubic schedule's density when it falls (``_prune``), else re-apply the masks (``apply``).
    Subclasses keep ``step``, ``start``, ``end``, ``final_density`` and ``density``."""

    step: int
    start: int
    end: int
    final_density: float
    density: float

    @abstractmethod
    def _prune(self, model: nn.Module, density: float) -> None:
        """Prune to ``density`` (and update the masks and ``density``)."""

    @abstractmethod
    def apply(self, model: nn.Module) -> None:
        """Re-apply the current masks to the weights."""

    def after_step(self, model: nn.Module) -> None:
        self.step += 1
        target = gmp_density(self.step, self.start, self.end, self.final_density)
        if target < self.density - 1e-12:
            self._prune(model, target)
        else:
            self.apply(model)


class GradualMagnitudePrune(ScheduledPruning):
    """Prune ``names`` of ``model`` to ``final_density`` between steps ``start`` and ``end``.

    ``masks`` (``True`` = kept) and ``density`` hold the current state.
    """

    def __init__(self, model: nn.Module, names: list[str], final_density: float, start: int, end: int) -> None:
        params = dict(model.named_parameters())
        self.names, self.final_density, self.start, self.end = names, final_density, start, end
        self.masks: Masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
        self.step = 0
        self.density = 1.0
        if start <= 0:
            self._prune(model, gmp_density(0, start, end, final_density))

    @torch.no_grad()
    def _prune(self, model: nn.Module, density: float) -> None:
        params = dict(model.named_parameters())
        scores = {n: params[n].detach().abs() * self.masks[n] for n in self.names}
        new = global_masks(scores, 1.0 - density)
        self.masks = {n: new[n] & self.masks[n] for n in self.names}
        self.density = density
        self.apply(model)

    def finish(self, model: nn.Module) -> None:
        """Prune to the final density now (when training ended before the schedule did)."""
        if self.density > self.final_density + 1e-9:
            self._prune(model, self.final_density)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, keep in self.masks.items():
            params[name].mul_(keep.to(params[name].dtype))

    def after_backward(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, keep in self.masks.items():
            if params[name].grad is not None:
                params[name].grad.mul_(keep.to(params[name].grad.dtype))


class FixedMask(Hook):
    """Keep the positions where ``masks`` is ``False`` at exactly zero while training the rest."""

    def __init__(self, masks: Masks) -> None:
        self.masks = masks

    def after_backward(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, keep in self.masks.items():
            if params[name].grad is not None:
                params[name].grad.mul_(keep.to(params[name].grad.dtype))

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, keep in self.masks.items():
            params[name].mul_(keep.to(params[name].dtype))


class FreezeBatchNormStatistics(Hook):
    """Keep batch-norm layers in eval mode (running statistics fixed, affine parameters still
    trained), so the training forward pass is the network the bounds describe."""

    def on_epoch_start(self, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def density_of(masks: Masks) -> float:
    """Fraction of kept positions over all masked tensors."""
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 1.0

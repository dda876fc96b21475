"""Global unstructured pruning and CRoP's ToleratedPrune (Algorithm 2).

Pruning here works on named parameters and boolean keep-masks (``True`` = kept), not on
``torch.nn.utils.prune`` re-parametrisations: those add ``weight_orig``/``weight_mask`` tensors
and forward pre-hooks that GRU/LSTM and safetensors export do not handle, whereas CRoP only ever
needs "which positions were zeroed" to mix them back.

Prunable tensors by default: the ``weight`` of every Linear / Conv / bilinear layer and the
``weight_ih*``/``weight_hh*`` matrices of RNN/GRU/LSTM layers, except the last parametrised
layer (the decision layer, following Li et al. as the paper does). Biases and normalisation
parameters are never pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from crop.data.sensing import SensingData
from crop.errors import CropError
from crop.models.utils import State, score, state_copy
from crop.personalization.loop import Hook

Masks = dict[str, torch.Tensor]
PruneCriterion = Literal["magnitude", "gradient", "top_magnitude"]
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)
_RECURRENT = (nn.RNN, nn.GRU, nn.LSTM)


def prunable_names(model: nn.Module, exclude_last: bool = True, exclude: tuple[str, ...] = ()) -> list[str]:
    """Names (as in ``named_parameters``) of the weight tensors that pruning may zero.

    The "last layer" is the last Linear/Conv/RNN module in registration order.
    """
    layers: list[list[str]] = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(module, _WEIGHTED) and module.weight is not None:
            layers.append([prefix + "weight"])
        elif isinstance(module, _RECURRENT):
            layers.append([prefix + n for n, _ in module.named_parameters() if n.startswith("weight_")])
    if exclude_last and layers:
        layers = layers[:-1]
    names = [n for layer in layers for n in layer if not any(n.startswith(e) for e in exclude)]
    return names


def magnitude_scores(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().abs() for n in names}


def loss_gradients(
    model: nn.Module, data: SensingData, names: list[str] | None = None, *, batch_size: int = 1024
) -> dict[str, torch.Tensor]:
    """Gradient of the mean cross-entropy over all of ``data`` w.r.t. the named parameters.

    The model is evaluated in eval mode (dropout off, BatchNorm on its running statistics), so
    the result is deterministic and independent of batching; ``batch_size`` only bounds memory.
    ``names`` defaults to every parameter. No ``.grad`` attribute of the model is touched.
    """
    if len(data) == 0:
        raise CropError(f"{data.name}: no samples to compute a gradient on")
    named = dict(model.named_parameters())
    names = list(named) if names is None else names
    params = [named[n] for n in names]
    X = torch.as_tensor(data.X, dtype=torch.float32)
    y = torch.as_tensor(data.y)
    total = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(y), batch_size):
            loss = F.cross_entropy(model(X[start : start + batch_size]), y[start : start + batch_size], reduction="sum")
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for acc, g in zip(total, grads, strict=True):
                if g is not None:
                    acc.add_(g)
    finally:
        model.train(was_training)
    return {n: g / len(y) for n, g in zip(names, total, strict=True)}


def gradient_scores(model: nn.Module, names: list[str], data: SensingData) -> dict[str, torch.Tensor]:
    """First-order (Taylor) saliency ``|w * dL/dw|`` of the mean cross-entropy on ``data``.

    The GP criterion of the Section 8.1 ablation: a weight whose removal changes the loss least
    (to first order) is pruned first.
    """
    params = dict(model.named_parameters())
    grads = loss_gradients(model, data, names)
    return {n: (params[n].detach() * grads[n]).abs() for n in names}


def prune_scores(
    model: nn.Module, names: list[str], criterion: PruneCriterion = "magnitude", data: SensingData | None = None
) -> tuple[dict[str, torch.Tensor], bool]:
    """Scores and direction for a pruning criterion: ``(scores, prune_lowest)``.

    ``"magnitude"`` (CRoP, MP) prunes the smallest ``|w|``; ``"top_magnitude"`` (MP-T) the
    largest; ``"gradient"`` (GP) the smallest ``|w * grad|`` on ``data``.
    """
    if criterion == "magnitude":
        return magnitude_scores(model, names), True
    if criterion == "top_magnitude":
        return magnitude_scores(model, names), False
    if criterion == "gradient":
        if data is None:
            raise CropError("the gradient pruning criterion needs data to compute gradients on")
        return gradient_scores(model, names, data), True
    raise CropError(f"unknown pruning criterion {criterion!r}; choose magnitude, gradient or top_magnitude")


def _order(scores: dict[str, torch.Tensor], prune_lowest: bool) -> torch.Tensor:
    """Flat positions sorted by pruning priority (ties broken by position)."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()]) if scores else torch.zeros(0)
    return torch.sort(flat if prune_lowest else -flat, stable=True).indices


def _masks_from_order(scores: dict[str, torch.Tensor], order: torch.Tensor, amount: float) -> Masks:
    if not 0.0 <= amount <= 1.0:
        raise CropError(f"pruning amount must lie in [0, 1], got {amount}")
    keep = torch.ones(order.numel(), dtype=torch.bool)
    keep[order[: int(round(amount * order.numel()))]] = False
    masks: Masks = {}
    offset = 0
    for name, s in scores.items():
        masks[name] = keep[offset : offset + s.numel()].reshape(s.shape)
        offset += s.numel()
    return masks


def global_masks(scores: dict[str, torch.Tensor], amount: float, prune_lowest: bool = True) -> Masks:
    """Keep-masks that remove exactly ``round(amount * N)`` positions over all tensors.

    ``prune_lowest`` removes the lowest scores (magnitude pruning); ``False`` removes the
    highest (the MP-T ablation). Ties are broken by position, so the result is deterministic.
    """
    return _masks_from_order(scores, _order(scores, prune_lowest), amount)


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> nn.Module:
    """Zero the pruned positions of ``model`` in place."""
    params = dict(model.named_parameters())
    for name, keep in masks.items():
        params[name].mul_(keep.to(params[name].dtype))
    return model


def sparsity(masks: Masks) -> float:
    """Fraction of pruned positions over all masked tensors."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total if total else 0.0


class FreezePruned(Hook):
    """Keep the positions where ``masks`` is ``False`` at the values they hold when the hook
    is built (the partial-finetuning ablation: mixed-in generic weights stay generic).

    Their gradients are zeroed after every backward pass and their values restored after every
    optimizer step, so they stay bit-for-bit equal whatever the optimizer (momentum, weight
    decay) does.
    """

    def __init__(self, model: nn.Module, masks: Masks) -> None:
        params = dict(model.named_parameters())
        self.frozen = {n: (~keep, params[n].detach().clone()) for n, keep in masks.items()}

    def after_backward(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, (pruned, _) in self.frozen.items():
            grad = params[name].grad
            if grad is not None:
                grad.masked_fill_(pruned, 0.0)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, (pruned, value) in self.frozen.items():
            params[name].copy_(torch.where(pruned, value, params[name]))


ScoreFn = Callable[[nn.Module, list[str]], dict[str, torch.Tensor]]


@dataclass
class PruneResult:
    """Output of :func:`tolerated_prune`.

    ``state`` is the model before the pruning step that broke the tolerance, ``amount`` its
    pruning amount (0 when even the first step ``k`` broke it), ``masks`` its keep-masks,
    ``history`` the ``(amount, accuracy)`` pairs tested, ``reference`` the unpruned accuracy.
    """

    state: State
    amount: float
    masks: Masks
    reference: float
    history: list[tuple[float, float]] = field(default_factory=list)


def tolerated_prune(
    model: nn.Module,
    data: SensingData,
    tau: float,
    k: float = 0.05,
    k_step: float = 0.05,
    *,
    metric: str = "balanced_accuracy",
    names: list[str] | None = None,
    scores: dict[str, torch.Tensor] | None = None,
    prune_lowest: bool = True,
    max_amount: float = 1.0,
    fill: dict[str, torch.Tensor] | None = None,
    recalibrate: SensingData | None = None,
) -> PruneResult:
    """Algorithm 2: raise the pruning amount from ``k`` by ``k_step`` until the accuracy on
    ``data`` drops below ``A_o - tau``; return the state before that step.

    ``tau`` is in accuracy units (0.05 = five percentage points). The tested amounts are
    ``k, k + k_step, ...`` up to ``max_amount``; if none breaks the tolerance the largest one
    tested is returned. ``model`` is not modified.

    Algorithm 2 scores each candidate with the removed positions at zero. ``fill`` gives other
    values for them (CRoP's mixing puts the generic weights there, so ``fill=generic`` scores
    the model that will actually be used), and ``recalibrate`` re-estimates BatchNorm statistics
    on those windows before each candidate is scored. The returned ``state`` always has the
    removed positions at zero (the pruned model), with the model's own normalization statistics.
    """
    if not (0 < k < 1 and 0 < k_step < 1):
        raise CropError(f"k and k' must lie in (0, 1), got k={k}, k'={k_step}")
    if tau < 0:
        raise CropError(f"tau must be >= 0, got {tau}")
    names = names if names is not None else prunable_names(model)
    if not names:
        raise CropError("the model has no prunable weights (Linear/Conv/RNN layers besides the last)")
    scores = scores if scores is not None else magnitude_scores(model, names)
    order = _order(scores, prune_lowest)  # sorted once; each amount is a prefix of it
    params = dict(model.named_parameters())
    originals = {n: params[n].detach().clone() for n in scores}
    snapshot = state_copy(model) if recalibrate is not None else None
    reference = score(model, data, metric)
    best_amount = 0.0
    best_masks: Masks = {n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()}
    history: list[tuple[float, float]] = []
    i = 0

    def candidate(masks: Masks) -> None:
        with torch.no_grad():
            for n, keep in masks.items():
                removed = torch.zeros_like(originals[n]) if fill is None else fill[n]
                params[n].copy_(torch.where(keep, originals[n], removed))
        if recalibrate is not None:
            from crop.personalization.norm import recalibrate_batchnorm

            recalibrate_batchnorm(model, recalibrate.X)

    try:
        while True:
            amount = round(k + i * k_step, 10)
            if amount > max_amount + 1e-12:
                break
            masks = _masks_from_order(scores, order, amount)
            candidate(masks)
            acc = score(model, data, metric)
            history.append((amount, acc))
            if acc < reference - tau:
                break
            best_amount, best_masks = amount, masks
            i += 1
        if snapshot is not None:
            model.load_state_dict(snapshot)
        with torch.no_grad():
            for n, keep in best_masks.items():
                params[n].copy_(originals[n] * keep)
        best_state = state_copy(model)
    finally:
        if snapshot is not None:
            model.load_state_dict(snapshot)
        with torch.no_grad():
            for n, value in originals.items():
                params[n].copy_(value)
    return PruneResult(best_state, best_amount, best_masks, reference, history)

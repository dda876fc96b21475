"""PackNet (Mallya & Lazebnik, "PackNet: Adding multiple tasks to a single network by iterative
pruning", CVPR 2018), adapted to static personalization.

PackNet packs several tasks into one network: after training task ``t`` it frees a fraction of
that task's weights by per-layer magnitude pruning, trains the next task *only on the freed
positions* (the weights of earlier tasks are frozen and still used), then prunes the new task's
weights in turn and briefly retrains the survivors. Inference for a task uses the union of its
own weights and those of every earlier task.

Here the generic model is task 1 and the person is task 2:

1. per prunable layer (every Linear/Conv/RNN weight but the decision layer), free the
   ``generic_prune`` fraction of smallest-magnitude generic weights;
2. train the freed positions (plus the person's own copy of the decision layer) on the
   available-context training split; the generic positions get zero gradient and are restored
   after every optimizer step, so they stay bit-for-bit the generic weights;
3. free the ``user_prune`` fraction of the person's smallest weights (set to zero, left for
   future tasks) and retrain the survivors, again with the generic positions frozen.

The personalized model is the union: generic positions + the person's surviving positions, zeros
elsewhere; it is an ordinary module with the generic architecture.

Adaptations, and why:

- PackNet retrains task 1 after its pruning; the generic training data is not available in
  personalization, so the generic weights are pruned without retraining (``freed_init="zero"``
  starts the person's weights from zero as PackNet does; ``"generic"`` starts them from the
  freed generic values instead).
- Each task in PackNet has its own classifier; the person's task has the generic label set, so
  its classifier starts as a copy of the generic decision layer and is trained in full.
- Biases and BatchNorm parameters are frozen after the first task (as in PackNet), and
  BatchNorm stays in eval mode, so its running statistics remain the generic model's: the
  generic task's behaviour depends on them and they are shared by both tasks.
- Masks are boolean tensors on named parameters (not ``torch.nn.utils.prune``), which also
  covers GRU/LSTM ``weight_ih``/``weight_hh`` matrices.
- Training and retraining keep the best validation epoch of ``available.val`` (the shared loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import clone_model, state_copy
from crop.personalization.baselines._common import FreezeBatchNorm, split_parameters
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.prune import prunable_names
from crop.personalization.registry import PersonalizationResult, check_available, register_method

FREE, GENERIC, USER = 0, 1, 2
Owners = dict[str, torch.Tensor]


def _retrain_phase() -> TrainConfig:
    return TrainConfig(epochs=20)


@dataclass
class PackNetConfig:
    """Hyperparameters of PackNet for one new task (the person).

    Attributes:
        generic_prune: fraction of each prunable layer's generic weights freed for the person
            (50 %, one of PackNet's settings).
        user_prune: fraction of the person's weights freed again after training (left zero,
            for future tasks), before the survivors are retrained.
        freed_init: the person's weights start at ``"zero"`` (PackNet) or at the freed
            ``"generic"`` values.
        train: training of the freed positions (PackNet trains twice as long as it retrains).
        retrain: retraining of the person's surviving positions after their pruning.
    """

    generic_prune: float = 0.5
    user_prune: float = 0.5
    freed_init: Literal["zero", "generic"] = "zero"
    train: TrainConfig = field(default_factory=TrainConfig)
    retrain: TrainConfig = field(default_factory=_retrain_phase)


def smallest_positions(values: torch.Tensor, candidates: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask of the ``round(fraction * candidates.sum())`` candidate positions with the
    smallest ``|values|`` (ties broken by position, so the result is deterministic)."""
    flat = values.detach().abs().reshape(-1)
    cand = candidates.reshape(-1)
    n = int(round(fraction * int(cand.sum())))
    out = torch.zeros_like(cand)
    if n > 0:
        key = torch.where(cand, flat, torch.full_like(flat, float("inf")))
        out[torch.sort(key, stable=True).indices[:n]] = True
    return out.reshape(values.shape)


class PackNetMasks(Hook):
    """Lets only the person's positions change: zero gradients elsewhere, and after each step
    restore the generic positions and re-zero the free ones."""

    def __init__(self, model: nn.Module, owners: Owners, generic_values: dict[str, torch.Tensor]) -> None:
        self.owners = owners
        self.generic_values = generic_values
        self._params = {n: p for n, p in model.named_parameters() if n in owners}

    def after_backward(self, model: nn.Module) -> None:
        for name, p in self._params.items():
            if p.grad is not None:
                p.grad.masked_fill_(self.owners[name] != USER, 0.0)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for name, p in self._params.items():
            owner = self.owners[name]
            p.copy_(torch.where(owner == GENERIC, self.generic_values[name], p))
            p.masked_fill_(owner == FREE, 0.0)


def _fraction_owned(owners: Owners, who: int) -> float:
    total = sum(o.numel() for o in owners.values())
    return sum(int((o == who).sum()) for o in owners.values()) / total if total else 0.0


@register_method("packnet", PackNetConfig, "PackNet: train freed weights, prune, retrain; generic weights frozen")
def fit_packnet(
    generic: nn.Module,
    available: ContextSplit,
    config: PackNetConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Add the person as PackNet's second task. ``generic`` is not modified.

    ``info["owners"]`` maps each prunable weight to an int8 tensor: 1 = generic position
    (never changed), 2 = the person's position, 0 = freed (zero).
    """
    check_available(generic, available)
    for name, value in (("generic_prune", config.generic_prune), ("user_prune", config.user_prune)):
        if not 0.0 <= value <= 1.0:
            raise CropError(f"packnet: {name} must lie in [0, 1], got {value}")
    model = clone_model(generic)
    names = prunable_names(model)
    if not names:
        raise CropError("packnet: the model has no prunable weights (Linear/Conv/RNN layers besides the last)")
    params = dict(model.named_parameters())

    # Task 1 (generic): free the smallest generic weights of each layer.
    owners: Owners = {}
    generic_values: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name in names:
            w = params[name]
            freed = smallest_positions(w, torch.ones_like(w, dtype=torch.bool), config.generic_prune)
            owners[name] = torch.where(freed, USER, GENERIC).to(torch.int8)
            generic_values[name] = w.detach().clone()
            if config.freed_init == "zero":
                w.masked_fill_(freed, 0.0)
    generic_task = state_copy(model)
    for name in names:  # the generic task alone: its kept positions, zeros elsewhere
        generic_task[name] = torch.where(owners[name] == GENERIC, generic_values[name], 0.0)

    # Task 2 (the person): the freed positions and the person's own decision layer train.
    head_params, _ = split_parameters(model)
    trainable = [params[n] for n in names] + head_params
    masks = PackNetMasks(model, owners, generic_values)
    hooks = [FreezeBatchNorm(), masks]
    trained = train(
        model, available.train, available.val, config.train, seed=seed, metric=metric, hooks=hooks, trainable=trainable
    )
    trained_state = state_copy(model)

    # Prune the person's weights per layer, then retrain the survivors.
    with torch.no_grad():
        for name in names:
            w = params[name]
            freed = smallest_positions(w, owners[name] == USER, config.user_prune)
            owners[name][freed] = FREE
            w.masked_fill_(freed, 0.0)
    pruned_state = state_copy(model)
    retrained = train(
        model,
        available.train,
        available.val,
        config.retrain,
        seed=seed + 1,
        metric=metric,
        hooks=hooks,
        trainable=trainable,
    )
    free = _fraction_owned(owners, FREE)
    return PersonalizationResult(
        "packnet",
        model,
        states={
            "generic": state_copy(generic),
            "generic_task": generic_task,
            "trained": trained_state,
            "pruned": pruned_state,
            "final": state_copy(model),
        },
        prune_amount=free,
        info={
            "owners": {n: o.clone() for n, o in owners.items()},
            "fraction_generic": _fraction_owned(owners, GENERIC),
            "fraction_user": _fraction_owned(owners, USER),
            "fraction_free": free,
            "train_epoch": trained.best_epoch,
            "retrain_epoch": retrained.best_epoch,
            "history_train": trained.history,
            "history_retrain": retrained.history,
        },
    )

"""The one training loop that CRoP's steps and every baseline share.

Methods plug into it with small hooks (a penalty term, extra trainable parameters such as the
regularization coefficient, gradient masks, post-step projections) and an optional objective
that replaces cross-entropy (e.g. unsupervised baselines). Checkpoint selection on the
validation split is part of the loop: the best epoch (optionally including the starting model)
or the last one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from crop.data.sensing import SensingData
from crop.metrics import get_metric
from crop.models.utils import State, predict_logits, state_copy
from crop.optim import adam

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainConfig:
    """One finetuning phase.

    Attributes:
        epochs: passes over the training split.
        lr: learning rate (fixed, as in the paper's Table 10).
        batch_size: windows per step.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        weight_decay: the optimizer's L2 weight decay (0 keeps the objective exactly the paper's).
        select: ``"best"`` keeps the epoch with the best validation score, ``"last"`` the final one.
        select_on: ``"metric"`` (the dataset's accuracy measure, Algorithm 1 line 5) or ``"loss"``.
        include_initial: whether the starting model is itself a selection candidate (epoch 0).
        patience: stop after this many epochs without improvement (``None``: run all epochs).
        track_validation: score the validation split every epoch even when nothing is selected
            with it (``select="last"`` without patience); off by default, as it only feeds the
            history.
        noise_sigma: Gaussian-noise augmentation: each training batch gets ``N(0, sigma^2)``
            added (input units), the base-classifier training of randomized smoothing (Cohen et
            al., 2019). 0 (default) trains on clean windows; validation is always clean.
    """

    epochs: int = 40
    lr: float = 1e-3
    batch_size: int = 32
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    select: Literal["best", "last"] = "best"
    select_on: Literal["metric", "loss"] = "metric"
    include_initial: bool = False
    patience: int | None = None
    track_validation: bool = False
    noise_sigma: float = 0.0


class Phase(TrainConfig):
    """Where :func:`train` looks up its validation rules: a phase of 0 epochs is allowed there
    (it returns the starting model, e.g. CRoP's final phase skipped); user configs need >= 1
    except where a method documents 0 (``crop.validate.RULES``)."""


class Hook:
    """Extension points of :func:`train`; every method is a no-op by default."""

    def parameters(self) -> list[nn.Parameter]:
        """Extra trainable parameters (optimized together with the model)."""
        return []

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the loss of every step."""
        return None

    def on_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called once with the phase's optimizer, before the first step (e.g. to attach a
        learning-rate schedule that :meth:`after_step` advances)."""

    def after_backward(self, model: nn.Module) -> None:
        """Called after ``loss.backward()`` (e.g. zero the gradients of frozen weights)."""

    def after_step(self, model: nn.Module) -> None:
        """Called after ``optimizer.step()`` (e.g. re-apply a mask, project a parameter)."""

    def on_epoch_start(self, model: nn.Module) -> None:
        """Called after ``model.train()`` at the start of each epoch (e.g. put frozen BatchNorm back in eval mode)."""

    def before_validation(self, model: nn.Module) -> None:
        """Called before the model is scored on the validation split, at epoch 0 (when
        ``include_initial``) and after each epoch (e.g. refresh k-NN reference embeddings)."""

    def on_epoch_end(self, model: nn.Module, record: dict) -> None:
        """Called with the epoch's history record; may add entries to it."""


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


@dataclass
class TrainResult:
    """What a phase produced: the selected model (loaded into the module), and its history."""

    model: nn.Module
    best_epoch: int
    best_score: float
    last_state: State
    history: list[dict] = field(default_factory=list)
    selection_seconds: float = 0.0  # time spent evaluating the validation split and copying checkpoints


def _val_scores(model: nn.Module, val: SensingData, metric: str) -> tuple[float, float]:
    logits = predict_logits(model, val.X)
    loss = float(F.cross_entropy(logits, torch.as_tensor(val.y)).item())
    return get_metric(metric)(val.y, logits.argmax(1).numpy()), loss


def _better(score: float, best: float, on: str) -> bool:
    return score > best if on == "metric" else score < best


def train(
    model: nn.Module,
    train_data: SensingData,
    val_data: SensingData,
    config: TrainConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
    hooks: Sequence[Hook] = (),
    objective: Objective | None = None,
    trainable: Sequence[nn.Parameter] | None = None,
) -> TrainResult:
    """Finetune ``model`` in place on ``train_data`` and load the selected checkpoint.

    Deterministic for a given ``seed`` (shuffling and dropout draw from seeded generators).
    ``trainable`` restricts the optimized model parameters (default: all that require grad).
    """
    from crop.validate import check_config

    check_config(config, "training phase", root=Phase)  # epochs, lr, batch size... refused before any step
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    objective = objective or cross_entropy
    X = torch.as_tensor(train_data.X)
    y = torch.as_tensor(train_data.y)
    params = list(trainable) if trainable is not None else [p for p in model.parameters() if p.requires_grad]
    params += [p for h in hooks for p in h.parameters()]
    custom = any(type(h).on_optimizer is not Hook.on_optimizer for h in hooks if hasattr(h, "on_optimizer"))
    if config.optimizer == "adam" and not custom:  # torch's Adam update without torch.compile's imports
        opt: Any = adam(params, lr=config.lr, weight_decay=config.weight_decay)
    elif config.optimizer == "adam":  # a hook attaches a torch.optim schedule: it needs a torch optimizer
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    for h in hooks:
        if hasattr(h, "on_optimizer"):  # hooks written before this extension point
            h.on_optimizer(opt)

    on = config.select_on
    best_epoch, best_state = -1, None
    best = -math.inf if on == "metric" else math.inf
    history: list[dict] = []
    selection = 0.0
    if config.include_initial:
        for h in hooks:
            h.before_validation(model)
        t0 = time.perf_counter()
        m, loss = _val_scores(model, val_data, metric)
        best, best_epoch, best_state = (m if on == "metric" else loss), 0, state_copy(model)
        selection += time.perf_counter() - t0
        history.append({"epoch": 0, "train_loss": float("nan"), "val_metric": m, "val_loss": loss})

    n = len(y)
    stale = 0
    validate = config.select == "best" or config.patience is not None or config.track_validation
    for epoch in range(1, config.epochs + 1):
        model.train()
        for h in hooks:
            h.on_epoch_start(model)
        order = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2 and n >= 2:  # BatchNorm cannot train on a single window
                continue
            xb = X[idx]
            if config.noise_sigma > 0:
                xb = xb + config.noise_sigma * torch.randn(xb.shape, generator=gen, dtype=xb.dtype)
            loss = objective(model, xb, y[idx])
            for h in hooks:
                extra = h.penalty(model)
                if extra is not None:
                    loss = loss + extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for h in hooks:
                h.after_backward(model)
            opt.step()
            for h in hooks:
                h.after_step(model)
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        record = {"epoch": epoch, "train_loss": total / max(count, 1)}
        t0 = time.perf_counter()
        if validate:
            for h in hooks:
                h.before_validation(model)
            m, vloss = _val_scores(model, val_data, metric)
            record.update(val_metric=m, val_loss=vloss)
        else:
            m = vloss = float("nan")
        for h in hooks:
            h.on_epoch_end(model, record)
        history.append(record)
        current = m if on == "metric" else vloss
        if config.select == "last":
            best, best_epoch, best_state = current, epoch, None  # the model as it ends
        elif _better(current, best, on):
            best, best_epoch, best_state = current, epoch, state_copy(model)
            stale = 0
        else:
            stale += 1
        selection += time.perf_counter() - t0
        if config.patience is not None and stale >= config.patience:
            break
    last_state = state_copy(model)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, best_epoch, best, last_state, history, selection)

"""L2-SP (Li, Grandvalet & Davoine, "Explicit inductive bias for transfer learning with
convolutional networks", ICML 2018), adapted to static personalization.

L2-SP replaces weight decay towards zero by weight decay towards the pretrained weights (the
"starting point"): it finetunes with

    loss + (alpha / 2) * ||w_S - w_S^0||^2 + (beta / 2) * ||w_new||^2,

where ``w_S`` are the weights shared with the source network and ``w_new`` the new task's
head, decayed towards zero since it has no starting point.

Here the source network is the generic model and the person's task has the generic label set,
so no layer is new: the generic decision layer is itself a starting point, and *every*
parameter that trains (head included) is pulled towards its generic value with one
coefficient, ``beta``:

    loss + (beta / 2) * ||w - w_generic||^2.

The penalty is a :class:`~crop.personalization.loop.Hook` on the shared loop, which trains on
``available.train`` and keeps the best epoch on ``available.val``; nothing else is seen.

Adaptations, and why:

- One coefficient for all parameters (the original's ``alpha`` for source weights and ``beta``
  for the new head collapse into one, as there is no new head). The default 0.01 is one order
  of magnitude below the original's ``alpha = 0.1``: the penalty is a sum over every
  parameter while the cross-entropy is a mean over a batch, and here it also holds the head,
  which the original leaves nearly free (``beta = 0.01`` towards zero). For the library's
  models (about 20 000 parameters) ``alpha = 0.1`` makes the penalty worth one nat of
  cross-entropy at a root-mean-square deviation of only 0.03 per weight; 0.01 allows 0.1,
  room to move the generic decision boundary to the person's context while still pulling
  every weight back. Tune it on ``available.val`` if needed.
- BatchNorm running statistics are buffers, not weights: they are not penalized and follow
  the person's data as in conventional finetuning.
- The original trains with SGD and momentum; the shared loop's default optimizer (Adam) is
  kept, as for conventional finetuning, so the two differ only by the penalty. With Adam the
  pull bounds the distance to the generic weights to about one step size per coordinate, not
  to zero; ``train.optimizer="sgd"`` gives the original's dynamics (stable while
  ``lr * beta`` stays below about 3.8, the limit of heavy-ball momentum 0.9 on the quadratic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import clone_model, state_copy
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.peers._common import detached_parameters, weight_distance
from crop.personalization.registry import PersonalizationResult, check_available, register_method


@dataclass
class L2SPConfig:
    """Hyperparameters of L2-SP.

    Attributes:
        beta: coefficient of ``(beta / 2) * ||w - w_generic||^2`` over every trainable
            parameter, head included (0 is conventional finetuning); see the module docstring
            for the choice of 0.01.
        train: the finetuning phase, conventional finetuning's defaults.
    """

    beta: float = 0.01
    train: TrainConfig = field(default_factory=TrainConfig)


class StartingPointPenalty(Hook):
    """``(beta / 2) * sum_w ||w - w_0||^2`` over the parameters of ``model`` that require grad,
    with ``w_0`` their values when the hook is built (the generic weights)."""

    def __init__(self, model: nn.Module, beta: float) -> None:
        if not (beta >= 0 and math.isfinite(beta)):
            raise CropError(f"l2-sp: beta must be a finite non-negative number, got {beta}")
        self.beta = beta
        self.reference = detached_parameters(model)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        terms = [((p - self.reference[n]) ** 2).sum() for n, p in model.named_parameters() if n in self.reference]
        total = torch.stack(terms).sum() if terms else torch.zeros(())
        return 0.5 * self.beta * total

    def on_epoch_end(self, model: nn.Module, record: dict) -> None:
        with torch.no_grad():
            record["penalty"] = float(self.penalty(model))


@register_method("l2-sp", L2SPConfig, "L2-SP: finetune with an L2 pull towards the generic weights")
def fit_l2_sp(
    generic: nn.Module,
    available: ContextSplit,
    config: L2SPConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Finetune a copy of ``generic`` with the L2-SP penalty towards the generic weights."""
    check_available(generic, available)
    model = clone_model(generic)
    hook = StartingPointPenalty(model, config.beta)
    out = train(model, available.train, available.val, config.train, seed=seed, metric=metric, hooks=[hook])
    generic_state, final = state_copy(generic), state_copy(model)
    return PersonalizationResult(
        "l2-sp",
        model,
        states={"generic": generic_state, "final": final},
        info={
            "beta": config.beta,
            "best_epoch": out.best_epoch,
            "history": out.history,
            "distance": weight_distance(final, generic_state, list(hook.reference)),
        },
    )

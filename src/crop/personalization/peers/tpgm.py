"""TPGM (Tian et al., "Trainable Projected Gradient Method for Robust Fine-tuning", CVPR 2023),
adapted to static personalization.

TPGM finetunes with a per-layer distance constraint to the pretrained weights,
``||w_l - w_l^0|| <= gamma_l``, and *learns* the radii ``gamma_l`` instead of hand-tuning them:
every few iterations it takes a few gradient steps on the radii to minimise the loss of the
projected model on held-out in-distribution data (the weights themselves fixed), then
projects the weights:

    w_l <- w_l^0 + min(1, gamma_l / ||w_l - w_l^0||) * (w_l - w_l^0).

Here the pretrained weights are the generic model's, the finetuning is the shared loop on
``available.train``, and the held-out data is ``available.val`` (which also selects the best
epoch, as for every method); nothing else is seen. The radii are learned

- every ``projection_every`` epochs, before the epoch's model is scored on the validation
  split (so the checkpoint kept is the projected model that was scored), and
- once more on the model the loop selects, so the returned model satisfies the constraints
  with the returned radii (``info["radii"]``).

Each projection initialises every radius at the current distance ``||w_l - w_l^0||`` (the
identity projection) and takes ``projection_steps`` Adam steps on the validation
cross-entropy of the projected model (eval mode: dropout off, BatchNorm on its running
statistics). A radius never exceeds the current distance (a larger one projects nothing), so
it is learned as ``gamma_l = s_l * ||w_l - w_l^0||`` with ``s_l`` in ``[0, 1]`` starting at 1:
one learning rate then suits tensors whose deviations differ by orders of magnitude.

Adaptations, and why:

- "Layer" = every parameter tensor that trains (each Linear/Conv weight, each bias, each
  normalization scale and shift, each RNN matrix), each with its own radius, as the original
  implementation constrains every trainable parameter tensor. BatchNorm running statistics are
  buffers, not weights, and are left unconstrained.
- The distance is the L2 (Frobenius) norm of each tensor's deviation; the paper also studies a
  maximum-absolute-row-sum norm, which has no natural meaning for biases and RNN matrices.
- Projections happen at epoch boundaries rather than every few iterations: a person's
  available-context data gives only a handful of batches per epoch.
- ``projection_steps = 0`` keeps every radius at the current distance, so projection is the
  identity and the method is exactly conventional finetuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from crop.data.sensing import ContextSplit, SensingData
from crop.errors import CropError
from crop.models.utils import clone_model, state_copy
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.peers._common import detached_parameters, weight_distance
from crop.personalization.registry import PersonalizationResult, check_available, register_method


@dataclass
class TPGMConfig:
    """Hyperparameters of TPGM.

    Attributes:
        train: the finetuning phase, conventional finetuning's defaults.
        projection_every: learn the radii and project every this many epochs (1: after every
            epoch, since a person's data gives only a few batches per epoch); 0 projects only
            once, at the end.
        projection_steps: Adam steps on the radii per projection (10: "a few", enough for the
            radii to move by up to about ``10 * projection_lr`` of the current distance); 0
            disables projection.
        projection_lr: Adam learning rate of the radii, in units of each tensor's current
            distance to the generic weights (0.05: one projection can shrink a deviation by up
            to about half).
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    projection_every: int = 1
    projection_steps: int = 10
    projection_lr: float = 0.05


class TrainableProjection(Hook):
    """Learns per-tensor radii on ``val`` and projects the weights of ``model`` towards the
    weights it had when the hook was built (the generic ones)."""

    def __init__(self, model: nn.Module, val: SensingData, config: TPGMConfig, batch_size: int = 1024) -> None:
        self.reference = detached_parameters(model)
        self.X = torch.as_tensor(val.X, dtype=torch.float32)
        self.y = torch.as_tensor(val.y)
        self.every = config.projection_every
        self.steps = config.projection_steps
        self.lr = config.projection_lr
        self.batch_size = batch_size
        self.epoch = 0
        self.due = False
        self.radii: dict[str, float] = {}
        self.projections = 0

    def _val_loss(self, model: nn.Module, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for start in range(0, len(self.y), self.batch_size):
            logits = functional_call(model, weights, (self.X[start : start + self.batch_size],))
            total = total + F.cross_entropy(logits, self.y[start : start + self.batch_size], reduction="sum")
        return total / len(self.y)

    def project(self, model: nn.Module) -> None:
        """Learn the radii on the validation split, then project the weights (in place)."""
        params = {n: p for n, p in model.named_parameters() if n in self.reference}
        with torch.no_grad():
            current = {n: p.detach().clone() for n, p in params.items()}
            deltas = {n: current[n] - self.reference[n] for n in params}
            distances = {n: float(d.norm()) for n, d in deltas.items()}
        scale = torch.ones(len(params))  # s_l = gamma_l / current distance
        if self.steps > 0:
            scale = self._learn_scales(model, current, deltas)
            with torch.no_grad():
                for i, (name, p) in enumerate(params.items()):
                    if scale[i] < 1.0:
                        p.copy_(current[name] + (scale[i] - 1.0) * deltas[name])
        self.radii = {n: float(scale[i]) * distances[n] for i, n in enumerate(params)}
        self.projections += 1

    def _learn_scales(
        self, model: nn.Module, current: dict[str, torch.Tensor], deltas: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        modes = {m: m.training for m in model.modules()}
        model.eval()
        scale = nn.Parameter(torch.ones(len(current)))
        opt = torch.optim.Adam([scale], lr=self.lr)
        try:
            with torch.enable_grad():
                for _ in range(self.steps):
                    weights = {n: w + (scale[i] - 1.0) * deltas[n] for i, (n, w) in enumerate(current.items())}
                    loss = self._val_loss(model, weights)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        scale.clamp_(0.0, 1.0)
        finally:
            for module, mode in modes.items():
                module.train(mode)
        return scale.detach()

    def on_epoch_start(self, model: nn.Module) -> None:
        self.epoch += 1
        self.due = self.every > 0 and self.epoch % self.every == 0

    def before_validation(self, model: nn.Module) -> None:
        if self.due:  # project before scoring, so the kept checkpoint is the scored model
            self.project(model)
            self.due = False

    def on_epoch_end(self, model: nn.Module, record: dict) -> None:
        if self.due:  # no validation this epoch
            self.project(model)
            self.due = False
        record["projections"] = self.projections


@register_method("tpgm", TPGMConfig, "TPGM: finetune with per-layer distance radii learned on validation data")
def fit_tpgm(
    generic: nn.Module,
    available: ContextSplit,
    config: TPGMConfig,
    *,
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Finetune a copy of ``generic`` with TPGM's learned projections towards the generic weights.

    ``info["radii"]`` maps each constrained parameter to its final radius;
    ``info["distances"]`` gives its final distance to the generic value (never larger).
    """
    check_available(generic, available)
    if config.projection_every < 0 or config.projection_steps < 0:
        raise CropError("tpgm: projection_every and projection_steps must be >= 0")
    if not (config.projection_lr > 0 and math.isfinite(config.projection_lr)):
        raise CropError(f"tpgm: projection_lr must be a positive number, got {config.projection_lr}")
    model = clone_model(generic)
    hook = TrainableProjection(model, available.val, config)
    out = train(model, available.train, available.val, config.train, seed=seed, metric=metric, hooks=[hook])
    selected = state_copy(model)
    hook.project(model)  # the selected checkpoint, projected with radii learned for it
    model.eval()
    generic_state, final = state_copy(generic), state_copy(model)
    distances = {n: weight_distance(final, generic_state, [n]) for n in hook.reference}
    return PersonalizationResult(
        "tpgm",
        model,
        states={"generic": generic_state, "selected": selected, "final": final},
        info={
            "radii": dict(hook.radii),
            "distances": distances,
            "projections": hook.projections,
            "best_epoch": out.best_epoch,
            "history": out.history,
        },
    )

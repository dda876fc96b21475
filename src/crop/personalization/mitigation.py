"""Fairness mitigation inside personalization: group-balanced reweighting, group DRO and a
do-no-harm guard. Options of ``finetune`` and ``crop`` (:class:`MitigationConfig`, field
``mitigation``); all off by default, where they change nothing.

**Groups.** Personalization serves one person, so the groups it can act on are groups of that
person's *windows*: ``groups="class"`` (default) takes each window's activity class, the
per-window attribute every labelled dataset carries; ``groups="attribute"`` takes
:attr:`crop.data.sensing.SensingData.group` (a per-window attribute such as a device or a
recording condition, when the data carries one). Attributes of the person (an age band, a
movement-intensity tercile) are constant within the person's data: no method that sees one
person can balance them. They are audited across people by :mod:`crop.fairness`; the guard
protects each person, whatever their group, from being served worse than by the generic model.

**Objectives** (``objective``), used in every finetuning phase of the method:

* ``"erm"``: the method's own objective, unchanged (default).
* ``"reweight"``: group-balanced reweighting. A training window of group ``g`` weighs
  ``N / (G n_g)`` (``n_g`` of the ``N`` training windows are in ``g``, ``G`` groups), so each
  group carries the same total weight; a batch's loss is the weighted mean of its windows'
  losses. This is the reweighting baseline of Sagawa et al., "Distributionally Robust Neural
  Networks for Group Shifts" (ICLR 2020), and RWG of Idrissi et al., "Simple data balancing
  achieves competitive worst-group-accuracy" (CLeaR 2022).
* ``"group-dro"``: online group DRO, Sagawa et al. 2020, Algorithm 1. Group weights ``q``
  start uniform; each step, for the groups in the batch, ``q_g <- q_g exp(dro_step * L_g)``
  (``L_g`` the group's mean loss), ``q`` is renormalized, and the loss is
  ``sum_g q_g L_g / sum_g q_g`` over the groups in the batch (the normalization keeps the scale
  of the loss when a small batch misses a group). ``q`` carries over the phases of one
  personalization. ``dro_step`` defaults to 0.1 (the paper's runs take thousands of steps with
  0.01; a HAPT person gives about 150 steps per phase).

Per-window losses come from the method's objective: cross-entropy, or the per-window terms of
the invariance objective (:meth:`crop.personalization.invariance.InvarianceObjective.per_window`).
The prototype-contrastive term has no per-window form: combining it with a group objective is
refused. The group of every training window reaches the objective encoded in its label
(``group * n_classes + class``; the objective decodes it), so the shared loop is unchanged;
validation, checkpoint selection and pruning see the plain labels.

**Do-no-harm guard** (``guard=True``). A personalized model should not serve any group worse
than the model it replaces: the "do no harm" condition of decoupled and personalized
classifiers (Ustun, Liu and Parkes, "Fairness without Harm: Decoupled Classifiers with
Preference Guarantees", ICML 2019; Suriyakumar et al., "When Personalization Harms Performance",
ICML 2023). After the method, the guard scores the generic and the personalized model on the
person's available-context validation windows per group (``fairlearn.metrics.MetricFrame``).
If some group present there loses more than ``guard_tolerance`` accuracy, it moves the model
towards the generic one through weight interpolation (WiSE-FT, Wortsman et al., CVPR 2022):
``theta(l) = (1 - l) theta_generic + l theta_personalized`` for ``l = 1 - 1/s, 1 - 2/s, ..., 0``
(``s = guard_steps``), with normalization statistics re-estimated on the available training
windows (:mod:`crop.personalization.norm`), and keeps the largest ``l`` at which no group loses more
than the tolerance (``l = 0`` is the generic model, which never does). When no harm is seen the
model is returned exactly as the method made it. Only available-context data is used; its
validation split is small (a few windows per class on HAPT), so the guard acts on the evidence
enrollment offers, no more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crop.data.sensing import SensingData
from crop.errors import CropError
from crop.models.utils import predict, state_copy

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class MitigationConfig:
    """Fairness mitigation during personalization (see the module docstring); off by default.

    Attributes:
        objective: ``"erm"`` (the method's objective), ``"reweight"`` (group-balanced
            reweighting) or ``"group-dro"`` (online group DRO, Sagawa et al. 2020).
        groups: the windows' groups: ``"class"`` (the activity class) or ``"attribute"``
            (``SensingData.group`` of the training and validation data).
        dro_step: group-DRO step size ``eta`` of the group weights.
        guard: apply the do-no-harm guard after the method.
        guard_tolerance: accuracy a group may lose against the generic model on the validation
            windows before the guard acts (0.05 = 5 points; 0: any loss).
        guard_steps: interpolation steps between the personalized and the generic model.
    """

    objective: Literal["erm", "reweight", "group-dro"] = "erm"
    groups: Literal["class", "attribute"] = "class"
    dro_step: float = 0.1
    guard: bool = False
    guard_tolerance: float = 0.0
    guard_steps: int = 4


def is_active(config: MitigationConfig) -> bool:
    """Whether ``config`` changes anything."""
    return config.objective != "erm" or config.guard


def window_groups(data: SensingData, groups: str) -> np.ndarray:
    """The group of every window of ``data`` (``groups`` as in :class:`MitigationConfig`)."""
    if groups == "class":
        return data.y
    if groups == "attribute":
        if data.group is None:
            raise CropError(f"{data.name}: groups='attribute' needs a per-window group attribute (SensingData.group)")
        return data.group
    raise CropError(f"unknown groups {groups!r}; choose class or attribute")


def check_per_window(objective: Objective | None) -> None:
    """Refuse an objective without a per-window form (one line)."""
    if objective is not None and getattr(objective, "per_window", None) is None:
        raise CropError(
            f"the objective {type(objective).__name__} has no per-window form: group mitigation combines with "
            "cross-entropy and the invariance term, not with the contrastive term"
        )


def per_window_losses(objective: Objective | None, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The method objective's loss per window, shape ``(batch,)``."""
    if objective is None:
        return F.cross_entropy(model(x), y, reduction="none")
    check_per_window(objective)
    return objective.per_window(model, x, y)  # type: ignore[attr-defined]


class GroupObjective:
    """Group-balanced reweighting or online group DRO over an inner objective (module docstring).

    Labels arrive encoded as ``group * n_classes + class`` (:func:`encode_groups`)."""

    def __init__(
        self, inner: Objective | None, n_classes: int, kind: str, group_sizes: np.ndarray, dro_step: float
    ) -> None:
        if kind not in ("reweight", "group-dro"):
            raise CropError(f"unknown group objective {kind!r}; choose reweight or group-dro")
        sizes = torch.as_tensor(group_sizes, dtype=torch.float32)
        if (sizes <= 0).any():
            raise CropError("every group needs at least one training window")
        self.inner = inner
        self.n_classes = n_classes
        self.kind = kind
        self.weights = sizes.sum() / (len(sizes) * sizes)  # N / (G n_g)
        self.q = torch.full((len(sizes),), 1.0 / len(sizes))
        self.dro_step = dro_step
        self.trace: list[list[float]] = []  # q after each step (group DRO)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g, label = y // self.n_classes, y % self.n_classes
        losses = per_window_losses(self.inner, model, x, label)
        if self.kind == "reweight":
            w = self.weights[g]
            return (w * losses).sum() / w.sum()
        present = torch.unique(g)
        group_loss = torch.stack([losses[g == k].mean() for k in present])
        with torch.no_grad():
            self.q[present] *= torch.exp(self.dro_step * group_loss.detach())
            self.q /= self.q.sum()
        self.trace.append([round(float(v), 6) for v in self.q])
        q = self.q[present]
        return (q * group_loss).sum() / q.sum()


def encode_groups(data: SensingData, groups: np.ndarray, n_classes: int) -> tuple[SensingData, np.ndarray]:
    """``data`` with labels ``group_index * n_classes + class``, and the size of each group."""
    values, index = np.unique(groups, return_inverse=True)
    sizes = np.bincount(index, minlength=len(values))
    encoded = SensingData(data.X, index.astype(np.int64) * n_classes + data.y, f"{data.name} [grouped]", data.group)
    return encoded, sizes


def mitigation_objective(
    config: MitigationConfig, objective: Objective | None, train: SensingData, n_classes: int
) -> tuple[Objective | None, SensingData, GroupObjective | None]:
    """The objective and training data a phase uses under ``config``: unchanged for ``"erm"``;
    otherwise a :class:`GroupObjective` over ``objective`` and the group-encoded ``train``."""
    if config.objective == "erm":
        return objective, train, None
    check_per_window(objective)
    encoded, sizes = encode_groups(train, window_groups(train, config.groups), n_classes)
    group_objective = GroupObjective(objective, n_classes, config.objective, sizes, config.dro_step)
    return group_objective, encoded, group_objective


def group_accuracy(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> dict[Any, float]:
    """Accuracy per group, ``fairlearn.metrics.MetricFrame`` (``{group: accuracy}``)."""
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    frame = MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    return {k: float(v) for k, v in frame.by_group.items()}


def do_no_harm(
    generic: nn.Module,
    model: nn.Module,
    val: SensingData,
    recalibration_windows: np.ndarray,
    config: MitigationConfig,
) -> tuple[nn.Module, dict[str, Any]]:
    """The guard: move ``model`` (in place) towards ``generic`` until no group present in
    ``val`` loses more than ``config.guard_tolerance`` accuracy against ``generic``.

    Returns the model and what was seen: ``guard_mix`` (the interpolation coefficient kept:
    1 = unchanged, 0 = the generic model), ``guard_harmed`` (groups harmed by the unguarded
    model), the per-group accuracies of the generic and the kept model."""
    from crop.personalization.norm import has_batchnorm, recalibrate_batchnorm
    from crop.personalization.peers.wise_ft import interpolate_states

    if config.guard_steps < 1:
        raise CropError(f"guard_steps must be >= 1, got {config.guard_steps}")
    groups = window_groups(val, config.groups)
    reference = group_accuracy(val.y, predict(generic, val.X), groups)

    def harmed() -> tuple[list[Any], dict[Any, float]]:
        acc = group_accuracy(val.y, predict(model, val.X), groups)
        return [g for g, a in acc.items() if a < reference[g] - config.guard_tolerance - 1e-12], acc

    personalized = state_copy(model)
    generic_state = state_copy(generic)
    first, acc = harmed()
    mix = 1.0
    if first:
        for step in range(1, config.guard_steps + 1):
            mix = round(1.0 - step / config.guard_steps, 10)
            with torch.no_grad():
                model.load_state_dict(interpolate_states(generic_state, personalized, mix))
            if 0.0 < mix < 1.0 and has_batchnorm(model):
                recalibrate_batchnorm(model, recalibration_windows)
            model.eval()
            still, acc = harmed()
            if not still:
                break
    info = {
        "guard_mix": mix,
        "guard_harmed": [_plain(g) for g in first],
        "guard_reference": {str(_plain(g)): v for g, v in reference.items()},
        "guard_accuracy": {str(_plain(g)): v for g, v in acc.items()},
    }
    return model.eval(), info


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


__all__ = [
    "GroupObjective",
    "MitigationConfig",
    "check_per_window",
    "do_no_harm",
    "encode_groups",
    "group_accuracy",
    "is_active",
    "mitigation_objective",
    "window_groups",
]

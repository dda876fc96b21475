"""Invariance-preserving personalization: keep the invariances the generic model already has.

A generic model trained on many people (and, for ``hapt-rot``, on every phone orientation)
answers the same for a window and for transformed versions of it: it is *invariant* to some
changes of the signal. Finetuning on one person's few windows, recorded in one context, has no
reason to keep that: it learns whatever separates that person's classes in that context, and
orientation or amplitude may be part of it. In a context nobody recorded (the phone worn
another way, another session) the personalized model then fails where the generic one did not.

This module measures which invariances the generic model has, on the person's own available
windows, and keeps them during personalization:

1. **Probe** (:func:`probe_invariances`): for each transformation family (below), the share of
   the person's available training windows whose generic prediction does not change under a
   random draw of the transformation (averaged over ``draws``). No label is used.
2. **Keep** the families with agreement ``>= threshold`` (default 0.5: the generic model keeps
   the prediction of most windows). A family the generic model is not invariant to (e.g.
   orientation for a model trained in one orientation) is never imposed.
3. **Train** (:class:`InvarianceObjective`) on ``CE(M(x), y) + weight * mean_T CE(M(T x), y)``:
   the person's labelled windows, plus one transformed copy per kept family with the same
   label. Validation, checkpoint selection and ToleratedPrune stay on the clean windows.

Families (for ``(batch, channels, time)`` windows; see :mod:`crop.data.augment`):

* ``orientation``: every 3-axis sensor turned by one rotation drawn uniformly from SO(3)
  (needs channels in triads): the sensor worn in any orientation.
* ``perturbation``: a rotation by up to 15 degrees, a circular time shift of up to 10 % of the
  window, 10 % amplitude scaling and jitter of 5 % of each channel's spread: small changes of
  placement, timing and gain. For other input shapes: scaling and jitter only.

Which families exist, the threshold and the weight are options; the probe is a pure function
of (generic model, the person's available windows, seed), so personalization stays a pure
function of its inputs. The idea follows the research programme's Aim 1(a) (adaptation that
keeps the generic model's attributes); the transformations are the usual ones of inertial-
sensor augmentation (e.g. Um et al., ICMI 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crop.data.augment import augment_windows, has_triads, rotate_triads, uniform_rotations
from crop.errors import CropError
from crop.models.utils import predict_logits

FAMILIES = ("orientation", "perturbation")


def transform(family: str, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random draw of ``family`` applied to windows ``x``."""
    if family == "orientation":
        if not has_triads(x):
            raise CropError("the orientation family needs (batch, channels, time) windows with channels in triads")
        return rotate_triads(x, uniform_rotations(len(x), gen))
    if family == "perturbation":
        return augment_windows(x, gen)
    raise CropError(f"unknown invariance family {family!r}; choose from {', '.join(FAMILIES)}")


def applicable(family: str, x: torch.Tensor) -> bool:
    return family != "orientation" or has_triads(x)


@dataclass
class InvarianceConfig:
    """Invariance preservation in a finetuning phase (off when ``weight`` is 0).

    Attributes:
        weight: weight of the transformed-window term (0 disables it: plain cross-entropy).
        families: transformation families to probe (see the module docstring).
        threshold: keep a family when the generic model's agreement under it is at least this.
        draws: random draws per family in the probe.
    """

    weight: float = 0.0
    families: tuple[str, ...] = field(default_factory=lambda: FAMILIES)
    threshold: float = 0.5
    draws: int = 4


def probe_invariances(
    generic: nn.Module,
    X: np.ndarray | torch.Tensor,
    families: Sequence[str] = FAMILIES,
    *,
    draws: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Agreement of ``generic``'s predictions on ``X`` and on transformed ``X``, per family.

    Returns ``{family: share of windows whose predicted class is unchanged}`` (mean over
    ``draws``); families that do not apply to the input shape are left out.
    """
    X = torch.as_tensor(X, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed + 4241)
    base = predict_logits(generic, X).argmax(1)
    out = {}
    for family in families:
        if family not in FAMILIES:
            raise CropError(f"unknown invariance family {family!r}; choose from {', '.join(FAMILIES)}")
        if not applicable(family, X):
            continue
        agree = [
            float((predict_logits(generic, transform(family, X, gen)).argmax(1) == base).float().mean())
            for _ in range(draws)
        ]
        out[family] = float(np.mean(agree))
    return out


class InvarianceObjective:
    """``CE(M(x), y) + weight * mean over families of CE(M(T x), y)``, one draw per family and
    step, clean and transformed windows in one batch."""

    def __init__(self, families: Sequence[str], weight: float, seed: int) -> None:
        self.families = list(families)
        self.weight = weight
        self.gen = torch.Generator().manual_seed(seed + 5507)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.families or self.weight == 0:
            return F.cross_entropy(model(x), y)
        views = [x] + [transform(f, x, self.gen) for f in self.families]
        out = model(torch.cat(views))
        n = len(x)
        clean = F.cross_entropy(out[:n], y)
        moved = torch.stack([F.cross_entropy(out[(i + 1) * n : (i + 2) * n], y) for i in range(len(self.families))])
        return clean + self.weight * moved.mean()

    def per_window(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The objective's terms per window, shape ``(batch,)``: ``CE(M(x_i), y_i) + weight *
        mean_T CE(M(T x_i), y_i)`` (their mean is :meth:`__call__`'s value up to rounding), for
        group-weighted objectives (:mod:`crop.personalization.mitigation`)."""
        if not self.families or self.weight == 0:
            return F.cross_entropy(model(x), y, reduction="none")
        views = [x] + [transform(f, x, self.gen) for f in self.families]
        out = model(torch.cat(views))
        n = len(x)
        clean = F.cross_entropy(out[:n], y, reduction="none")
        moved = [
            F.cross_entropy(out[(i + 1) * n : (i + 2) * n], y, reduction="none") for i in range(len(self.families))
        ]
        return clean + self.weight * torch.stack(moved).mean(0)


def invariance_objective(
    generic: nn.Module, X: np.ndarray, config: InvarianceConfig, seed: int
) -> tuple[InvarianceObjective | None, dict]:
    """Probe ``generic`` on the person's windows ``X`` and build the objective (``None`` when
    ``config.weight`` is 0 or no family is kept). Returns it and what was measured."""
    if not config.weight >= 0:
        raise CropError(f"invariance weight must be >= 0, got {config.weight}")
    if config.weight == 0:
        return None, {}
    agreement = probe_invariances(generic, X, config.families, draws=config.draws, seed=seed)
    kept = [f for f, a in agreement.items() if a >= config.threshold]
    info = {"invariance_agreement": agreement, "invariance_kept": kept}
    return (InvarianceObjective(kept, config.weight, seed) if kept else None), info


def training_windows(X: np.ndarray, objective: InvarianceObjective | None, seed: int) -> np.ndarray:
    """The windows a phase trained on: ``X`` plus one transformed copy per kept family (used to
    re-estimate normalization statistics on the same distribution the phase trained on)."""
    if objective is None or not objective.families or objective.weight == 0:
        return X
    gen = torch.Generator().manual_seed(seed + 6029)
    x = torch.as_tensor(X, dtype=torch.float32)
    return torch.cat([x] + [transform(f, x, gen) for f in objective.families]).numpy()

"""Do no harm where nobody recorded: route each window between the personalized and the generic model.

A personalized model is trained on one person's enrollment windows, recorded in the contexts that
were there at enrollment. On those windows it is better than the generic model; on windows unlike
anything the person recorded (another placement, a failing sensor, a recording nobody labelled)
nothing in its training speaks for it, and the generic model, trained on many people and
contexts, is often the better guess. :class:`RoutedModel` serves both and decides per window how
much to trust each, from how far the window lies from the person's enrollment data:

1. **Feature spaces** (``spaces``): ``"generic"``, the generic model's embedding (the input of its
   last ``nn.Linear``); ``"personal"``, the personalized model's embedding; ``"input"``, the
   window's own per-channel moments (mean and log standard deviation over the time axis, for
   ``(batch, channels, ...)`` inputs; the features themselves for ``(batch, features)`` inputs).
   The first two see what the networks see; the third sees placement and sensor faults directly
   (a turned phone moves gravity between the accelerometer axes, a dead or noisy sensor changes
   a channel's spread), also where the networks were trained to be invariant to them.
2. **Score**: in each space, features are standardized with the enrollment training windows'
   mean and spread, and a window's score is its mean Euclidean distance to its ``k`` nearest
   enrollment training windows (the deep nearest-neighbour out-of-distribution score of Sun,
   Ming, Zhu and Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022).
3. **Calibration** (``calibrate="reference"``, the default): each space's score is divided by
   its ``quantile`` over the enrollment training windows, each scored against the *other*
   training windows that share no raw sample with it (:func:`crop.models.routed.sample_sharing`).
   Sensor windows are cut with overlap, so a window's neighbours in time are near-copies of it;
   scored against them, every window of a new recording would look unfamiliar. Leaving them out
   makes each training window stand in for a new recording of the enrolled context (a
   split-conformal style threshold: about ``1 - quantile`` of such windows score above 1; Vovk et
   al. 2005, Angelopoulos and Bates 2021). ``calibrate="validation"`` uses the validation windows
   instead, most of which overlap a training window. The window's score ``z`` is the largest
   over the spaces.
4. **Blend**: the personalized model's weight is ``w = floor + (1 - floor) exp(-sharpness *
   max(0, z - 1))``: 1 inside the enrollment data's range, falling towards ``floor`` outside it.
   The output is the mixture of the two models' class probabilities, ``w p_P + (1 - w) p_G``
   (output-space ensembling of a finetuned and a zero-shot model, as in WiSE-FT's output
   ensemble, Wortsman et al., CVPR 2022; per-input gating as in mixtures of experts, Jacobs et
   al. 1991, and dynamic selection of a classifier in its region of competence, Cruz, Sabourin
   and Cavalcanti, Information Fusion 2018), returned as log-probabilities so that ``argmax``,
   ``softmax`` and cross-entropy read it as logits.

Everything is fixed at personalization time from the person's available-context data alone
(training windows as the reference, validation windows for calibration): no label of any
unseen context, no other person's data. It is a pure function of (generic model, personalized
model, the person's data, config). The routed model is one ``nn.Module`` with the reference
features as buffers, so it is saved, loaded and exported to ONNX like any other model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from torch import nn

from crop.errors import CropError
from crop.models.routed import SPACES, RoutedModel


@dataclass
class RouteConfig:
    """Per-window routing between the personalized and the generic model (module docstring).

    Attributes:
        enabled: route (``True``) or return the personalized model alone (``False``).
        spaces: feature spaces whose nearest-neighbour distances decide (``generic``,
            ``personal``, ``input``); the score is the largest over them.
        neighbours: ``k`` of the k-nearest-neighbour distance.
        quantile: quantile of the calibration scores that sets a space's threshold (a window
            scoring above it counts as unlike the enrollment data).
        calibrate: which scores: ``"reference"`` (each enrollment training window against the
            other training windows that share no raw sample with it: a new recording of the
            enrolled context) or ``"validation"`` (the validation windows against the training
            windows; with overlapping sliding windows most of them share samples with a training
            window and look closer than a new recording would).
        sharpness: how fast the personalized model's weight falls beyond the calibrated range
            (``w = exp(-sharpness * (z - 1))``; large: a hard switch).
        floor: the personalized model's weight far from the enrollment data (0: the generic
            model alone there).
    """

    enabled: bool = True
    spaces: tuple[str, ...] = field(default_factory=lambda: SPACES)
    neighbours: int = 5
    quantile: float = 0.8
    calibrate: Literal["reference", "validation"] = "reference"
    sharpness: float = 8.0
    floor: float = 0.0


def check_route_config(config: RouteConfig, generic: nn.Module | None = None) -> None:
    """Refuse an unusable routing configuration before any training (one line); with
    ``generic``, also a model routing cannot read (no ``nn.Linear`` decision layer whose input is
    the embedding the ``generic``/``personal`` spaces need)."""
    if config.enabled and not config.spaces:
        raise CropError(
            "route.spaces is empty: name at least one of generic, personal, input (or route.enabled = false)"
        )
    unknown = [s for s in config.spaces if s not in SPACES]
    if unknown:
        raise CropError(f"unknown route space(s) {unknown}; choose from {', '.join(SPACES)}")
    if len(set(config.spaces)) != len(config.spaces):
        raise CropError(f"route.spaces lists a space twice: {list(config.spaces)}")
    if config.enabled and generic is not None and {"generic", "personal"} & set(config.spaces):
        from crop.models.routed import last_linear

        last_linear(generic)


def route(
    generic: nn.Module, personal: nn.Module, train_X: np.ndarray, val_X: np.ndarray, config: RouteConfig
) -> tuple[nn.Module, dict[str, Any]]:
    """``personal`` routed with the generic model (``config.enabled``), or ``personal`` itself;
    and what a report needs to know (``route``: the thresholds and the personalized model's mean
    weight on the training and validation windows)."""
    if not config.enabled:
        return personal, {}
    from crop.models.utils import clone_model

    check_route_config(config)
    routed = RoutedModel.build(clone_model(generic), personal, train_X, val_X, config)
    info = {
        "route": {
            "spaces": list(config.spaces),
            "thresholds": {s: round(float(getattr(routed, f"threshold_{s}")), 6) for s in config.spaces},
            "weight_train": round(float(routed.personal_weight(train_X).mean()), 6),
            "weight_val": round(float(routed.personal_weight(val_X).mean()), 6),
        }
    }
    return routed, info


__all__ = ["SPACES", "RouteConfig", "RoutedModel", "check_route_config", "route"]

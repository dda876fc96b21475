"""Group-wise and person-wise fairness measures; the group machinery is
``fairlearn.metrics.MetricFrame`` (and fairlearn's own disparity functions), not re-implemented.

Definitions (every function takes the sensitive attribute as a keyword argument):

* **per-group metrics** (:func:`group_metrics`): accuracy, balanced accuracy and macro F1 of the
  windows of each group (``MetricFrame.by_group``), the worst group (``group_min``), the largest
  gap ``max - min`` (``difference(method="between_groups")``) and the ratio ``min / max``
  (``ratio(method="between_groups")``). ``sample_weight`` passes through to the scikit-learn
  metrics (crop's reports weigh every person, and within a person every class, equally).
* **binary disparities** (:func:`binary_disparities`): fairlearn's
  ``demographic_parity_difference`` (largest gap in the rate of positive predictions) and
  ``equalized_odds_difference`` (the larger of the gaps in true- and false-positive rate), for
  binary tasks only.
* **across people** (:func:`person_spread`, :func:`harmed_share`): the spread of one value per
  person (accuracy, or the personalization gain): mean, standard deviation (``ddof=1``), the
  worst person and the lowest decile (the 10th percentile, ``numpy.quantile``, linear
  interpolation); the share of people (or groups) whose gain is below zero.

Edge cases, each with a documented outcome:

* **one group**: a gap or ratio needs two groups; :func:`group_metrics` raises
  :class:`~crop.errors.CropError` ("only one group").
* **an empty group** (named in ``groups`` but without windows): reported as NaN in ``by_group``,
  listed in ``empty_groups``, left out of the worst group, the gap and the ratio.
* **a group with one class** (e.g. groups by activity): its balanced accuracy is the recall of
  that class (scikit-learn's definition); its macro F1 is undefined and reported as NaN, and left
  out of that metric's worst group, gap and ratio. A metric with fewer than two defined groups
  has NaN gap and ratio.
* **a ratio with a zero best group** is NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crop.errors import CropError

METRIC_NAMES = ("accuracy", "balanced_accuracy", "f1")


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred, sample_weight=sample_weight))


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():  # one-class groups: "y_pred contains classes not in y_true"
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred, sample_weight=sample_weight))


def _f1(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    from sklearn.metrics import f1_score

    if len(np.unique(y_true)) < 2:
        return math.nan  # macro F1 of a one-class group is undefined (documented)
    return float(f1_score(y_true, y_pred, average="macro", sample_weight=sample_weight, zero_division=0))


METRIC_FUNCTIONS = {"accuracy": _accuracy, "balanced_accuracy": _balanced_accuracy, "f1": _f1}


@dataclass(frozen=True)
class GroupMetrics:
    """What :func:`group_metrics` measured.

    Attributes:
        by_group: ``{metric: {group: value}}`` (fractions in [0, 1]; NaN where undefined).
        overall: ``{metric: value}`` over all windows.
        worst: ``{metric: (group, value)}``, the group with the lowest value.
        gap: ``{metric: max - min over groups}`` (NaN with fewer than two defined groups).
        ratio: ``{metric: min / max over groups}`` (NaN likewise, or when the max is 0).
        sizes: windows per group.
        empty_groups: groups named in ``groups`` without any window.
        single_class_groups: groups whose windows all have one true class.
        frame: the ``fairlearn.metrics.MetricFrame`` behind these numbers (for fairlearn's own
            tools: ``frame.by_group``, ``frame.difference(method="to_overall")``, plots), over
            the groups that have windows.
    """

    by_group: dict[str, dict[Any, float]]
    overall: dict[str, float]
    worst: dict[str, tuple[Any, float]]
    gap: dict[str, float]
    ratio: dict[str, float]
    sizes: dict[Any, int]
    empty_groups: list[Any] = field(default_factory=list)
    single_class_groups: list[Any] = field(default_factory=list)
    frame: Any = field(default=None, repr=False, compare=False)


def _check_arrays(y_true: Any, y_pred: Any, sensitive_features: Any, sample_weight: Any) -> tuple:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    groups = np.asarray(sensitive_features)
    if y_true.ndim != 1 or y_pred.shape != y_true.shape or groups.shape != y_true.shape:
        raise CropError(
            f"y_true, y_pred and sensitive_features must be 1-D of the same length, got shapes "
            f"{y_true.shape}, {y_pred.shape}, {groups.shape}"
        )
    if len(y_true) == 0:
        raise CropError("no windows to measure fairness on")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=float)
        if sample_weight.shape != y_true.shape or not np.isfinite(sample_weight).all() or (sample_weight < 0).any():
            raise CropError("sample_weight must be finite, non-negative and one per window")
    return y_true, y_pred, groups, sample_weight


def group_metrics(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    sensitive_features: Sequence | np.ndarray,
    sample_weight: Sequence | np.ndarray | None = None,
    metrics: Sequence[str] = METRIC_NAMES,
    groups: Sequence[Any] | None = None,
) -> GroupMetrics:
    """Per-group ``metrics`` of predictions, with the worst group, the gap and the ratio.

    ``sensitive_features``: the group of each window (any hashable values). ``groups``: every
    group that should be reported (default: those present); one without windows is an empty
    group (module docstring). Raises :class:`CropError` with fewer than two groups that have
    windows.

    >>> r = group_metrics([0, 1, 1, 0], [0, 1, 0, 0], sensitive_features=["a", "a", "b", "b"])
    >>> r.by_group["accuracy"], r.gap["accuracy"]
    ({'a': 1.0, 'b': 0.5}, 0.5)
    """
    from fairlearn.metrics import MetricFrame

    y_true, y_pred, feature, weight = _check_arrays(y_true, y_pred, sensitive_features, sample_weight)
    unknown = [m for m in metrics if m not in METRIC_FUNCTIONS]
    if unknown or not metrics:
        raise CropError(f"unknown fairness metric(s) {unknown}; choose from {', '.join(METRIC_FUNCTIONS)}")
    present = list(dict.fromkeys(feature.tolist()))
    if len(present) < 2:
        raise CropError(
            f"only one group ({present[0]!r}): a gap or ratio between groups needs at least two groups with windows"
        )
    named = list(groups) if groups is not None else sorted(present, key=str)
    missing = [g for g in present if g not in named]
    if missing:
        raise CropError(f"windows of group(s) {missing} that are not among the groups {named}")
    empty = [g for g in named if g not in present]
    funcs = {m: METRIC_FUNCTIONS[m] for m in metrics}
    params = {m: {"sample_weight": weight} for m in metrics} if weight is not None else None
    frame = MetricFrame(metrics=funcs, y_true=y_true, y_pred=y_pred, sensitive_features=feature, sample_params=params)
    table = frame.by_group
    by_group: dict[str, dict[Any, float]] = {m: {} for m in metrics}
    for g in named:
        for m in metrics:
            by_group[m][g] = float(table.loc[g, m]) if g in table.index else math.nan
    worst: dict[str, tuple[Any, float]] = {}
    gap: dict[str, float] = {}
    ratio: dict[str, float] = {}
    differences, ratios, minima = frame.difference(), frame.ratio(), frame.group_min()
    for m in metrics:
        defined = {g: v for g, v in by_group[m].items() if not math.isnan(v)}
        if defined:
            low = min(defined, key=lambda g: (defined[g], str(g)))
            worst[m] = (low, float(minima[m]))
        else:
            worst[m] = (None, math.nan)
        enough = len(defined) >= 2
        gap[m] = float(differences[m]) if enough else math.nan
        ratio[m] = float(ratios[m]) if enough and max(defined.values()) > 0 else math.nan
    overall = {m: float(frame.overall[m]) for m in metrics}
    sizes = {g: int((feature == g).sum()) for g in named}
    single = [g for g in present if len(np.unique(y_true[feature == g])) == 1]
    return GroupMetrics(by_group, overall, worst, gap, ratio, sizes, empty, single, frame)


def binary_disparities(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    sensitive_features: Sequence | np.ndarray,
    sample_weight: Sequence | np.ndarray | None = None,
) -> dict[str, float]:
    """fairlearn's ``demographic_parity_difference`` and ``equalized_odds_difference`` of a
    binary task (labels 0/1). Raises :class:`CropError` for other tasks or a single group."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    y_true, y_pred, feature, weight = _check_arrays(y_true, y_pred, sensitive_features, sample_weight)
    labels = set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist())
    if not labels <= {0, 1}:
        raise CropError(
            f"demographic parity and equalized odds need a binary task (labels 0 and 1), got labels {sorted(labels)}"
        )
    if len(np.unique(feature)) < 2:
        raise CropError("only one group: a disparity between groups needs at least two groups with windows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dp = demographic_parity_difference(y_true, y_pred, sensitive_features=feature, sample_weight=weight)
        eo = equalized_odds_difference(y_true, y_pred, sensitive_features=feature, sample_weight=weight)
    return {"demographic_parity_difference": float(dp), "equalized_odds_difference": float(eo)}


@dataclass(frozen=True)
class Spread:
    """One value per person, summarized (:func:`person_spread`)."""

    n: int
    mean: float
    std: float
    worst: float
    worst_person: Any
    p10: float


def person_spread(values: Mapping[Any, float]) -> Spread:
    """Mean, standard deviation (``ddof=1``; 0 for one person), worst person and lowest decile
    (10th percentile) of ``{person: value}``. Raises :class:`CropError` when empty or not finite."""
    if not values:
        raise CropError("no people to summarize")
    people = sorted(values, key=lambda p: (values[p], str(p)))
    v = np.asarray([values[p] for p in people], dtype=float)
    if not np.isfinite(v).all():
        raise CropError("a per-person value is NaN or infinite")
    std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return Spread(len(v), float(v.mean()), std, float(v[0]), people[0], float(np.quantile(v, 0.1)))


def harmed_share(gains: Mapping[Any, float] | Sequence[float] | np.ndarray) -> float:
    """Share of people (or groups) whose gain is below zero."""
    v = np.asarray(list(gains.values()) if isinstance(gains, Mapping) else gains, dtype=float)
    if v.size == 0:
        raise CropError("no gains to summarize")
    return float((v < 0).mean())


__all__ = [
    "METRIC_NAMES",
    "GroupMetrics",
    "Spread",
    "binary_disparities",
    "group_metrics",
    "harmed_share",
    "person_spread",
]

"""Accuracy measures and the paper's personalization gains (Section 6.2, Appendix A.2).

Pure functions over label arrays; :func:`crop.evaluate` applies them to a model. Accuracy,
balanced accuracy and F1 are a few lines of NumPy each (checked against scikit-learn in the
tests; importing scikit-learn would add about a second to every command's start-up). ``Delta_P`` and ``Delta_G`` follow Section 6.2 exactly:

``Delta_P = 1/n * sum_users sum_{C in {Ca, Cu}} (A(M_P, C) - A(M_G, C))``
``Delta_G = 1/n * sum_users sum_{C in {Ca, Cu}} (A(M_P, C) - A(M_conv, C))``

Values are in percentage points when the accuracies are given in percent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from crop.errors import CropError

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions (WIDAR in the paper)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise CropError(f"accuracy needs as many predictions as labels, got {y_pred.shape} and {y_true.shape}")
    if y_true.size == 0:
        return float("nan")
    return float(np.mean(y_true == y_pred))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (ExtraSensory, PERCEPT-R, HAPT)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        return float("nan")
    size = int(max(y_true.max(), y_pred.max())) + 1
    support = np.bincount(y_true, minlength=size)
    hits = np.bincount(y_true[y_true == y_pred], minlength=size)
    present = support > 0
    return float((hits[present] / support[present]).mean())


def class_recall(y_true: np.ndarray, y_pred: np.ndarray) -> list[float | None]:
    """Recall of every class ``0 .. max(y_true)`` (``None`` for a class absent from ``y_true``):
    the per-class terms whose mean is :func:`balanced_accuracy`. Shows a class the model stopped
    recognising, which a mean over classes can hide."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        return []
    size = int(y_true.max()) + 1
    support = np.bincount(y_true, minlength=size)
    hits = np.bincount(y_true[y_true == y_pred], minlength=size)[:size]
    return [round(float(h / n), 10) if n else None for h, n in zip(hits, support, strict=True)]


def f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 of the positive class for binary labels, macro F1 otherwise (Stress sensing).

    ``2 TP / (2 TP + FP + FN)`` per class from NumPy counts, 0 where a class has no true or
    predicted sample (scikit-learn's ``f1_score(..., zero_division=0)``, which the tests check it
    against). Written here because :func:`crop.evaluate` computes every measure on every call
    and importing scikit-learn costs every command about a second and 100 MB.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise CropError(f"f1 needs as many predictions as labels, got {y_pred.shape} and {y_true.shape}")
    if y_true.size == 0:
        return float("nan")
    labels = np.union1d(y_true, y_pred)
    offset = int(labels.min())
    size = int(labels.max()) - offset + 1
    t, p = y_true - offset, y_pred - offset
    tp = np.bincount(t[t == p], minlength=size).astype(np.float64)
    denominator = np.bincount(t, minlength=size) + np.bincount(p, minlength=size)  # 2 TP + FP + FN
    scores = np.divide(2 * tp, denominator, out=np.zeros(size), where=denominator > 0)
    if set(labels.tolist()) <= {0, 1}:
        return float(scores[1 - offset]) if 1 - offset < size else 0.0
    return float(scores[labels - offset].mean())


METRICS: dict[str, MetricFn] = {
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
    "f1": f1,
}


def get_metric(name: str) -> MetricFn:
    try:
        return METRICS[name]
    except KeyError:
        raise CropError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}") from None


def delta(
    personalized: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    contexts: Sequence[str] = ("available", "unseen"),
) -> float:
    """Section 6.2's gain of ``personalized`` over ``reference``.

    Args:
        personalized: ``{user: {context: A(M_P, C)}}``.
        reference: ``{user: {context: A(M_ref, C)}}`` (generic model for Delta_P, conventional
            finetuning for Delta_G), with the same users and contexts.

    Returns ``1/n * sum_users sum_contexts (A_P - A_ref)``.
    """
    users = sorted(personalized)
    if not users:
        raise CropError("no users to compute a gain over")
    missing = [u for u in users if u not in reference]
    if missing:
        raise CropError(f"reference results missing for user(s) {missing}")
    total = 0.0
    for user in users:
        for ctx in contexts:
            total += personalized[user][ctx] - reference[user][ctx]
    return total / len(users)

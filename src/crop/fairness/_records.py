"""Confusion-matrix records: what ``crop bench --fairness`` adds to ``results.jsonl``.

Per-window attributes (the activity of a window, its context) need the predictions, not only
the per-person scores. The confusion matrix of a model on a context is all that any metric of
(true label, prediction) pairs can depend on, so with ``--fairness`` every (unit, context) gets
one more record::

    {..., "context": "unseen", "context_name": "session 2", "metric": "confusion",
     "value": <number of windows>, "confusion": [[...], ...]}

``confusion[i][j]`` counts windows of true class ``i`` predicted as ``j``
(``sklearn.metrics.confusion_matrix`` over all the model's classes). Without ``--fairness`` no
such record is written, so ``results.jsonl`` is byte-identical to what earlier versions wrote.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crop.errors import CropError

CONFUSION = "confusion"


def confusion_records(base: dict[str, Any], model: Any, us: Any) -> list[dict[str, Any]]:
    """One ``confusion`` record per context of ``us`` (a :class:`~crop.data.scenarios.UserScenario`):
    the available test split and every unseen context. A bench unit hook."""
    from sklearn.metrics import confusion_matrix

    from crop.models.utils import predict_logits

    available = getattr(us, "available_name", None) or f"session {us.scenario.available_session}"
    contexts = [("available", available, us.available.test)]
    contexts += [("unseen", name, data) for name, data in us.unseen.items()]
    records = []
    for context, name, data in contexts:
        logits = predict_logits(model, data.X)
        labels = list(range(int(logits.shape[1])))
        matrix = confusion_matrix(data.y, logits.argmax(1).numpy(), labels=labels)
        records.append(
            {
                **base,
                "context": context,
                "context_name": name,
                "metric": CONFUSION,
                "value": int(matrix.sum()),
                "confusion": matrix.tolist(),
            }
        )
    return records


def confusion_of(record: dict[str, Any]) -> np.ndarray:
    """The confusion matrix of a ``confusion`` record, checked (square, non-negative integers,
    summing to ``value``)."""
    raw = record.get("confusion")
    try:
        matrix = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        matrix = np.zeros((0, 1))
    if (
        matrix.ndim != 2
        or matrix.shape[0] != matrix.shape[1]
        or matrix.shape[0] < 2
        or not np.isfinite(matrix).all()
        or (matrix < 0).any()
        or (matrix != np.round(matrix)).any()
        or int(matrix.sum()) != record.get("value")
    ):
        where = f"user {record.get('user')} seed {record.get('seed')} {record.get('method')} {record.get('context')}"
        raise CropError(f"a confusion record is damaged ({where}): expected a square matrix of window counts")
    return matrix.astype(np.int64)

"""The schema of a ``results.jsonl`` record: what every reader of a results directory may rely on.

:class:`~crop.bench.store.ResultStore` is the only reader of ``results.jsonl`` (``crop report``,
``crop fairness``, ``crop card --bench``, ``crop analyze``, a resumed ``crop bench``), and it
keeps only what passes the three checks of this module; anything else is skipped with one
warning that names its lines. They describe exactly what the writers
(:func:`crop.bench.runner.evaluate_unit`, :func:`crop.certify.robustness.robustness_hook`,
:func:`crop.fairness._records.confusion_records` and the failure record of
:func:`crop.bench.runner._run_group`) produce.

**A record** (:func:`record_problem`) is a JSON object with

=================  =============================================================================
``dataset``        a name (non-empty string, at most :data:`MAX_NAME` characters)
``scenario``       a name
``method``         a name
``user``           an integer >= 0 or a name (ExtraSensory UUIDs, your own files)
``seed``           an integer in [0, 2^32 - 1]
``status``         ``"ok"`` (the default) or ``"failed"``
``unit_complete``  optional, ``true``: the last record of a unit
``prune_amount``   optional, a number in [0, 1]
``tuned``          optional, an object (the settings a tuned run chose)
=================  =============================================================================

and, when ``status`` is ``"ok"``: ``context`` (``"available"`` or ``"unseen"``),
``context_name`` (a name; a fault context such as ``session 2 noise=0.5`` has a finite
severity >= 0), ``metric`` and a finite ``value``:

* ``accuracy``, ``balanced_accuracy``, ``f1``: ``value`` in [0, 1], and optionally ``recall``
  (per-class recall: a list of at most :data:`MAX_CLASSES` numbers in [0, 1] or ``null``);
* a robustness measure ``KIND@NORM:RADIUS`` (``verified@linf:0.01``; KIND one of
  :data:`ROBUSTNESS_KINDS`): ``value`` in [0, 1], ``norm`` (``linf`` or ``l2``; ``l2`` for
  ``smoothed``) and ``radius`` (in [0, 100]) matching the name, ``sigma`` (in (0, 10]) for
  ``smoothed`` only;
* ``confusion``: ``confusion`` a square matrix (2 to :data:`MAX_CLASSES` classes) of counts
  >= 0 whose sum is ``value``.

When ``status`` is ``"failed"``: ``error`` (a string) and ``context``, ``metric``, ``value``
``null``. Other fields are allowed and ignored. Names are data: any text (the readers that make
file names or show them apply :mod:`crop.safe_names` and :mod:`crop.report.escape`), and a
scenario or user a dataset does not know is reported as it is (``crop fairness`` computes no
HAPT traits for it and says so).

**A unit** (the block of records of one dataset, scenario, user, seed and method, ending with
``unit_complete``; :func:`unit_problem`) is one failed record alone, or ok records with exactly
one available context, at least one unseen context, the same metrics in every context and no
(context, metric) twice. A unit with a damaged
line inside its block is skipped whole (:class:`~crop.bench.store.ResultStore`): readers see
complete units only, and a resumed bench computes it again.

**A file** (:func:`odd_units`): one dataset, and users that are all integers or all names;
units of another dataset or kind of user id (the fewer) are skipped.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

UNIT_FIELDS = ("dataset", "scenario", "user", "seed", "method")
PLAIN_METRICS = ("accuracy", "balanced_accuracy", "f1")  # crop.metrics.METRICS (a test holds them equal)
CONFUSION = "confusion"
ROBUSTNESS_KINDS = ("verified_ibp", "verified_crown", "verified_alpha", "verified", "lipschitz", "pgd", "smoothed")
NORMS = ("linf", "l2")
MAX_NAME = 1000  # characters of a dataset, scenario, method, context or user name
MAX_SEED = 2**32 - 1
MAX_USER = 2**63 - 1
MAX_RADIUS = 100.0
MAX_SIGMA = 10.0
MAX_CLASSES = 1000


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite JSON number (an integer too large for a float is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME


def _in(value: Any, low: float, high: float) -> bool:
    return _is_number(value) and low <= value <= high


@lru_cache(maxsize=4096)
def _fault_severity_ok(context_name: str) -> bool:
    """A context named after a sensor fault (``... noise=0.5``) has a finite severity >= 0."""
    if "=" not in context_name:
        return True
    from crop.data.faults import parse_context

    parsed = parse_context(context_name)
    return parsed is None or (math.isfinite(parsed[1]) and parsed[1] >= 0)


def _fmt(x: float) -> str:
    return f"{x:g}"  # as crop.certify.robustness names a radius


def _confusion_problem(record: dict[str, Any]) -> str | None:
    matrix = record.get("confusion")
    if not isinstance(matrix, list) or not 2 <= len(matrix) <= MAX_CLASSES:
        return f"field 'confusion' is not a square matrix of 2-{MAX_CLASSES} classes"
    total = 0
    for row in matrix:
        if not isinstance(row, list) or len(row) != len(matrix):
            return "field 'confusion' is not a square matrix"
        for cell in row:
            if not _is_int(cell) or not 0 <= cell <= MAX_USER:
                return "field 'confusion' holds a value that is not a count"
            total += cell
    if not _is_int(record.get("value")) or record["value"] != total:
        return "field 'value' of a confusion record is not the sum of its matrix"
    return None


def _robustness_problem(record: dict[str, Any], kind: str, tag: str) -> str | None:
    norm, radius = record.get("norm"), record.get("radius")
    if kind not in ROBUSTNESS_KINDS:
        return f"unknown metric {str(record['metric'])[:40]!r}"
    if norm not in NORMS or (kind == "smoothed") != (norm == "l2" and "sigma" in record):
        return "field 'norm' (or 'sigma') does not fit the robustness measure"
    if not _in(radius, 0, MAX_RADIUS):
        return f"field 'radius' is not a number in [0, {MAX_RADIUS:g}]"
    if tag != f"{norm}:{_fmt(radius)}":
        return "fields 'norm' and 'radius' do not match the metric's name"
    if "sigma" in record and not (_in(record["sigma"], 0, MAX_SIGMA) and record["sigma"] > 0):
        return f"field 'sigma' is not a number in (0, {MAX_SIGMA:g}]"
    if not _in(record.get("value"), 0, 1):
        return "field 'value' is not a number in [0, 1]"
    return None


def _recall_problem(record: dict[str, Any]) -> str | None:
    """The optional per-class ``recall`` of a plain-metric record: a list of at most
    :data:`MAX_CLASSES` numbers in [0, 1] or ``null`` (a class absent from the windows)."""
    if "recall" not in record:
        return None
    recall = record["recall"]
    if not isinstance(recall, list) or len(recall) > MAX_CLASSES:
        return f"field 'recall' is not a list of at most {MAX_CLASSES} numbers"
    if any(v is not None and not _in(v, 0, 1) for v in recall):
        return "field 'recall' holds a value that is not a number in [0, 1] or null"
    return None


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a usable result record (``None`` when it is); the module docstring
    lists the rules."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for name in UNIT_FIELDS:
        if name not in record:
            return f"missing field {name!r}"
    for name in ("dataset", "scenario", "method"):
        if not _is_name(record[name]):
            return f"field {name!r} is not a name (a non-empty string of at most {MAX_NAME} characters)"
    if not _is_int(record["seed"]) or not 0 <= record["seed"] <= MAX_SEED:
        return "field 'seed' is not an integer in [0, 2^32 - 1]"
    user = record["user"]
    if not ((_is_int(user) and 0 <= user <= MAX_USER) or _is_name(user)):
        return "field 'user' is not an integer >= 0 or a name"
    if record.get("unit_complete", True) is not True:
        return "field 'unit_complete' is not true"
    if "prune_amount" in record and not _in(record["prune_amount"], 0, 1):
        return "field 'prune_amount' is not a number in [0, 1]"
    if "tuned" in record and not isinstance(record["tuned"], dict):
        return "field 'tuned' is not an object"
    status = record.get("status", "ok")
    if status == "failed":
        if not isinstance(record.get("error"), str):
            return "field 'error' of a failed record is not a string"
        if any(record.get(k) is not None for k in ("context", "metric", "value")):
            return "a failed record has a context, metric or value"
        return None
    if status != "ok":
        return f"unknown status {str(status)[:20]!r}"
    if record.get("context") not in ("available", "unseen"):
        return "field 'context' is not 'available' or 'unseen'"
    if not _is_name(record.get("context_name")):
        return "field 'context_name' is missing or not a name"
    if not _fault_severity_ok(record["context_name"]):
        return "field 'context_name' names a fault severity that is not a finite number >= 0"
    metric = record.get("metric")
    if not isinstance(metric, str):
        return "field 'metric' is missing or not a string"
    if metric in PLAIN_METRICS:
        if not _in(record.get("value"), 0, 1):
            return f"field 'value' is not a number in [0, 1] ({str(record.get('value'))[:20]!r})"
        return _recall_problem(record)
    if metric == CONFUSION:
        return _confusion_problem(record)
    kind, at, tag = metric.partition("@")
    if not at:
        return f"unknown metric {metric[:40]!r}"
    return _robustness_problem(record, kind, tag)


def unit_problem(block: Sequence[dict[str, Any]]) -> str | None:
    """Why the records of one unit (each passing :func:`record_problem`) are not a usable unit
    (``None`` when they are): one failed record alone, or ok records with one available
    context, at least one unseen context, the same metrics in each and no (context, metric) twice."""
    if any(r.get("status", "ok") == "failed" for r in block):
        return None if len(block) == 1 else "a failed unit with more than its failure record"
    metrics: dict[tuple[str, str], set[str]] = {}
    for r in block:
        seen = metrics.setdefault((r["context"], r["context_name"]), set())
        if r["metric"] in seen:
            return f"metric {r['metric']!r} twice for one context"
        seen.add(r["metric"])
    available = [c for c in metrics if c[0] == "available"]
    if len(available) != 1:
        return f"{len(available)} available contexts (one expected)"
    if len(metrics) < 2:
        return "no unseen context"
    if len({frozenset(m) for m in metrics.values()}) != 1:
        return "contexts with different metrics"
    return None


def odd_units(blocks: Sequence[Sequence[dict[str, Any]]]) -> dict[int, str]:
    """Indices of ``blocks`` (units) that do not fit the file, with why: the file holds one
    dataset and one kind of user id (integers or names); the units of another dataset or kind
    (the fewer records; ties keep the first dataset and integers) are the odd ones."""
    datasets: Counter[str] = Counter()
    kinds: Counter[bool] = Counter()
    for block in blocks:
        datasets[block[0]["dataset"]] += len(block)
    if not datasets:
        return {}
    dataset = max(datasets, key=lambda d: (datasets[d], -list(datasets).index(d)))
    for block in blocks:
        if block[0]["dataset"] == dataset:
            kinds[_is_int(block[0]["user"])] += len(block)
    numeric = kinds[True] >= kinds[False]
    odd = {}
    for i, block in enumerate(blocks):
        if block[0]["dataset"] != dataset:
            odd[i] = f"dataset {block[0]['dataset'][:40]!r} in a results file of {dataset[:40]!r}"
        elif _is_int(block[0]["user"]) != numeric:
            odd[i] = f"user {str(block[0]['user'])[:40]!r} is {'a name' if numeric else 'a number'} among " + (
                "integer user ids" if numeric else "named users"
            )
    return odd

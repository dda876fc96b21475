"""What a person can expect in the contexts they did not record, from population evidence.

A person who personalizes a model never sees its accuracy in the contexts nobody recorded: that
needs labelled data from those contexts, which a deployment does not have. What can be said
comes from other people: an all-user benchmark of the same dataset, scenario and method
(``crop bench --users all``) measured, for each of them, the unseen-context accuracy of the
personalized and of the generic model. This module turns those records into an expectation for
one person without touching that person's unseen data:

* **Evidence**: per person of the benchmark (seeds averaged), the generic model's accuracy on the
  available context's test split, the personalized model's there, and the unseen-context change
  against the generic model (pp). The person being served is left out of it when the
  benchmark holds them (their own unseen results would otherwise speak for them).
* **Someone like this person**: the ``neighbours`` people whose available-context accuracies
  (generic, and personalized) are closest to this person's, measured on the person's own
  available test split, the one thing both sides know (a nearest-neighbour prediction over the
  population; with no available-context scores for the person, the whole population).
* **Expectation**: the mean unseen-context change of those people with a 95 % bootstrap interval
  (:func:`crop.report.stats.bootstrap_interval`), and the probability of harm (a change below
  ``-HARM_MARGIN``) as their share harmed with a Wilson score interval (Wilson 1927; an interval
  that stays inside [0, 1] for small counts, unlike the normal approximation). The same figures
  over the whole population are given beside them.

These are statements about people like this one in one benchmark, not a measurement of this
person: the card and ``crop personalize`` say so where they print them.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crop.errors import CropError
from crop.report.stats import HARM_MARGIN, bootstrap_interval

NEIGHBOURS = 10
EVIDENCE_FIELDS = ("user", "generic_available", "available", "generic_unseen", "unseen")


@dataclass(frozen=True)
class Expectation:
    """The expected unseen-context change (pp) and probability of harm for one person.

    ``change``/``change_low``/``change_high``: mean change of the people like them and its 95 %
    bootstrap interval; ``harm``/``harm_low``/``harm_high``: their share harmed and its 95 %
    Wilson interval; ``people``: how many people that is; ``population_*``: the same over every
    person of the evidence; ``basis``: how "like this person" was decided."""

    scenario: str
    method: str
    change: float
    change_low: float
    change_high: float
    harm: float
    harm_low: float
    harm_high: float
    people: int
    population_change: float
    population_harm: float
    population: int
    basis: str
    source: str

    def sentence(self) -> str:
        return (
            f"expected unseen-context change {self.change:+.1f} pp [{self.change_low:+.1f}, {self.change_high:+.1f}], "
            f"probability of harm {100 * self.harm:.0f} % [{100 * self.harm_low:.0f}, {100 * self.harm_high:.0f}] "
            f"(from {self.people} of {self.population} people of the benchmark, {self.basis})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``successes / n`` (``(nan, nan)`` for n = 0)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def evidence_rows(records: list[dict[str, Any]], scenario: str, method: str, metric: str) -> list[dict[str, Any]]:
    """Per person of a benchmark: available and unseen accuracy (%) of ``method`` and of
    ``generic`` in ``scenario``, seeds averaged (several unseen contexts averaged first, as in
    the tables). Only people with all four values appear."""
    acc: dict[tuple[Any, str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("status", "ok") != "ok" or r.get("scenario") != scenario or r.get("metric") != metric:
            continue
        if r.get("method") not in (method, "generic") or r.get("context") not in ("available", "unseen"):
            continue
        value = r.get("value")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            continue
        acc[(r.get("user"), r["method"], r["context"])][r.get("seed")].append(100.0 * float(value))
    rows = []
    for user in sorted({k[0] for k in acc}, key=str):

        def mean(m: str, c: str, user: Any = user) -> float | None:
            seeds = acc.get((user, m, c))
            return float(np.mean([np.mean(v) for v in seeds.values()])) if seeds else None

        values = [
            mean("generic", "available"),
            mean(method, "available"),
            mean("generic", "unseen"),
            mean(method, "unseen"),
        ]
        if None not in values:
            rows.append(dict(zip(EVIDENCE_FIELDS, [user, *values], strict=True)))
    return rows


def expect(
    rows: list[dict[str, Any]],
    *,
    scenario: str,
    method: str,
    person: Any = None,
    generic_available: float | None = None,
    available: float | None = None,
    neighbours: int = NEIGHBOURS,
    source: str = "",
) -> Expectation:
    """The expectation for one person from ``rows`` (:func:`evidence_rows`). ``person`` (their
    user id, when the evidence may hold them) is left out; ``generic_available`` / ``available``
    are the person's available-context accuracies (%), which choose the people like them."""
    pool = [r for r in rows if person is None or str(r["user"]) != str(person)]
    if len(pool) < 2:
        raise CropError(
            f"not enough population evidence for {method} in {scenario}: {len(pool)} other people (need 2 or more)"
        )
    changes = np.asarray([r["unseen"] - r["generic_unseen"] for r in pool])
    if generic_available is not None and available is not None:
        point = np.asarray([generic_available, available - generic_available])
        coords = np.asarray([[r["generic_available"], r["available"] - r["generic_available"]] for r in pool])
        distance = np.sqrt(((coords - point) ** 2).sum(1))
        order = np.lexsort((np.arange(len(pool)), distance))[: max(2, min(neighbours, len(pool)))]
        basis = "the people whose available-context accuracies, generic and personalized, are closest to this person's"
    else:
        order = np.arange(len(pool))
        basis = "every person of the benchmark (no available-context scores of this person to compare)"
    near = changes[order]
    low, high = bootstrap_interval(near)
    harmed = int((near < -HARM_MARGIN).sum())
    h_low, h_high = wilson_interval(harmed, len(near))
    return Expectation(
        scenario,
        method,
        float(near.mean()),
        low,
        high,
        harmed / len(near),
        h_low,
        h_high,
        len(near),
        float(changes.mean()),
        float((changes < -HARM_MARGIN).mean()),
        len(pool),
        basis,
        source,
    )


# ------------------------------------------------------------------ evidence files

EVIDENCE_FORMAT = "crop-population-evidence-1"
MAX_EVIDENCE_BYTES = 16 * 2**20


def write_evidence(records: list[dict[str, Any]], path: str | Path, *, dataset: str, metric: str, source: str) -> Path:
    """Write the evidence of every (scenario, method) of a benchmark's ``records`` to a JSON file
    (atomically): what :func:`load_evidence` reads, without the rest of the benchmark."""
    from crop.report.files import write_text_atomic

    scenarios = sorted({r["scenario"] for r in records if isinstance(r.get("scenario"), str)})
    methods = sorted({r["method"] for r in records if isinstance(r.get("method"), str)} - {"generic"})
    evidence = {}
    for s in scenarios:
        for m in methods:
            rows = evidence_rows(records, s, m, metric)
            if rows:
                evidence[f"{s}|{m}"] = [
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows
                ]
    doc = {"format": EVIDENCE_FORMAT, "dataset": dataset, "metric": metric, "source": source, "evidence": evidence}
    return write_text_atomic(path, json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")


def load_evidence(path: str | Path) -> dict[str, Any]:
    """Read an evidence file written by :func:`write_evidence` (one-line error if unusable)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_EVIDENCE_BYTES:
            raise CropError(
                f"{path} is larger than {MAX_EVIDENCE_BYTES // 2**20} MiB: not a crop population evidence file"
            )
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CropError(f"cannot read population evidence {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != EVIDENCE_FORMAT or not isinstance(doc.get("evidence"), dict):
        raise CropError(f"{path} is not a crop population evidence file")
    for key, rows in doc["evidence"].items():
        ok = isinstance(rows, list) and all(
            isinstance(r, dict)
            and all(f in r for f in EVIDENCE_FIELDS)
            and all(isinstance(r[f], int | float) and not isinstance(r[f], bool) for f in EVIDENCE_FIELDS[1:])
            for r in rows
        )
        if not ok:
            raise CropError(f"{path}: evidence {key!r} is damaged")
    return doc


def shipped_evidence(dataset: str) -> Path:
    """The evidence file shipped with ``crop`` for ``dataset`` (may not exist)."""
    return Path(__file__).resolve().parents[1] / "evidence" / f"{dataset}.json"


def expectation_from_file(
    path: str | Path,
    *,
    scenario: str,
    method: str,
    metric: str,
    person: Any = None,
    generic_available: float | None = None,
    available: float | None = None,
) -> Expectation | None:
    """The expectation from an evidence file, or ``None`` when it holds nothing for (scenario,
    method, metric)."""
    doc = load_evidence(path)
    rows = doc["evidence"].get(f"{scenario}|{method}")
    if not rows or doc.get("metric") != metric:
        return None
    return expect(
        rows,
        scenario=scenario,
        method=method,
        person=person,
        generic_available=generic_available,
        available=available,
        source=str(doc.get("source") or path),
    )


def check_evidence(path: str | Path) -> None:
    """Refuse (one line) an ``--evidence`` that is neither an evidence file nor a bench
    directory, before any work."""
    path = Path(path)
    if path.is_dir():
        if not (path / "results.jsonl").is_file():
            raise CropError(f"--evidence {path}: no results.jsonl (a crop bench directory or an evidence file)")
        return
    if not path.is_file():
        raise CropError(f"--evidence {path}: not an evidence file or a crop bench directory")
    load_evidence(path)


def person_expectation(
    evidence: str | Path | None,
    *,
    dataset: str,
    scenario: str | None,
    method: str,
    metric: str,
    person: Any,
    generic_available: float | None,
    available: float | None,
) -> tuple[Expectation | None, str]:
    """The expectation for one person from ``evidence`` (an evidence file, or a bench directory
    with ``results.jsonl``; ``None``: the file shipped for ``dataset``), and a one-line note:
    the sentence, or why there is none."""
    if scenario is None:
        return None, "no expectation: own data has no scenario that a benchmark could speak for"
    if evidence is None:
        evidence = shipped_evidence(dataset)
        if not evidence.is_file():
            return None, f"no expectation: crop ships no population evidence for {dataset}; pass --evidence"
    evidence = Path(evidence)
    kwargs = dict(
        scenario=scenario, method=method, person=person, generic_available=generic_available, available=available
    )
    if evidence.is_dir():
        from crop.bench.store import ResultStore

        if not (evidence / "results.jsonl").is_file():
            raise CropError(f"--evidence {evidence}: no results.jsonl (a crop bench directory or an evidence file)")
        records = ResultStore(evidence / "results.jsonl").load()
        rows = evidence_rows(records, scenario, method, metric)
        found = (
            expect(rows, **kwargs, source=str(evidence))
            if len([r for r in rows if str(r["user"]) != str(person)]) >= 2
            else None
        )
    else:
        found = expectation_from_file(evidence, metric=metric, **kwargs)
    if found is None:
        return None, (
            f"no expectation: the evidence {evidence} holds no {metric} results of {method} and generic in {scenario}"
        )
    return found, found.sentence()


__all__ = [
    "Expectation",
    "evidence_rows",
    "expect",
    "expectation_from_file",
    "check_evidence",
    "load_evidence",
    "person_expectation",
    "shipped_evidence",
    "wilson_interval",
    "write_evidence",
]

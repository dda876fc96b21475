"""Fairness of a benchmark's personalized models: the tables and figures of ``crop fairness``.

Inputs: a ``crop bench`` directory (``results.jsonl``, ``bench.json``), optionally a per-person
attribute table. For every scenario and method (generic, finetune, crop, mitigated variants...):

* **people** (every bench): per-person balanced accuracy (seeds averaged per person) and
  per-person gain over the generic model in each context: mean, standard deviation, worst
  person, lowest decile, share of people harmed (gain < 0), with 95 % bootstrap intervals
  over people for the mean gain and the harmed share (:func:`crop.report.stats.bootstrap_interval`).
* **groups** (needs ``crop bench --fairness``, whose confusion records give the windows):
  for each attribute (per-person traits and table columns; per-window ``activity`` and
  ``context``), the group metrics of :func:`crop.fairness.group_metrics` on all windows of all
  people and seeds. Weights make every person count the same, as in every crop statistic:
  balanced accuracy weighs each window ``1 / n`` with ``n`` the windows of its class in its
  (person, seed, context) cell, so a group's value is the mean over its people of their balanced
  accuracy (for ``activity``: the mean over people of that class's recall); accuracy and F1
  weigh each window ``1 / n`` with ``n`` the windows of its (person, seed, context). The
  interval of a gap, and of its change against the generic model (paired: the same resampled
  people), is a BCa bootstrap over people (``scipy.stats.bootstrap``; stratified by group for
  per-person attributes), each person's value per group computed by ``MetricFrame`` over
  (group, person). BCa, not the percentile method: a gap is a max minus a min of noisy means,
  so resampling inflates it, and a percentile interval can then miss the estimate itself.
* **binary disparities** when the task has two classes (fairlearn's demographic parity and
  equalized odds differences per attribute).

All values are in percent (percentage points for gaps and gains).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crop.errors import CropError
from crop.fairness._attributes import PersonAttributes
from crop.fairness._metrics import _balanced_accuracy, binary_disparities, group_metrics, harmed_share, person_spread
from crop.fairness._records import CONFUSION, confusion_of
from crop.report.table import Table, column_order

METHOD_ORDER = (
    "generic",
    "finetune",
    "finetune-guard",
    "finetune-reweight",
    "finetune-dro",
    "crop",
    "crop-guard",
    "crop-reweight",
    "crop-dro",
)
CONTEXTS = ("available", "unseen")
RESAMPLES = 2000
LEVEL = 0.95


OUTSIDE_NOTE = (
    "*: the interval excludes the estimate: the groups are closer than the resampling noise (a resampled gap is a "
    "max minus a min of noisy means and comes out larger), so the gap cannot be told from zero."
)


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value (user ids are ints or names)."""
    return value.item() if isinstance(value, np.generic) else value


def _pct(v: float) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.1f}"


def _pp(v: float) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:+.1f}"


def _ci(mean: float, low: float, high: float, signed: bool = True) -> str:
    f = _pp if signed else _pct
    if mean is None or not math.isfinite(mean):
        return "-"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f(mean)
    outside = "" if low - 1e-9 <= mean <= high + 1e-9 else "*"  # see OUTSIDE_NOTE
    return f"{f(mean)} [{f(low)}, {f(high)}]{outside}"


# ---------------------------------------------------------------- windows from confusion records


@dataclass
class Windows:
    """Compressed windows of one (scenario, method): one row per (person, seed, context, true
    class, predicted class) cell with its count and the two weights (module docstring)."""

    user: np.ndarray
    seed: np.ndarray
    context: np.ndarray  # "available" / "unseen"
    context_name: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    w_balanced: np.ndarray
    w_unit: np.ndarray
    n_classes: int

    def select(self, mask: np.ndarray) -> Windows:
        return Windows(
            self.user[mask],
            self.seed[mask],
            self.context[mask],
            self.context_name[mask],
            self.y_true[mask],
            self.y_pred[mask],
            self.w_balanced[mask],
            self.w_unit[mask],
            self.n_classes,
        )

    def __len__(self) -> int:
        return len(self.y_true)


def windows_of(records: list[dict[str, Any]]) -> dict[tuple[str, str], Windows]:
    """``{(scenario, method): Windows}`` from the ``confusion`` records."""
    cells: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    sizes: set[int] = set()
    for r in records:
        if r.get("status") != "ok" or r.get("metric") != CONFUSION:
            continue
        matrix = confusion_of(r)
        sizes.add(matrix.shape[0])
        totals = matrix.sum(axis=1)
        n = matrix.sum()
        for i, j in zip(*np.nonzero(matrix), strict=True):
            count = matrix[i, j]
            cells[(r["scenario"], r["method"])].append(
                (
                    r["user"],
                    r["seed"],
                    r["context"],
                    str(r.get("context_name", r["context"])),
                    i,
                    j,
                    count / totals[i],
                    count / n,
                )
            )
    if len(sizes) > 1:
        raise CropError(f"confusion records of different class counts {sorted(sizes)} in one results file")
    out = {}
    for key, rows in cells.items():
        cols = list(zip(*rows, strict=True))
        out[key] = Windows(
            np.asarray(cols[0]),
            np.asarray(cols[1]),
            np.asarray(cols[2]),
            np.asarray(cols[3]),
            np.asarray(cols[4], dtype=np.int64),
            np.asarray(cols[5], dtype=np.int64),
            np.asarray(cols[6], dtype=float),
            np.asarray(cols[7], dtype=float),
            next(iter(sizes)),
        )
    return out


# ---------------------------------------------------------------- group statistics


@dataclass
class GroupRow:
    """Group statistics of one (method, context, attribute)."""

    method: str
    context: str
    attribute: str
    groups: list[str]
    balanced: dict[str, float]  # group -> %
    accuracy: dict[str, float]
    f1: dict[str, float]
    worst: str
    gap: float
    gap_ci: tuple[float, float]
    ratio: float
    gap_accuracy: float
    gap_f1: float
    per_person: dict[str, dict[Any, float]]  # group -> person -> % (balanced accuracy)
    delta_gap: float = math.nan
    delta_gap_ci: tuple[float, float] = (math.nan, math.nan)
    gains: dict[str, float] = field(default_factory=dict)  # group -> pp vs generic
    gain_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    harmed_groups: float = math.nan
    disparities: dict[str, float] = field(default_factory=dict)


def _features(w: Windows, attribute: str, attrs: PersonAttributes, class_names: Sequence[str]) -> np.ndarray:
    if attribute == "activity":
        return np.asarray([class_names[i] for i in w.y_true])
    if attribute == "context":
        return np.asarray(
            [c if c == "available" else f"unseen: {n}" for c, n in zip(w.context, w.context_name, strict=True)]
        )
    mapping = attrs.groups[attribute]
    return np.asarray([mapping[_plain(u)] for u in w.user])


def _group_row(
    method: str,
    context: str,
    attribute: str,
    w: Windows,
    attrs: PersonAttributes,
    class_names: Sequence[str],
    order: Sequence[str],
) -> GroupRow:
    from fairlearn.metrics import MetricFrame

    feature = _features(w, attribute, attrs, class_names)
    groups = [g for g in order if g in set(feature.tolist())] if order else sorted(set(feature.tolist()))
    ba = group_metrics(
        w.y_true,
        w.y_pred,
        sensitive_features=feature,
        sample_weight=w.w_balanced,
        metrics=["balanced_accuracy"],
        groups=groups,
    )
    other = group_metrics(
        w.y_true,
        w.y_pred,
        sensitive_features=feature,
        sample_weight=w.w_unit,
        metrics=["accuracy", "f1"],
        groups=groups,
    )
    frame = MetricFrame(
        metrics=_balanced_accuracy,
        y_true=w.y_true,
        y_pred=w.y_pred,
        sensitive_features={"group": feature, "person": w.user},
        sample_params={"sample_weight": w.w_balanced},
    )
    per_person: dict[str, dict[Any, float]] = defaultdict(dict)
    for (g, person), value in frame.by_group.items():
        if math.isfinite(value):
            per_person[str(g)][_plain(person)] = 100.0 * float(value)
    pct = {g: 100.0 * v for g, v in ba.by_group["balanced_accuracy"].items()}
    return GroupRow(
        method,
        context,
        attribute,
        [str(g) for g in groups],
        pct,
        {g: 100.0 * v for g, v in other.by_group["accuracy"].items()},
        {g: 100.0 * v for g, v in other.by_group["f1"].items()},
        str(ba.worst["balanced_accuracy"][0]),
        100.0 * ba.gap["balanced_accuracy"],
        (math.nan, math.nan),
        ba.ratio["balanced_accuracy"],
        100.0 * other.gap["accuracy"],
        100.0 * other.gap["f1"],
        dict(per_person),
    )


def _members(row: GroupRow, people_level: bool) -> tuple:
    """Who a row's bootstrap resamples: the people of each group (per-person attributes) or all
    people (per-window attributes)."""
    if people_level:
        return tuple(tuple(sorted(row.per_person.get(g, {}), key=str)) for g in row.groups)
    return tuple(sorted({p for v in row.per_person.values() for p in v}, key=str))


def _values(row: GroupRow, people_level: bool, members: tuple) -> list[np.ndarray]:
    """Per-person values: one array per group (per-person attributes) or one ``(groups, people)``
    matrix with NaN where a person has no window of a group (per-window attributes)."""
    if people_level:
        return [
            np.asarray([row.per_person[g][p] for p in people]) for g, people in zip(row.groups, members, strict=True)
        ]
    return [np.asarray([[row.per_person.get(g, {}).get(p, np.nan) for p in members] for g in row.groups])]


def _gap_statistic(people_level: bool, paired: bool):
    """The gap (max - min of the group means) of resampled per-person values, or with ``paired``
    (method and generic stacked on a leading axis) the method's gap minus the generic model's.
    Vectorized for ``scipy.stats.bootstrap`` (people on the last axis, resamples before it)."""
    import warnings

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        with warnings.catch_warnings():  # a person without windows of a group: left out of its mean
            warnings.simplefilter("ignore", RuntimeWarning)
            if people_level:
                means = np.stack([x.mean(axis=axis) for x in samples], axis=-1)  # (..., groups)
                gaps = means.max(axis=-1) - means.min(axis=-1)
            else:
                means = np.nanmean(samples[0], axis=axis)  # ([2,] groups, ...)
                group_axis = 1 if paired else 0
                gaps = np.nanmax(means, axis=group_axis) - np.nanmin(means, axis=group_axis)
        return gaps[0] - gaps[1] if paired else gaps

    return statistic


def _bootstrap(samples: list[np.ndarray], statistic: Any, resamples: int, seed: int) -> tuple[float, float]:
    """95 % BCa bootstrap interval over people (``scipy.stats.bootstrap``; each sample resampled
    on its last axis, samples independently: the groups of a per-person attribute are strata).
    NaN when undefined (e.g. every resample gives the same value)."""
    import warnings

    from scipy import stats

    if any(x.shape[-1] < 2 for x in samples):
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r = stats.bootstrap(
                samples,
                statistic,
                n_resamples=resamples,
                confidence_level=LEVEL,
                method="BCa",
                vectorized=True,
                axis=-1,
                random_state=np.random.default_rng(seed),
            )
        except (ValueError, FloatingPointError, IndexError):
            return math.nan, math.nan
    low, high = float(r.confidence_interval.low), float(r.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (math.nan, math.nan)


def _mean(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return samples[0].mean(axis=axis)


def _add_intervals(rows: dict[str, GroupRow], people_level: bool, resamples: int, seed: int) -> None:
    """Bootstrap intervals over people of every row's gap and, paired with ``generic`` (the same
    resampled people), of its change in gap and of each group's gain. A method whose people
    differ from the generic model's (failed units) gets no paired intervals."""
    base = rows.get("generic")
    base_members = _members(base, people_level) if base is not None else ()
    for method, row in rows.items():
        members = _members(row, people_level)
        values = _values(row, people_level, members)
        row.gap_ci = _bootstrap(values, _gap_statistic(people_level, False), resamples, seed)
        if base is None or method == "generic" or row.groups != base.groups:
            continue
        row.delta_gap = row.gap - base.gap
        row.gains = {g: row.balanced[g] - base.balanced[g] for g in row.groups}
        row.harmed_groups = harmed_share(row.gains)
        if members != base_members:
            row.gain_ci = {g: (math.nan, math.nan) for g in row.groups}
            continue
        base_values = _values(base, people_level, members)
        pairs = [np.stack([a, b]) for a, b in zip(values, base_values, strict=True)]
        row.delta_gap_ci = _bootstrap(pairs, _gap_statistic(people_level, True), resamples, seed)
        for i, g in enumerate(row.groups):
            diff = values[i] - base_values[i] if people_level else values[0][i] - base_values[0][i]
            diff = diff[np.isfinite(diff)]
            row.gain_ci[g] = _bootstrap([diff], _mean, resamples, seed)


# ---------------------------------------------------------------- the report


@dataclass
class FairnessReport:
    """Tables (Markdown and CSV pairs), the headline tables for a bench summary, and what the
    figures need."""

    markdown: str
    tables: dict[str, Table]  # file stem (crop.safe_names.file_name) -> raw table (CSV)
    summary: str  # headline Markdown for table.md
    summary_tables: list[Table]
    group_rows: dict[str, list[GroupRow]]  # scenario -> rows
    person_gains: dict[str, dict[str, dict[int, float]]]  # scenario -> method -> user -> pp (unseen)
    traits: dict[str, PersonAttributes]  # scenario -> person attributes used
    path: Path | None = None  # fairness.md, once written


def _ordered_methods(methods: set[str]) -> list[str]:
    return column_order(sorted(methods), METHOD_ORDER)


def _people_tables(perf: Any, scenario: str, methods: list[str], resamples: int) -> tuple[Table, Table]:
    from crop.report.stats import bootstrap_interval, per_user_gains, per_user_means

    header = ["method", "context", "people", "BA mean", "BA sd", "worst person", "BA p10"]
    header += ["gain mean [95 % CI]", "gain sd", "worst gain", "gain p10", "harmed [95 % CI]"]
    csv_header = ["method", "context", "people", "ba_mean", "ba_sd", "worst_user", "ba_worst", "ba_p10"]
    csv_header += ["gain_mean", "gain_low", "gain_high", "gain_sd", "gain_worst_user", "gain_worst", "gain_p10"]
    csv_header += ["harmed", "harmed_low", "harmed_high"]
    md, raw = [], []
    for method in methods:
        means = per_user_means(perf, scenario, method)
        for context in CONTEXTS:
            values = {u: v[context] for u, v in means.items() if context in v}
            if not values:
                continue
            s = person_spread(values)
            cells = [
                method,
                context,
                str(s.n),
                _pct(s.mean),
                f"{s.std:.1f}",
                f"{_pct(s.worst)} (user {s.worst_person})",
            ]
            cells.append(_pct(s.p10))
            out = [method, context, s.n, s.mean, s.std, s.worst_person, s.worst, s.p10]
            gains = per_user_gains(perf, scenario, method, "generic", (context,)) if method != "generic" else {}
            if gains:
                g = person_spread(gains)
                v = np.asarray(list(gains.values()))
                low, high = bootstrap_interval(v, LEVEL, resamples)
                harmed = harmed_share(gains)
                hl, hh = bootstrap_interval((v < 0).astype(float), LEVEL, resamples)
                cells += [_ci(g.mean, low, high), f"{g.std:.1f}", f"{_pp(g.worst)} (user {g.worst_person})", _pp(g.p10)]
                cells.append(f"{100 * harmed:.0f} % [{100 * hl:.0f}, {100 * hh:.0f}]")
                out += [g.mean, low, high, g.std, g.worst_person, g.worst, g.p10, harmed, hl, hh]
            else:
                cells += ["-"] * 5
                out += [None] * 10
            md.append(cells)
            raw.append(out)
    title = f"{scenario}: balanced accuracy across people (%), and the gain over the generic model (pp)"
    note = (
        "Per person: mean over seeds. sd: standard deviation across people; p10: lowest decile (10th percentile); "
        "harmed: share of people whose gain over the generic model is below 0. Intervals: 95 % bootstrap over people."
    )
    return Table(title, header, md, note=note, kind="people"), Table(title, csv_header, raw, kind="people")


def _group_tables(scenario: str, attribute: str, rows: list[GroupRow], note: str) -> tuple[Table, Table]:
    groups = list(dict.fromkeys(g for r in rows for g in r.groups))  # a method with missing people may lack one
    header = ["method", "context"] + [f"{g}" for g in groups]
    header += ["worst group", "gap [95 % CI]", "ratio", "Δgap vs generic [95 % CI]", "groups harmed"]
    csv_header = ["method", "context"] + [f"ba:{g}" for g in groups] + [f"acc:{g}" for g in groups]
    csv_header += [f"f1:{g}" for g in groups] + [f"gain:{g}" for g in groups]
    csv_header += ["worst_group", "gap", "gap_low", "gap_high", "ratio", "delta_gap", "delta_low", "delta_high"]
    csv_header += ["gap_accuracy", "gap_f1", "harmed_groups"]
    md, raw = [], []
    for r in rows:
        cells = [r.method, r.context] + [_pct(r.balanced.get(g, math.nan)) for g in groups]
        cells += [r.worst, _ci(r.gap, *r.gap_ci, signed=False), "-" if not math.isfinite(r.ratio) else f"{r.ratio:.3f}"]
        cells.append(_ci(r.delta_gap, *r.delta_gap_ci) if r.method != "generic" else "-")
        cells.append(f"{round(r.harmed_groups * len(groups))}/{len(groups)}" if math.isfinite(r.harmed_groups) else "-")
        md.append(cells)
        out = [r.method, r.context] + [r.balanced.get(g) for g in groups] + [r.accuracy.get(g) for g in groups]
        out += [r.f1.get(g) for g in groups] + [r.gains.get(g) for g in groups]
        out += [r.worst, r.gap, *r.gap_ci, r.ratio, r.delta_gap, *r.delta_gap_ci, r.gap_accuracy, r.gap_f1]
        out.append(r.harmed_groups)
        raw.append(out)
    title = f"{scenario}: balanced accuracy (%) by {attribute}"
    return Table(title, header, md, note=note, kind="groups"), Table(title, csv_header, raw, kind="groups")


def _attribute_note(attribute: str, attrs: PersonAttributes, rows: list[GroupRow]) -> str:
    sizes = {g: len(rows[0].per_person.get(g, {})) for g in rows[0].groups}
    if attribute == "activity":
        what = "per-window attribute: the true activity of each window; a group's value is the mean over people of that class's recall"
    elif attribute == "context":
        what = "per-window attribute: the context of each window (available-context test split, unseen context)"
    else:
        what = attrs.notes.get(attribute, "")
        what += "; people per group: " + ", ".join(f"{g} {n}" for g, n in sizes.items())
    return (
        f"{attribute}: {what}. gap: best minus worst group (pp); ratio: worst / best; Δgap: the method's gap minus the "
        "generic model's (negative: personalization narrowed the gap); groups harmed: groups whose balanced accuracy "
        "is below the generic model's. Intervals: 95 % BCa bootstrap over people. " + OUTSIDE_NOTE
    )


def build_report(
    records: list[dict[str, Any]],
    scenarios_attrs: dict[str, PersonAttributes],
    *,
    metric: str = "balanced_accuracy",
    class_names: Sequence[str] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    notes: Sequence[str] = (),
    on_step: Callable[[str], None] | None = None,
) -> FairnessReport:
    """All fairness tables of ``records`` (one bench directory). ``scenarios_attrs``: the
    per-person attributes of each scenario (traits and table columns).

    Scenario, method, attribute and group names are data: the Markdown escapes them
    (:func:`crop.report.escape.markdown_text`) and the tables' file stems follow
    :func:`crop.safe_names.file_name`; two (scenario, attribute) pairs that would share a file
    are refused before anything is written."""
    from crop.report.escape import markdown_text as md_text
    from crop.report.stats import per_user_gains
    from crop.report.tables import performance
    from crop.safe_names import distinct, file_name

    if metric != "balanced_accuracy":
        raise CropError(f"crop fairness reports balanced accuracy; this bench selected on {metric}")
    perf = performance(records, "balanced_accuracy")
    if not perf:
        raise CropError("no balanced-accuracy results to measure fairness on")
    windows = windows_of(records)
    scenarios = sorted({k[0] for k in perf})
    parts = ["# Fairness of personalization", ""]
    parts += [f"- {md_text(n)}" for n in notes] + ([""] if notes else [])
    summary: list[str] = []
    summary_tables: list[Table] = []
    tables: dict[str, Table] = {}
    sources: list[tuple[tuple[str, ...], Path]] = []  # (scenario, table, attribute), file stem
    group_rows: dict[str, list[GroupRow]] = {}
    person_gains: dict[str, dict[str, dict[int, float]]] = {}
    for scenario in scenarios:
        methods = _ordered_methods({k[1] for k in perf if k[0] == scenario})
        parts += [f"## {md_text(scenario)}", ""]
        if on_step:
            on_step(f"{scenario}: people")
        md, raw = _people_tables(perf, scenario, methods, resamples)
        key = file_name(scenario, "people")
        sources.append(((scenario, "people"), Path(key)))
        tables[key] = raw
        parts += [f"### {md_text(md.title)}", "", md.markdown(), "", md_text(md.note), ""]
        person_gains[scenario] = {
            m: per_user_gains(perf, scenario, m, "generic", ("unseen",)) for m in methods if m != "generic"
        }
        unseen = Table(md.title + ", unseen context", md.header, [r for r in md.rows if r[1] == "unseen"], note=md.note)
        summary += [f"### {md_text(scenario)}: people, unseen context", "", unseen.markdown(), ""]
        summary_tables.append(unseen)
        attrs = scenarios_attrs.get(scenario, PersonAttributes({}))
        have = {m for (s, m) in windows if s == scenario}
        if not have:
            parts += ["Group tables need the windows' predictions: run `crop bench --fairness`.", ""]
            continue
        if "generic" not in have:
            parts += ["(no generic results: changes against the generic model are not shown)", ""]
        names = (
            list(class_names) if class_names else [f"class {i}" for i in range(next(iter(windows.values())).n_classes)]
        )
        rows_all: list[GroupRow] = []
        gap_summary: dict[str, dict[str, str]] = defaultdict(dict)
        attributes = list(attrs.groups) + ["activity", "context"]
        for attribute in attributes:
            if on_step:
                on_step(f"{scenario}: {attribute}")
            people_level = attribute not in ("activity", "context")
            contexts = ("all",) if attribute == "context" else CONTEXTS
            order = attrs.order.get(attribute, names if attribute == "activity" else [])
            rows: list[GroupRow] = []
            for context in contexts:
                by_method: dict[str, GroupRow] = {}
                for method in [m for m in methods if m in have]:
                    w = windows[(scenario, method)]
                    if context != "all":
                        w = w.select(w.context == context)
                    if people_level:
                        w = w.select(np.isin(w.user, list(attrs.groups[attribute])))
                    if len(w) == 0:
                        continue
                    by_method[method] = _group_row(method, context, attribute, w, attrs, names, order)
                if not by_method:
                    continue
                _add_intervals(by_method, people_level, resamples, seed)
                if names and len(names) == 2 and people_level:
                    for method, row in by_method.items():
                        w = windows[(scenario, method)]
                        w = w.select((w.context == context) & np.isin(w.user, list(attrs.groups[attribute])))
                        row.disparities = binary_disparities(
                            w.y_true,
                            w.y_pred,
                            sensitive_features=_features(w, attribute, attrs, names),
                            sample_weight=w.w_unit,
                        )
                rows += list(by_method.values())
            if not rows:
                continue
            rows_all += rows
            md, raw = _group_tables(scenario, attribute, rows, _attribute_note(attribute, attrs, rows))
            key = file_name(scenario, "groups", attribute)
            sources.append(((scenario, "groups", attribute), Path(key)))
            tables[key] = raw
            parts += [f"### {md_text(md.title)}", "", md.markdown(), "", md_text(md.note), ""]
            for r in rows:
                if r.context in ("unseen", "all"):
                    label = attribute if r.context == "unseen" else "context (Ca vs Cu)"
                    gap_summary[r.method][label] = _ci(r.gap, *r.gap_ci, signed=False)
            if any(r.disparities for r in rows):
                header = ["method", "context", "demographic parity difference", "equalized odds difference"]
                drows = [
                    [
                        r.method,
                        r.context,
                        f"{r.disparities['demographic_parity_difference']:.3f}",
                        f"{r.disparities['equalized_odds_difference']:.3f}",
                    ]
                    for r in rows
                    if r.disparities
                ]
                dt = Table(f"{scenario}: binary disparities by {attribute}", header, drows)
                key = file_name(scenario, "disparities", attribute)
                sources.append(((scenario, "disparities", attribute), Path(key)))
                tables[key] = dt
                parts += [f"### {md_text(dt.title)}", "", dt.markdown(), ""]
        if names and len(names) != 2:
            parts += [
                f"Demographic parity and equalized odds apply to binary tasks; this one has {len(names)} classes.",
                "",
            ]
        group_rows[scenario] = rows_all
        if gap_summary:
            labels = list(dict.fromkeys(k for v in gap_summary.values() for k in v))
            st = Table(
                f"{scenario}: largest gap between groups, unseen context (pp) [95 % CI]",
                ["method"] + labels,
                [[m] + [gap_summary[m].get(k, "-") for k in labels] for m in methods if m in gap_summary],
            )
            summary += [f"### {md_text(st.title)}", "", st.markdown(), ""]
            summary_tables.append(st)
    distinct(sources, "the fairness tables of")
    return FairnessReport(
        "\n".join(parts), tables, "\n".join(summary), summary_tables, group_rows, person_gains, scenarios_attrs
    )

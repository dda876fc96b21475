"""Severity sweeps: accuracy against fault severity, per method, with intervals over people.

Reads the records of ``crop bench --scenario hapt-faults --faults ...`` (unseen contexts named
``dead-gyro=0.5``, ``clean``...; :func:`crop.data.faults.parse_context`). For every fault,
severity and method: the unseen-context accuracy of each person averaged over seeds, then the
mean over people and its 95 % bootstrap interval (:func:`crop.report.stats.bootstrap_interval`).
The ``clean`` context is every fault's severity 0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crop.data.faults import FAULTS, parse_context
from crop.report.table import Table
from crop.report.tables import METHOD_ORDER, _ordered


@dataclass
class SweepPoint:
    mean: float
    low: float
    high: float
    users: int


Sweep = dict[str, dict[str, dict[float, SweepPoint]]]  # fault -> method -> severity -> point


def sweep(records: list[dict[str, Any]], metric: str = "balanced_accuracy", scenario: str | None = None) -> Sweep:
    """Per fault, method and severity: mean over people (of their seed means, in %) and interval."""
    from crop.report.stats import bootstrap_interval

    values: dict[tuple[str, str, float], dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    faults_seen: set[str] = set()
    for r in records:
        if r.get("status") != "ok" or r.get("context") != "unseen" or r.get("metric") != metric:
            continue
        if scenario is not None and r["scenario"] != scenario:
            continue
        parsed = parse_context(str(r.get("context_name", "")))
        if parsed is None:
            continue
        name, severity = parsed
        if name != "clean":
            faults_seen.add(name)
        values[(name, r["method"], severity)][(r["scenario"], r["user"])].append(100.0 * r["value"])
    out: Sweep = {}
    for (name, method, severity), per_user in values.items():
        means = np.array([np.mean(v) for v in per_user.values()])
        low, high = bootstrap_interval(means)
        point = SweepPoint(float(means.mean()), low, high, len(means))
        targets = sorted(faults_seen) if name == "clean" else [name]
        for fault in targets:
            out.setdefault(fault, {}).setdefault(method, {})[severity if name != "clean" else 0.0] = point
    return {f: out[f] for f in FAULTS if f in out}


def sweep_tables(result: Sweep) -> list[Table]:
    """One table per fault: a row per method, a column per severity (mean [interval])."""
    tables = []
    for fault, methods in result.items():
        severities = sorted({s for points in methods.values() for s in points})
        rows = []
        for method in _ordered(set(methods), METHOD_ORDER):
            row: list[Any] = [method]
            for s in severities:
                p = methods[method].get(s)
                row.append(None if p is None else f"{p.mean:.1f} [{p.low:.1f}, {p.high:.1f}]")
            rows.append(row)
        users = max(p.users for points in methods.values() for p in points.values())
        tables.append(
            Table(
                f"{fault}: unseen-context accuracy (%) by severity ({FAULTS[fault].unit})",
                ["method"] + [f"{s:g}" for s in severities],
                rows,
                note=f"Mean over {users} people of their seed means, 95 % bootstrap interval over people.",
                kind="fault_sweep",
            )
        )
    return tables


def plot_sweeps(result: Sweep, out: str | Path, metric_label: str = "balanced accuracy (%)") -> list[Path]:
    """One PNG per fault (``fault-<name>.png`` in ``out``): accuracy against severity, a line and
    an interval band per method."""
    from crop.report.plots import _finish, _legend_outside, _save, plt
    from crop.safe_names import data_path

    paths = []
    for fault, methods in result.items():
        fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
        for method in _ordered(set(methods), METHOD_ORDER):
            points = sorted(methods[method].items())
            xs = [s for s, _ in points]
            ax.plot(xs, [p.mean for _, p in points], marker="o", ms=3, label=method)
            ax.fill_between(xs, [p.low for _, p in points], [p.high for _, p in points], alpha=0.15)
        ax.set_xlabel(f"severity: {FAULTS[fault].unit}")
        ax.set_ylabel(metric_label)
        ax.set_title(fault)
        ax.grid(alpha=0.3)
        _legend_outside(ax, fontsize=7)
        paths.append(_save(_finish(fig), data_path(out, "fault", fault, suffix=".png")))
    return paths

"""Tables of docs/ROBUSTNESS.md's "sparse certified personalization" sections, over people.

Usage:
    .venv/bin/python benchmarks/sparse_certified_report.py \\
        --row "generic=out/claim:generic" --row "crop-certified 5 %=out/d0.05:crop-certified" \\
        --reference "finetune-certified" [--gap-to "ROW=LABEL"] [--eps 0.01,0.03] [--users 2,8,14,20,26] \\
        [--out FILE]

Each ``--row LABEL=DIR:METHOD`` is one line of the table: the records of ``METHOD`` in the
``crop bench --certify`` directory ``DIR``. A user counts when the row has all its values; the
value of a user is the mean over seeds (and over unseen contexts), so the interval is over
people: mean over users with a 95 % percentile bootstrap interval (:mod:`crop.report.stats`).
``--reference LABEL`` adds, per row, the paired gap of verified accuracy to that row (per-user
differences over the users both rows have, with their own bootstrap interval); ``--gap-to
ROW=LABEL`` (repeatable) takes the gap of row ``ROW`` to ``LABEL`` instead (e.g. each sparse
model to the dense model of its own width). The density
column is the measured kept fraction of the prunable weights (from ``prune_amount``).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from crop.bench.runner import load_results
from crop.report.files import write_text_atomic
from crop.report.stats import format_interval

CONTEXTS = (("available", "Ca"), ("unseen", "Cu"))


def _means(records: list[dict], method: str, metric: str, context: str, key) -> dict:
    """``key(record)`` -> the mean of ``metric`` (in %) over the ok records of ``method`` in ``context``."""
    values: dict = defaultdict(list)
    for r in records:
        if (
            r.get("status") == "ok"
            and r.get("method") == method
            and r.get("metric") == metric
            and r.get("context") == context
        ):
            values[key(r)].append(100.0 * r["value"])
    return {k: float(np.mean(v)) for k, v in values.items()}


def per_user(records: list[dict], method: str, metric: str, context: str) -> dict[int, float]:
    """Per user: mean over seeds (and unseen contexts) of ``metric``, in %."""
    return _means(records, method, metric, context, lambda r: r["user"])


def per_seed_unseen(records: list[dict], method: str, metric: str) -> dict[int, dict[int, float]]:
    """Per seed, per user: the mean over unseen contexts of ``metric``, in %."""
    out: dict[int, dict[int, float]] = defaultdict(dict)
    for (seed, user), value in _means(records, method, metric, "unseen", lambda r: (r["seed"], r["user"])).items():
        out[seed][user] = value
    return out


def seed_gaps(mine: dict[int, dict[int, float]], ref: dict[int, dict[int, float]]) -> str:
    """The unseen-context gap of each seed (mean over the users both rows have)."""
    parts = []
    for seed in sorted(set(mine) & set(ref)):
        users = sorted(set(mine[seed]) & set(ref[seed]))
        if users:
            parts.append(f"{np.mean([mine[seed][u] - ref[seed][u] for u in users]):+.1f}")
    return " / ".join(parts) if parts else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", action="append", required=True, help="LABEL=DIR:METHOD")
    parser.add_argument("--reference", default=None, help="label of the row the gaps are taken to")
    parser.add_argument("--gap-to", action="append", default=[], help="ROW=LABEL: this row's gaps to LABEL")
    parser.add_argument("--eps", default="0.01,0.03")
    parser.add_argument("--users", default=None, help="comma-separated users to restrict to")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    eps = [e for e in args.eps.split(",") if e]
    keep_users = {int(u) for u in args.users.split(",")} if args.users else None
    cache: dict[str, list[dict]] = {}
    rows: list[tuple[str, dict[str, dict[int, float]], str, dict]] = []
    for spec in args.row:
        label, _, where = spec.partition("=")
        directory, _, method = where.rpartition(":")
        if directory not in cache:
            cache[directory] = load_results(Path(directory))
        records = cache[directory]
        metrics = ["accuracy"] + [f"verified@linf:{e}" for e in eps]
        values = {f"{m}|{c}": per_user(records, method, m, c) for m in metrics for c, _ in CONTEXTS}
        common = set.intersection(*(set(v) for v in values.values())) if values else set()
        if keep_users is not None:
            common &= keep_users
        values = {k: {u: v[u] for u in common} for k, v in values.items()}
        prune = [1 - r["prune_amount"] for r in records if r.get("method") == method and "prune_amount" in r]
        density = f"{np.mean(prune):.3f}" if prune else "1"
        seeds = {e: per_seed_unseen(records, method, f"verified@linf:{e}") for e in eps}
        rows.append((label, values, density, seeds))
    header = ["row", "users", "density (prunable)"]
    header += [f"clean {t}" for _, t in CONTEXTS]
    header += [f"verified {e} {t}" for e in eps for _, t in CONTEXTS]
    by_label = {r[0]: r for r in rows}
    gap_to = {row: ref for row, _, ref in (g.partition("=") for g in args.gap_to)}
    for row_label, ref_label in gap_to.items():
        if row_label not in by_label or ref_label not in by_label:
            parser.error(f"--gap-to {row_label}={ref_label}: no such row")
    reference = by_label.get(args.reference) if args.reference else None
    if reference is not None or gap_to:
        header += [f"gap {e} {t}" for e in eps for _, t in CONTEXTS]
        header += [f"gap {e} Cu by seed" for e in eps]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, values, density, seeds in rows:
        users = sorted(next(iter(values.values()))) if values else []
        row = [label, str(len(users)), density]
        row += [format_interval(list(values[f"accuracy|{c}"].values())) for c, _ in CONTEXTS]
        row += [format_interval(list(values[f"verified@linf:{e}|{c}"].values())) for e in eps for c, _ in CONTEXTS]
        to = by_label[gap_to[label]] if label in gap_to else reference
        if reference is not None or gap_to:
            for e in eps:
                for c, _ in CONTEXTS:
                    if to is None or to[0] == label:
                        row.append("0" if to is not None else "")
                        continue
                    mine, ref = values[f"verified@linf:{e}|{c}"], to[1][f"verified@linf:{e}|{c}"]
                    both = sorted(set(mine) & set(ref))
                    row.append(format_interval([mine[u] - ref[u] for u in both], signed=True))
            for e in eps:
                row.append("" if to is None or to[0] == label else seed_gaps(seeds[e], to[3][e]))
        lines.append("| " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()

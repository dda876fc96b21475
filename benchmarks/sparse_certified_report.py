"""Tables of docs/ROBUSTNESS.md's "sparse certified personalization" sections, over people.

Usage:
    .venv/bin/python benchmarks/sparse_certified_report.py \\
        --row "generic=out/claim:generic" --row "crop-certified 5 %=out/d0.05:crop-certified" \\
        --reference "finetune-certified" [--eps 0.01,0.03] [--users 2,8,14,20,26] [--out FILE]

Each ``--row LABEL=DIR:METHOD`` is one line of the table: the records of ``METHOD`` in the
``crop bench --certify`` directory ``DIR``. A user counts when the row has all its values; the
value of a user is the mean over seeds (and over unseen contexts), so the interval is over
people: mean over users with a 95 % percentile bootstrap interval (:mod:`crop.report.stats`).
``--reference LABEL`` adds, per row, the paired gap of verified accuracy to that row (per-user
differences over the users both rows have, with their own bootstrap interval). The density
column is the measured kept fraction of the prunable weights (from ``prune_amount``).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from crop.bench.runner import load_results
from crop.report.files import write_text_atomic
from crop.report.stats import bootstrap_interval

CONTEXTS = (("available", "Ca"), ("unseen", "Cu"))


def per_user(records: list[dict], method: str, metric: str, context: str) -> dict[int, float]:
    """Per user: mean over seeds (and unseen contexts) of ``metric``, in %."""
    values: dict[int, list[float]] = defaultdict(list)
    for r in records:
        if (
            r.get("status") == "ok"
            and r.get("method") == method
            and r.get("metric") == metric
            and r.get("context") == context
        ):
            values[r["user"]].append(100.0 * r["value"])
    return {u: float(np.mean(v)) for u, v in values.items()}


def interval(values: list[float]) -> str:
    if not values:
        return "-"
    low, high = bootstrap_interval(values)
    return f"{np.mean(values):.1f} [{low:.1f}, {high:.1f}]"


def gap(values: list[float]) -> str:
    if not values:
        return "-"
    low, high = bootstrap_interval(values)
    return f"{np.mean(values):+.1f} [{low:+.1f}, {high:+.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", action="append", required=True, help="LABEL=DIR:METHOD")
    parser.add_argument("--reference", default=None, help="label of the row the gaps are taken to")
    parser.add_argument("--eps", default="0.01,0.03")
    parser.add_argument("--users", default=None, help="comma-separated users to restrict to")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    eps = [e for e in args.eps.split(",") if e]
    keep_users = {int(u) for u in args.users.split(",")} if args.users else None
    cache: dict[str, list[dict]] = {}
    rows: list[tuple[str, dict[str, dict[int, float]], str]] = []
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
        rows.append((label, values, density))
    header = ["row", "users", "density (prunable)"]
    header += [f"clean {t}" for _, t in CONTEXTS]
    header += [f"verified {e} {t}" for e in eps for _, t in CONTEXTS]
    reference = next((r for r in rows if r[0] == args.reference), None)
    if reference is not None:
        header += [f"gap {e} {t}" for e in eps for _, t in CONTEXTS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, values, density in rows:
        users = sorted(next(iter(values.values()))) if values else []
        row = [label, str(len(users)), density]
        row += [interval(list(values[f"accuracy|{c}"].values())) for c, _ in CONTEXTS]
        row += [interval(list(values[f"verified@linf:{e}|{c}"].values())) for e in eps for c, _ in CONTEXTS]
        if reference is not None:
            for e in eps:
                for c, _ in CONTEXTS:
                    mine, ref = values[f"verified@linf:{e}|{c}"], reference[1][f"verified@linf:{e}|{c}"]
                    both = sorted(set(mine) & set(ref))
                    row.append("0" if label == reference[0] else gap([mine[u] - ref[u] for u in both]))
        lines.append("| " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()

"""Paired differences over people between two methods in faulted contexts of a
``crop bench --faults`` directory: per person, the seed-mean unseen accuracy of ``a`` minus ``b``;
mean and 95 % bootstrap interval over people, and wins.

    .venv/bin/python benchmarks/fault_pairs.py DIR coteach modality-dropout clean dead-gyro=1 dead-acc=1
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from crop.bench.runner import load_results
from crop.report.stats import bootstrap_interval


def main() -> None:
    out, a, b, *contexts = sys.argv[1:]
    acc: dict = defaultdict(list)
    for r in load_results(Path(out)):
        if r.get("status") == "ok" and r["context"] == "unseen" and r["metric"] == "balanced_accuracy":
            acc[(r["method"], r["context_name"], r["user"])].append(100 * r["value"])
    print(f"| context | {a} - {b} (pp) | 95 % interval | {a} better for |")
    print("|---|---|---|---|")
    for c in contexts:
        users = sorted({u for (m, cn, u) in acc if cn == c and m in (a, b)})
        d = np.array([np.mean(acc[(a, c, u)]) - np.mean(acc[(b, c, u)]) for u in users])
        lo, hi = bootstrap_interval(d)
        print(f"| {c} | {d.mean():+.2f} | [{lo:+.2f}, {hi:+.2f}] | {(d > 0).sum()} of {len(d)} |")


if __name__ == "__main__":
    main()

"""Summarize the development exploration (run.py output) as a Markdown table.

Usage: .venv/bin/python benchmarks/exploration/summarize.py RESULTS.jsonl > docs/results/development-exploration.md

Each variant is compared with conventional finetuning on the same generic kind (``@rot``
variants with ``finetune@rot``): mean Ca and Cu over users (seeds averaged per user), Δ_G with a
95 % bootstrap interval over users, win/loss counts (±0.5 pp) and the harm rate.
"""

import json
import sys
from collections import defaultdict

import numpy as np

from crop.report.stats import bootstrap_interval

rows = [json.loads(line) for line in open(sys.argv[1])]
by = defaultdict(lambda: defaultdict(list))
for r in rows:
    by[(r["variant"], r["scenario"])][r["user"]].append(r)

print("# Development exploration (development protocol, real session change, seeds 0-2)\n")
print("Produced by `benchmarks/exploration/run.py` (variants in `variants.py`) with `MODE=pop`;")
print("each user personalized by the generic model that used them for validation. Variants")
print("ending in `@rot` use the `hapt-rot` generic model and are compared with `finetune@rot`.\n")
for scen in sorted({r["scenario"] for r in rows}):
    print(f"## {scen}\n")
    print("| variant | users | Ca | Cu | Δ_G vs finetune [95 % CI] | W/L | harm |")
    print("|---|---|---|---|---|---|---|")
    for var in sorted({v for v, s in by if s == scen}):
        d = by[(var, scen)]
        if len(d) < 30:
            continue  # unfinished runs are left out
        rot = var.endswith("@rot")
        ref = by.get(("finetune@rot" if rot else "finetune", scen), {})
        gen = by.get(("generic@rot" if rot else "generic", scen), {})
        users = sorted(d)
        ca = np.mean([np.mean([x["Ca"] for x in d[u]]) for u in users])
        cu = np.mean([np.mean([x["Cu"] for x in d[u]]) for u in users])
        cell = "-"
        wl = "-"
        if var not in ("finetune", "finetune@rot") and ref:
            dg = np.array(
                [
                    np.mean([x["Ca"] + x["Cu"] for x in d[u]]) - np.mean([x["Ca"] + x["Cu"] for x in ref[u]])
                    for u in users
                ]
            )
            lo, hi = bootstrap_interval(dg)
            cell = f"{dg.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]"
            wl = f"{int((dg > 0.5).sum())}/{int((dg < -0.5).sum())}"
        harm = (
            np.mean([np.mean([x["Cu"] for x in d[u]]) < np.mean([x["Cu"] for x in gen[u]]) - 2 for u in users])
            if gen
            else float("nan")
        )
        print(f"| {var} | {len(users)} | {ca:.2f} | {cu:.2f} | {cell} | {wl} | {100 * harm:.0f} % |")
    print()

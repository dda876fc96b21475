"""Tables of docs/ROBUSTNESS.md from ``crop bench --certify`` outputs.

Usage:
    .venv/bin/python benchmarks/robustness_report.py --main DIR [--density D=DIR ...] [--out FILE]

``--main`` is a bench with generic, finetune, crop and crop-certified (and ``--certify``); each
``--density`` a bench of crop-certified alone at that target density (``D`` as a fraction).
Prints Markdown: the robustness table of the main bench, and the density sweep (clean and
verified accuracy per density, and the gap of verified accuracy to the dense certified model).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from crop.bench.runner import load_results
from crop.report.plots import robustness_curves
from crop.report.table import Table
from crop.report.tables import robustness_table


def _per_seed_mean(records: list[dict], metric: str, context: str) -> list[float]:
    """Mean over users (and unseen contexts) per seed, in %."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok" and r.get("metric") == metric and r.get("context") == context:
            by_seed[r["seed"]].append(r["value"])
    return [100.0 * float(np.mean(v)) for _, v in sorted(by_seed.items())]


def _pm(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def density_table(runs: dict[float, list[dict]], eps_list: list[str]) -> str:
    header = ["target density", "measured density (prunable)", "clean Ca", "clean Cu"]
    header += [f"verified@{e} {c}" for e in eps_list for c in ("Ca", "Cu")]
    dense = runs.get(1.0)
    if dense is not None:
        header += [f"gap to dense @{e} {c}" for e in eps_list for c in ("Ca", "Cu")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for density in sorted(runs, reverse=True):
        records = [r for r in runs[density] if r.get("method") == "crop-certified"]
        prune = [1.0 - r["prune_amount"] for r in records if r.get("metric") == "accuracy" and "prune_amount" in r]
        row = [f"{density:g}", f"{np.mean(prune):.3f}" if prune else "-"]
        row += [_pm(_per_seed_mean(records, "accuracy", c)) for c in ("available", "unseen")]
        row += [_pm(_per_seed_mean(records, f"verified@{e}", c)) for e in eps_list for c in ("available", "unseen")]
        if dense is not None:
            dense_records = [r for r in dense if r.get("method") == "crop-certified"]
            for e in eps_list:
                for c in ("available", "unseen"):
                    a = _per_seed_mean(records, f"verified@{e}", c)
                    b = _per_seed_mean(dense_records, f"verified@{e}", c)
                    row.append(f"{np.mean(a) - np.mean(b):+.1f}" if a and b else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def density_figure(runs: dict[float, list[dict]], eps_list: list[str], path: Path) -> Path:
    """Clean and verified accuracy against density (log scale), one panel per context."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    densities = sorted(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, context in zip(axes, ("available", "unseen"), strict=True):
        for metric, label in [("accuracy", "clean")] + [
            (f"verified@{e}", f"verified, eps {e.rpartition(':')[2]}") for e in eps_list
        ]:
            means, sds = [], []
            for d in densities:
                vals = _per_seed_mean([r for r in runs[d] if r.get("method") == "crop-certified"], metric, context)
                means.append(float(np.mean(vals)) if vals else np.nan)
                sds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
            ax.errorbar(densities, means, yerr=sds, fmt="-o", ms=3, capsize=2, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("density of the prunable weights (log scale)")
        ax.set_title(f"{context} context")
        ax.grid(alpha=0.3)
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("crop-certified: clean and verified (L-inf) accuracy against density, mean ± sd over seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--main", type=Path, required=True)
    parser.add_argument("--density", action="append", default=[], help="D=DIR")
    parser.add_argument("--scenario", default="hapt-session:1")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--figures", type=Path, default=None, help="directory for robustness and density figures (PNG)")
    args = parser.parse_args()

    parts = []
    main_records = load_results(args.main)
    table = robustness_table(main_records, args.scenario)
    if table is not None:
        groups = [
            (
                "verified accuracy (%): IBP / CROWN / reported (the better bound per window), L-inf radius",
                ("verified",),
            ),
            ("certified by the margin / Lipschitz bound (%), L-inf radius", ("lipschitz@",)),
            (
                "empirical robust accuracy under PGD (%), L-inf radius (an upper bound of the true robust accuracy)",
                ("pgd@",),
            ),
            ("randomized smoothing: certified accuracy (%) at L2 radius", ("smoothed@",)),
        ]
        for title, prefixes in groups:
            keep = [i for i, h in enumerate(table.header) if i < 3 or h.startswith(prefixes)]
            if len(keep) == 3:
                continue
            sub = Table(title, [table.header[i] for i in keep], [[row[i] for i in keep] for row in table.rows])
            parts += [f"### {args.scenario}: {title}; mean ± sd over seeds", "", sub.markdown(), ""]
    runs: dict[float, list[dict]] = {}
    for item in args.density:
        d, _, directory = item.partition("=")
        runs[float(d)] = load_results(Path(directory))
    if runs:
        certified = [r for r in main_records if r.get("method") == "crop-certified"]
        if certified:
            runs.setdefault(0.1, certified)  # the main bench's crop-certified uses the default density 0.1
        eps_list = sorted(
            {
                r["metric"].partition("@")[2]
                for rs in runs.values()
                for r in rs
                if r.get("metric", "").startswith("verified@")
            },
            key=lambda t: float(t.rpartition(":")[2]),
        )
        parts += ["### crop-certified: verified accuracy (%) by density, mean ± sd over seeds", ""]
        parts += [density_table(runs, eps_list), ""]
    if args.figures is not None:
        name = args.scenario.replace(":", "-")
        robustness_curves(main_records, args.scenario, args.figures / f"robustness-{name}.png")
        if runs:
            density_figure(runs, eps_list, args.figures / f"robustness-density-{name}.png")
    text = "\n".join(parts)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Figures of ``crop fairness``: per-group and per-person gains over the generic model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crop.report.escape import plain_figure_text  # noqa: E402
from crop.report.plots import _save  # noqa: E402


def group_gains(rows: list[Any], path: str | Path, title: str = "") -> Path | None:
    """One panel per (context, attribute): each group's balanced-accuracy gain over the generic
    model (pp) per method, with 95 % bootstrap intervals over people. ``None`` without rows."""
    rows = [r for r in rows if r.method != "generic" and r.gains and r.context in ("available", "unseen")]
    if not rows:
        return None
    attributes = list(dict.fromkeys(r.attribute for r in rows))
    contexts = [c for c in ("available", "unseen") if any(r.context == c for r in rows)]
    methods = list(dict.fromkeys(r.method for r in rows))
    fig, axes = plt.subplots(
        len(contexts), len(attributes), figsize=(3.4 * len(attributes) + 1, 3.3 * len(contexts)), squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / len(methods)
    for i, context in enumerate(contexts):
        for j, attribute in enumerate(attributes):
            ax = axes[i][j]
            chosen = {r.method: r for r in rows if r.context == context and r.attribute == attribute}
            if not chosen:
                ax.axis("off")
                continue
            groups = next(iter(chosen.values())).groups
            x = np.arange(len(groups))
            for k, method in enumerate(methods):
                r = chosen.get(method)
                if r is None:
                    continue
                mean = np.asarray([r.gains[g] for g in groups])
                low = np.asarray([r.gain_ci[g][0] for g in groups])
                high = np.asarray([r.gain_ci[g][1] for g in groups])
                err = [np.nan_to_num(mean - low), np.nan_to_num(high - mean)]
                ax.bar(
                    x + (k - (len(methods) - 1) / 2) * width,
                    mean,
                    width,
                    yerr=err,
                    capsize=2,
                    color=colors[k % len(colors)],
                    label=method,
                )
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xticks(x, groups, rotation=30 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center")
            ax.set_title(f"{attribute} ({context})", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            if j == 0:
                ax.set_ylabel("gain over generic (pp)")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(
        title or "Balanced-accuracy gain over the generic model per group, 95 % bootstrap interval over people"
    )
    plain_figure_text(fig).tight_layout()
    return _save(fig, path)


def person_gains(
    gains: dict[str, dict[int, float]],
    order: list[int],
    path: str | Path,
    bands: dict[int, str] | None = None,
    title: str = "",
) -> Path | None:
    """Each person's unseen-context gain over the generic model (pp), people ordered by
    ``order`` (e.g. the generic model's own accuracy, hardest first), one marker per method."""
    methods = [m for m, g in gains.items() if g]
    if not methods or not order:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(order) + 2), 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x = np.arange(len(order))
    for k, method in enumerate(methods):
        y = [gains[method].get(u, np.nan) for u in order]
        ax.plot(x, y, "o-" if k < 3 else "x--", ms=4, lw=0.8, color=colors[k % len(colors)], label=method, alpha=0.85)
    ax.axhline(0, color="black", linewidth=0.8)
    labels = [f"{u}" + (f"\n{bands[u][0]}" if bands and u in bands else "") for u in order]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_xlabel("person (ordered by the generic model's unseen-context accuracy, lowest first)")
    ax.set_ylabel("gain over generic, unseen context (pp)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="best")
    ax.set_title(title or "Per-person gain over the generic model (seeds averaged)")
    plain_figure_text(fig).tight_layout()
    return _save(fig, path)

"""Figures of benchmark results (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crop.report.tables import METHOD_ORDER, Perf, _ordered, delta_values  # noqa: E402


def delta_bars(perf: Perf, path: str | Path, title: str = "") -> Path:
    """Bar chart of Δ_P and Δ_G per method (one panel per scenario), error bars = sd over seeds."""
    scenarios = sorted({k[0] for k in perf})
    methods = _ordered({k[1] for k in perf} - {"generic"}, METHOD_ORDER)
    fig, axes = plt.subplots(
        1, len(scenarios), figsize=(max(4.5, 1.0 + 0.9 * len(methods)) * len(scenarios), 4.2), squeeze=False
    )
    x = np.arange(len(methods))
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        for offset, (ref, label, color) in enumerate(
            [("generic", "Δ_P (vs generic)", "#3b75af"), ("finetune", "Δ_G (vs finetuning)", "#ef8636")]
        ):
            means, sds = [], []
            for m in methods:
                vals = delta_values(perf, scenario, m, ref) if m != ref else [0.0]
                means.append(float(np.mean(vals)) if vals else np.nan)
                sds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
            ax.bar(x + (offset - 0.5) * 0.38, means, 0.38, yerr=sds, capsize=3, label=label, color=color)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, methods, rotation=30, ha="right")
        ax.set_ylabel("percentage points")
        ax.set_title(scenario)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path

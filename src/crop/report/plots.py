"""Figures of benchmark results (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crop.report.escape import plain_figure_text  # noqa: E402
from crop.report.tables import METHOD_ORDER, Perf, _ordered  # noqa: E402


def delta_bars(perf: Perf, path: str | Path, title: str = "") -> Path:
    """Bar chart of Δ_P and Δ_G per method (one panel per scenario): mean over users, error bars
    = 95 % paired bootstrap interval over users."""
    from crop.report.stats import summarize_gain

    scenarios = sorted({k[0] for k in perf})
    methods = _ordered({k[1] for k in perf} - {"generic"}, METHOD_ORDER)
    cols = min(len(scenarios), 2 if len(methods) > 6 else 3)
    rows = -(-len(scenarios) // cols)
    width = max(4.5, 1.0 + 0.55 * len(methods))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 4.2 * rows), squeeze=False)
    x = np.arange(len(methods))
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        for offset, (ref, label, color) in enumerate(
            [("generic", "Δ_P (vs generic)", "#3b75af"), ("finetune", "Δ_G (vs finetuning)", "#ef8636")]
        ):
            means, lows, highs = [], [], []
            for m in methods:
                if m == ref:
                    means.append(0.0)
                    lows.append(0.0)
                    highs.append(0.0)
                    continue
                g = summarize_gain(perf, scenario, m, ref)
                means.append(g.mean if g.n_users else np.nan)
                lows.append(g.mean - g.low if g.n_users else 0.0)
                highs.append(g.high - g.mean if g.n_users else 0.0)
            ax.bar(x + (offset - 0.5) * 0.38, means, 0.38, yerr=[lows, highs], capsize=3, label=label, color=color)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, methods, rotation=35, ha="right")
        ax.set_ylabel("percentage points")
        ax.set_title(scenario)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(title or "Δ_P and Δ_G, mean over users, 95 % bootstrap interval")
    plain_figure_text(fig).tight_layout()
    return _save(fig, path)


def gain_strips(perf: Perf, path: str | Path, reference: str = "finetune", title: str = "") -> Path:
    """Per-user gains over ``reference`` (one dot per person, seeds averaged), one panel per
    scenario and one column per method: the mean with its 95 % bootstrap interval beside the
    spread of people it summarizes, and the share of people on each side of zero."""
    from crop.report.stats import per_user_gains, summarize_gain

    scenarios = sorted({k[0] for k in perf})
    methods = [m for m in _ordered({k[1] for k in perf} - {"generic"}, METHOD_ORDER) if m != reference]
    cols = min(len(scenarios), 2)
    rows = -(-len(scenarios) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.0, 0.6 * len(methods) + 1.5) * cols, 4.0 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        for i, m in enumerate(methods):
            gains = per_user_gains(perf, scenario, m, reference)
            if not gains:
                continue
            values = np.array(list(gains.values()))
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=9, alpha=0.45, color="#3b75af")
            g = summarize_gain(perf, scenario, m, reference)
            ax.errorbar(
                [i], [g.mean], yerr=[[g.mean - g.low], [g.high - g.mean]], fmt="D", color="black", ms=5, capsize=4
            )
        ax.axhline(0, color="#ef8636", linewidth=1)
        ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right")
        ax.set_ylabel(f"gain over {reference} (pp, Ca + Cu)")
        ax.set_title(scenario)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    fig.suptitle(title or f"Per-user gain over {reference}: dots = people, diamond = mean with 95 % interval")
    plain_figure_text(fig).tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    from crop.report.files import atomic_target

    try:
        with atomic_target(path) as tmp:  # a regular file or a new one; nothing left on failure
            plain_figure_text(fig).savefig(tmp, dpi=120, format="png")  # names in the figure drawn as text
    finally:
        plt.close(fig)
    return Path(path)


def _curve(records: list[dict], method: str, context: str, kind: str) -> tuple[list[float], list[float], list[float]]:
    """Radii, mean and sd over seeds (of the per-seed mean over users) of ``kind@...`` records."""
    by: dict[float, dict[int, list[float]]] = {}
    for r in records:
        if r.get("method") == method and r.get("context") == context and r.get("metric", "").startswith(f"{kind}@"):
            by.setdefault(float(r["radius"]), {}).setdefault(r["seed"], []).append(r["value"])
    radii = sorted(by)
    per_seed = [[100 * float(np.mean(v)) for v in by[x].values()] for x in radii]
    return (
        radii,
        [float(np.mean(v)) for v in per_seed],
        [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in per_seed],
    )


def robustness_curves(records: list[dict], scenario: str, path: str | Path, title: str = "") -> Path | None:
    """Verified accuracy (solid) and PGD accuracy (dashed) against the radius, one panel per
    context, one colour per method; ``None`` if the records hold no robustness measures."""
    rows = [r for r in records if r.get("status") == "ok" and r.get("scenario") == scenario and "radius" in r]
    kinds = [k for k in ("verified", "pgd") if any(r["metric"].startswith(f"{k}@") for r in rows)]
    if "verified" not in kinds:
        return None
    methods = _ordered({r["method"] for r in rows}, METHOD_ORDER)
    norm = next(r["norm"] for r in rows if r["metric"].startswith("verified@"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, context in zip(axes, ("available", "unseen"), strict=True):
        for i, method in enumerate(methods):
            for kind, style in (("verified", "-"), ("pgd", "--")):
                if kind not in kinds:
                    continue
                x, mean, sd = _curve(rows, method, context, kind)
                if not x:
                    continue
                label = method if kind == "verified" else None
                ax.errorbar(
                    x, mean, yerr=sd, fmt=style + "o", ms=3, capsize=2, color=colors[i % len(colors)], label=label
                )
        ax.set_title(f"{context} context")
        ax.set_xlabel(f"{'L-inf' if norm == 'linf' else 'L2'} radius (input units)")
        ax.grid(alpha=0.3)
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(
        fontsize=8, loc="lower left", title="solid: verified, dashed: PGD" if "pgd" in kinds else None, title_fontsize=8
    )
    fig.suptitle(title or f"{scenario}: verified (and PGD) accuracy against the radius, mean ± sd over seeds")
    plain_figure_text(fig).tight_layout()
    return _save(fig, path)

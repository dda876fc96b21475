"""Figures of a report card, returned as PNG bytes for embedding (matplotlib, Agg backend).

PNG rather than SVG: matplotlib's SVG text is drawn as paths or needs fonts, and a PNG of
this size is a few tens of KiB. Metadata without a software version or date keeps the bytes
of a card the same from one run to the next.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

DPI = 96
BLUE, ORANGE, GREY, RED = "#3b75af", "#ef8636", "#9a9a9a", "#c0392b"


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    from crop.report.escape import plain_figure_text

    buf = io.BytesIO()
    plain_figure_text(fig).savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_bars(
    contexts: list[str], generic: dict[str, float], model: dict[str, float], method: str, metric: str
) -> bytes:
    """Grouped bars: the generic model and the personalized one on each context (in %)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(contexts) + 1.5), 3.2))
    x = np.arange(len(contexts))
    g = [generic.get(c, np.nan) for c in contexts]
    p = [model[c] for c in contexts]
    ax.bar(x - 0.2, g, 0.4, label="generic", color=GREY)
    ax.bar(x + 0.2, p, 0.4, label=method, color=BLUE)
    for xi, gv, pv in zip(x, g, p, strict=True):
        ax.text(xi + 0.2, pv + 1, f"{pv:.1f}", ha="center", fontsize=8)
        if np.isfinite(gv):
            ax.text(xi - 0.2, gv + 1, f"{gv:.1f}", ha="center", fontsize=8)
    ax.set_xticks(x, [c.replace(": ", ":\n") for c in contexts], fontsize=8)
    ax.set_ylim(0, 108)
    ax.set_ylabel(f"{metric} (%)")
    ax.legend(loc="lower right", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def gain_strip(strips: dict[str, dict[Any, float]], user: Any, method: str) -> bytes:
    """One row per reference: every person's unseen-context gain as a dot, the mean as a bar,
    this person in red."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 0.9 + 0.7 * len(strips)))
    rng = np.random.default_rng(0)  # vertical jitter only, fixed
    for row, gains in enumerate(strips.values()):
        users = sorted(gains, key=str)
        values = np.asarray([gains[u] for u in users], dtype=float)
        jitter = rng.uniform(-0.15, 0.15, size=values.size)
        mine = np.asarray([str(u) == str(user) for u in users])
        ax.scatter(values[~mine], row + jitter[~mine], s=18, color=BLUE if row == 0 else ORANGE, alpha=0.7)
        if mine.any():
            ax.scatter(values[mine], np.full(mine.sum(), row), s=60, color=RED, marker="D", label=f"user {user}")
        if values.size:
            ax.vlines(values.mean(), row - 0.3, row + 0.3, color="black", lw=2)
    ax.axvline(0, color=GREY, lw=1, ls="--")
    ax.set_yticks(range(len(strips)), list(strips), fontsize=8)
    ax.set_ylim(len(strips) - 0.4, -0.6)  # first reference on top
    ax.set_xlabel(f"{method}: gain on the unseen context per person (pp); black bar = mean")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles[:1], labels[:1], fontsize=8, loc="best")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)

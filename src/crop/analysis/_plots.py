"""Figures of the analysis (matplotlib, Agg backend; files written atomically).

* :func:`plot_weight_heatmaps`: parameter magnitudes of one layer for several models side by
  side (Figure 3; black = zero, bright = large).
* :func:`plot_tsne`: t-SNE of the embeddings per model state (columns) and context (rows),
  coloured by class (Figure 5).
* :func:`plot_state_deltas`: the accuracy change of each state against a reference state, per
  context (Table 5 as bars).
* :func:`plot_gip`: GIP and gradient cosine per state (Table 4 as bars).
* :func:`plot_prune_curve`: ToleratedPrune's accuracy against the pruning amount.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from crop.report.escape import plain_figure_text  # noqa: E402

FONT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9}


def _save(fig: plt.Figure, path: str | Path) -> Path:
    from crop.report.files import atomic_target

    try:
        with atomic_target(path) as tmp:  # a regular file or a new one; nothing left on failure
            plain_figure_text(fig).savefig(tmp, dpi=130, bbox_inches="tight")  # data drawn as text
    finally:
        plt.close(fig)
    return Path(path)


def as_matrix(weight: torch.Tensor | np.ndarray) -> np.ndarray:
    """A weight tensor as a 2-D magnitude matrix: rows = output units, columns = the rest."""
    w = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
    w = np.abs(w.astype(np.float64))
    return w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(1, -1)


def plot_weight_heatmaps(
    panels: Mapping[str, torch.Tensor | np.ndarray],
    path: str | Path,
    *,
    layer: str = "",
    masks: torch.Tensor | None = None,
) -> Path:
    """Magnitude heat maps of one layer for several models, on one shared colour scale.

    ``panels`` maps a title (e.g. ``"generic"``) to that model's weight tensor of the layer.
    The scale runs from 0 (black) to the 99.5th percentile of all panels, so one outlier
    does not wash the maps out. ``masks`` (keep-mask of the layer) adds a panel showing the
    positions pruning removed.
    """
    mats = {k: as_matrix(v) for k, v in panels.items()}
    vmax = float(np.percentile(np.concatenate([m.ravel() for m in mats.values()]), 99.5)) or 1.0
    rows, cols = next(iter(mats.values())).shape
    panel_w = 3.0
    panel_h = float(np.clip(panel_w * rows / cols, 1.6, 3.6))
    n = len(mats) + (1 if masks is not None else 0)
    with plt.rc_context(FONT):
        fig = plt.figure(figsize=(panel_w * n + 1.0, panel_h + 1.1), layout="constrained")
        heat_fig, mask_fig = fig.subfigures(
            1, 2, width_ratios=[len(mats) * panel_w + 0.9, panel_w if masks is not None else 0.01]
        )
        axes = heat_fig.subplots(1, len(mats), squeeze=False)[0]
        im = None
        for ax, (title, m) in zip(axes, mats.items(), strict=True):
            im = ax.imshow(m, cmap="hot", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
            ax.set_title(title)
            ax.set_xlabel("input connection")
        axes[0].set_ylabel("output unit")
        heat_fig.colorbar(im, ax=list(axes), label="|w|", shrink=0.9, pad=0.02)
        if masks is not None:
            ax = mask_fig.subplots()
            removed = (~masks.detach().cpu().numpy().astype(bool)).reshape(rows, -1)
            ax.imshow(removed, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            ax.set_title(f"pruned positions (black, {100 * removed.mean():.0f} %)")
            ax.set_xlabel("input connection")
        fig.suptitle(f"|w| of layer {layer}" if layer else "|w|")
    return _save(fig, path)


def plot_tsne(
    points: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray, float]],
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Grid of t-SNE scatter plots: one column per state, one row per context.

    ``points[(state, context)] = (xy (n, 2), labels (n,), accuracy in [0, 1])``.
    """
    states = list(dict.fromkeys(s for s, _ in points))
    contexts = list(dict.fromkeys(c for _, c in points))
    labels = sorted({int(v) for _, y, _ in points.values() for v in y})
    cmap = plt.get_cmap("tab10")
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(
            len(contexts), len(states), figsize=(3.1 * len(states), 3.0 * len(contexts) + 0.6), squeeze=False
        )
        for i, ctx in enumerate(contexts):
            for j, st in enumerate(states):
                ax = axes[i][j]
                ax.set_xticks([])
                ax.set_yticks([])
                if (st, ctx) not in points:
                    ax.set_visible(False)
                    continue
                xy, y, acc = points[(st, ctx)]
                for c in labels:
                    sel = y == c
                    ax.scatter(xy[sel, 0], xy[sel, 1], s=9, color=cmap(c % 10), alpha=0.85, linewidths=0)
                ax.set_title(f"{st}: {100 * acc:.1f} %")
                if j == 0:
                    ax.set_ylabel(ctx)
        names = [class_names[c] if class_names and c < len(class_names) else f"class {c}" for c in labels]
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=cmap(c % 10), label=nm)
            for c, nm in zip(labels, names, strict=True)
        ]
        fig.legend(
            handles=handles, loc="lower center", ncol=min(len(handles), 6), bbox_to_anchor=(0.5, -0.01), frameon=False
        )
        if title:
            fig.suptitle(title)
        plain_figure_text(fig).tight_layout(rect=(0, 0.05, 1, 1))
    return _save(fig, path)


def plot_state_deltas(
    accuracies: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    reference: str = "generic",
    title: str = "",
) -> Path:
    """Bars of ``acc(state) - acc(reference)`` in percentage points, one group per state,
    one bar per context (values annotated)."""
    states = [s for s in accuracies if s != reference]
    contexts = list(accuracies[reference])
    width = 0.8 / max(len(contexts), 1)
    x = np.arange(len(states))
    with plt.rc_context(FONT):
        fig, ax = plt.subplots(figsize=(1.5 * len(states) + 2.5, 3.6))
        for k, ctx in enumerate(contexts):
            vals = [100 * (accuracies[s][ctx] - accuracies[reference][ctx]) for s in states]
            bars = ax.bar(x + (k - (len(contexts) - 1) / 2) * width, vals, width, label=ctx)
            ax.bar_label(bars, fmt="%+.1f", fontsize=8, padding=2)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, states)
        ax.set_ylabel(f"accuracy - {reference} (points)")
        ax.margins(y=0.18)
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title(title or f"change against the {reference} model")
        plain_figure_text(fig).tight_layout()
    return _save(fig, path)


def plot_gip(rows: Sequence[Mapping], path: str | Path, *, title: str = "") -> Path:
    """Two panels: GIP and gradient cosine per state (whole model), one bar per unseen context."""
    rows = [r for r in rows if r["subset"] == "all"]
    states = list(dict.fromkeys(r["state"] for r in rows))
    contexts = list(dict.fromkeys(r["context"] for r in rows))
    value = {(r["state"], r["context"]): r for r in rows}
    width = 0.8 / max(len(contexts), 1)
    x = np.arange(len(states))
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(1, 2, figsize=(2.2 * len(states) + 3, 3.6))
        for ax, key, label in ((axes[0], "gip", "GIP = 2 <G_a, G_u>"), (axes[1], "cosine", "cos(G_a, G_u)")):
            for k, ctx in enumerate(contexts):
                vals = [value[(s, ctx)][key] if (s, ctx) in value else np.nan for s in states]
                ax.bar(x + (k - (len(contexts) - 1) / 2) * width, vals, width, label=ctx)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(x, states, rotation=20)
            ax.set_ylabel(label)
        axes[1].set_ylim(-1.05, 1.05)
        if len(contexts) > 1:
            axes[1].legend(frameon=False, loc="best")
        fig.suptitle(title or "gradient alignment of available and unseen context")
        plain_figure_text(fig).tight_layout()
    return _save(fig, path)


def plot_prune_curve(
    history: Sequence[tuple[float, float]],
    reference: float,
    tau: float | None,
    chosen: float,
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """ToleratedPrune: accuracy on the prune data against the pruning amount, the tolerance
    line ``A_o - tau`` and the chosen amount."""
    with plt.rc_context(FONT):
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
        amounts = [0.0] + [100 * a for a, _ in history]
        accs = [100 * reference] + [100 * acc for _, acc in history]
        ax.plot(amounts, accs, marker="o", ms=4, label="accuracy after pruning")
        if tau is not None and math.isfinite(tau):
            label = f"A_o - tau (tau = {100 * tau:g} points)"
            ax.axhline(100 * (reference - tau), color="tab:red", ls="--", lw=1, label=label)
        ax.axvline(100 * chosen, color="tab:green", ls=":", lw=1.2, label=f"chosen amount {100 * chosen:.0f} %")
        ax.set_xlabel("pruning amount (% of prunable weights)")
        ax.set_ylabel("accuracy on prune data (%)")
        ax.legend(frameon=False, loc="lower left")
        ax.set_title(title or "ToleratedPrune")
        plain_figure_text(fig).tight_layout()
    return _save(fig, path)


def plot_user_means(
    values: Mapping[str, Mapping[str, Mapping[int | str, float]]],
    path: str | Path,
    *,
    ylabel: str = "balanced accuracy (%)",
    title: str = "",
    scale: float = 100.0,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Per category (a model state or a method) and context: every user's value as a dot and
    their mean as a wide bar-shaped marker, annotated. Dots, not bars, so a zoomed y axis does
    not mislead.

    ``values[category][context][user] = value`` (fractions, multiplied by ``scale``).
    """
    cats = list(values)
    contexts = list(dict.fromkeys(c for v in values.values() for c in v))
    step = 0.8 / max(len(contexts), 1)
    x = np.arange(len(cats))
    cmap = plt.get_cmap("tab10")
    with plt.rc_context(FONT):
        fig, ax = plt.subplots(figsize=(min(12.0, max(5.5, 0.8 * len(cats) + 3.0)), 4.0))
        for k, ctx in enumerate(contexts):
            off = x + (k - (len(contexts) - 1) / 2) * step
            for i, (xi, cat) in enumerate(zip(off, cats, strict=True)):
                per = scale * np.asarray(list(values[cat].get(ctx, {}).values()), dtype=float)
                if per.size == 0:
                    continue
                jitter = np.linspace(-0.25, 0.25, per.size) * step if per.size > 1 else np.zeros(1)
                ax.scatter(xi + jitter, per, s=14, color=cmap(k), alpha=0.55, linewidths=0, zorder=2)
                mean = float(per.mean())
                ax.plot(
                    [xi - 0.4 * step, xi + 0.4 * step],
                    [mean, mean],
                    color=cmap(k),
                    lw=2.5,
                    zorder=3,
                    label=f"{ctx}: mean (line), users (dots)" if i == 0 else None,
                )
                ax.annotate(
                    f"{mean:.1f}", (xi, mean), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7.5
                )
        ax.set_xticks(x, cats, rotation=30 if len(cats) > 5 else 0, ha="right" if len(cats) > 5 else "center")
        ax.set_xlim(-0.6, len(cats) - 0.4)
        ax.set_ylabel(ylabel)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(contexts))
        ax.set_title(title, pad=22)
        plain_figure_text(fig).tight_layout()
    return _save(fig, path)


def plot_user_lines(
    values: Mapping[int | str, Mapping[str, float]],
    path: str | Path,
    *,
    ylabel: str,
    title: str = "",
    zero_line: bool = True,
    symlog: float | None = None,
) -> Path:
    """One line per user across ordered categories: ``values[user][category] = value``.

    ``symlog`` (a positive threshold) draws the y axis symmetric-logarithmic, linear within
    ``+-symlog``: for quantities such as GIP that span orders of magnitude and change sign.
    """
    cats = list(dict.fromkeys(c for v in values.values() for c in v))
    x = np.arange(len(cats))
    with plt.rc_context(FONT):
        fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(cats) + 2.2), 3.6))
        for user, v in values.items():
            ax.plot(x, [v.get(c, np.nan) for c in cats], marker="o", ms=4, label=f"user {user}")
        if zero_line:
            ax.axhline(0, color="black", lw=0.8)
        if symlog:
            ax.set_yscale("symlog", linthresh=symlog)
            ylabel += f" (symlog, linear within +-{symlog:g})"
        ax.set_xticks(x, cats)
        ax.set_ylabel(ylabel)
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title(title)
        plain_figure_text(fig).tight_layout()
    return _save(fig, path)

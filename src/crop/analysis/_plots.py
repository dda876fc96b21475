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
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

FONT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9}


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


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
    extra = 1 if masks is not None else 0
    n = len(mats) + extra
    rows, cols = next(iter(mats.values())).shape
    aspect = cols / rows
    width = min(4.2, max(2.4, 1.4 * aspect))
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(1, n, figsize=(width * n + 1.2, width / max(aspect, 0.35) * 0.9 + 1.0), squeeze=False)
        im = None
        for ax, (title, m) in zip(axes[0], mats.items(), strict=False):
            im = ax.imshow(m, cmap="hot", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
            ax.set_title(title)
            ax.set_xlabel("input connection")
        axes[0][0].set_ylabel("output unit")
        if masks is not None:
            ax = axes[0][-1]
            removed = (~masks.detach().cpu().numpy().astype(bool)).reshape(rows, -1)
            ax.imshow(removed, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            ax.set_title(f"pruned ({100 * removed.mean():.0f} %, black)")
            ax.set_xlabel("input connection")
        fig.suptitle(f"|w| of layer {layer}" if layer else "|w|")
        fig.colorbar(im, ax=axes[0][: len(mats)].tolist(), label="|w|", fraction=0.03, pad=0.02)
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
        fig.tight_layout(rect=(0, 0.05, 1, 1))
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
        ax.legend(loc="best", frameon=False)
        ax.set_title(title or f"change against the {reference} model")
        fig.tight_layout()
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
        fig.tight_layout()
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
        fig.tight_layout()
    return _save(fig, path)

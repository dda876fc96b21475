"""Figures of benchmark results (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crop.report.escape import plain_figure_text  # noqa: E402
from crop.report.tables import METHOD_ORDER, Perf, _ordered  # noqa: E402

JITTER = 0.36  # width of one method's strip of people (x units: one method per unit)
MIN_SLOTS = 4  # a strip axis is never narrower than this many methods' slots
MIN_TITLE_SIZE = 7.0  # points: a title that cannot be wrapped to fit is shrunk down to this
MAX_TITLE_LINES = 4  # a longer title is cut (with an ellipsis)


def _jitter(rng: np.random.Generator, n: int) -> np.ndarray:
    """Offsets of ``n`` dots within one method's strip (always :data:`JITTER` wide)."""
    return rng.uniform(-JITTER / 2, JITTER / 2, n)


def _strip_axis(ax: plt.Axes, n_methods: int) -> None:
    """x limits of a strip plot: one unit per method, and at least :data:`MIN_SLOTS` units, so
    one method's strip stays as narrow as it is among many (centred when there are few)."""
    span = max(n_methods, MIN_SLOTS)
    centre = (n_methods - 1) / 2
    ax.set_xlim(centre - span / 2, centre + span / 2)


def _legend_outside(ax: plt.Axes, **kwargs: object) -> None:
    """The legend right of ``ax``, outside the data: it can cover no bar, dot or error bar."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def _fit_text(text: object, max_width: float, renderer: object) -> None:
    """Wrap the matplotlib text ``text`` (already literal, :func:`plain_figure_text`) until it is
    at most ``max_width`` pixels wide: at spaces, and inside a word only when one word is wider
    than a line (never between the ``\\`` and the ``$`` of an escaped dollar). More than
    :data:`MAX_TITLE_LINES` lines are cut with an ellipsis (a name that long is shown whole in
    the tables); a text still too wide is shrunk down to :data:`MIN_TITLE_SIZE` points."""
    import textwrap

    original = text.get_text()
    wide = text.get_window_extent(renderer).width if original else 0.0
    if wide <= max_width:
        return
    held = original.replace("\\$", "\x00")  # one character while wrapping (no control is left in it)
    longest = max(len(line) for line in held.split("\n"))
    width = max(8, int(longest * max_width / wide))  # characters per line: a first guess, then narrower
    while True:
        lines = [
            part for line in held.split("\n") for part in textwrap.wrap(line, width, break_on_hyphens=False) or [""]
        ]
        if len(lines) > MAX_TITLE_LINES:
            lines = [*lines[: MAX_TITLE_LINES - 1], lines[MAX_TITLE_LINES - 1][: max(1, width - 1)] + "…"]
        text.set_text("\n".join(lines).replace("\x00", "\\$"))
        if text.get_window_extent(renderer).width <= max_width or width == 8:
            break
        width = max(8, int(width * 0.9))
    while text.get_fontsize() > MIN_TITLE_SIZE and text.get_window_extent(renderer).width > max_width:
        text.set_fontsize(max(MIN_TITLE_SIZE, text.get_fontsize() - 1))


def _finish(fig: plt.Figure, cols: int = 1) -> plt.Figure:
    """Texts literal (:func:`plain_figure_text`), then every title wrapped to fit: the figure's
    title within the figure, each panel's title (centred on its panel) within the figure too,
    measured where the constrained layout put the panel. The layout makes room for the wrapped
    titles, labels and legends when the figure is saved."""
    plain_figure_text(fig)
    fig.canvas.draw()  # lays the panels out: where each title is centred
    renderer = fig.canvas.get_renderer()
    width = fig.bbox.width
    if fig._suptitle is not None:
        _fit_text(fig._suptitle, 0.96 * width, renderer)
    for ax in fig.axes:
        centre = (ax.bbox.x0 + ax.bbox.x1) / 2 - fig.bbox.x0
        room = 2 * min(centre, width - centre)
        _fit_text(ax.title, 0.95 * min(room, width / cols + 0.5 * ax.bbox.width), renderer)
    return fig


def delta_bars(perf: Perf, path: str | Path, title: str = "") -> Path:
    """Bar chart of Δ_P and Δ_G per method (one panel per scenario): mean over users, error bars
    = 95 % paired bootstrap interval over users."""
    from crop.report.stats import summarize_gain

    scenarios = sorted({k[0] for k in perf})
    methods = _ordered({k[1] for k in perf} - {"generic"}, METHOD_ORDER)
    cols = min(len(scenarios), 2 if len(methods) > 6 else 3)
    rows = -(-len(scenarios) // cols)
    width = max(4.5, 1.0 + 0.55 * len(methods))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.6, 4.2 * rows), squeeze=False, layout="constrained")
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
    _legend_outside(axes[0][-1], fontsize=8)
    fig.suptitle(title or "Δ_P and Δ_G, mean over users, 95 % bootstrap interval")
    return _save(_finish(fig, cols), path)


def _strip_panels(n_panels: int, n_methods: int, per_method: float) -> tuple[plt.Figure, np.ndarray, int]:
    """The figure of a strip plot: one panel per scenario, two per row, each ``per_method``
    inches per method wide (5 at least); panels past ``n_panels`` are hidden. Returns the
    figure, the axes grid and the number of columns."""
    cols = min(n_panels, 2)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(max(5.0, per_method * n_methods + 1.5) * cols, 4.0 * rows),
        squeeze=False,
        layout="constrained",
    )
    for ax in list(axes.flat)[n_panels:]:
        ax.axis("off")
    return fig, axes, cols


def gain_strips(perf: Perf, path: str | Path, reference: str = "finetune", title: str = "") -> Path:
    """Per-user gains over ``reference`` (one dot per person, seeds averaged), one panel per
    scenario and one column per method: the mean with its 95 % bootstrap interval beside the
    spread of people it summarizes, and the share of people on each side of zero."""
    from crop.report.stats import per_user_gains, summarize_gain

    scenarios = sorted({k[0] for k in perf})
    methods = [m for m in _ordered({k[1] for k in perf} - {"generic"}, METHOD_ORDER) if m != reference]
    fig, axes, cols = _strip_panels(len(scenarios), len(methods), 0.6)
    rng = np.random.default_rng(0)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        for i, m in enumerate(methods):
            gains = per_user_gains(perf, scenario, m, reference)
            if not gains:
                continue
            values = np.array(list(gains.values()))
            ax.scatter(i + _jitter(rng, len(values)), values, s=9, alpha=0.45, color="#3b75af")
            g = summarize_gain(perf, scenario, m, reference)
            ax.errorbar(
                [i], [g.mean], yerr=[[g.mean - g.low], [g.high - g.mean]], fmt="D", color="black", ms=5, capsize=4
            )
        ax.axhline(0, color="#ef8636", linewidth=1)
        _strip_axis(ax, len(methods))
        ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right")
        ax.set_ylabel(f"gain over {reference} (pp, Ca + Cu)")
        ax.set_title(scenario)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or f"Per-user gain over {reference}: dots = people, diamond = mean with 95 % interval")
    return _save(_finish(fig, cols), path)


def harm_strips(perf: Perf, path: str | Path, title: str = "") -> Path | None:
    """Who loses: per person (one dot, seeds averaged), the unseen-context change of each method
    against the generic model; one panel per scenario. Dots below the harm margin (-2 pp) are
    red, and each method is labelled with its share of people harmed. ``None`` without generic
    results."""
    from crop.report.stats import HARM_MARGIN, harm_summary, unseen_changes

    scenarios = sorted({k[0] for k in perf if any(g[0] == k[0] and g[1] == "generic" for g in perf)})
    if not scenarios:
        return None
    methods = _ordered({k[1] for k in perf} - {"generic"}, METHOD_ORDER)
    fig, axes, cols = _strip_panels(len(scenarios), len(methods), 0.8)
    rng = np.random.default_rng(0)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        labels = []
        for i, m in enumerate(methods):
            changes = unseen_changes(perf, scenario, m)
            values = np.array(list(changes.values()))
            if values.size:
                harmed = values < -HARM_MARGIN
                xs = i + _jitter(rng, len(values))
                ax.scatter(xs[~harmed], values[~harmed], s=10, alpha=0.5, color="#3b75af")
                ax.scatter(xs[harmed], values[harmed], s=12, alpha=0.8, color="#c0392b")
            h = harm_summary(perf, scenario, m)
            labels.append(f"{m}\n{100 * h.rate:.0f} % harmed" if h.n_users else m)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.axhline(-HARM_MARGIN, color="#c0392b", linewidth=0.8, linestyle="--")
        _strip_axis(ax, len(methods))
        ax.set_xticks(range(len(methods)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("unseen-context change vs generic (pp)")
        ax.set_title(scenario)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or f"Who loses: one dot per person; red = more than {HARM_MARGIN:g} pp below the generic model")
    return _save(_finish(fig, cols), path)


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
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2), sharey=True, layout="constrained")
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
    handles, labels = axes[0].get_legend_handles_labels()
    axes[1].legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        fontsize=8,
        title="solid: verified\ndashed: PGD" if "pgd" in kinds else None,
        title_fontsize=8,
    )
    fig.suptitle(title or f"{scenario}: verified (and PGD) accuracy against the radius, mean ± sd over seeds")
    return _save(_finish(fig, 2), path)

"""Figure layout (issue 22, second part): titles inside the figure, a narrow strip of people
whatever the number of methods, legends that cover no error bar. Each figure is laid out and
drawn as it would be saved (at the figure's own dpi: the layout scales with it) and its artists'
extents are compared in pixels."""

from __future__ import annotations

import numpy as np
import pytest

from crop.report import plots

USERS = range(1, 11)


def perf_of(methods, scenarios=("hapt-session:1",), spread=3.0, seed=0):
    """Synthetic per-user accuracies: every method a little better than generic, with ``spread``
    pp of noise per person (wide intervals when large)."""
    rng = np.random.default_rng(seed)
    perf = {}
    for s in scenarios:
        for i, m in enumerate(["generic", *methods]):
            for u in USERS:
                base = 60.0 + 2.0 * i
                perf[(s, m, u, 0)] = {
                    "available": base + rng.normal(0, spread),
                    "unseen": base + rng.normal(0, spread),
                }
    return perf


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """Run a plot function and return its figure, laid out and drawn as it would be saved."""
    figures = []

    def keep(fig, path):
        figures.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", keep)

    def draw(function, *args, **kwargs):
        function(*args, tmp_path / "figure.png", **kwargs)
        (fig,) = figures[-1:]
        fig.canvas.draw()
        return fig

    yield draw
    for fig in figures:
        plots.plt.close(fig)


def inside(inner, outer, slack=1.0):
    return (
        inner.x0 >= outer.x0 - slack
        and inner.y0 >= outer.y0 - slack
        and inner.x1 <= outer.x1 + slack
        and inner.y1 <= outer.y1 + slack
    )


def titles(fig):
    texts = [fig._suptitle] if fig._suptitle is not None else []
    return texts + [ax.title for ax in fig.axes if ax.get_title()]


ONE_PANEL = [
    ("delta_bars", ["finetune", "crop"]),
    ("gain_strips", ["finetune", "crop"]),
    ("harm_strips", ["finetune", "crop"]),
]


@pytest.mark.parametrize(("name", "methods"), ONE_PANEL)
def test_titles_of_one_panel_figures_lie_inside_the_figure(drawn, name, methods):
    fig = drawn(getattr(plots, name), perf_of(methods))
    renderer = fig.canvas.get_renderer()
    shown = titles(fig)
    assert shown, "the figure has a title"
    for text in shown:
        assert inside(text.get_window_extent(renderer), fig.bbox), (name, text.get_text())


def test_a_long_title_given_by_the_caller_is_wrapped_to_fit(drawn):
    title = "Δ_P and Δ_G (balanced_accuracy), mean over users, 95 % bootstrap interval " * 3
    fig = drawn(plots.delta_bars, perf_of(["finetune"]), title=title.strip())
    renderer = fig.canvas.get_renderer()
    assert inside(fig._suptitle.get_window_extent(renderer), fig.bbox)
    assert " ".join(fig._suptitle.get_text().split()) == " ".join(title.split())  # wrapped, not cut


def _strip_spread(fig):
    """Per axes: the x spread of the per-person dots (pixels) and the axes' width (pixels)."""
    out = []
    for ax in fig.axes:
        xs = [
            ax.transData.transform(c.get_offsets())[:, 0]
            for c in ax.collections
            if len(c.get_offsets()) > 1 and type(c).__name__ == "PathCollection"
        ]
        if xs:
            x = np.concatenate(xs)
            out.append((x.max() - x.min(), ax.bbox.width))
    return out


@pytest.mark.parametrize(("name", "methods"), [("gain_strips", ["finetune", "crop"]), ("harm_strips", ["crop"])])
def test_with_one_method_the_people_stay_in_a_narrow_strip(drawn, name, methods):
    fig = drawn(getattr(plots, name), perf_of(methods))
    ((spread, width),) = _strip_spread(fig)
    many = drawn(getattr(plots, name), perf_of(["finetune", "crop", "wise-ft", "l2-sp", "lp-ft", "tpgm"]))
    group = many.axes[0].bbox.width / len(many.axes[0].get_xticks())  # one method's slot with six
    assert spread <= group, (spread, group)
    assert spread <= 0.25 * width, (spread, width)


def _errorbar_extents(ax):
    """Pixel boxes of every error bar segment of ``ax`` (bars' yerr and errorbar calls)."""
    from matplotlib.collections import LineCollection
    from matplotlib.transforms import Bbox

    boxes = []
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            for seg in coll.get_segments():
                if len(seg):
                    pts = ax.transData.transform(seg)
                    boxes.append(Bbox([pts.min(axis=0) - 1, pts.max(axis=0) + 1]))
    return boxes


# (methods, spread, seed): people whose intervals leave the legend no free corner inside the
# axes (with the legend at loc="best" each of the first three covered an error bar)
CROWDED = [(2, 5.0, 2), (4, 25.0, 2), (8, 40.0, 2), (1, 25.0, 3)]


@pytest.mark.parametrize(("n_methods", "spread", "seed"), CROWDED)
def test_the_legend_covers_no_error_bar(drawn, n_methods, spread, seed):
    methods = ["finetune", "crop", "wise-ft", "l2-sp", "lp-ft", "tpgm", "surgical", "shot"][:n_methods]
    fig = drawn(plots.delta_bars, perf_of(methods, spread=spread, seed=seed))
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    assert inside(box, fig.bbox)
    bars = [b for ax in fig.axes for b in _errorbar_extents(ax)]
    assert bars, "the figure has error bars"
    assert not [b for b in bars if box.overlaps(b)], box


def test_a_title_with_one_very_long_word_is_broken_and_stays_literal(drawn):
    name = "x" * 150 + "$" + "y" * 150 + "$"  # one word, and a dollar pair that must not become math
    perf = {(name, *k[1:]): v for k, v in perf_of(["finetune", "crop"]).items()}
    fig = drawn(plots.delta_bars, perf)
    renderer = fig.canvas.get_renderer()
    title = fig.axes[0].title
    assert inside(title.get_window_extent(renderer), fig.bbox)
    shown = title.get_text()
    assert "\n" in shown and "\\$" in shown and "$" not in shown.replace("\\$", "")  # every dollar escaped
    assert shown.replace("\n", "").replace("…", "").replace("\\$", "$") in name

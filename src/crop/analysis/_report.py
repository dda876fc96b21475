"""``analyze_result``: every Section 7 analysis of one personalization result, as files.

It computes Table 4 (GIP), Table 5 (state accuracies and step effects), Table 6 (distances),
Table 15 (per-layer distances and pruning) and draws Figures 3 and 5 plus bar charts, and writes
them as Markdown + CSV tables and PNG figures with an ``index.md`` that shows them together and a
``analysis.json`` with the raw numbers.

Unseen-context data enters here, and only here: this is evaluation after personalization, never
an input of a personalization method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from crop.analysis._distances import distance_matrix, layer_distances
from crop.analysis._embed import embeddings, tsne_2d
from crop.analysis._gip import gip_table
from crop.analysis._plots import plot_gip, plot_prune_curve, plot_state_deltas, plot_tsne, plot_weight_heatmaps
from crop.analysis._states import state_accuracies, state_confusions, step_effects
from crop.data.sensing import ContextSplit, SensingData
from crop.errors import CropError
from crop.models.utils import State, clone_model
from crop.personalization.prune import prunable_names
from crop.personalization.registry import PersonalizationResult
from crop.report.files import write_text_atomic
from crop.report.table import Table, column_order, fmt_delta, fmt_pct

STATE_ORDER = ("generic", "initial", "pruned", "mixed", "final")
AvailablePart = Literal["train", "val", "test", "all"]


def available_data(available: ContextSplit, part: AvailablePart = "test") -> SensingData:
    """The available-context windows an analysis uses: one split, or all three together."""
    if part == "all":
        parts = [available.train, available.val, available.test]
        X = np.concatenate([p.X for p in parts if len(p)])
        y = np.concatenate([p.y for p in parts if len(p)])
        return SensingData(X, y, f"{available.train.name} [all]")
    if part not in ("train", "val", "test"):
        raise CropError(f"unknown available part {part!r}; choose train, val, test or all")
    return getattr(available, part)


def ordered_states(states: Mapping[str, State]) -> dict[str, State]:
    return {k: states[k] for k in column_order(list(states), STATE_ORDER)}


def layer_label(model: nn.Module, layer: str) -> str:
    try:
        kind = type(model.get_submodule(layer)).__name__ if layer != "(root)" else type(model).__name__
    except AttributeError:
        return layer
    return f"{layer} ({kind})"


# ---------------------------------------------------------------- tables from computed values


def accuracy_table(acc: Mapping[str, Mapping[str, float]], prune_amount: float | None = None) -> Table:
    contexts = list(next(iter(acc.values())))
    header = ["state", *contexts]
    rows = [[s, *[acc[s][c] for c in contexts]] for s in acc]
    note = f"Pruning amount chosen by ToleratedPrune: {100 * prune_amount:.0f} %." if prune_amount is not None else ""
    return Table("Accuracy of each model state (Table 5), %", header, rows, {c: fmt_pct for c in contexts}, note)


def effects_table(acc: Mapping[str, Mapping[str, float]]) -> Table:
    effects = step_effects(acc)
    contexts = list(next(iter(acc.values())))
    rows = [[e["effect"], *[e[c] for c in contexts]] for e in effects]
    return Table("Effect of each step (points)", ["comparison", *contexts], rows, {c: fmt_delta for c in contexts})


def gip_markdown_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    header = ["state", "parameters", "unseen context", "GIP", "||G_a||", "||G_u||", "cosine"]
    out = [[r["state"], r["subset"], r["context"], r["gip"], r["norm_a"], r["norm_u"], r["cosine"]] for r in rows]
    return Table(
        "Gradient inner product of available and unseen context (Table 4)",
        header,
        out,
        {"cosine": lambda v: "-" if v is None or math.isnan(v) else f"{v:+.3f}"},
        note="GIP = ||G_a + G_u||^2 - (||G_a||^2 + ||G_u||^2) of the mean cross-entropy gradients; "
        "'removed by pruning' / 'pruned positions' sum only over the weights ToleratedPrune removed.",
    )


def distance_table(matrix: Mapping[str, Mapping[str, float]]) -> Table:
    names = list(matrix)
    rows = [
        [s, *[matrix[s][t] if j > i else None for j, t in enumerate(names[1:], start=1)]]
        for i, s in enumerate(names[:-1])
    ]
    return Table("Euclidean distance between model states (Table 6)", ["", *names[1:]], rows)


def layer_table(rows: Sequence[Mapping[str, Any]], model: nn.Module | None = None) -> Table:
    states = list(rows[0]["dist_per_param"]) if rows else []
    header = ["layer", "parameters", *[f"{s}: dist/param" for s in states], *[f"{s}: RMS" for s in states], "pruned %"]
    out = []
    for r in rows:
        label = layer_label(model, r["layer"]) if model is not None else r["layer"]
        out.append(
            [
                label,
                r["n_params"],
                *[r["dist_per_param"][s] for s in states],
                *[r["rms"][s] for s in states],
                r["pruned"],
            ]
        )
    return Table(
        "Per-layer distance to the generic model and pruning amount (Table 15)",
        header,
        out,
        {"pruned %": fmt_pct},
        note="dist/param = ||w_state - w_generic||_2 / n (the paper's measure); RMS = ||.||_2 / sqrt(n).",
    )


def confusion_table(
    confusions: Mapping[str, Mapping[str, np.ndarray]], class_names: Sequence[str] | None = None
) -> Table:
    """One row per (state, context, true class): how its windows were classified."""
    k = max(m.shape[0] for cm in confusions.values() for m in cm.values())
    names = [class_names[i] if class_names and i < len(class_names) else str(i) for i in range(k)]
    rows = []
    for state, cm in confusions.items():
        for ctx, m in cm.items():
            for i in range(m.shape[0]):
                rows.append([state, ctx, names[i], *[int(v) for v in m[i]], *([0] * (k - m.shape[1]))])
    return Table(
        "Confusion matrices (rows: true class; columns: predicted class)", ["state", "context", "true", *names], rows
    )


# ---------------------------------------------------------------- the entry point


@dataclass
class AnalysisReport:
    """What :func:`analyze_result` computed and where it wrote it."""

    out_dir: Path
    accuracies: dict[str, dict[str, float]]
    gip: list[dict]
    distances: dict[str, dict[str, float]]
    layers: list[dict]
    prune_amount: float | None
    confusions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracies": self.accuracies,
            "gip": self.gip,
            "distances": self.distances,
            "layers": self.layers,
            "prune_amount": self.prune_amount,
            "confusions": {s: {c: m.tolist() for c, m in cm.items()} for s, cm in self.confusions.items()},
        }


def default_heatmap_layer(model: nn.Module, masks: Mapping[str, Any] | None) -> str:
    """The prunable weight with the most entries (the first Linear after the convolutions on
    HAPTNet and on the paper's LeNet)."""
    names = list(masks) if masks else prunable_names(model)
    if not names:
        names = prunable_names(model, exclude_last=False)
    params = dict(model.named_parameters())
    return max(names, key=lambda n: params[n].numel())


def analyze_result(
    result: PersonalizationResult,
    available: ContextSplit,
    unseen: Mapping[str, SensingData],
    out_dir: str | Path,
    *,
    metric: str = "balanced_accuracy",
    available_part: AvailablePart = "test",
    seed: int = 0,
    heatmap_layer: str | None = None,
    heatmap_states: Sequence[str] = ("generic", "initial", "mixed", "final"),
    tsne_states: Sequence[str] = ("generic", "initial", "mixed", "final"),
    class_names: Sequence[str] | None = None,
    tau: float | None = None,
    figures: bool = True,
    title: str = "",
) -> AnalysisReport:
    """Write the Section 7 analyses of ``result`` to ``out_dir`` (created if needed).

    Args:
        result: a :class:`PersonalizationResult` with ``states`` (CRoP and its ablations give
            generic, initial, pruned, mixed, final; any subset works) and, for pruning methods,
            ``info["masks"]``.
        available: the person's available-context split; ``available_part`` of it (default the
            held-out test split) is the available context of every analysis.
        unseen: the unseen contexts, name -> data (test data only).
        seed: seeds t-SNE.
        tau: ToleratedPrune's tolerance, drawn on the pruning curve when given.
        figures: ``False`` writes the tables only.

    Returns:
        an :class:`AnalysisReport`; ``out_dir/index.md`` shows every table and figure.

    Example:
        >>> report = analyze_result(result, us.available, us.unseen, "analysis/user2")  # doctest: +SKIP
    """
    if not result.states:
        raise CropError(f"result of {result.method!r} holds no model states to analyse")
    if not unseen:
        raise CropError("no unseen context given: the analyses compare the available with an unseen context")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = clone_model(result.model)
    states = ordered_states(result.states)
    masks = result.info.get("masks")
    a_data = available_data(available, available_part)
    a_name = f"available ({available_part})"
    contexts = {a_name: a_data, **{f"unseen: {k}": v for k, v in unseen.items()}}
    param_names = [n for n, _ in model.named_parameters()]

    acc = state_accuracies(model, states, contexts, metric)
    confusions = state_confusions(model, states, contexts)
    gip_rows = gip_table(model, states, a_data, unseen, masks)
    dist = distance_matrix(states, param_names)
    layers = layer_distances(states, param_names, masks) if "generic" in states else []
    report = AnalysisReport(out, acc, gip_rows, dist, layers, result.prune_amount, confusions)

    tables = {
        "accuracies": accuracy_table(acc, result.prune_amount),
        "effects": effects_table(acc),
        "gip": gip_markdown_table(gip_rows),
        "distances": distance_table(dist),
    }
    if layers:
        tables["layers"] = layer_table(layers, model)
    tables["confusion"] = confusion_table(confusions, class_names)
    for stem, table in tables.items():
        report.files[stem], _ = table.write(out, stem)

    if figures:
        layer = heatmap_layer or default_heatmap_layer(model, masks)
        report.files.update(_draw_state_figures(model, states, masks, acc, gip_rows, out, layer, heatmap_states))
        report.files.update(_draw_prune_curve(result, tau, out))
        tsne = [s for s in tsne_states if s in states]
        report.files.update(_draw_tsne(model, states, tsne, contexts, acc, out, seed=seed, class_names=class_names))

    write_text_atomic(out / "analysis.json", json.dumps(_jsonable(report.to_dict()), indent=1, allow_nan=True))
    report.files["index"] = write_text_atomic(
        out / "index.md", _index(title or f"Analysis of {result.method}", tables, report.files)
    )
    return report


def _draw_state_figures(model, states, masks, acc, gip_rows, out: Path, layer: str, heatmap_states) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if "generic" in states:
        files["deltas"] = plot_state_deltas(acc, out / "deltas.png", title="accuracy change against the generic model")
    files["gip_plot"] = plot_gip(gip_rows, out / "gip.png")
    panels = {s: states[s][layer] for s in heatmap_states if s in states}
    if panels:
        keep = masks.get(layer) if masks else None
        label = layer_label(model, layer.rsplit(".", 1)[0])
        files["heatmap"] = plot_weight_heatmaps(panels, out / "heatmap.png", layer=label, masks=keep)
    return files


def _draw_prune_curve(result: PersonalizationResult, tau: float | None, out: Path) -> dict[str, Path]:
    history, reference = result.info.get("prune_history"), result.info.get("prune_reference")
    if not history or result.prune_amount is None or reference is None:
        return {}
    return {"prune_curve": plot_prune_curve(history, reference, tau, result.prune_amount, out / "prune_curve.png")}


def _draw_tsne(model, states, names, contexts, acc, out: Path, *, seed: int, class_names) -> dict[str, Path]:
    points = {}
    probe = clone_model(model)
    for s in names:
        probe.load_state_dict(states[s])
        for ctx, data in contexts.items():
            if len(data) >= 4:
                points[(s, ctx)] = (tsne_2d(embeddings(probe, data.X), seed=seed), data.y, acc[s][ctx])
    if not points:
        return {}
    title = "t-SNE of the decision layer's input"
    return {"tsne": plot_tsne(points, out / "tsne.png", class_names=class_names, title=title)}


FIGURE_CAPTIONS = {
    "deltas": "Accuracy of each state minus the generic model's, per context.",
    "gip_plot": "GIP and gradient cosine of available vs unseen context per state.",
    "heatmap": "Weight magnitudes of the largest prunable layer (Figure 3 style), and the pruned positions.",
    "prune_curve": "ToleratedPrune: accuracy on the prune data against the pruning amount.",
    "tsne": "t-SNE of the embeddings (input of the last Linear layer), coloured by class (Figure 5 style).",
}


def _index(title: str, tables: Mapping[str, Table], files: Mapping[str, Path]) -> str:
    from crop.report.escape import markdown_text

    parts = [f"# {markdown_text(title)}\n"]
    for stem, table in tables.items():
        parts.append(table.markdown_section(2))
        parts.append(f"([{stem}.csv]({stem}.csv))\n")
    for key, caption in FIGURE_CAPTIONS.items():
        if key in files:
            parts.append(f"## {caption}\n\n![{key}]({files[key].name})\n")
    return "\n".join(parts)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

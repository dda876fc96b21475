"""Table 5: the accuracy of every model state on every context, what each step changed, and
the confusion matrices behind the accuracies."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import nn

from crop.data.sensing import SensingData
from crop.models.routed import network_of
from crop.models.utils import State, clone_model, predict, score


def state_accuracies(
    model: nn.Module,
    states: Mapping[str, State],
    contexts: Mapping[str, SensingData],
    metric: str = "balanced_accuracy",
) -> dict[str, dict[str, float]]:
    """``{state: {context: metric}}`` (fractions in [0, 1]) of ``model``'s architecture
    holding each state (a routed model: its personalized network's). ``model`` itself is not
    modified."""
    probe = clone_model(network_of(model))
    out: dict[str, dict[str, float]] = {}
    for name, state in states.items():
        probe.load_state_dict(state)
        out[name] = {ctx: score(probe, data, metric) for ctx, data in contexts.items()}
    return out


STEP_EFFECTS = (
    ("pruning (pruned - initial)", "pruned", "initial"),
    ("mixing (mixed - initial)", "mixed", "initial"),
    ("final finetuning (final - mixed)", "final", "mixed"),
    ("final vs initial finetuning", "final", "initial"),
    ("final vs generic", "final", "generic"),
)


def step_effects(accuracies: Mapping[str, Mapping[str, float]]) -> list[dict]:
    """Differences between states (Table 5's "effect of mixing" and final-model comparisons).

    Rows ``{"effect", "a", "b", context: acc[a] - acc[b], ...}`` for each pair whose states
    are present.
    """
    rows = []
    for label, a, b in STEP_EFFECTS:
        if a in accuracies and b in accuracies:
            rows.append(
                {"effect": label, "a": a, "b": b, **{c: accuracies[a][c] - accuracies[b][c] for c in accuracies[a]}}
            )
    return rows


def state_confusions(
    model: nn.Module, states: Mapping[str, State], contexts: Mapping[str, SensingData], n_classes: int | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """``{state: {context: confusion matrix}}``; rows are true classes, columns predictions."""
    probe = clone_model(network_of(model))
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, state in states.items():
        probe.load_state_dict(state)
        out[name] = {}
        for ctx, data in contexts.items():
            pred = predict(probe, data.X)
            k = n_classes or int(max(data.y.max(), pred.max())) + 1
            out[name][ctx] = np.bincount(data.y * k + pred, minlength=k * k).reshape(k, k)
    return out

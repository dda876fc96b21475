"""Distances between model states: Table 6 (whole model) and Table 15 (per layer).

Only parameters count (``model.named_parameters()``); BatchNorm running statistics and other
buffers are left out, as they are not weights that finetuning, pruning or mixing choose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from crop.models.utils import State
from crop.personalization.prune import Masks


def euclidean_distance(a: State, b: State, keys: Sequence[str] | None = None) -> float:
    """``sqrt(sum_k ||a[k] - b[k]||^2)`` over ``keys`` (default: every key of ``a``), in float64."""
    keys = list(a) if keys is None else keys
    total = 0.0
    for k in keys:
        d = a[k].detach().to(torch.float64) - b[k].detach().to(torch.float64)
        total += float((d * d).sum())
    return math.sqrt(total)


def distance_matrix(states: Mapping[str, State], keys: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Table 6: ``{s: {t: distance}}`` for every ordered pair of states (symmetric, zero diagonal)."""
    names = list(states)
    out: dict[str, dict[str, float]] = {s: {} for s in names}
    for i, s in enumerate(names):
        out[s][s] = 0.0
        for t in names[i + 1 :]:
            out[s][t] = out[t][s] = euclidean_distance(states[s], states[t], keys)
    return out


def layer_of(name: str) -> str:
    """The module a parameter belongs to (``"fc1.weight"`` -> ``"fc1"``; ``"weight"`` -> ``""``)."""
    return name.rsplit(".", 1)[0] if "." in name else ""


def layer_distances(
    states: Mapping[str, State],
    keys: Sequence[str],
    masks: Masks | None = None,
    *,
    reference: str = "generic",
) -> list[dict]:
    """Table 15: per layer, the distance of every state to ``reference`` and the pruning amount.

    Each row holds ``layer``, ``n_params`` (all of the layer's parameters in ``keys``),
    ``dist_per_param[state]`` = ``||s - ref||_2 / n_params`` (the paper's "average Euclidean
    distance per parameter"), ``rms[state]`` = ``||s - ref||_2 / sqrt(n_params)`` (comparable
    across layers of different sizes) and ``pruned`` = the fraction of the layer's masked
    positions that pruning removed (``None`` for layers pruning never touches).
    """
    layers: dict[str, list[str]] = {}
    for k in keys:
        layers.setdefault(layer_of(k), []).append(k)
    ref = states[reference]
    rows = []
    for layer, names in layers.items():
        n = sum(ref[k].numel() for k in names)
        row: dict = {"layer": layer or "(root)", "n_params": n, "dist_per_param": {}, "rms": {}}
        for s, state in states.items():
            if s == reference:
                continue
            d = euclidean_distance(state, ref, names)
            row["dist_per_param"][s] = d / n
            row["rms"][s] = d / math.sqrt(n)
        masked = [k for k in names if masks and k in masks]
        if masked:
            total = sum(masks[k].numel() for k in masked)
            row["pruned"] = sum(int((~masks[k]).sum()) for k in masked) / total
        else:
            row["pruned"] = None
        rows.append(row)
    return rows

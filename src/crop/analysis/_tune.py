"""Hyperparameter search on the available context only (Appendix A.3).

The paper picks learning rate, alpha, tau and the epoch counts by a grid search on "the data
belonging to the available context" (Table 10 gives the ranges). :func:`tune` does that for any
registered method: it fits one model per grid point on the available-context *train* split and
keeps the one with the best score on the available-context *validation* split (ties: lower
validation cross-entropy, then grid order). Its only data argument is the person's
:class:`~crop.data.ContextSplit`, so no unseen-context window can reach the search, and the
available test split stays untouched for reporting.

Grid keys are config field paths, dotted for nested dataclasses (``"initial.lr"``); ``+`` ties
several paths to one value (``"initial.lr+final.lr"``: one learning rate for both phases).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.metrics import get_metric
from crop.models.utils import predict_logits
from crop.personalization.registry import PersonalizationResult, config_to_dict, get_method
from crop.report.files import write_text_atomic
from crop.report.table import Table, fmt_pct

Grid = Mapping[str, Sequence[Any]]

# Table 10's search ranges (the paper's datasets); the default grid stays inside them.
TABLE10_RANGES: dict[str, tuple[float, float]] = {"lr": (1e-6, 1e-1), "alpha": (1e-6, 10.0), "tau": (0.01, 0.25)}
MAX_DEFAULT_CONFIGS = 8


# ---------------------------------------------------------------- config paths


def _fields(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def get_path(config: Any, path: str) -> Any:
    """The value at a dotted field path of a (nested) config dataclass."""
    obj = config
    for part in path.split("."):
        if not dataclasses.is_dataclass(obj) or part not in _fields(obj):
            options = ", ".join(_fields(obj)) if dataclasses.is_dataclass(obj) else "none (not a config)"
            raise CropError(f"unknown config field {path!r} (no {part!r}; options there: {options})")
        obj = getattr(obj, part)
    return obj


def set_path(config: Any, path: str, value: Any) -> Any:
    """A copy of ``config`` with the field at ``path`` set to ``value`` (nested copies too)."""
    get_path(config, path)  # one-line error naming the whole path
    head, _, rest = path.partition(".")
    if rest:
        return dataclasses.replace(config, **{head: set_path(getattr(config, head), rest, value)})
    return dataclasses.replace(config, **{head: value})


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """Apply ``{key: value}``; a key may tie several paths with ``+``."""
    for key, value in overrides.items():
        for path in key.split("+"):
            config = set_path(config, path.strip(), value)
    return config


def _paths_named(config: Any, name: str, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out += _paths_named(value, name, f"{prefix}{f.name}.")
        elif f.name == name and isinstance(value, int | float) and not isinstance(value, bool):
            out.append(prefix + f.name)
    return out


def _clip(name: str, values: list[float]) -> list[float]:
    lo, hi = TABLE10_RANGES[name]
    return list(dict.fromkeys(float(min(max(v, lo), hi)) for v in values))


def default_grid(method: str, base_config: Any = None) -> dict[str, list[Any]]:
    """A small grid (at most 8 configs) around the method's defaults, inside Table 10's ranges.

    * every ``lr`` field (all phases tied): ``{lr, 3 lr}`` (``{lr / 3, lr, 3 lr}`` when the
      method has no alpha or tau);
    * ``alpha`` if the config has one: ``{alpha, 10 alpha}``;
    * ``tau`` if the config has one: ``{tau, 2 tau}``.

    Epoch counts are not searched by default: Table 10's range (100-1000) is for the paper's
    datasets and costs far more than HAPT's 40-epoch phases; add ``"initial.epochs"`` to a grid
    to search them.
    """
    config = base_config if base_config is not None else get_method(method).config_class()
    grid: dict[str, list[Any]] = {}
    lr_paths = _paths_named(config, "lr")
    alpha = [p for p in _paths_named(config, "alpha") if "." not in p]
    tau = [p for p in _paths_named(config, "tau") if "." not in p]
    if lr_paths:
        lr = float(get_path(config, lr_paths[0]))
        values = [lr, 3 * lr] if (alpha or tau) else [lr / 3, lr, 3 * lr]
        grid["+".join(lr_paths)] = _clip("lr", values)
    if alpha:
        a = float(get_path(config, alpha[0]))
        grid[alpha[0]] = _clip("alpha", [a, 10 * a] if a > 0 else [1e-4, 1e-3])
    if tau:
        t = float(get_path(config, tau[0]))
        grid[tau[0]] = _clip("tau", [t, 2 * t])
    return grid


def expand_grid(grid: Grid) -> list[dict[str, Any]]:
    """Every combination, the last key varying fastest (itertools.product order). At most
    :data:`~crop.validate.MAX_GRID_POINTS` combinations and
    :data:`~crop.validate.MAX_GRID_VALUES` distinct values per key."""
    from crop.validate import MAX_GRID_POINTS, MAX_GRID_VALUES

    keys = list(grid)
    size = 1
    for k in keys:
        if isinstance(grid[k], str | bytes) or not isinstance(grid[k], Sequence) or len(grid[k]) == 0:
            raise CropError(f"grid entry {k!r} must be a non-empty list of values")
        if len(grid[k]) > MAX_GRID_VALUES:
            raise CropError(f"grid entry {k!r} has {len(grid[k])} values; at most {MAX_GRID_VALUES}")
        if len({repr(v) for v in grid[k]}) != len(grid[k]):
            raise CropError(f"grid entry {k!r} repeats a value: {list(grid[k])}")
        size *= len(grid[k])
    if size > MAX_GRID_POINTS:
        raise CropError(f"the grid has {size} points; at most {MAX_GRID_POINTS} (use fewer values)")
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def grid_configs(base: Any, points: Sequence[Mapping[str, Any]], method: str) -> list[Any]:
    """``base`` with each grid point's overrides, every one validated (types, ranges, limits)
    before any training: a bad value fails the whole search, not one trial."""
    from crop.validate import check_config

    configs = []
    for p in points:
        config = apply_overrides(base, p)
        check_config(config, f"{method} grid point {', '.join(f'{k}={v}' for k, v in p.items()) or 'base'}")
        configs.append(config)
    return configs


def _literal(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_grid_option(spec: str) -> dict[str, list[Any]]:
    """Parse a command-line grid: ``"initial.lr+final.lr=1e-3,3e-3;alpha=1e-3,1e-2"``."""
    grid: dict[str, list[Any]] = {}
    for item in [s for s in spec.split(";") if s.strip()]:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise CropError(f"grid item {item!r} must look like key=value1,value2")
        if key.strip() in grid:
            raise CropError(f"grid key {key.strip()!r} given twice in {spec!r}")
        if any(not v.strip() for v in values.split(",")):
            raise CropError(f"grid item {item!r} has an empty value")
        grid[key.strip()] = [_literal(v) for v in values.split(",")]
    if not grid:
        raise CropError(f"empty grid {spec!r}")
    return grid


# ---------------------------------------------------------------- search


@dataclass
class Trial:
    """One grid point: its overrides and available-context validation scores."""

    index: int
    overrides: dict[str, Any]
    val_score: float
    val_loss: float
    prune_amount: float | None = None
    seconds: float = 0.0
    error: str | None = None


@dataclass
class TuneResult:
    """The search: every trial, the chosen grid point and config, and the model fitted with it."""

    method: str
    grid: dict[str, list[Any]]
    trials: list[Trial]
    best: Trial
    best_config: Any
    best_result: PersonalizationResult
    seed: int
    metric: str
    selected_on: str = "available-context validation split"

    @property
    def chosen(self) -> dict[str, Any]:
        """The chosen values, by grid key."""
        return dict(self.best.overrides)

    def table(self) -> Table:
        keys = list(self.grid)
        header = ["#", *keys, f"val {self.metric} %", "val loss", "prune %", "seconds", "chosen"]
        rows = []
        for t in self.trials:
            rows.append(
                [
                    t.index,
                    *[t.overrides.get(k) for k in keys],
                    t.val_score,
                    t.val_loss,
                    t.prune_amount,
                    round(t.seconds, 2),
                    "yes" if t is self.best else (t.error or ""),
                ]
            )
        fmt = {f"val {self.metric} %": fmt_pct, "prune %": fmt_pct}
        return Table(f"Grid search for {self.method} on the {self.selected_on}", header, rows, fmt)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "seed": self.seed,
            "metric": self.metric,
            "selected_on": self.selected_on,
            "grid": self.grid,
            "chosen": self.chosen,
            "best_val_score": self.best.val_score,
            "best_val_loss": self.best.val_loss,
            "config": config_to_dict(self.best_config),
            "trials": [dataclasses.asdict(t) for t in self.trials],
        }

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """``tune.md``, ``tune.csv`` (every trial) and ``chosen.json`` (values and full config)."""
        out = Path(out_dir)
        md, csv_path = self.table().write(out, "tune")
        text = json.dumps(_finite(self.to_dict()), indent=1, default=str)
        return {"table": md, "csv": csv_path, "chosen": write_text_atomic(out / "chosen.json", text)}


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def _val_scores(model: nn.Module, available: ContextSplit, metric: str) -> tuple[float, float]:
    logits = predict_logits(model, available.val.X)
    loss = float(F.cross_entropy(logits, torch.as_tensor(available.val.y)).item())
    return float(get_metric(metric)(available.val.y, logits.argmax(1).numpy())), loss


def tune(
    generic: nn.Module,
    available: ContextSplit,
    method: str = "crop",
    grid: Grid | None = None,
    *,
    seed: int = 0,
    budget: int | None = None,
    metric: str = "balanced_accuracy",
    base_config: Any = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuneResult:
    """Grid search of ``method``'s config on the available context (Appendix A.3).

    Args:
        generic: the generic model (copied by every fit, never modified).
        available: the person's available-context split, the only data the search sees:
            ``train`` to fit, ``val`` to choose. The ``test`` split is never read.
        method: any registered method name.
        grid: ``{field path: [values]}`` (see the module docstring); default :func:`default_grid`.
        seed: seed of every fit (all grid points share it) and of the subset drawn under ``budget``.
        budget: at most this many grid points; a larger grid is subsampled with ``seed``.
        base_config: the config the grid points modify (default: the method's defaults).
        on_trial: called with each finished :class:`Trial` (progress display).

    Returns:
        a :class:`TuneResult`; ``best_result`` is the model fitted with the chosen config.

    Example:
        >>> result = tune(generic, us.available, "crop", {"tau": [0.05, 0.1]}, seed=0)  # doctest: +SKIP
        >>> result.chosen
        {'tau': 0.1}
    """
    if not isinstance(available, ContextSplit):
        raise CropError(
            f"tune takes the available-context ContextSplit only (got {type(available).__name__}); "
            "unseen-context data must never reach a hyperparameter search"
        )
    spec = get_method(method)
    get_metric(metric)
    base = base_config if base_config is not None else spec.config_class()
    if not isinstance(base, spec.config_class):
        raise CropError(f"base_config for {method!r} must be a {spec.config_class.__name__}")
    grid = {k: list(v) for k, v in (grid if grid is not None else default_grid(method, base)).items()}
    points = expand_grid(grid) if grid else [{}]
    configs = grid_configs(base, points, method)  # validates every key and value before any training
    order = list(range(len(points)))
    if budget is not None:
        from crop.validate import MAX_GRID_POINTS, check_int

        check_int(budget, "budget", 1, MAX_GRID_POINTS)
        if budget < len(points):
            order = sorted(np.random.default_rng(seed).choice(len(points), size=budget, replace=False).tolist())

    trials: list[Trial] = []
    best: tuple[Trial, Any, PersonalizationResult] | None = None
    for i in order:
        t0 = time.perf_counter()
        try:
            result = spec.fit(generic, available, configs[i], seed=seed, metric=metric)
        except CropError as exc:
            trial = Trial(i, points[i], float("nan"), float("nan"), seconds=time.perf_counter() - t0, error=str(exc))
        else:
            score, loss = _val_scores(result.model, available, metric)
            trial = Trial(i, points[i], score, loss, result.prune_amount, time.perf_counter() - t0)
            if best is None or (score, -loss) > (best[0].val_score, -best[0].val_loss):
                best = (trial, configs[i], result)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
    if best is None:
        raise CropError(f"every grid point of {method!r} failed; first error: {trials[0].error}")
    return TuneResult(method, grid, trials, best[0], best[1], best[2], seed, metric)

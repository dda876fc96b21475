"""The benchmark runner behind ``crop bench`` and ``crop demo``.

A run is a grid of units (scenario x user x seed x method). Each unit personalizes one
person's generic model copy with one method (a pure function of generic model, data, config,
seed) and evaluates the result on the available-context test split and on every unseen
context; its records are appended atomically to ``results.jsonl``. Finished units are skipped
when the same directory is run again, so a killed run resumes where it stopped. Failures are
recorded with their reason, never dropped.

Record fields: ``dataset, scenario, user, seed, method, context`` (``available`` or
``unseen``), ``context_name`` (the unseen context's name, or the available session), ``metric``,
``value``, ``status`` (``ok`` / ``failed``) and, for pruning methods, ``prune_amount``.
Timings go to ``timings.jsonl`` so that ``results.jsonl`` is identical across runs.

With ``certify`` (``crop bench --certify``) every (unit, context) also gets one record per
robustness measure (``metric`` such as ``verified@linf:0.01``, plus ``norm``, ``radius`` and,
for smoothing, ``sigma``); see :mod:`crop.certify.robustness`.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from crop.bench.store import ResultStore, unit_key
from crop.data.scenarios import Scenario, UserScenario, build_user_scenario
from crop.errors import CropError
from crop.metrics import METRICS, get_metric
from crop.models.utils import predict
from crop.personalize.registry import config_to_dict, get_method
from crop.report.files import write_text_atomic

REPORTED_METRICS = ("balanced_accuracy", "accuracy", "f1")


@dataclass
class BenchSpec:
    """What to run. ``configs`` maps a method name to its config (dataclass) if not default."""

    scenarios: list[Scenario]
    users: list[int]
    seeds: list[int]
    methods: list[str]
    out: Path
    dataset: str = "hapt"
    metric: str = "balanced_accuracy"
    configs: dict[str, Any] = field(default_factory=dict)
    tune: bool = False
    tune_budget: int | None = None
    unit_hook: Callable[[dict, nn.Module, UserScenario], list[dict]] | None = None
    certify: Any = None  # a crop.certify.robustness.RobustnessSpec: robustness records per unit


def evaluate_unit(
    model: nn.Module, us: UserScenario, base: dict[str, Any], metrics: Sequence[str] = REPORTED_METRICS
) -> list[dict[str, Any]]:
    """Records of ``model`` on the available test split and each unseen context."""
    records = []
    contexts = [("available", f"session {us.scenario.available_session}", us.available.test)]
    contexts += [("unseen", name, data) for name, data in us.unseen.items()]
    for context, name, data in contexts:
        pred = predict(model, data.X)
        for m in metrics:
            value = METRICS[m](data.y, pred)
            records.append({**base, "context": context, "context_name": name, "metric": m, "value": round(value, 10)})
    return records


def _settings(spec: BenchSpec) -> dict[str, Any]:
    """What decides a unit's numbers besides its key: the metric and every method's config."""
    configs = {m: config_to_dict(spec.configs.get(m) or get_method(m).config_class()) for m in spec.methods}
    return {
        "dataset": spec.dataset,
        "metric": spec.metric,
        "configs": configs,
        "tune": spec.tune,
        "tune_budget": spec.tune_budget,
        "certify": spec.certify.to_dict() if spec.certify is not None else None,
    }


def _same_config(old: Any, new: Any, default: Any) -> bool:
    """``old`` (from ``bench.json``) describes the same run as ``new``. An option ``old`` lacks
    was added to crop after that directory was written, so it ran with that option's default:
    it matches only when ``new`` uses the default too."""
    if isinstance(old, dict) and isinstance(new, dict):
        default = default if isinstance(default, dict) else {}
        for key, value in new.items():
            if key in old:
                if not _same_config(old[key], value, default.get(key)):
                    return False
            elif key not in default or value != default[key]:
                return False
        return old.keys() <= new.keys()
    return old == new


def _record_settings(spec: BenchSpec) -> None:
    """Write ``bench.json``; refuse to resume a directory produced with other settings."""
    from crop.certify.robustness import RobustnessSpec

    path = spec.out / "bench.json"
    settings = json.loads(json.dumps(_settings(spec), default=str))
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None
        if old is not None:
            defaults = {"tune": False, "tune_budget": None, "certify": None}  # written before these existed
            for key in ("metric", "dataset", "tune", "tune_budget"):
                if old.get(key, defaults.get(key)) != settings[key]:
                    raise CropError(f"{spec.out} holds results made with another {key}; use a new --out")
            old_certify, certify = old.get("certify"), settings["certify"]
            if (old_certify is None) != (certify is None) or (
                certify is not None and not _same_config(old_certify, certify, RobustnessSpec().to_dict())
            ):
                raise CropError(f"{spec.out} holds results made with another certify; use a new --out")
            for method, config in settings["configs"].items():
                default = json.loads(json.dumps(config_to_dict(get_method(method).config_class()), default=str))
                if method in old.get("configs", {}) and not _same_config(old["configs"][method], config, default):
                    raise CropError(f"{spec.out} holds {method} results made with another config; use a new --out")
            settings["configs"] = {**old.get("configs", {}), **settings["configs"]}
    write_text_atomic(path, json.dumps(settings, indent=2, sort_keys=True))


def plan_units(spec: BenchSpec) -> list[tuple[Scenario, int, int, str]]:
    return [(sc, u, s, m) for sc in spec.scenarios for u in spec.users for s in spec.seeds for m in spec.methods]


def run_bench(spec: BenchSpec, progress: bool = True) -> Path:
    """Run (or resume) the grid in ``spec``; returns the path of ``results.jsonl``."""
    from crop.generic import generic_for

    get_metric(spec.metric)
    for method in spec.methods:
        get_method(method)
    spec.out.mkdir(parents=True, exist_ok=True)
    _record_settings(spec)
    store = ResultStore(spec.out / "results.jsonl")
    store.repair()
    done = store.done_units()
    units = plan_units(spec)
    todo = [u for u in units if (spec.dataset, u[0].name, u[1], u[2], u[3]) not in done]
    generics: dict[str, tuple[nn.Module, dict]] = {}
    hooks = [h for h in (spec.unit_hook,) if h is not None]
    if spec.certify is not None:
        from crop.certify.robustness import robustness_hook

        hooks.append(robustness_hook(spec.certify))
    scenario_cache: dict[tuple[str, int, int], UserScenario] = {}

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("bench", total=len(units), completed=len(units) - len(todo))
        for scenario, user, seed, method in todo:
            bar.update(task, description=f"{scenario.name} user {user} seed {seed} {method}")
            if scenario.generic not in generics:
                bar.update(task, description=f"{scenario.name}: preparing generic model")
                generics[scenario.generic] = generic_for(scenario.generic, spec.users)
            generic, generic_info = generics[scenario.generic]
            key = (scenario.name, user, seed)
            if key not in scenario_cache:
                scenario_cache.clear()
                scenario_cache[key] = build_user_scenario(user, scenario, seed)
            us = scenario_cache[key]
            base = {"dataset": spec.dataset, "scenario": scenario.name, "user": user, "seed": seed, "method": method}
            t0 = time.perf_counter()
            mspec = get_method(method)
            config = spec.configs.get(method) or mspec.config_class()
            try:
                extra: dict[str, Any] = {"status": "ok"}
                if spec.tune and method != "generic":
                    from crop.analysis import tune

                    searched = tune(
                        generic,
                        us.available,
                        method,
                        seed=seed,
                        budget=spec.tune_budget,
                        metric=spec.metric,
                        base_config=config,
                    )
                    result = searched.best_result
                    extra["tuned"] = {k: searched.chosen[k] for k in sorted(searched.chosen)}
                else:
                    result = mspec.fit(generic, us.available, config, seed=seed, metric=spec.metric)
                if result.prune_amount is not None:
                    extra["prune_amount"] = round(float(result.prune_amount), 10)
                records = evaluate_unit(result.model, us, {**base, **extra})
                for hook in hooks:
                    records += hook({**base, **extra}, result.model, us)
            except Exception as exc:  # noqa: BLE001 - a failed method is a result, not a crash
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                records = [
                    {**base, "status": "failed", "error": reason, "context": None, "metric": None, "value": None}
                ]
                (spec.out / "errors.log").open("a").write(f"{base}\n{traceback.format_exc()}\n")
            store.append(records)
            elapsed = time.perf_counter() - t0
            with (spec.out / "timings.jsonl").open("a") as f:
                f.write(
                    json.dumps({**base, "seconds": round(elapsed, 3), "generic": generic_info.get("source")}) + "\n"
                )
            bar.advance(task)
    return store.path


def load_results(out: Path) -> list[dict[str, Any]]:
    records = ResultStore(Path(out) / "results.jsonl").load()
    if not records:
        raise CropError(f"no results in {out}/results.jsonl")
    return records


__all__ = ["BenchSpec", "evaluate_unit", "load_results", "plan_units", "run_bench", "unit_key"]

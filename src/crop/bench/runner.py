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
Timings go to ``timings.jsonl`` (one line per personalization, with the scenarios it served)
so that ``results.jsonl`` is identical across runs; generic models trained for this run are
listed, with their training time, in ``generics.jsonl``.

With ``certify`` (``crop bench --certify``) every (unit, context) also gets one record per
robustness measure (``metric`` such as ``verified@linf:0.01``, plus ``norm``, ``radius`` and,
for smoothing, ``sigma``); see :mod:`crop.certify.robustness`. With ``fairness`` (``crop bench
--fairness``) every (unit, context) also gets its confusion matrix (``metric`` ``confusion``;
see :mod:`crop.fairness`); without it ``results.jsonl`` is exactly as before.

Groups run in this process, in a local process pool (``workers``), or as Ray tasks
(``executor="ray"``, :mod:`crop.bench.ray_executor`); whichever runs them, only this process
writes records, in plan order, so ``results.jsonl`` is the same and a run resumes with any executor.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from crop.bench.checks import guard_bench
from crop.bench.store import ResultStore, unit_key
from crop.data.scenarios import Scenario, UserScenario, build_user_scenario
from crop.dirlock import DirectoryLock
from crop.errors import CropError
from crop.metrics import METRICS, get_metric
from crop.models.utils import predict
from crop.personalization.registry import config_to_dict, get_method
from crop.report.files import write_text_atomic

REPORTED_METRICS = ("balanced_accuracy", "accuracy", "f1")


@dataclass
class BenchSpec:
    """What to run. ``configs`` maps a method name to its config (dataclass) if not default."""

    scenarios: list[Scenario] | list[Any]  # HAPT Scenario, or DatasetScenario of ``dataset``
    users: list[int] | list[Any]  # ints on HAPT; a dataset's own ids otherwise (ExtraSensory: UUIDs)
    seeds: list[int]
    methods: list[str]
    out: Path
    dataset: str = "hapt"
    metric: str | None = None  # None: the dataset's own measure (HAPT: balanced_accuracy)
    configs: dict[str, Any] = field(default_factory=dict)
    tune: bool = False
    tune_budget: int | None = None
    tune_on: str = "available"  # "available": per person on its validation split; "population": other people
    unit_hook: Callable[[dict, nn.Module, UserScenario], list[dict]] | None = None
    certify: Any = None  # a crop.certify.robustness.RobustnessSpec: robustness records per unit
    workers: int | None = None  # worker processes; None: one per core for large runs (default_workers)
    norm: str = "batch"  # "none": generic models (and so every personalized one) without BatchNorm
    protocol: str = "test"  # "development": each user served by the generic model they validated (see serving_fold)
    generic: str | None = None  # generic model kind for every scenario (default: the scenario's own)
    root: Path | None = None  # the dataset's directory (every dataset but hapt; docs/DATASETS.md)
    model: Path | None = None  # --dataset npz: the generic model file
    arch: str | None = None  # --dataset npz: its factory, package.module:factory (unless built in)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # --dataset csv: rate, window, stride
    generic_training: Any = None  # a PaperGenericConfig (default: the dataset's Table 9 preset)
    fairness: bool = False  # confusion-matrix records per (unit, context), for crop.fairness
    faults: list[tuple[str, float]] | None = None  # hapt-faults' unseen contexts (crop.data.faults); None: its four
    executor: str = "local"  # "ray": groups run as Ray tasks (crop.bench.ray_executor); same results.jsonl
    address: str | None = None  # with executor "ray": an existing cluster (None: a private local instance)

    def __post_init__(self) -> None:
        if self.metric is None:
            self.metric = _dataset_metric(self.dataset)
        if self.faults is not None:
            from dataclasses import replace

            faults = tuple((str(n), float(s)) for n, s in self.faults)
            self.scenarios = [
                replace(sc, faults=faults) if getattr(sc, "family", None) == "hapt-faults" else sc
                for sc in self.scenarios
            ]


def _dataset_metric(dataset: str) -> str:
    if dataset == "hapt":
        return "balanced_accuracy"
    from crop.data.datasets import dataset_class

    try:
        return dataset_class(dataset).metric
    except CropError:
        return "balanced_accuracy"  # an unknown dataset is refused by the checks, with its name


def source_of(spec: BenchSpec) -> Any:
    """``None`` for HAPT (the built-in path), else the :class:`~crop.bench.datasets.DatasetSource`."""
    if spec.dataset == "hapt":
        return None
    from crop.bench.datasets import DatasetSource

    return DatasetSource(
        spec.dataset,
        str(Path(spec.root).resolve()) if spec.root is not None else "",
        spec.generic_training,
        str(spec.model) if spec.model is not None else None,
        spec.arch,
        dict(spec.dataset_options),
    )


def method_config(spec: BenchSpec, method: str) -> Any:
    """The config ``method`` runs with: ``spec.configs``, else the dataset's preset (none on HAPT)."""
    if method in spec.configs and spec.configs[method] is not None:
        return spec.configs[method]
    if spec.dataset == "hapt":
        return get_method(method).config_class()
    from crop.bench.datasets import method_config as preset

    return preset(spec.dataset, method)


def evaluate_unit(
    model: nn.Module, us: UserScenario, base: dict[str, Any], metrics: Sequence[str] = REPORTED_METRICS
) -> list[dict[str, Any]]:
    """Records of ``model`` on the available test split and each unseen context. Balanced-accuracy
    records also carry ``recall``, the per-class recalls it averages (:func:`crop.metrics.class_recall`),
    so a lost class shows in the reports."""
    from crop.metrics import class_recall

    records = []
    contexts = [("available", us.available_name, us.available.test)]
    contexts += [("unseen", name, data) for name, data in us.unseen.items()]
    for context, name, data in contexts:
        pred = predict(model, data.X)
        for m in metrics:
            value = METRICS[m](data.y, pred)
            record = {**base, "context": context, "context_name": name, "metric": m, "value": round(value, 10)}
            if m == "balanced_accuracy":
                record["recall"] = class_recall(data.y, pred)
            records.append(record)
    return records


def _settings(spec: BenchSpec) -> dict[str, Any]:
    """What decides a unit's numbers besides its key: the metric and every method's config."""
    configs = {m: config_to_dict(method_config(spec, m)) for m in spec.methods}
    settings = {
        "dataset": spec.dataset,
        "metric": spec.metric,
        "configs": configs,
        "tune": spec.tune,
        "tune_budget": spec.tune_budget,
        "tune_on": spec.tune_on if spec.tune else None,
        "norm": spec.norm,
        "protocol": spec.protocol,
        "generic": spec.generic,
        "certify": spec.certify.to_dict() if spec.certify is not None else None,
    } | _dataset_settings(spec)
    if spec.fairness:  # absent without --fairness: bench.json as before
        settings["fairness"] = True
    if spec.faults is not None:  # absent without --faults: bench.json as before
        settings["faults"] = [[n, s] for n, s in spec.faults]
    return settings


DATASET_KEYS = ("root", "model", "arch", "generic_training", "data")


def _dataset_settings(spec: BenchSpec) -> dict[str, Any]:
    """What a dataset other than HAPT adds to ``bench.json`` (nothing for HAPT): its directory,
    the fingerprint of its files, the given model, and the generic training config."""
    source = source_of(spec)
    if source is None:
        return {}
    settings = {
        "root": source.root,
        "data": source.dataset.fingerprint(),  # keyed by the dataset's options too (--rate, --window, --stride)
        "model": source.model,
        "arch": source.arch,
        "generic_training": config_to_dict(source.generic_config()) if source.model is None else None,
    }
    if source.dataset.options:  # absent for the datasets without options: bench.json as before
        settings["dataset_options"] = dict(source.dataset.options)
    classes = source.dataset.load().classes
    if classes:  # the label names of class 0, 1, ... when the files name them (--dataset csv)
        settings["classes"] = list(classes)
    return settings


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


def _record_settings(spec: BenchSpec, lock: DirectoryLock | None = None) -> None:
    """Write ``bench.json`` (through the results directory's ``lock`` when a run holds it); refuse
    to resume a directory produced with other settings."""
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
            defaults["tune_on"] = "available" if old.get("tune") else None
            defaults["norm"] = "batch"
            defaults["protocol"] = "test"
            defaults["generic"] = None
            for key in ("metric", "dataset", "tune", "tune_budget", "tune_on", "norm", "protocol", "generic"):
                if old.get(key, defaults.get(key)) != settings[key]:
                    raise CropError(f"{spec.out} holds results made with another {key}; use a new --out")
            for key in DATASET_KEYS:
                if old.get(key) != settings.get(key):
                    what = {"data": "data files", "generic_training": "generic training"}.get(key, key)
                    raise CropError(f"{spec.out} holds results made with another {what}; use a new --out")
            if old.get("faults") != settings.get("faults"):
                raise CropError(f"{spec.out} holds results made with other --faults; use a new --out")
            if bool(old.get("fairness", False)) != spec.fairness:
                made = "with" if old.get("fairness") else "without"
                raise CropError(f"{spec.out} holds results made {made} --fairness; use a new --out")
            old_certify, certify = old.get("certify"), settings["certify"]
            if (old_certify is None) != (certify is None) or (
                certify is not None and not _same_config(old_certify, certify, RobustnessSpec().to_dict())
            ):
                raise CropError(f"{spec.out} holds results made with another certify; use a new --out")
            for method, config in settings["configs"].items():
                default = json.loads(json.dumps(config_to_dict(method_config(_bare(spec), method)), default=str))
                if method in old.get("configs", {}) and not _same_config(old["configs"][method], config, default):
                    raise CropError(f"{spec.out} holds {method} results made with another config; use a new --out")
            settings["configs"] = {**old.get("configs", {}), **settings["configs"]}
    text = json.dumps(settings, indent=2, sort_keys=True)
    if lock is None:
        write_text_atomic(path, text)
    else:
        lock.replace_files({path.name: text.encode("utf-8")})


def _bare(spec: BenchSpec) -> BenchSpec:
    """``spec`` without its configs (each method's default for its dataset)."""
    from dataclasses import replace

    return replace(spec, configs={})


def plan_units(spec: BenchSpec) -> list[tuple[Scenario, int, int, str]]:
    return [(sc, u, s, m) for sc in spec.scenarios for u in spec.users for s in spec.seeds for m in spec.methods]


Unit = tuple[Scenario, int, int, str]


@dataclass
class UnitGroup:
    """Units that share one personalization: the same generic model, user, available context,
    seed and method (e.g. ``hapt-session:1`` and ``hapt-faults:1``). Personalization is a pure
    function of those, so it runs once and the model is evaluated in each scenario."""

    generic_kind: str
    user: int
    seed: int
    method: str
    scenarios: list[Scenario]


PROTOCOLS = ("test", "development")


def serving_fold(user: int, protocol: str = "test") -> int:
    """The fold whose generic model personalizes ``user``.

    ``"test"``: the user's own fold, whose model never saw them (every reported result).
    ``"development"``: the fold whose model used ``user`` as a *validation* user (epoch
    selection only, never training): the (model, person) pairs population tuning sees, so
    settings can be chosen on them without ever touching a test pair.
    """
    from crop.generic import N_FOLDS, fold_of

    if protocol not in PROTOCOLS:
        raise CropError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    fold = fold_of(user)
    return fold if protocol == "test" else (fold + N_FOLDS // 2) % N_FOLDS


def generic_kind(scenario: Scenario, norm: str = "batch", generic: str | None = None) -> str:
    """The generic model kind a scenario uses: its own (``hapt`` or ``hapt-rot``) or ``generic``
    (any kind of :func:`crop.generic.parse_kind` without ``-nobn``, e.g. ``hapt-cert`` or
    ``hapt-w128``), as the ``-nobn`` variant with ``norm="none"``."""
    from crop.generic import parse_kind

    if norm not in ("batch", "none"):
        raise CropError(f"norm must be 'batch' or 'none', got {norm!r}")
    base = generic if generic is not None else scenario.generic
    if parse_kind(base).nobn:
        raise CropError(f"generic model kind {base!r}: give the kind without -nobn and use --norm none")
    kind = base + ("-nobn" if norm == "none" else "")
    parse_kind(kind)
    return kind


def group_units(
    units: Sequence[Unit], norm: str = "batch", generic: str | None = None, source: Any = None
) -> list[UnitGroup]:
    """Group ``units`` by shared personalization, in the order of their first unit."""
    groups: dict[tuple, UnitGroup] = {}
    from crop.generic import kind_for_method

    for scenario, user, seed, method in units:
        if source is None:
            kind = kind_for_method(generic_kind(scenario, norm, generic), method)
        else:
            kind = source.kind(scenario)
        key = (kind, user, scenario.available_session, seed, method)
        if key not in groups:
            groups[key] = UnitGroup(kind, user, seed, method, [])
        groups[key].scenarios.append(scenario)
    return list(groups.values())


@dataclass
class _Task:
    """What a worker needs for one group (picklable)."""

    group: UnitGroup
    generic_path: str
    generic_source: str | None
    dataset: str
    metric: str
    config: Any
    tune: bool
    tune_budget: int | None
    certify: Any
    tuned: dict[str, Any] | None = None  # settings chosen beforehand (population tuning)
    fairness: bool = False  # add confusion-matrix records
    source: Any = None  # a DatasetSource (None: HAPT)
    generic_arch: str | None = None  # --dataset npz: the factory of the given model


_GENERICS: dict[str, nn.Module] = {}


def _load_generic(path: str, arch: str | None = None) -> nn.Module:
    from crop.models.io import load_model

    if path not in _GENERICS:
        _GENERICS.clear()
        if arch is None:
            _GENERICS[path] = load_model(path)
        else:
            from crop.bench.datasets import load_generic_file

            _GENERICS[path] = load_generic_file(path, arch)
    return _GENERICS[path]


def _run_group(
    task: _Task, hooks: Sequence[Callable[[dict, nn.Module, UserScenario], list[dict]]] = ()
) -> tuple[list[list[dict[str, Any]]], float, str | None]:
    """Personalize once, evaluate in every scenario of the group.

    Returns one list of records per scenario (in the group's order), the seconds spent and the
    traceback of a failure (``None`` when it succeeded)."""
    group = task.group
    t0 = time.perf_counter()
    generic = _load_generic(task.generic_path, task.generic_arch)
    if task.source is None:
        cases = [build_user_scenario(group.user, sc, group.seed) for sc in group.scenarios]
    else:
        cases = [task.source.user_scenario(group.user, sc, group.seed) for sc in group.scenarios]
    bases = [
        {"dataset": task.dataset, "scenario": sc.name, "user": group.user, "seed": group.seed, "method": group.method}
        for sc in group.scenarios
    ]
    hooks = list(hooks)
    if task.certify is not None:
        from crop.certify.robustness import robustness_hook

        hooks.append(robustness_hook(task.certify))
    if task.fairness:
        from crop.fairness._records import confusion_records

        hooks.append(confusion_records)
    error = None
    try:
        extra: dict[str, Any] = {"status": "ok"}
        if task.tuned is not None:
            extra["tuned"] = {k: task.tuned[k] for k in sorted(task.tuned)}
            extra["tuned_on"] = "population"
        available = cases[0].available
        if task.tune and group.method != "generic":
            from crop.analysis import tune

            searched = tune(
                generic,
                available,
                group.method,
                seed=group.seed,
                budget=task.tune_budget,
                metric=task.metric,
                base_config=task.config,
            )
            result = searched.best_result
            extra["tuned"] = {k: searched.chosen[k] for k in sorted(searched.chosen)}
        else:
            result = get_method(group.method).fit(generic, available, task.config, seed=group.seed, metric=task.metric)
        if result.prune_amount is not None:
            extra["prune_amount"] = round(float(result.prune_amount), 10)
        blocks = []
        for base, us in zip(bases, cases, strict=True):
            records = evaluate_unit(result.model, us, {**base, **extra})
            for hook in hooks:
                records += hook({**base, **extra}, result.model, us)
            blocks.append(records)
    except Exception as exc:  # noqa: BLE001 - a failed method is a result, not a crash
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        blocks = [
            [{**base, "status": "failed", "error": reason, "context": None, "metric": None, "value": None}]
            for base in bases
        ]
        error = traceback.format_exc()
    return blocks, time.perf_counter() - t0, error


def default_workers(n_groups: int) -> int:
    """Worker processes for ``n_groups`` personalizations: one per CPU core (at most 8), but a
    single in-process worker for small runs, where starting processes costs more than it saves."""
    import os

    if n_groups < 24:
        return 1
    return max(1, min(8, os.cpu_count() or 1, n_groups))


def run_bench(
    spec: BenchSpec,
    progress: Any = True,
    *,
    finish: Callable[[], None] | None = None,
    stats: dict[str, Any] | None = None,
) -> Path:
    """Run (or resume) the grid in ``spec``; returns the path of ``results.jsonl``.

    ``progress``: ``True`` (a rich progress bar on stderr), ``False`` (none), or a progress
    object of that interface (``add_task``, ``update``, ``advance``; with a ``line(task, text)``
    method it is also given one line per finished unit and generic model, as
    :class:`crop.report.console.LineProgress` prints off a terminal). ``stats`` (a dict) is
    filled with the counts of units: ``total``, ``run``, ``reused``, ``failed``.

    The run holds the results directory's lock (:func:`~crop.bench.checks.guard_bench`): every
    file of the run is written through it, so the run stops with a one-line error, recreating
    nothing, if ``spec.out`` is moved, deleted or replaced. ``finish`` (a callable) runs after
    the last unit, still under the lock.

    Every user is served by their fold's generic model (:func:`crop.generic.generic_for_user`),
    which never saw them. Units that share a personalization run it once (:func:`group_units`).
    With ``spec.workers > 1`` groups run in worker processes; records are still appended by this
    process alone, in plan order, so ``results.jsonl`` is the same whatever the number of workers.

    The spec is validated first; with ``executor="ray"`` and units left to run, Ray is joined
    (or started) next, before the results directory is created or locked: a cluster that cannot
    be used leaves nothing behind.
    """
    from crop.bench.checks import validate_bench_spec

    validate_bench_spec(spec)
    with contextlib.ExitStack() as stack:
        if spec.executor == "ray":
            done = ResultStore(spec.out / "results.jsonl").done_units() if spec.out.is_dir() else set()
            if any(_unit_key(spec, u) not in done for u in plan_units(spec)):
                from crop.bench.ray_executor import ray_session

                stack.enter_context(ray_session(spec.workers, spec.address))
        return _run_bench(spec, progress, finish=finish, stats=stats)


def _unit_key(spec: BenchSpec, unit: Unit) -> tuple:
    return (spec.dataset, unit[0].name, unit[1], unit[2], unit[3])


@guard_bench  # validates the whole spec before anything is written; one run per results directory
def _run_bench(spec: BenchSpec, progress: Any, *, lock: DirectoryLock, stats: dict[str, Any] | None = None) -> Path:
    """The body of :func:`run_bench`, holding the results directory's ``lock`` (given by
    :func:`~crop.bench.checks.guard_bench`; Ray, if asked for, is up)."""
    from crop.generic import generic_for_fold

    source = source_of(spec)
    if spec.protocol == "development" and spec.tune and spec.tune_on == "population":
        raise CropError(
            "population tuning uses the validation users of a generic model, who are the people the development "
            "protocol evaluates: use --protocol test"
        )

    get_metric(spec.metric)
    for method in spec.methods:
        get_method(method)
    units = plan_units(spec)

    def fold_of(user: Any) -> Any:
        return serving_fold(user, spec.protocol) if source is None else source.serving(user)

    def generic_info(kind: str, fold: Any) -> dict:
        return generic_for_fold(kind, fold)[1] if source is None else source.generic_model(fold)[1]

    lock.check()  # created and locked by guard_bench; never recreated here
    _record_settings(spec, lock)
    store = ResultStore(spec.out / "results.jsonl", lock)
    store.repair()
    done = store.done_units()
    todo = [u for u in units if _unit_key(spec, u) not in done]
    groups = group_units(todo, spec.norm, spec.generic, source)
    workers = spec.workers if spec.workers is not None else default_workers(len(groups))
    if workers > 1 and spec.unit_hook is not None and spec.executor == "local":
        raise CropError("a unit_hook runs in this process only: use workers=1 (or the Ray executor)")

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from crop.report.console import DataDescription

    columns = [
        DataDescription("bold"),  # descriptions hold scenario and method names: shown as plain text
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    if isinstance(progress, bool):
        from rich.console import Console

        progress = Progress(*columns, console=Console(stderr=True), disable=not progress, transient=False)
    line = getattr(progress, "line", None)  # one line per finished unit (off a terminal)
    counts = {"total": len(units), "run": len(todo), "reused": len(units) - len(todo), "failed": 0}
    if stats is not None:
        stats.update(counts)
    with progress as bar:
        # Generic models first, in this process: a fold's model is trained once and cached.
        generics: dict[tuple[str, int], dict] = {}
        needed = sorted({(g.generic_kind, fold_of(g.user)) for g in groups}, key=str)
        prep = bar.add_task("generic models", total=len(needed)) if needed else None
        for kind, fold in needed:
            name = f"generic model {kind}, {'fold ' if source is None else ''}{fold}"
            bar.update(prep, description=name)
            t_generic = time.perf_counter()
            info = generic_info(kind, fold)
            generics[(kind, fold)] = info
            if info.get("source") == "trained":
                _append_json(lock, "generics.jsonl", {"kind": kind, **info})
            bar.advance(prep)
            if line is not None:
                how = "trained" if info.get("source") == "trained" else "ready"
                line(prep, f"{name}: {how} in {time.perf_counter() - t_generic:.1f} s")
        task = bar.add_task("bench", total=len(units), completed=len(units) - len(todo))
        population: dict[tuple[str, int, str], Any] = {}
        if spec.tune and spec.tune_on == "population":
            population = _population_settings(spec, groups, bar, fold_of, workers)
        tasks = []
        for g in groups:
            info = generics[(g.generic_kind, fold_of(g.user))]
            config = method_config(spec, g.method)
            tuned = None
            if (g.generic_kind, fold_of(g.user), g.method) in population:
                config, tuned = population[(g.generic_kind, fold_of(g.user), g.method)]
            tasks.append(
                _Task(
                    g,
                    info["path"],
                    info.get("source"),
                    spec.dataset,
                    spec.metric,
                    config,
                    spec.tune and spec.tune_on == "available",
                    spec.tune_budget,
                    spec.certify,
                    tuned,
                    spec.fairness,
                    source=source,
                    generic_arch=info.get("arch"),
                )
            )

        def finish(t: _Task, blocks: list[list[dict]], seconds: float, error: str | None) -> None:
            g = t.group
            failed = any(r.get("status") == "failed" for records in blocks for r in records)
            for records in blocks:
                store.append(records)
                bar.advance(task)
            if failed:
                counts["failed"] += len(blocks)
                if stats is not None:
                    stats["failed"] = counts["failed"]
            if line is not None:
                names = ",".join(sc.name for sc in g.scenarios)
                how = f"failed ({error.strip().splitlines()[-1]})" if failed and error else "done"
                line(task, f"{names} user {g.user} seed {g.seed} {g.method}: {how} in {seconds:.1f} s")
            if error is not None:
                from crop.report.escape import visible

                text = f"{[sc.name for sc in g.scenarios]} user {g.user} seed {g.seed} {g.method}\n{error}"
                lock.append("errors.log", (visible(text, keep_lines=True) + "\n").encode())  # no escape sequence
            _append_json(
                lock,
                "timings.jsonl",
                {
                    "dataset": spec.dataset,
                    "scenarios": [sc.name for sc in g.scenarios],
                    "user": g.user,
                    "seed": g.seed,
                    "method": g.method,
                    "seconds": round(seconds, 3),
                    "generic": t.generic_source,
                },
            )

        hooks = [spec.unit_hook] if spec.unit_hook is not None else []
        if spec.executor == "ray":
            from crop.bench.ray_executor import run_on_ray

            def named(cpus: int) -> None:
                bar.update(task, description=f"bench (Ray, {cpus} CPUs)")

            run_on_ray(tasks, finish, spec.workers, spec.address, hooks, on_start=named)
        elif workers <= 1:
            for t in tasks:
                g = t.group
                bar.update(task, description=f"{g.scenarios[0].name} user {g.user} seed {g.seed} {g.method}")
                finish(t, *_run_group(t, hooks))
        else:
            _run_parallel(tasks, workers, finish, bar, task)
    return store.path


def _population_settings(
    spec: BenchSpec, groups: list[UnitGroup], bar: Any, fold_of: Callable[[int], int], workers: int
) -> dict[tuple[str, int, str], Any]:
    """Population tuning (:func:`crop.analysis.population_tune`) for every (generic kind, fold,
    method) the run needs, before any unit: ``{key: (config, chosen values)}``. Searches are
    cached, so a resumed run does not repeat them."""
    from crop.analysis import population_tune
    from crop.analysis._tune import default_grid, expand_grid

    needed = sorted({(g.generic_kind, fold_of(g.user), g.method) for g in groups if g.method != "generic"})
    out: dict[tuple[str, int, str], Any] = {}
    for kind, fold, method in needed:
        base = spec.configs.get(method) or get_method(method).config_class()
        grid = default_grid(method, base)
        if spec.tune_budget is not None and spec.tune_budget < len(expand_grid(grid)):
            raise CropError("--tune-budget applies to available-context tuning only")
        job = bar.add_task(f"population tuning {method} ({kind}, fold {fold})", total=len(expand_grid(grid)))
        result = population_tune(
            method,
            kind,
            fold,
            grid,
            seeds=[0],
            metric=spec.metric,
            base_config=base,
            on_trial=lambda _, job=job: bar.advance(job),
            workers=workers,  # local processes, whatever executor runs the units
        )
        out[(kind, fold, method)] = (result.best_config, result.chosen)
    return out


def _run_parallel(tasks: list[_Task], workers: int, finish: Callable, bar: Any, task: Any) -> None:
    """Run ``tasks`` in ``workers`` processes; hand results to ``finish`` in task order."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from crop.workers import process_pool

    bar.update(task, description=f"bench ({workers} workers)")
    # Spawned one-thread workers that die with this process; on an error, Ctrl-C or SIGTERM here
    # they are stopped at once (crop.workers).
    with process_pool(workers, threads=1, preload=(__name__,)) as pool:
        pending = {}
        next_submit = 0
        ready: dict[int, tuple] = {}
        next_finish = 0
        window = 4 * workers  # bounded look-ahead keeps memory flat and the write order exact
        while next_finish < len(tasks):
            while next_submit < len(tasks) and next_submit < next_finish + window:
                pending[pool.submit(_run_group, tasks[next_submit])] = next_submit
                next_submit += 1
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                ready[pending.pop(fut)] = fut.result()
            while next_finish in ready:
                finish(tasks[next_finish], *ready.pop(next_finish))
                next_finish += 1


def _append_json(lock: DirectoryLock, name: str, record: dict[str, Any]) -> None:
    lock.append(name, (json.dumps(record) + "\n").encode())


def load_results(out: Path) -> list[dict[str, Any]]:
    return ResultStore(Path(out) / "results.jsonl").load_required()  # damaged lines: skipped with a warning


__all__ = ["BenchSpec", "evaluate_unit", "load_results", "plan_units", "run_bench", "unit_key"]

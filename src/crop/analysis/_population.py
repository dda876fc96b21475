"""Population tuning: choose a method's settings by personalizing *other* people.

The available-context validation split of one person (30-40 HAPT windows) is at 100 % for
almost every candidate, so a search on it decides on ties (:mod:`crop.analysis._tune`). A
signal that still varies is what the settings do for other people across a *real* context
change. For the generic model of fold ``r`` (:mod:`crop.generic`), the other people are its
own validation users (fold ``(r + 3) mod 6``): never the users that model serves, who are
fold ``r``. Each of them is personalized on one real recording session (its 60/20/20 split,
as in a benchmark) and scored on the test split of that session (``Ca``) and on all of their
other real session (``Cu``), both directions. The score of a grid point is the mean of
``Ca + Cu`` over those people, directions and seeds: the quantity Δ_G compares. No synthetic
shift (rotation, faults) is used, so the chosen settings are not fitted to any shipped
scenario; they then serve every scenario of that generic model.

The target users' data is never read: the only users loaded are the validation fold's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crop.analysis._tune import Grid, default_grid, expand_grid, grid_configs
from crop.data import hapt
from crop.data.sensing import stratified_split
from crop.errors import CropError
from crop.metrics import get_metric
from crop.models.utils import predict
from crop.personalization.registry import config_to_dict, get_method
from crop.report.files import write_text_atomic
from crop.report.table import Table


@dataclass
class PopulationTrial:
    """One grid point: its overrides, the mean score and the per-person scores."""

    index: int
    overrides: dict[str, Any]
    score: float
    ca: float
    cu: float
    per_person: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class PopulationTuneResult:
    """The search for one (method, generic kind, fold)."""

    method: str
    kind: str
    fold: int
    users: list[int]
    seeds: list[int]
    metric: str
    grid: dict[str, list[Any]]
    trials: list[PopulationTrial]
    best: PopulationTrial
    best_config: Any

    @property
    def chosen(self) -> dict[str, Any]:
        return dict(self.best.overrides)

    def table(self) -> Table:
        keys = list(self.grid)
        header = ["#", *keys, "Ca %", "Cu %", "Ca+Cu", "seconds", "chosen"]
        rows = [
            [
                t.index,
                *[t.overrides.get(k) for k in keys],
                f"{t.ca:.2f}",
                f"{t.cu:.2f}",
                f"{t.score:.2f}",
                round(t.seconds, 1),
                "yes" if t is self.best else (t.error or ""),
            ]
            for t in self.trials
        ]
        title = (
            f"Population tuning of {self.method} for generic {self.kind} fold {self.fold}: "
            f"users {self.users}, both session directions, seeds {self.seeds}"
        )
        return Table(title, header, rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": self.kind,
            "fold": self.fold,
            "users": self.users,
            "seeds": self.seeds,
            "metric": self.metric,
            "grid": self.grid,
            "chosen": self.chosen,
            "config": config_to_dict(self.best_config),
            "trials": [dataclasses.asdict(t) for t in self.trials],
        }


def population_users(fold: int) -> list[int]:
    """The people whose sessions tune the settings of fold ``fold``'s generic model."""
    from crop.generic import fold_users, validation_fold

    return list(fold_users(validation_fold(fold)))


def population_tune(
    method: str,
    kind: str = "hapt",
    fold: int = 2,
    grid: Grid | None = None,
    *,
    seeds: Sequence[int] = (0,),
    users: Sequence[int] | None = None,
    metric: str = "balanced_accuracy",
    base_config: Any = None,
    cache: Path | None = None,
    on_trial: Callable[[PopulationTrial], None] | None = None,
    workers: int = 1,
) -> PopulationTuneResult:
    """Grid-search ``method`` on the real session shift of fold ``fold``'s validation users.

    Args:
        method: a registered method.
        kind: the generic model kind (``hapt``, ``hapt-rot``, ``hapt-nobn``).
        fold: the fold whose generic model is tuned; its own users are never read.
        grid: ``{field path: [values]}`` (default: :func:`~crop.analysis.default_grid`).
        seeds: split and training seeds of every fit.
        users: a subset of the validation users (default: all five).
        cache: directory for finished searches (a JSON per search); ``None``: the cache
            directory's ``population/``. A search with the same inputs is read back.
        workers: processes the grid points are spread over (1: in this process). Every fit
            is a pure function of its inputs, so the result does not depend on it. Worker
            processes know the built-in methods only (they import crop afresh).

    Returns the trials and the chosen config (the best mean ``Ca + Cu``; ties: grid order).
    """
    from crop.generic import fold_users, generic_for_fold

    spec = get_method(method)
    get_metric(metric)  # an unknown metric is refused before any fit
    base = base_config if base_config is not None else spec.config_class()
    if not isinstance(base, spec.config_class):
        raise CropError(f"base_config for {method!r} must be a {spec.config_class.__name__}")
    grid = {k: list(v) for k, v in (grid if grid is not None else default_grid(method, base)).items()}
    points = expand_grid(grid) if grid else [{}]
    configs = grid_configs(base, points, method)
    pool = population_users(fold)
    people = list(users) if users is not None else pool
    outside = [u for u in people if u not in pool]
    if outside:
        raise CropError(f"users {outside} are not validation users of fold {fold} (those are {pool})")
    if set(people) & set(fold_users(fold)):
        raise CropError("population tuning may never use the users the generic model serves")
    seeds = [int(s) for s in seeds]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CropError(f"workers must be a positive integer, got {workers!r}")
    key_src = json.dumps(
        [method, kind, fold, people, seeds, metric, grid, config_to_dict(base)], sort_keys=True, default=str
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    cache_file = (cache or hapt.cache_dir() / "population") / f"{method}-{kind}-fold{fold}-{key}.json"
    generic, _ = generic_for_fold(kind, fold)  # trained and cached here once; worker processes read the cache

    cached: dict[int, dict] = {}
    if cache_file.is_file():
        try:
            cached = {t["index"]: t for t in json.loads(cache_file.read_text())["trials"]}
        except (json.JSONDecodeError, KeyError, TypeError):
            cached = {}
    missing = [i for i in range(len(points)) if i not in cached]
    jobs = [_TrialJob(i, points[i], configs[i], method, kind, fold, people, seeds, metric) for i in missing]
    computed = _run_trials(jobs, workers, generic)
    trials: list[PopulationTrial] = []
    for i in range(len(points)):
        trial = PopulationTrial(**cached[i]) if i in cached else next(computed)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
    scored = [t for t in trials if t.error is None and np.isfinite(t.score)]
    if not scored:
        raise CropError(f"every grid point of {method!r} failed; first error: {trials[0].error}")
    best = max(scored, key=lambda t: (round(t.score, 9), -t.index))
    result = PopulationTuneResult(method, kind, fold, people, seeds, metric, grid, trials, best, configs[best.index])
    write_text_atomic(cache_file, json.dumps(result.to_dict(), indent=1, default=str))
    return result


@dataclass
class _TrialJob:
    """One grid point to score: everything a worker process needs (the generic model and the
    sessions are read there, from the cache, not sent)."""

    index: int
    overrides: dict[str, Any]
    config: Any
    method: str
    kind: str
    fold: int
    people: list[int]
    seeds: list[int]
    metric: str


def _sessions(people: Sequence[int]) -> dict[tuple[int, int], Any]:
    return {(u, s): hapt.load_session(u, s) for u in people for s in (1, 2)}


def _score_trial(job: _TrialJob, generic: Any = None, sessions: dict | None = None) -> PopulationTrial:
    """Personalize every (person, session direction, seed) of ``job`` and score ``Ca + Cu``
    (``generic`` and ``sessions`` are read here when not given: in a worker process)."""
    if generic is None:
        from crop.generic import generic_for_fold

        generic, _ = generic_for_fold(job.kind, job.fold)
    spec = get_method(job.method)
    score_fn = get_metric(job.metric)
    t0 = time.perf_counter()
    ca, cu, per = [], [], {}
    error = None
    sessions = sessions if sessions is not None else _sessions(job.people)
    try:
        for u in job.people:
            for a in (1, 2):
                for seed in job.seeds:
                    split = stratified_split(sessions[(u, a)], seed)
                    model = spec.fit(generic, split, job.config, seed=seed, metric=job.metric).model
                    other = sessions[(u, 3 - a)]
                    a_score = 100 * score_fn(split.test.y, predict(model, split.test.X))
                    u_score = 100 * score_fn(other.y, predict(model, other.X))
                    ca.append(a_score)
                    cu.append(u_score)
                    per[f"user {u} session {a} seed {seed}"] = round(a_score + u_score, 6)
    except CropError as exc:
        error = str(exc)
    mean_ca = float(np.mean(ca)) if ca and error is None else float("nan")
    mean_cu = float(np.mean(cu)) if cu and error is None else float("nan")
    return PopulationTrial(
        job.index, job.overrides, mean_ca + mean_cu, mean_ca, mean_cu, per, time.perf_counter() - t0, error
    )


def _run_trials(jobs: list[_TrialJob], workers: int, generic: Any) -> Iterator[PopulationTrial]:
    """The trials of ``jobs`` in their order: here, or in ``workers`` spawned processes."""
    if workers == 1 or len(jobs) < 2:
        sessions = _sessions(jobs[0].people) if jobs else {}  # read once for every grid point
        for job in jobs:
            yield _score_trial(job, generic, sessions)
        return
    from crop.workers import process_pool

    # as the bench: spawned one-thread workers that die with this process (crop.workers)
    with process_pool(min(workers, len(jobs)), threads=1, preload=(__name__,)) as pool:
        yield from pool.map(_score_trial, jobs)

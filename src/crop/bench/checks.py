"""What ``crop bench`` checks before the first unit runs, and its single-writer lock.

:func:`validate_bench_spec` refuses an invalid :class:`~crop.bench.runner.BenchSpec` as a whole
(one-line :class:`~crop.errors.CropError`) before anything is written: a bad config never
becomes "failed" records. :func:`results_lock` holds an exclusive ``flock`` on the results
directory itself for the whole run, so a second run on the same directory is refused at once
(and leaves no lock file behind); the lock is bound to the directory, not its path
(:mod:`crop.dirlock`). :func:`guard_bench` does both around ``run_bench``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from crop.dirlock import DirectoryLock
from crop.errors import CropError
from crop.outputs import check_out_dir
from crop.validate import MAX_GRID_POINTS, MAX_SEED, MAX_SEEDS, MAX_WORKERS, check_config, check_int, check_unique

# Files a bench directory holds: each must be a regular file or absent.
BENCH_FILES = ("results.jsonl", "bench.json", "timings.jsonl", "generics.jsonl", "errors.log", "table.md")


def read_json_object(path: Path, what: str, advice: str = "fix it or use a new directory") -> dict[str, Any]:
    """A JSON object from ``path``; a one-line error if it is unreadable, not JSON or not an
    object (``advice`` ends the message of a corrupt file; empty: nothing)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CropError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CropError(f"{path} is corrupt ({what}: {exc}){'; ' + advice if advice else ''}") from None
    if not isinstance(value, dict):
        raise CropError(f"{path} is corrupt ({what}: a JSON object expected, got {type(value).__name__})")
    return value


def read_settings(out: Path) -> dict[str, Any]:
    """``bench.json`` of a results directory, checked: an object whose ``configs`` is an object of objects."""
    settings = read_json_object(out / "bench.json", "the settings of this results directory")
    configs = settings.get("configs", {})
    if not isinstance(configs, dict) or any(not isinstance(v, dict) for v in configs.values()):
        raise CropError(f"{out / 'bench.json'} is corrupt: 'configs' must map method names to option tables")
    for key in ("metric", "dataset"):
        if key in settings and not isinstance(settings[key], str):
            raise CropError(f"{out / 'bench.json'} is corrupt: {key!r} must be a string")
    return settings


def validate_bench_spec(spec: Any) -> None:
    """Every field of ``spec``, the configs of its methods and its output directory."""
    from crop.bench.runner import BenchSpec
    from crop.data.hapt import USERS
    from crop.data.scenarios import Scenario
    from crop.metrics import get_metric
    from crop.personalization.registry import get_method

    if not isinstance(spec, BenchSpec):
        raise CropError(f"expected a BenchSpec, got {type(spec).__name__}")
    if isinstance(spec.out, str):
        spec.out = check_out_dir(spec.out)
    if not isinstance(spec.out, Path):
        raise CropError(f"out must be a directory path, got {type(spec.out).__name__}")
    if not isinstance(spec.dataset_options, dict):
        raise CropError(f"dataset_options must be a dict, got {type(spec.dataset_options).__name__}")
    if spec.dataset_options and spec.dataset != "csv":
        raise CropError("--rate, --window and --stride apply to --dataset csv only")
    if spec.dataset != "hapt":
        _check_dataset(spec)
    get_metric(spec.metric)
    if spec.dataset == "hapt":
        check_unique(spec.scenarios, "scenarios", key=lambda s: s.name if isinstance(s, Scenario) else repr(s))
        if any(not isinstance(s, Scenario) for s in spec.scenarios):
            raise CropError("scenarios must be Scenario objects (crop.data.scenarios.parse_scenarios)")
        check_unique(spec.users, "users")
        for user in spec.users:
            check_int(user, "user", 1, max(USERS))
    check_unique(spec.seeds, "seeds")
    for seed in spec.seeds:
        check_int(seed, "seed", 0, MAX_SEED)
    if len(spec.seeds) > MAX_SEEDS:
        raise CropError(f"seeds: at most {MAX_SEEDS} seeds in one bench, got {len(spec.seeds)}")
    check_unique(spec.methods, "methods")
    for method in spec.methods:
        get_method(method)
    if not isinstance(spec.configs, dict):
        raise CropError("configs must map method names to config objects")
    for method, config in spec.configs.items():
        cls = get_method(method).config_class
        if not isinstance(config, cls):
            raise CropError(f"config of {method!r} must be a {cls.__name__}, got {type(config).__name__}")
        check_config(config, f"{method} config")
    _check_options(spec)
    _check_directory(Path(spec.out))


def _check_dataset(spec: Any) -> None:
    """A dataset other than HAPT: its name, its directory and files (loaded, so a malformed file
    is refused here, before anything is written), its scenarios and users (every context of every
    (user, scenario) holds samples and the available one splits), the given model of
    ``--dataset npz`` and the generic training config; the HAPT-only options at their defaults."""
    from crop.bench.datasets import DatasetSource
    from crop.bench.runner import source_of
    from crop.data.datasets import DatasetScenario, dataset_class, uses_given_model
    from crop.data.datasets.presets import PaperGenericConfig

    dataset_class(spec.dataset)
    hapt_only = {
        "--norm": (spec.norm, "batch"),
        "--protocol": (spec.protocol, "test"),
        "--generic": (spec.generic, None),
        "--tune-on": (spec.tune_on, "available"),
    }
    for option, (value, default) in hapt_only.items():
        if value != default:
            raise CropError(f"{option} {value} applies to --dataset hapt only")
    if spec.root is None:
        raise CropError(f"--dataset {spec.dataset} needs --root (the directory holding its files; crop docs DATASETS)")
    given = uses_given_model(spec.dataset)
    if not given and (spec.model is not None or spec.arch is not None):
        raise CropError(
            "--model and --arch apply to --dataset npz and csv (the paper's datasets train their generic models)"
        )
    if given and spec.model is None:
        raise CropError(
            f"--dataset {spec.dataset} needs --model (your generic model .safetensors; --arch for your own nn.Module)"
        )
    if spec.generic_training is not None:
        if given:
            raise CropError(
                f"[generic-training] does not apply to --dataset {spec.dataset} (its generic model is --model)"
            )
        if not isinstance(spec.generic_training, PaperGenericConfig):
            raise CropError("generic_training must be a PaperGenericConfig")
        check_config(spec.generic_training, "generic-training")
    source: DatasetSource = source_of(spec)
    data = source.dataset.load()  # every file parsed and checked now
    check_unique(spec.scenarios, "scenarios", key=lambda s: getattr(s, "name", repr(s)))
    for scenario in spec.scenarios:
        if not isinstance(scenario, DatasetScenario) or scenario.dataset != spec.dataset:
            raise CropError(f"scenarios must be {spec.dataset} scenarios (Dataset.parse_scenarios), got {scenario!r}")
    check_unique(spec.users, "users", key=str)
    for user in spec.users:
        if user not in data.users:
            source.dataset.check_usable(user)
            raise CropError(f"unknown {spec.dataset} user {user!r} under {source.root}")
    for scenario in spec.scenarios:  # an empty context, or one too small to split: refused before any training
        for user in spec.users:
            source.user_scenario(user, scenario, 0)  # the split's sizes do not depend on the seed
    if given:
        source.generic_model("given")  # the model file (and factory) load, before any unit
    else:
        for user in spec.users:  # every served user has a generic model with enough other users
            source.dataset.generic_split(source.serving(user), source.generic_config().seed)


def _check_options(spec: Any) -> None:
    from crop.certify.robustness import RobustnessSpec, check_spec

    if not isinstance(spec.tune, bool):
        raise CropError(f"tune must be true or false, got {spec.tune!r}")
    if spec.tune_on not in ("available", "population"):
        raise CropError(f"--tune-on must be 'available' or 'population', got {spec.tune_on!r}")
    if spec.tune_budget is not None:
        check_int(spec.tune_budget, "--tune-budget", 1, MAX_GRID_POINTS)
        if not spec.tune:
            raise CropError("--tune-budget applies with --tune only")
        if spec.tune_on == "population":
            raise CropError("--tune-budget applies to available-context tuning only (population tuning runs the grid)")
    if spec.certify is not None:
        if not isinstance(spec.certify, RobustnessSpec):
            raise CropError("certify must be a RobustnessSpec (crop.certify.robustness.parse_robustness_spec)")
        check_spec(spec.certify)
    if spec.workers is not None:
        check_int(spec.workers, "--workers", 1, MAX_WORKERS)
    if spec.norm not in ("batch", "none"):
        raise CropError(f"--norm must be 'batch' or 'none', got {spec.norm!r}")
    from crop.bench.ray_executor import check_executor

    check_executor(getattr(spec, "executor", "local"), getattr(spec, "address", None))
    _check_serving(spec)
    if spec.unit_hook is not None and not callable(spec.unit_hook):
        raise CropError("unit_hook must be callable")
    if not isinstance(getattr(spec, "fairness", False), bool):
        raise CropError(f"fairness must be true or false, got {spec.fairness!r}")


def _check_serving(spec: Any) -> None:
    """Which generic models serve the users: ``protocol`` and ``generic`` (when the spec has them)."""
    from crop.bench import runner

    protocol = getattr(spec, "protocol", None)
    protocols = getattr(runner, "PROTOCOLS", ())
    if protocol is not None and protocol not in protocols:
        raise CropError(f"--protocol must be one of {', '.join(protocols)}, got {protocol!r}")
    if protocol == "development" and spec.tune and spec.tune_on == "population":
        raise CropError(
            "population tuning uses the validation users of a generic model, who are the people the development "
            "protocol evaluates: use --protocol test"
        )
    generic = getattr(spec, "generic", None)
    extra = (generic,) if generic is not None else ()
    if getattr(spec, "dataset", "hapt") != "hapt":
        return  # checked by _check_dataset
    from crop.generic import kind_for_method

    for scenario in spec.scenarios:  # the generic model kind of every scenario (and method) exists
        kind = runner.generic_kind(scenario, spec.norm, *extra)
        for method in spec.methods:
            kind_for_method(kind, method)
    _check_faults(spec)


def _check_faults(spec: Any) -> None:
    """``--faults`` needs a ``hapt-faults`` scenario to put its contexts in."""
    faults = getattr(spec, "faults", None)
    if faults is None:
        return
    if not any(getattr(sc, "family", None) == "hapt-faults" for sc in spec.scenarios):
        raise CropError("--faults sets the unseen contexts of hapt-faults: add --scenario hapt-faults (or :1, :2)")
    from crop.data.faults import check_faults

    check_faults(list(faults))


def _check_directory(out: Path) -> None:
    check_out_dir(out, "--out", BENCH_FILES)
    if os.path.lexists(out / "tables") and not (out / "tables").is_dir():
        raise CropError(f"{out / 'tables'} is not a directory")
    if (out / "bench.json").is_file():
        read_settings(out)


@contextlib.contextmanager
def results_lock(out: Path) -> Iterator[DirectoryLock]:
    """Hold an exclusive lock on the results directory ``out`` itself (:class:`DirectoryLock`);
    a one-line error at once if another run holds it. Every write of the run goes through the
    lock it yields, which stops the run if ``out`` stops naming the locked directory."""
    with DirectoryLock(out, "results directory") as lock:
        yield lock


def guard_bench(run: Callable[..., Path]) -> Callable[..., Path]:
    """Decorator of ``run_bench``: validate the spec before anything is written, then run it
    holding the results directory's lock, which it hands to ``run`` as ``lock``. ``finish``
    (keyword of the decorated function) runs after the last unit, still under the lock and
    after :meth:`~crop.dirlock.DirectoryLock.check`: ``crop bench`` writes its tables there."""

    @functools.wraps(run)
    def guarded(spec: Any, *args: Any, finish: Callable[[], None] | None = None, **kwargs: Any) -> Path:
        validate_bench_spec(spec)
        out = Path(spec.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CropError(f"cannot create {out}: {exc.strerror or exc}") from None
        with results_lock(out) as lock:
            path = run(spec, *args, lock=lock, **kwargs)
            if finish is not None:
                lock.check()
                finish()
            return path

    return guarded

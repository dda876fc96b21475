"""crop: trustworthy static personalization of human-sensing models (CRoP).

Personalize (personalize, tune), compare (bench, report, demo), explain (analyze), certify (certify),
audit fairness (fairness).

Bad input ends in one line on stderr ("crop: error: ...") and exit code 2, with no half-written output.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import tomllib
import typer
from rich.console import Console
from rich.table import Table as RichTable

from crop.errors import CropError
from crop.outputs import check_input_dir, check_out_dir, check_out_file
from crop.validate import (
    MAX_EPOCHS,
    MAX_GRID_POINTS,
    MAX_SEED,
    MAX_SEEDS,
    MAX_THREADS,
    MAX_WORKERS,
    int_list,
    split_list,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
console = Console()
err_console = Console(stderr=True)


def _say(prefix: str, message: Any) -> None:
    """One line on stderr (newlines in ``message`` become spaces)."""
    text = " ".join(str(message).split())
    err_console.print(f"{prefix}{text}", highlight=False, markup=False, soft_wrap=True)


def _guard(func: Callable[..., None]) -> Callable[..., None]:
    """Turn :class:`CropError` (and an unusable file or directory, :class:`OSError`) into one
    line on stderr and exit code 2; anything else is an internal error (exit 1). No traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except CropError as exc:
            _say("crop: error: ", exc)
            raise typer.Exit(2) from None
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            _say("crop: error: ", f"{exc.strerror or exc}{where}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("crop: interrupted", highlight=False, markup=False)
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - never dump a traceback on a user
            if os.environ.get("CROP_DEBUG"):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            err_console.print(
                f"crop: internal error: {type(exc).__name__}: {first} (set CROP_DEBUG=1 for the traceback)",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def _users(text: str | None, what: str = "--users") -> list[int]:
    """``all`` (the 30 HAPT users) or comma-separated HAPT user ids, none repeated."""
    from crop.data.hapt import USERS

    if text is not None and text.strip() == "all":
        return list(USERS)
    values = int_list(text, what)
    unknown = [u for u in values if u not in USERS]
    if unknown:
        raise CropError(f"unknown HAPT user(s) {unknown}: users are 1-30")
    return values


def _methods(text: str | None, what: str = "--methods") -> list[str]:
    from crop.personalization.registry import get_method

    names = split_list(text, what)
    for name in names:
        get_method(name)
    return names


def _metric(name: str) -> str:
    from crop.metrics import get_metric

    get_metric(name)
    return name


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CropError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CropError(f"{path}: not valid TOML ({exc})") from None


def _dataset_configs(path: Path | None, dataset: str) -> tuple[dict[str, Any], Any]:
    """Method configs (the dataset's preset, then the TOML table of each method) and the
    generic-training config (``[generic-training]``: the dataset's Table 9 preset overridden)."""
    from crop.bench.datasets import GENERIC_TABLE, generic_config, method_config
    from crop.personalization.registry import get_method

    raw = _read_toml(path) if path is not None else {}
    configs: dict[str, Any] = {}
    generic_training = None
    for name, values in raw.items():
        if not isinstance(values, dict):
            raise CropError(f"{path}: [{name}] must be a table of options")
        if name == GENERIC_TABLE:
            if dataset == "npz":
                raise CropError(f"{path}: [{GENERIC_TABLE}] does not apply to --dataset npz (its model is --model)")
            generic_training = generic_config(dataset, values, f"{path}:[{name}]")
            continue
        get_method(name)
        configs[name] = method_config(dataset, name, values, f"{path}:[{name}]")
    return configs, generic_training


def _dataset_choices(
    dataset: str,
    root: str | None,
    model: Path | None,
    arch: str | None,
    scenario: str | None,
    users: str | None,
    config: Path | None,
    methods: list[str],
) -> dict[str, Any]:
    """What ``crop bench --dataset NAME`` runs: the dataset's scenarios, users (its paper's
    personalization users by default), configs and metric, all checked before anything runs."""
    from crop.data.datasets import dataset_class, get_dataset

    dataset_class(dataset)
    if dataset != "npz" and (model is not None or arch is not None):
        raise CropError("--model and --arch apply to --dataset npz (the paper's datasets train their generic models)")
    if dataset == "npz" and model is None:
        raise CropError("--dataset npz needs --model (your generic model .safetensors)")
    if model is not None and not model.is_file():
        raise CropError(f"model file not found: {model}")
    configs, generic_training = _dataset_configs(config, dataset)
    ds = get_dataset(dataset, root)
    scenarios = ds.parse_scenarios(scenario)
    if users is not None and users.strip() == "all":
        user_list = ds.users()
    else:
        user_list = (
            [ds.parse_user(u) for u in split_list(users, "--users")] if users is not None else ds.default_users()
        )
    if len({str(u) for u in user_list}) != len(user_list):
        raise CropError(f"--users: a user is given twice in {users!r}")
    spec = {
        "scenarios": scenarios,
        "users": user_list,
        "dataset": dataset,
        "configs": configs,
        "root": Path(str(root)),
        "model": model,
        "arch": arch,
        "generic_training": generic_training,
    }
    return {"spec": spec, "metric": ds.metric}


def _load_configs(path: Path | None, methods: list[str]) -> dict[str, Any]:
    """Method configs from a TOML file with one table per method name."""
    from crop.personalization.registry import config_from_dict, get_method

    if path is None:
        return {}
    if not path.is_file():
        raise CropError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CropError(f"{path}: not valid TOML ({exc})") from None
    out = {}
    for name, values in raw.items():
        spec = get_method(name)
        if not isinstance(values, dict):
            raise CropError(f"{path}: [{name}] must be a table of options")
        out[name] = config_from_dict(spec.config_class, values, f"{path}:[{name}]")
    return out


def _rich_table(table: Any) -> RichTable:
    rt = RichTable(title=table.title, title_justify="left", show_lines=False)
    for i, h in enumerate(table.header):
        rt.add_column(h, justify="left" if i == 0 else "right")
    for row in table.rows:
        rt.add_row(*(table.cell(c, v) for c, v in zip(table.header, row, strict=True)))
    return rt


def _check_report_targets(out: Path) -> None:
    """The files a report writes into ``out`` are regular files or absent (checked before the
    first one is written, and before a bench runs)."""
    from crop.outputs import check_write_target

    check_out_dir(out / "tables", "the tables directory")
    if out.is_dir():
        for path in [out / "table.md", out / "deltas.png", *out.glob("robustness-*.png"), *out.glob("tables/*.csv")]:
            check_write_target(path)


def _write_tables(out: Path, metric: str) -> list[Any]:
    from crop.bench.runner import load_results
    from crop.report.files import write_text_atomic
    from crop.report.plots import delta_bars, robustness_curves
    from crop.report.tables import all_tables, performance, render_markdown

    _metric(metric)
    _check_report_targets(out)
    records = load_results(out)
    perf = performance(records, metric)
    if len({k[2] for k in perf}) >= 5 and "finetune" in {k[1] for k in perf} and len({k[1] for k in perf}) > 2:
        from crop.report.plots import gain_strips

        gain_strips(perf, out / "gains.png")
    if {k[1] for k in perf} - {"generic"}:
        delta_bars(perf, out / "deltas.png", f"Δ_P and Δ_G ({metric}), mean over users, 95 % bootstrap interval")
    for scenario in sorted({r["scenario"] for r in records if "radius" in r}):
        robustness_curves(records, scenario, out / f"robustness-{scenario.replace(':', '-')}.png")
    dataset = next((r["dataset"] for r in records if isinstance(r.get("dataset"), str)), "hapt")
    text = render_markdown(records, metric, dataset)
    summary = out / "fairness" / "summary.md"
    if summary.is_file():  # written by crop fairness / crop bench --fairness
        text += "\n## Fairness (full report: fairness/fairness.md)\n\n" + summary.read_text(encoding="utf-8")
    write_text_atomic(out / "table.md", text)
    tables = all_tables(records, metric, dataset)
    (out / "tables").mkdir(exist_ok=True)
    for i, t in enumerate(tables):
        write_text_atomic(out / "tables" / f"{i:02d}.csv", t.csv())
    return tables


@app.callback()
@_guard
def _setup(
    threads: Annotated[
        int | None,
        typer.Option(
            help="CPU threads for torch (default: $CROP_THREADS, else 1; 1 is fastest for the small sensing models)",
            min=1,
            max=MAX_THREADS,
        ),
    ] = None,
) -> None:
    """crop: trustworthy static personalization of human-sensing models (CRoP)."""
    from crop.env import check_all

    from_env = check_all()  # CROP_THREADS, CROP_CACHE_DIR, CROP_HAPT_FILE: refused like bad options
    import torch

    torch.set_num_threads(threads or from_env)


@app.command()
@_guard
def methods() -> None:
    """List the registered personalization methods."""
    from crop.personalization.registry import METHODS, available_methods

    for name in available_methods():
        console.print(f"[bold]{name}[/bold]: {METHODS[name].description}")


@app.command()
@_guard
def bench(
    out: Annotated[str, typer.Option(help="output directory (results.jsonl, table.md); re-running resumes")],
    scenario: Annotated[
        str | None,
        typer.Option(
            help="e.g. hapt-session (both scenarios) or hapt-session:1; comma-separated (required for hapt; other "
            "datasets default to their Table 2 scenarios)"
        ),
    ] = None,
    dataset: Annotated[
        str,
        typer.Option(help="hapt (built in), extrasensory, extrasensory-raw, stress, widar, perceptr or npz (--root)"),
    ] = "hapt",
    root: Annotated[
        str | None, typer.Option(help="the dataset's directory (every dataset but hapt; docs/DATASETS.md)")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="--dataset npz: your generic model .safetensors (serves every user)")
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(help="--dataset npz: package.module:factory building your nn.Module (unless --model is built in)"),
    ] = None,
    users: Annotated[
        str | None,
        typer.Option(
            help="comma-separated user ids, or 'all' (all 30 HAPT users, each served by a generic model of its "
            "leave-users-out fold); default: the documented personalization users"
        ),
    ] = None,
    seeds: Annotated[str, typer.Option(help=f"comma-separated seeds (0 to {MAX_SEED}, at most {MAX_SEEDS})")] = "0",
    methods: Annotated[
        str, typer.Option(help="comma-separated method names (see `crop methods`)")
    ] = "generic,finetune,crop",
    config: Annotated[Path | None, typer.Option(help="TOML file with one [method] table of options each")] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="accuracy measure for selection and tables (default: the dataset's, Appendix A.2)"),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar or tables on the terminal")] = False,
    tune: Annotated[
        bool,
        typer.Option(
            help="grid-search each method's config: per user on the available-context validation split, or with "
            "--tune-on population on other people's real session change"
        ),
    ] = False,
    tune_on: Annotated[
        str,
        typer.Option(
            help="with --tune: 'available' (each person's validation split) or 'population' (the generic model's "
            "validation users, personalized on one session and scored on the other)"
        ),
    ] = "available",
    tune_budget: Annotated[
        int | None, typer.Option(help="with --tune: at most this many grid points", min=1, max=MAX_GRID_POINTS)
    ] = None,
    certify: Annotated[
        str | None,
        typer.Option(
            help="add robustness records, e.g. 'eps=0.003,0.01,sigma=0.05': verified accuracy (IBP, CROWN), "
            "PGD accuracy at each eps, smoothed certified accuracy at radii (keys: eps norm sigma radii n0 n alpha steps)"
        ),
    ] = None,
    norm: Annotated[
        str,
        typer.Option(
            help="'batch' (the HAPT network with BatchNorm) or 'none' (the same network without normalization "
            "layers, like the paper's architectures; its generic models are trained on first use)"
        ),
    ] = "batch",
    protocol: Annotated[
        str,
        typer.Option(
            help="'test' (each user served by a generic model that never saw them) or 'development' (by the model "
            "that used them for validation: the pairs population tuning sees; for choosing settings)"
        ),
    ] = "test",
    generic: Annotated[
        str | None,
        typer.Option(help="generic model kind for every scenario: hapt or hapt-rot (default: each scenario's own)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="worker processes (default: one per CPU core for large runs, 1 for small ones); "
            "results are identical for any number",
            min=1,
            max=MAX_WORKERS,
        ),
    ] = None,
    fairness: Annotated[
        bool,
        typer.Option(
            help="also record each model's confusion matrix per context and write the fairness report "
            "(DIR/fairness/, summary in table.md; see crop fairness)"
        ),
    ] = False,
    attributes: Annotated[
        Path | None,
        typer.Option(help="with --fairness: CSV or JSON table of per-person attributes (a 'user' column)"),
    ] = None,
) -> None:
    """Run methods over users x scenarios x seeds; write results.jsonl and table.md."""
    from crop.bench.checks import BENCH_FILES
    from crop.bench.runner import BenchSpec, run_bench
    from crop.certify.robustness import parse_robustness_spec
    from crop.data.scenarios import PERSONALIZATION_USERS, parse_scenarios

    # Everything is checked here (and again by run_bench) before anything is written.
    out_dir = check_out_dir(out, "--out", BENCH_FILES)
    _check_report_targets(out_dir)
    if tune_on not in ("available", "population"):
        raise CropError(f"--tune-on must be 'available' or 'population', got {tune_on!r}")
    if norm not in ("batch", "none"):
        raise CropError(f"--norm must be 'batch' or 'none', got {norm!r}")
    method_list = _methods(methods)
    if dataset != "hapt":
        if attributes is not None and not fairness:
            raise CropError("--attributes needs --fairness")
        picked = _dataset_choices(dataset, root, model, arch, scenario, users, config, method_list)
        fields = picked["spec"]
        metric = _metric(metric) if metric is not None else picked["metric"]
    else:
        if root is not None or model is not None or arch is not None:
            raise CropError("--root, --model and --arch apply to the datasets of docs/DATASETS.md, not hapt")
        if scenario is None:
            raise CropError("--dataset hapt needs --scenario (e.g. hapt-session:1)")
        metric = _metric(metric if metric is not None else "balanced_accuracy")
        user_list = _users(users) if users is not None else list(PERSONALIZATION_USERS)
        if attributes is not None and not fairness:
            raise CropError("--attributes needs --fairness")
        fields = {
            "scenarios": parse_scenarios(scenario),
            "users": user_list,
            "dataset": dataset,
            "configs": _load_configs(config, method_list),
        }
    if fairness:
        from crop.fairness._command import check_targets, read_table_for

        check_targets(out_dir)
        read_table_for(attributes, fields["users"], dataset, root)
    spec = BenchSpec(
        **fields,
        seeds=int_list(seeds, "--seeds", 0, MAX_SEED, MAX_SEEDS),
        methods=method_list,
        out=out_dir,
        metric=metric,
        tune=tune,
        tune_budget=tune_budget,
        tune_on=tune_on,
        certify=parse_robustness_spec(certify) if certify is not None else None,
        workers=workers,
        norm=norm,
        protocol=protocol,
        generic=generic,
        fairness=fairness,
    )
    run_bench(spec, progress=not quiet)
    if fairness:
        _fairness_report(out_dir, attributes, quiet=quiet)
    tables = _write_tables(out_dir, metric)
    if not quiet:
        for t in tables:
            if t.kind in ("summary", "gains"):
                console.print(_rich_table(t))
    console.print(f"wrote {out_dir / 'results.jsonl'} and {out_dir / 'table.md'}")


@app.command()
@_guard
def report(
    out: Annotated[str, typer.Argument(help="a bench output directory")],
    metric: Annotated[
        str | None, typer.Option(help="accuracy measure (default: the one the bench ran with, bench.json)")
    ] = None,
) -> None:
    """Rewrite table.md (and tables/*.csv) from a bench directory's results.jsonl."""
    directory = check_input_dir(out, "DIR")
    if metric is None:
        from crop.bench.checks import read_settings

        ran = read_settings(directory).get("metric") if (directory / "bench.json").is_file() else None
        metric = ran if isinstance(ran, str) else "balanced_accuracy"
    _metric(metric)
    tables = _write_tables(directory, metric)
    for t in tables:
        console.print(_rich_table(t))


def _fairness_report(out: Path, attributes: Path | None, resamples: int = 2000, quiet: bool = False) -> Any:
    from crop.fairness import run_fairness

    with console.status("fairness report") as status:
        report = run_fairness(out, attributes, resamples=resamples, say=None if quiet else status.update)
    if not quiet:
        for t in report.summary_tables:
            console.print(_rich_table(t))
    console.print(f"wrote {report.path}")
    return report


@app.command()
@_guard
def fairness(
    out: Annotated[str, typer.Argument(help="a crop bench output directory")],
    attributes: Annotated[
        Path | None,
        typer.Option(help="CSV or JSON table of per-person attributes keyed by user id (a 'user' column)"),
    ] = None,
    resamples: Annotated[
        int, typer.Option(help="bootstrap resamples over people for the intervals", min=100, max=100_000)
    ] = 2000,
) -> None:
    """Fairness of a bench's models, group-wise and across people, into DIR/fairness/.

    Per-person balanced accuracy and gains (spread, worst person, share harmed); with `crop bench
    --fairness` results also per group of each attribute: HAPT traits measured on the available
    context (movement intensity, walking cadence, the generic model's accuracy), attributes the
    dataset's files carry (stress: the readme demographics), the --attributes columns, the
    activity and the context. See docs/FAIRNESS.md."""
    from crop.fairness._command import check_targets

    out_dir = check_input_dir(out, "DIR")
    check_targets(out_dir)
    _fairness_report(out_dir, attributes, resamples)


@app.command()
@_guard
def analyze(
    out: Annotated[str, typer.Argument(help="a `crop bench` or `crop personalize --user` output directory")],
    users: Annotated[str | None, typer.Option(help="bench: comma-separated users (default: all)")] = None,
    seeds: Annotated[str | None, typer.Option(help="bench: comma-separated seeds (default: the first)")] = None,
    methods: Annotated[str | None, typer.Option(help="bench: methods (default: those that prune)")] = None,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="tables only")] = False,
) -> None:
    """Section 7 analyses (GIP, distances, state accuracies, heat maps, t-SNE) into DIR/analysis/."""
    from crop.bench.analyze import analyze_bench, analyze_personalization

    out = check_input_dir(out, "DIR")
    check_out_dir(out / "analysis", "the analysis directory", ("index.md",))
    user_list = _users(users) if users is not None else None
    seed_list = int_list(seeds, "--seeds", 0, MAX_SEED) if seeds is not None else None
    method_list = _methods(methods) if methods is not None else None
    if (out / "summary.json").is_file() and not (out / "results.jsonl").is_file():
        if users is not None or seeds is not None or methods is not None:
            raise CropError(
                "--users, --seeds and --methods select units of a bench directory; this is a personalization"
            )
        index = analyze_personalization(out, figures=not no_figures)
    elif (out / "results.jsonl").is_file():
        index = analyze_bench(out, users=user_list, seeds=seed_list, methods=method_list, figures=not no_figures)
    else:
        raise CropError(f"{out} holds neither results.jsonl (crop bench) nor summary.json (crop personalize)")
    console.print(f"wrote {index}")


@app.command()
@_guard
def demo(
    out: Annotated[str, typer.Option(help="output directory")] = "crop-out/demo",
    seed: Annotated[int, typer.Option(help="split and training seed", min=0, max=MAX_SEED)] = 0,
) -> None:
    """The main job on built-in data: HAPT hapt-session scenario 1, generic vs finetune vs CRoP."""
    from crop.bench.checks import BENCH_FILES
    from crop.bench.runner import BenchSpec, run_bench
    from crop.data.scenarios import PERSONALIZATION_USERS, parse_scenarios

    out = check_out_dir(out, "--out", BENCH_FILES)
    _check_report_targets(out)
    console.print(
        f"[bold]crop demo[/bold]: personalizing HAPT users {list(PERSONALIZATION_USERS)} "
        "(available context: session 1; unseen: session 2) with conventional finetuning and CRoP"
    )
    spec = BenchSpec(
        scenarios=parse_scenarios("hapt-session:1"),
        users=list(PERSONALIZATION_USERS),
        seeds=[seed],
        methods=["generic", "finetune", "crop"],
        out=out,
    )
    run_bench(spec)
    tables = _write_tables(out, spec.metric)
    for kind in ("per_user", "summary"):
        console.print(_rich_table(next(t for t in tables if t.kind == kind)))
    from crop.bench.runner import load_results
    from crop.report.stats import summarize_gain
    from crop.report.tables import performance

    perf = performance(load_results(out), spec.metric)
    for method in ("finetune", "crop"):
        g = summarize_gain(perf, "hapt-session:1", method, "generic")
        line = f"{method}: Δ_P {g.interval()} pp"
        if method != "finetune":
            h = summarize_gain(perf, "hapt-session:1", method, "finetune")
            line += f", Δ_G {h.interval()} pp (95 % bootstrap interval over the {h.n_users} users)"
        console.print(line)
    console.print(f"Results: {out / 'results.jsonl'}, tables: {out / 'table.md'}")


def _hapt_user(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise CropError(f"--user must be a HAPT user id (1-30), got {text!r}") from None


def _preset_config(dataset: str, method: str) -> Any:
    from crop.bench.datasets import method_config

    return method_config(dataset, method)


def _dataset_person(
    dataset: str,
    root: str | None,
    user: str | None,
    scenario: str | None,
    model: Path | None,
    arch: str | None,
    seed: int,
    generic_training: Any,
) -> tuple[Any, dict, Any, dict, dict, str]:
    """As :func:`_person` for ``--dataset NAME --root DIR --user U``: the generic model that
    serves the user (trained on first use and cached), the user's split and unseen contexts."""
    from crop.bench.datasets import DatasetSource
    from crop.data.datasets import dataset_class, get_dataset

    dataset_class(dataset)
    if user is None:
        raise CropError(f"--dataset {dataset} needs --user (one of its users under --root)")
    if dataset != "npz" and (model is not None or arch is not None):
        raise CropError("--model and --arch apply to --dataset npz (the paper's datasets train their generic models)")
    ds = get_dataset(dataset, root)
    who = ds.parse_user(user)
    scenarios = ds.parse_scenarios(scenario)
    if scenario is not None and len(scenarios) != 1:
        raise CropError(f"--scenario must name one scenario such as {scenarios[0].name}")
    source = DatasetSource(dataset, str(ds.root.resolve()), generic_training, str(model) if model else None, arch)
    if dataset == "npz" and model is None:
        raise CropError("--dataset npz needs --model (your generic model .safetensors)")
    generic, info = source.generic_model(source.serving(who))
    us = source.user_scenario(who, scenarios[0], seed)
    subject = {"dataset": dataset, "root": source.root, "user": who, "scenario": scenarios[0].name}
    return generic, info, us.available, us.unseen, subject, ds.metric


def _person(
    user: int | None, scenario: str, data: Path | None, model: Path | None, available: str | None, seed: int
) -> tuple[Any, dict, Any, dict, dict]:
    """The generic model, its provenance, the available split, the unseen contexts and a
    description of whose data it is: a HAPT user, or a user's own ``.npz`` plus a model file."""
    import numpy as np

    from crop.data.sensing import load_npz, stratified_split
    from crop.models.io import load_model

    if (user is None) == (data is None):
        raise CropError("give either --user (a HAPT user) or --data with --model")
    if user is not None:
        from crop.data.scenarios import build_user_scenario, parse_scenarios
        from crop.generic import generic_for_user

        scenarios = parse_scenarios(scenario)
        if len(scenarios) != 1:
            raise CropError(f"--scenario must name one scenario such as {scenarios[0].name}")
        from crop.data.hapt import USERS

        if user not in USERS:
            raise CropError(f"unknown HAPT user {user}: users are 1-30")
        generic, generic_info = (
            (load_model(model), {"source": str(model)}) if model else generic_for_user(scenarios[0].generic, user)
        )
        us = build_user_scenario(user, scenarios[0], seed)
        split, unseen = us.available, us.unseen
        subject = {"dataset": "hapt", "user": user, "scenario": scenarios[0].name}
    else:
        if model is None:
            raise CropError("--data needs --model (the generic model file)")
        generic, generic_info = load_model(model), {"source": str(model)}
        whole, context = load_npz(data)
        whole.validate()
        unseen = {}
        if context is not None:
            values = sorted({str(v) for v in context.tolist()})
            if available is None:
                if len(values) > 1:
                    raise CropError(f"{data}: several contexts {values}; choose the available one with --available")
                available = values[0]
            if available not in values:
                raise CropError(f"{data}: context {available!r} not found; contexts are {values}")
            ctx = np.asarray([str(v) for v in context.tolist()])
            for v in values:
                if v != available:
                    unseen[v] = whole.subset(np.flatnonzero(ctx == v), f"{data.name} context {v}")
            whole = whole.subset(np.flatnonzero(ctx == available), f"{data.name} context {available}")
        split = stratified_split(whole, seed)
        subject = {"data": str(data), "available_context": available}
    return generic, generic_info, split, unseen, subject


@app.command()
@_guard
def personalize(
    out: Annotated[str, typer.Option(help="output directory: model.safetensors and summary.json")],
    user: Annotated[
        str | None, typer.Option(help="a HAPT user id (1-30), or a user of --dataset (ExtraSensory: a UUID prefix)")
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help="e.g. hapt-session:1 (the default on hapt) or stress:1 (default: the first)")
    ] = None,
    dataset: Annotated[
        str, typer.Option(help="hapt (built in) or a dataset of docs/DATASETS.md, with --root")
    ] = "hapt",
    root: Annotated[str | None, typer.Option(help="the dataset's directory (every dataset but hapt)")] = None,
    arch: Annotated[
        str | None, typer.Option(help="--dataset npz: package.module:factory building your nn.Module")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="your own .npz with X (n, ...), y (n,), optional context (n,)")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="generic model .safetensors (written by crop)")] = None,
    available: Annotated[str | None, typer.Option(help="with --data: the context value that is available")] = None,
    method: Annotated[str, typer.Option(help="registered method")] = "crop",
    seed: Annotated[int, typer.Option(help="split and training seed", min=0, max=MAX_SEED)] = 0,
    config: Annotated[Path | None, typer.Option(help="TOML file with a [method] table of options")] = None,
    metric: Annotated[str | None, typer.Option(help="accuracy measure (default: the dataset's)")] = None,
) -> None:
    """Personalize one person: a HAPT user, a user of a dataset (--dataset, --root), or your own
    data file plus a generic model file."""

    from crop.api import evaluate
    from crop.api import personalize as run_personalize
    from crop.models.io import save_model
    from crop.personalization.registry import config_to_dict, get_method
    from crop.report.files import write_text_atomic

    out = check_out_dir(out, "--out", ("model.safetensors", "model.sparse.safetensors", "summary.json"))
    get_method(method)
    t0 = time.perf_counter()
    if dataset != "hapt":
        if data is not None or available is not None:
            raise CropError("--data and --available go with --dataset hapt (or use --dataset npz --root DIR)")
        configs, generic_training = _dataset_configs(config, dataset)
        metric = _metric(metric) if metric is not None else None
        generic, generic_info, split, unseen, subject, own_metric = _dataset_person(
            dataset, root, user, scenario, model, arch, seed, generic_training
        )
        metric = metric or own_metric
        configs.setdefault(method, _preset_config(dataset, method))
    else:
        if root is not None or arch is not None:
            raise CropError("--root and --arch apply to --dataset (docs/DATASETS.md), not hapt")
        metric = _metric(metric if metric is not None else "balanced_accuracy")
        configs = _load_configs(config, [method])
        hapt_user = _hapt_user(user) if user is not None else None
        generic, generic_info, split, unseen, subject = _person(
            hapt_user, scenario if scenario is not None else "hapt-session:1", data, model, available, seed
        )
    result = run_personalize(generic, split, configs.get(method), method=method, seed=seed, metric=metric)
    scores = {"available (test split)": evaluate(result.model, split.test)} if len(split.test) else {}
    scores.update({f"unseen: {k}": evaluate(result.model, v) for k, v in unseen.items()})
    generic_scores = {"available (test split)": evaluate(generic, split.test)} if len(split.test) else {}
    generic_scores.update({f"unseen: {k}": evaluate(generic, v) for k, v in unseen.items()})
    summary = {
        **subject,
        "method": method,
        "seed": seed,
        "metric": metric,
        "prune_amount": result.prune_amount,
        "scores": scores,
        "generic_scores": generic_scores,
        "generic_model": generic_info,
        "config": config_to_dict(configs.get(method) or get_method(method).config_class()),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if "mixed_selected" in result.info:
        summary["mixed_model_selected"] = result.info["mixed_selected"]
        summary["timings"] = result.info.get("timings")
    save_model(result.model, out / "model.safetensors", {"method": method, "seed": seed})
    (out / "model.sparse.safetensors").unlink(missing_ok=True)  # never leave one from an earlier run
    if "density" in result.info and "masks" in result.info:  # a sparse method: also write the compressed file
        from crop.certify.sparse import save_sparse

        sparse_path = save_sparse(
            result.model, out / "model.sparse.safetensors", metadata={"method": method, "seed": seed}
        )
        summary["density"] = result.info.get("density")
        summary["verified_val"] = result.info.get("verified_val")
        summary["file_bytes"] = {
            "dense": (out / "model.safetensors").stat().st_size,
            "sparse": sparse_path.stat().st_size,
        }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float))
    rt = RichTable(title=f"{method} personalization ({metric}, %)", title_justify="left")
    rt.add_column("context")
    rt.add_column("generic", justify="right")
    rt.add_column(method, justify="right")
    for k, v in scores.items():
        rt.add_row(k, f"{100 * generic_scores[k][metric]:.2f}", f"{100 * v[metric]:.2f}")
    console.print(rt)
    if "file_bytes" in summary:
        sizes = summary["file_bytes"]
        console.print(
            f"density {summary['density']:.3f}; model.sparse.safetensors {sizes['sparse'] / 1024:.1f} KiB "
            f"vs dense {sizes['dense'] / 1024:.1f} KiB"
        )
    elif result.prune_amount is not None:
        console.print(f"pruning amount chosen by ToleratedPrune: {result.prune_amount:.2f}")
    console.print(f"wrote {out / 'model.safetensors'} and {out / 'summary.json'}")


@app.command()
@_guard
def tune(
    out: Annotated[str, typer.Option(help="output directory: tune.md, tune.csv, chosen.json, model.safetensors")],
    user: Annotated[int | None, typer.Option(help="a HAPT user id (1-30)")] = None,
    scenario: Annotated[str, typer.Option(help="HAPT scenario, e.g. hapt-session:1")] = "hapt-session:1",
    data: Annotated[Path | None, typer.Option(help="your own .npz with X, y, optional context")] = None,
    model: Annotated[Path | None, typer.Option(help="generic model .safetensors (written by crop)")] = None,
    available: Annotated[str | None, typer.Option(help="with --data: the context value that is available")] = None,
    method: Annotated[str, typer.Option(help="registered method")] = "crop",
    grid: Annotated[
        str | None,
        typer.Option(help="e.g. 'initial.lr+final.lr=1e-3,3e-3;alpha=1e-3,1e-2' (default: the method's small grid)"),
    ] = None,
    budget: Annotated[
        int | None,
        typer.Option(help="at most this many grid points (subsampled with the seed)", min=1, max=MAX_GRID_POINTS),
    ] = None,
    population: Annotated[
        bool,
        typer.Option(
            help="with --user: choose the config on other people instead (the validation users of the user's "
            "generic model, personalized on one real session, scored on the other)"
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="split and training seed", min=0, max=MAX_SEED)] = 0,
    config: Annotated[
        Path | None, typer.Option(help="TOML file with a [method] table: the config the grid modifies")
    ] = None,
    metric: str = "balanced_accuracy",
) -> None:
    """Grid-search a method's config for one person on the available-context validation split.

    As the paper's Appendix A.3; unseen-context data is only used to report the chosen model."""
    from rich.progress import Progress

    from crop.analysis import tune as run_tune
    from crop.analysis._tune import default_grid, expand_grid, grid_configs, parse_grid_option
    from crop.api import evaluate
    from crop.models.io import save_model
    from crop.personalization.registry import get_method

    out = check_out_dir(out, "--out", ("tune.md", "tune.csv", "chosen.json", "model.safetensors"))
    spec = get_method(method)
    _metric(metric)
    configs = _load_configs(config, [method])
    chosen_grid = parse_grid_option(grid) if grid is not None else default_grid(method, configs.get(method))
    grid_configs(configs.get(method) or spec.config_class(), expand_grid(chosen_grid), method)  # before any work
    if population:
        _population_tune_cmd(out, user, scenario, data, method, grid, budget, seed, configs.get(method), metric)
        return
    generic, _, split, unseen, subject = _person(user, scenario, data, model, available, seed)
    points = len(expand_grid(chosen_grid))
    total = min(points, budget) if budget else points
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"tuning {method}", total=total)
        result = run_tune(
            generic,
            split,
            method,
            chosen_grid,
            seed=seed,
            budget=budget,
            metric=metric,
            base_config=configs.get(method),
            on_trial=lambda _: bar.advance(task),
        )
    paths = result.write(out)
    save_model(
        result.best_result.model, out / "model.safetensors", {"method": method, "seed": seed, "tuned": result.chosen}
    )
    console.print(_rich_table(result.table()))
    console.print(f"chosen: {result.chosen}")
    scores = {"available (test split)": evaluate(result.best_result.model, split.test)} if len(split.test) else {}
    scores.update({f"unseen: {k}": evaluate(result.best_result.model, v) for k, v in unseen.items()})
    for name, value in scores.items():
        console.print(f"chosen model, {name}: {100 * value[metric]:.2f} % {metric}")
    console.print(f"wrote {paths['table']}, {paths['chosen']} and {out / 'model.safetensors'} ({subject})")


def _population_tune_cmd(
    out: Path,
    user: int | None,
    scenario: str,
    data: Path | None,
    method: str,
    grid: str | None,
    budget: int | None,
    seed: int,
    base_config: Any,
    metric: str,
) -> None:
    """``crop tune --population``: the search of :func:`crop.analysis.population_tune` for the
    fold that serves ``user``, then that user's model with the chosen config."""
    from rich.progress import Progress

    from crop.analysis import population_tune
    from crop.analysis._tune import default_grid, expand_grid, parse_grid_option
    from crop.api import evaluate
    from crop.models.io import save_model
    from crop.report.files import write_text_atomic

    if user is None or data is not None:
        raise CropError("--population needs --user (a HAPT user): other people's sessions come from HAPT")
    if budget is not None:
        raise CropError("--budget applies to available-context tuning; population tuning runs the whole grid")
    generic, _, split, unseen, subject = _person(user, scenario, None, None, None, seed)
    from crop.data.scenarios import parse_scenarios
    from crop.generic import fold_of

    kind = parse_scenarios(scenario)[0].generic
    chosen_grid = parse_grid_option(grid) if grid is not None else default_grid(method, base_config)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"population tuning {method}", total=len(expand_grid(chosen_grid)))
        result = population_tune(
            method,
            kind,
            fold_of(user),
            chosen_grid,
            seeds=[seed],
            metric=metric,
            base_config=base_config,
            on_trial=lambda _: bar.advance(task),
        )
    md, _ = result.table().write(out, "tune")
    write_text_atomic(out / "chosen.json", json.dumps(result.to_dict(), indent=1, default=str))
    fitted = get_method_fit(method)(generic, split, result.best_config, seed=seed, metric=metric)
    save_model(fitted.model, out / "model.safetensors", {"method": method, "seed": seed, "tuned": result.chosen})
    console.print(_rich_table(result.table()))
    console.print(f"chosen on users {result.users} (never user {user}): {result.chosen}")
    scores = {"available (test split)": evaluate(fitted.model, split.test)} if len(split.test) else {}
    scores.update({f"unseen: {k}": evaluate(fitted.model, v) for k, v in unseen.items()})
    for name, value in scores.items():
        console.print(f"user {user} with the chosen config, {name}: {100 * value[metric]:.2f} % {metric}")
    console.print(f"wrote {md}, {out / 'chosen.json'} and {out / 'model.safetensors'} ({subject})")


def get_method_fit(method: str) -> Callable[..., Any]:
    from crop.personalization.registry import get_method

    return get_method(method).fit


@app.command()
@_guard
def certify(
    model: Annotated[Path, typer.Option(help="model .safetensors written by crop (dense or sparse)")],
    spec: Annotated[
        str,
        typer.Option("--certify", help="what to measure, e.g. 'eps=0.003,0.01,sigma=0.05' (as crop bench --certify)"),
    ] = "eps=0.003,0.01,0.03",
    data: Annotated[
        Path | None, typer.Option(help=".npz with X, y and optional context: every context is certified")
    ] = None,
    user: Annotated[
        int | None, typer.Option(help="or a HAPT user: the available test split and unseen contexts")
    ] = None,
    scenario: Annotated[str, typer.Option(help="with --user: the HAPT scenario")] = "hapt-session:1",
    seed: Annotated[int, typer.Option(help="split seed (with --user) and sampling seed", min=0, max=MAX_SEED)] = 0,
    out: Annotated[str | None, typer.Option(help="write the measures to this JSON file")] = None,
) -> None:
    """Certify a model: verified accuracy (IBP, CROWN), PGD accuracy, smoothed certified accuracy."""
    import numpy as np

    from crop.certify.robustness import parse_robustness_spec, robustness_measures
    from crop.data.sensing import load_npz
    from crop.models.io import load_model
    from crop.models.utils import n_classes_of
    from crop.report.files import write_text_atomic

    robustness = parse_robustness_spec(spec)
    out_file = check_out_file(out, "--out") if out is not None else None
    if (user is None) == (data is None):
        raise CropError("give either --data (a .npz file) or --user (a HAPT user)")
    if user is not None:
        from crop.data.hapt import USERS
        from crop.data.scenarios import parse_scenarios

        if user not in USERS:
            raise CropError(f"unknown HAPT user {user}: users are 1-30")
        if len(parse_scenarios(scenario)) != 1:
            raise CropError(f"--scenario must name one scenario such as {parse_scenarios(scenario)[0].name}")
    net = load_model(model)
    contexts: dict[str, Any] = {}
    if data is not None:
        whole, context = load_npz(data)
        whole.validate()
        if context is None:
            contexts["all"] = whole
        else:
            ctx = np.asarray([str(v) for v in context.tolist()])
            for v in sorted(set(ctx.tolist())):
                contexts[v] = whole.subset(np.flatnonzero(ctx == v), f"{data.name} context {v}")
    else:
        from crop.data.hapt import USERS
        from crop.data.scenarios import build_user_scenario, parse_scenarios

        if user not in USERS:
            raise CropError(f"unknown HAPT user {user}: users are 1-30")
        scenarios = parse_scenarios(scenario)
        if len(scenarios) != 1:
            raise CropError(f"--scenario must name one scenario such as {scenarios[0].name}")
        us = build_user_scenario(user, scenarios[0], seed)
        contexts[f"available: session {scenarios[0].available_session} (test split)"] = us.available.test
        contexts.update({f"unseen: {k}": v for k, v in us.unseen.items()})
    for name, d in contexts.items():
        d.validate()
        n_classes = n_classes_of(net, d.X, f"{model}: context {name}")
        d.validate(n_classes=n_classes)
    results: dict[str, dict[str, float]] = {}
    with console.status("certifying") as status:
        for name, d in contexts.items():
            status.update(f"certifying {name} ({len(d)} windows)")
            if d.X.shape[1:] != contexts[next(iter(contexts))].X.shape[1:]:
                raise CropError(f"context {name}: window shape differs")
            results[name] = {m["metric"]: m["value"] for m in robustness_measures(net, d.X, d.y, robustness, seed=seed)}
    rt = RichTable(title=f"robustness of {model.name} (%)", title_justify="left")
    rt.add_column("measure")
    for name in results:
        rt.add_column(name, justify="right")
    for metric in next(iter(results.values())):
        rt.add_row(metric, *(f"{100 * results[c][metric]:.1f}" for c in results))
    console.print(rt)
    if out_file is not None:
        payload = {
            "model": str(model),
            "spec": robustness.to_dict(),
            "windows": {k: len(v) for k, v in contexts.items()},
        }
        write_text_atomic(out_file, json.dumps({**payload, "results": results}, indent=2))
        console.print(f"wrote {out_file}")


@app.command("train-generic")
@_guard
def train_generic_cmd(
    out: Annotated[str, typer.Option(help="output .safetensors file")],
    kind: Annotated[
        str, typer.Option(help="hapt, hapt-rot (rotation augmentation), hapt-nobn, hapt-rot-nobn")
    ] = "hapt",
    epochs: Annotated[int, typer.Option(help="training epochs", min=1, max=MAX_EPOCHS)] = 30,
    seed: Annotated[int, typer.Option(help="training seed", min=0, max=MAX_SEED)] = 0,
) -> None:
    """Train a HAPT generic model (deterministic) leaving the personalization users out.

    The shipped weights were produced by
    ``crop train-generic --kind hapt --out src/crop/models/weights/hapt-generic.safetensors`` and
    ``crop train-generic --kind hapt-rot --out src/crop/models/weights/hapt-rot-generic.safetensors``.
    """
    from crop.generic import GENERIC_KINDS, GenericTrainConfig, train_generic
    from crop.models.io import save_model
    from crop.validate import check_config

    target = check_out_file(out, "--out")
    if kind not in GENERIC_KINDS:
        raise CropError(f"unknown generic model kind {kind!r}; choose {', '.join(GENERIC_KINDS)}")
    config = check_config(GenericTrainConfig(epochs=epochs, seed=seed), "train-generic")
    with console.status(f"training the {kind} generic model ({epochs} epochs)"):
        model, info = train_generic(kind, config=config)
    save_model(model, target, {k: v for k, v in info.items()})
    console.print(
        f"validation balanced accuracy (users {info['val_users']}): {100 * info['val_balanced_accuracy']:.2f} % "
        f"at epoch {info['best_epoch']}; wrote {target}"
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``crop`` with ``argv`` (default: ``sys.argv[1:]``) in this process; return the exit code.

    A usage error (unknown option, ``--seed 1.5``, a missing value...) is one line
    ``crop: error: ...`` on stderr with exit code 2, like every refused input; warnings are one
    line ``crop: warning: ...`` each."""
    from typer._click.exceptions import NoArgsIsHelpError

    from crop.bench.store import ResultsWarning

    shown: set[str] = set()

    def show_warning(message: Any, *args: Any, **kwargs: Any) -> None:
        if str(message) not in shown:  # each distinct warning once per command
            shown.add(str(message))
            _say("crop: warning: ", message)

    with warnings.catch_warnings():
        warnings.simplefilter("always", ResultsWarning)
        warnings.showwarning = show_warning
        try:
            code = app(args=list(sys.argv[1:] if argv is None else argv), prog_name="crop", standalone_mode=False)
        except NoArgsIsHelpError as exc:
            console.print(exc.format_message(), highlight=False, markup=False)
            return 0
        except typer.TyperException as exc:  # click's UsageError, BadParameter, NoSuchOption...
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path.removeprefix("crop").strip() if ctx is not None else ""
            _say("crop: error: ", f"{command + ': ' if command else ''}{exc.format_message()} (see --help)")
            return 2
        except typer.Abort:
            _say("crop: ", "aborted")
            return 1
        except KeyboardInterrupt:
            _say("crop: ", "interrupted")
            return 130
    return code if isinstance(code, int) else 0


def main() -> None:
    """Entry point of the ``crop`` console script."""
    sys.exit(run())


if __name__ == "__main__":
    main()

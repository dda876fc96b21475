"""``crop bench`` and ``crop demo``: run methods over users x scenarios x seeds and write the
results and tables."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from crop.cli._common import (
    OUTPUT,
    _dataset_configs,
    _detail,
    _emit_json,
    _guard,
    _json_mode,
    _load_configs,
    _methods,
    _metric,
    _note,
    _quiet,
    _rich_table,
    _users,
    console,
    note_console,
)
from crop.cli.report import _check_report_targets, _fairness_report, _write_tables
from crop.errors import CropError
from crop.outputs import check_out_dir
from crop.validate import (
    MAX_GRID_POINTS,
    MAX_SEED,
    MAX_SEEDS,
    MAX_WORKERS,
    int_list,
    split_list,
)


def _dataset_choices(
    dataset: str,
    root: str | None,
    model: Path | None,
    arch: str | None,
    scenario: str | None,
    users: str | None,
    config: Path | None,
    methods: list[str],
    options: dict[str, Any] | None = None,
    preset: str = "paper",
) -> dict[str, Any]:
    """What ``crop bench --dataset NAME`` runs: the dataset's scenarios, users (its paper's
    personalization users by default), configs and metric, all checked before anything runs
    (``options``: ``--dataset csv``'s ``--rate``, ``--window``, ``--stride`` that were given)."""
    from crop.data.datasets import dataset_class, get_dataset, uses_given_model

    dataset_class(dataset)
    options = options or {}
    if options and dataset != "csv":
        raise CropError("--rate, --window and --stride apply to --dataset csv only")
    if not uses_given_model(dataset) and (model is not None or arch is not None):
        raise CropError(
            "--model and --arch apply to --dataset npz and csv (the paper's datasets train their generic models)"
        )
    if uses_given_model(dataset) and model is None:
        raise CropError(f"--dataset {dataset} needs --model (your generic model .safetensors)")
    if model is not None and not model.is_file():
        raise CropError(f"model file not found: {model}")
    configs, generic_training = _dataset_configs(config, dataset, preset, methods)
    ds = get_dataset(dataset, root, **options)
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
        "dataset_options": dict(ds.options),
        "generic_training": generic_training,
    }
    return {"spec": spec, "metric": ds.metric}


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
        typer.Option(
            help="hapt (built in), extrasensory, extrasensory-raw, stress, widar, perceptr, npz or csv (--root)"
        ),
    ] = "hapt",
    root: Annotated[
        str | None, typer.Option(help="the dataset's directory (every dataset but hapt; crop docs DATASETS)")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="--dataset npz or csv: your generic model .safetensors (serves every user)")
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            help="--dataset npz or csv: package.module:factory building your nn.Module (unless --model is built in)"
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="--dataset csv: resample every recording to this many samples per second (default 50)"),
    ] = None,
    window: Annotated[int | None, typer.Option(help="--dataset csv: samples per window (default 128)")] = None,
    stride: Annotated[
        int | None, typer.Option(help="--dataset csv: samples between window starts (default 64)")
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
    preset: Annotated[
        str,
        typer.Option(
            help="the paper's datasets: 'paper' (Tables 9-10; slow on a CPU) or 'cpu' (far fewer epochs; "
            "crop docs DATASETS has the times); --config values override either"
        ),
    ] = "paper",
    metric: Annotated[
        str | None,
        typer.Option(help="accuracy measure for selection and tables (default: the dataset's, Appendix A.2)"),
    ] = None,
    quiet: Annotated[
        bool, typer.Option(help="no progress or notes on stderr (as crop --quiet); results still on stdout")
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="print one JSON summary on stdout (output files, units run/reused/failed, Δ_P and Δ_G per "
            "scenario and method) instead of the tables",
        ),
    ] = False,
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
        typer.Option(
            help="generic model kind for every scenario: hapt or hapt-rot, optionally -w<width> and/or -cert "
            "(e.g. hapt-cert, hapt-w128; crop docs ROBUSTNESS) (default: each scenario's own)"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="worker processes (default: one per CPU core for large runs, 1 for small ones); "
            "results are identical for any number; with --executor ray the CPUs of the local Ray instance "
            "(or at most this many tasks at once on a cluster)",
            min=1,
            max=MAX_WORKERS,
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="'local' (this machine: in process or a process pool) or 'ray' (each personalization a Ray task; "
            "pip install 'crop[ray]'); the same results.jsonl either way, and a run resumes with either"
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="with --executor ray: the cluster to join, 'auto', HOST:PORT or ray://HOST:PORT (crop installed on "
            "every node); default: a private local Ray instance"
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
    faults: Annotated[
        str | None,
        typer.Option(
            help="hapt-faults' unseen contexts: NAME=SEVERITY,... of the fault library, NAME alone for its "
            "severity sweep, or 'all' (see crop faults); table.md and faults/ get the severity sweeps"
        ),
    ] = None,
) -> None:
    """Run methods over users x scenarios x seeds; write results.jsonl and table.md."""
    from crop.bench.checks import BENCH_FILES
    from crop.bench.ray_executor import check_executor
    from crop.bench.runner import BenchSpec, run_bench
    from crop.certify.robustness import parse_robustness_spec
    from crop.data.scenarios import PERSONALIZATION_USERS, parse_scenarios

    if quiet:
        _quiet()
    _json_mode(json_out)
    # Everything is checked here (and again by run_bench) before anything is written.
    out_dir = check_out_dir(out, "--out", BENCH_FILES)
    check_executor(executor, address)
    _check_report_targets(out_dir)
    if tune_on not in ("available", "population"):
        raise CropError(f"--tune-on must be 'available' or 'population', got {tune_on!r}")
    if norm not in ("batch", "none"):
        raise CropError(f"--norm must be 'batch' or 'none', got {norm!r}")
    method_list = _methods(methods)
    stream = {k: v for k, v in (("rate", rate), ("window", window), ("stride", stride)) if v is not None}
    if stream and dataset != "csv":
        raise CropError("--rate, --window and --stride apply to --dataset csv only")
    if dataset != "hapt":
        if attributes is not None and not fairness:
            raise CropError("--attributes needs --fairness")
        picked = _dataset_choices(dataset, root, model, arch, scenario, users, config, method_list, stream, preset)
        fields = picked["spec"]
        metric = _metric(metric) if metric is not None else picked["metric"]
    else:
        if root is not None or model is not None or arch is not None:
            raise CropError(
                "--root, --model and --arch apply to the paper's datasets and your own (crop docs DATASETS), not hapt"
            )
        if preset != "paper":
            raise CropError(f"--preset {preset} applies to the paper's datasets (crop docs DATASETS), not hapt")
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
        if faults is not None:
            from crop.data.faults import parse_faults

            fields["faults"] = parse_faults(faults)
    if faults is not None and dataset != "hapt":
        raise CropError("--faults applies to the HAPT scenario hapt-faults")
    if fairness:
        from crop.fairness._command import check_targets, read_table_for

        check_targets(out_dir)
        read_table_for(attributes, fields["users"], dataset, root, fields.get("dataset_options"))
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
        executor=executor,
        address=address,
        norm=norm,
        protocol=protocol,
        generic=generic,
        fairness=fairness,
    )
    tables: list[Any] = []

    def reports() -> None:  # still under the results directory's lock, after its last unit
        if fairness:
            _fairness_report(out_dir, attributes, quiet=quiet)
        tables.extend(_write_tables(out_dir, metric))

    if not OUTPUT.quiet and preset == "paper" and dataset != "hapt":
        from crop.bench.checks import validate_bench_spec
        from crop.data.datasets.presets import cost_note

        validate_bench_spec(spec)  # a refused run says only why
        note = cost_note(dataset)
        if note is not None:
            _note(note)  # one line
    stats: dict[str, Any] = {}
    t0 = time.perf_counter()
    run_bench(spec, progress=_bench_progress(), finish=reports, stats=stats)
    _detail(f"bench: {stats.get('run', 0)} unit(s) run in {time.perf_counter() - t0:.1f} s")
    for t in tables:
        if t.kind in ("summary", "gains"):
            console.print(_rich_table(t))
    console.print(f"wrote {out_dir / 'results.jsonl'} and {out_dir / 'table.md'}")
    if json_out:
        _emit_json(_bench_json(out_dir, spec, metric, stats))


def _bench_progress() -> Any:
    """What crop bench draws its progress with: a rich bar on a terminal's stderr, one line per
    finished unit when stderr is a pipe or a file (a bar would print nothing there until the
    end), nothing with --quiet."""
    from crop.report.console import LineProgress

    if OUTPUT.quiet:
        return False
    if not note_console.is_terminal:
        return LineProgress(note_console)
    return True


def _bench_json(out_dir: Path, spec: Any, metric: str, stats: dict[str, Any]) -> dict[str, Any]:
    """The --json summary of a bench run: files, unit counts, and per scenario and method the
    gains over the generic model (Δ_P) and over finetuning (Δ_G) in percentage points, with
    their 95 % bootstrap intervals over users."""
    from crop.bench.runner import load_results
    from crop.report.stats import summarize_gain
    from crop.report.tables import performance

    perf = performance(load_results(out_dir), metric)
    gains: dict[str, dict[str, Any]] = {}
    for sc in spec.scenarios:
        per_method: dict[str, Any] = {}
        for method in spec.methods:
            entry: dict[str, Any] = {}
            for key, reference in (("delta_p", "generic"), ("delta_g", "finetune")):
                if method in ("generic", reference) or reference not in spec.methods:
                    continue
                entry[key] = _gain_dict(summarize_gain(perf, sc.name, method, reference))
            if entry:
                per_method[method] = entry
        gains[sc.name] = per_method
    return {
        "command": "bench",
        "out": str(out_dir),
        "results": str(out_dir / "results.jsonl"),
        "table": str(out_dir / "table.md"),
        "metric": metric,
        "dataset": spec.dataset,
        "scenarios": [sc.name for sc in spec.scenarios],
        "methods": list(spec.methods),
        "users": [u if isinstance(u, int) else str(u) for u in spec.users],
        "seeds": list(spec.seeds),
        "units": {k: stats.get(k, 0) for k in ("total", "run", "reused", "failed")},
        "gains_pp": gains,
    }


def _gain_dict(g: Any) -> dict[str, Any]:
    """A :func:`crop.report.stats.summarize_gain` result as numbers (``None`` where undefined)."""
    import math

    def num(v: Any) -> Any:
        return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)

    return {
        "mean": num(g.mean),
        "low": num(g.low),
        "high": num(g.high),
        "p_value": num(g.p_value),
        "wins": g.wins,
        "ties": g.ties,
        "losses": g.losses,
        "n_users": g.n_users,
    }


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
    from rich.text import Text

    note_console.print(
        Text.assemble(
            ("crop demo", "bold"),
            f": personalizing HAPT users {list(PERSONALIZATION_USERS)} "
            "(available context: session 1; unseen: session 2) with conventional finetuning and CRoP",
        )
    )
    spec = BenchSpec(
        scenarios=parse_scenarios("hapt-session:1"),
        users=list(PERSONALIZATION_USERS),
        seeds=[seed],
        methods=["generic", "finetune", "crop"],
        out=out,
    )
    tables: list[Any] = []
    run_bench(
        spec, progress=_bench_progress(), finish=lambda: tables.extend(_write_tables(out, spec.metric))
    )  # under the lock
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
    page = f", page: {out / 'index.html'}" if (out / "index.html").is_file() else ""
    console.print(f"Results: {out / 'results.jsonl'}, tables: {out / 'table.md'}{page}")

"""``crop personalize`` and ``crop tune``: personalize one person, or grid-search a method's
config for one person (on their validation split, or on other people with ``--population``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from crop.cli._common import (
    _dataset_configs,
    _detail,
    _emit_json,
    _guard,
    _json_mode,
    _load_configs,
    _metric,
    _progress,
    _rich_table,
    console,
)
from crop.cli._person import _dataset_person, _hapt_user, _person, _preset_config
from crop.errors import CropError
from crop.outputs import check_out_dir
from crop.report.console import TextTable
from crop.validate import (
    MAX_GRID_POINTS,
    MAX_SEED,
    MAX_WORKERS,
)


def _environment() -> dict[str, Any]:
    import platform

    import torch

    import crop

    return {
        "crop": crop.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


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
        str, typer.Option(help="hapt (built in) or a dataset of crop docs DATASETS, with --root")
    ] = "hapt",
    root: Annotated[str | None, typer.Option(help="the dataset's directory (every dataset but hapt)")] = None,
    arch: Annotated[
        str | None, typer.Option(help="--dataset npz or csv: package.module:factory building your nn.Module")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="--dataset csv: resample to this many Hz (default 50)")] = None,
    window: Annotated[int | None, typer.Option(help="--dataset csv: samples per window (default 128)")] = None,
    stride: Annotated[int | None, typer.Option(help="--dataset csv: samples between windows (default 64)")] = None,
    data: Annotated[
        Path | None, typer.Option(help="your own .npz with X (n, ...), y (n,), optional context (n,)")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="generic model .safetensors (written by crop)")] = None,
    available: Annotated[str | None, typer.Option(help="with --data: the context value that is available")] = None,
    method: Annotated[str, typer.Option(help="registered method")] = "crop",
    seed: Annotated[int, typer.Option(help="split and training seed", min=0, max=MAX_SEED)] = 0,
    config: Annotated[Path | None, typer.Option(help="TOML file with a [method] table of options")] = None,
    preset: Annotated[
        str,
        typer.Option(
            help="--dataset of the paper: 'paper' (Tables 9-10; slow on a CPU) or 'cpu' (far fewer epochs; "
            "crop docs DATASETS)"
        ),
    ] = "paper",
    metric: Annotated[str | None, typer.Option(help="accuracy measure (default: the dataset's)")] = None,
    evidence: Annotated[
        Path | None,
        typer.Option(
            help="population evidence for the expected unseen-context change: an all-user crop bench directory "
            "or an evidence file (default: the one crop ships for the dataset, if any)"
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="print one JSON summary on stdout (files, method, user, scores per context, prune amount, "
            "expectation) instead of the table",
        ),
    ] = False,
) -> None:
    """Personalize one person: a HAPT user, a user of a dataset (--dataset, --root), or your own
    data file plus a generic model file. Prints what people like this one can expect in the
    contexts nobody recorded, from population evidence (never from this person's unseen data)."""

    from crop.api import evaluate
    from crop.api import personalize as run_personalize
    from crop.data.datasets.presets import cost_note
    from crop.models.directory import MODEL, SPARSE, SUMMARY, model_directory, publish_model
    from crop.models.io import model_bytes, sparse_bytes
    from crop.personalization.registry import config_to_dict, get_method

    _json_mode(json_out)
    out = check_out_dir(out, "--out", (MODEL, SPARSE, SUMMARY))
    get_method(method)
    if evidence is not None:
        from crop.report.expect import check_evidence

        check_evidence(evidence)
    t0 = time.perf_counter()
    stream = {k: v for k, v in (("rate", rate), ("window", window), ("stride", stride)) if v is not None}
    if stream and dataset != "csv":
        raise CropError("--rate, --window and --stride apply to --dataset csv only")
    if dataset != "hapt":
        if data is not None or available is not None:
            raise CropError("--data and --available go with --dataset hapt (or use --dataset npz --root DIR)")
        configs, generic_training = _dataset_configs(config, dataset, preset, [method])
        metric = _metric(metric) if metric is not None else None
        note = cost_note(dataset) if preset == "paper" else None
        generic, generic_info, split, unseen, subject, own_metric = _dataset_person(
            dataset, root, user, scenario, model, arch, seed, generic_training, stream, note
        )
        metric = metric or own_metric
        configs.setdefault(method, _preset_config(dataset, method))
    else:
        if root is not None or arch is not None:
            raise CropError("--root and --arch apply to --dataset (crop docs DATASETS), not hapt")
        if preset != "paper":
            raise CropError(f"--preset {preset} applies to the paper's datasets (crop docs DATASETS), not hapt")
        metric = _metric(metric if metric is not None else "balanced_accuracy")
        configs = _load_configs(config, [method])
        hapt_user = _hapt_user(user) if user is not None else None
        generic, generic_info, split, unseen, subject = _person(
            hapt_user, scenario if scenario is not None else "hapt-session:1", data, model, available, seed, method
        )
    # One run per model directory; its files are published as one unit (crop.models.directory).
    t_ready = time.perf_counter()
    _detail(f"data and generic model ready in {t_ready - t0:.1f} s")
    with model_directory(out) as lock:
        result = run_personalize(generic, split, configs.get(method), method=method, seed=seed, metric=metric)
        t_fit = time.perf_counter()
        _detail(f"{method} personalization in {t_fit - t_ready:.1f} s")
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
            "environment": _environment(),  # what the weights' last bits depend on besides the inputs
        }
        expectation, expectation_note = _expectation(evidence, dataset, subject, method, metric, scores, generic_scores)
        summary["expectation"] = expectation.to_dict() if expectation is not None else {"none": expectation_note}
        if "route" in result.info:
            summary["route"] = result.info["route"]
        if "mixed_selected" in result.info:
            summary["mixed_model_selected"] = result.info["mixed_selected"]
            summary["timings"] = result.info.get("timings")
        file_meta: dict[str, Any] = {"method": method, "seed": seed}
        generic_file = generic_info.get("path") or generic_info.get("source")
        if generic_file and Path(generic_file).is_file():  # crop export carries it into the ONNX metadata
            from crop.deploy.export import sha256_file

            file_meta["generic_sha256"] = generic_info["sha256"] = sha256_file(generic_file)
        dense = model_bytes(result.model, file_meta, out / MODEL)
        sparse = None
        if "density" in result.info and "masks" in result.info:  # a sparse method: also the compressed file
            sparse = sparse_bytes(result.model, metadata=file_meta, where=out / SPARSE)
            summary["density"] = result.info.get("density")
            summary["verified_val"] = result.info.get("verified_val")
            summary["file_bytes"] = {"dense": len(dense), "sparse": len(sparse)}
        publish_model(lock, dense, summary, sparse)  # a stale sparse file of an earlier run is removed
    _detail(f"evaluation and files in {time.perf_counter() - t_fit:.1f} s")
    rows = [[k, f"{100 * generic_scores[k][metric]:.2f}", f"{100 * v[metric]:.2f}"] for k, v in scores.items()]
    console.print(TextTable(f"{method} personalization ({metric}, %)", ["context", "generic", method], rows))
    if "file_bytes" in summary:
        sizes = summary["file_bytes"]
        console.print(
            f"density {summary['density']:.3f}; model.sparse.safetensors {sizes['sparse'] / 1024:.1f} KiB "
            f"vs dense {sizes['dense'] / 1024:.1f} KiB"
        )
    elif result.prune_amount is not None:
        console.print(f"pruning amount chosen by ToleratedPrune: {result.prune_amount:.2f}")
    if "route" in result.info:
        console.print(
            "routing: windows unlike this person's enrollment data are served by the generic model "
            f"(personalized model's mean weight on the validation windows {result.info['route']['weight_val']:.2f})"
        )
    console.print(
        f"What people like this one can expect where nobody recorded: {expectation_note}", markup=False, highlight=False
    )
    console.print(f"wrote {out / 'model.safetensors'} and {out / 'summary.json'}")
    if json_out:
        files = {"model": out / MODEL, "summary": out / SUMMARY}
        if sparse is not None:
            files["sparse_model"] = out / SPARSE
        _emit_json(
            {
                "command": "personalize",
                "out": out,
                "files": files,
                **{k: summary[k] for k in _SUBJECT_KEYS if k in summary},
                "prune_amount": summary["prune_amount"],
                "density": summary.get("density"),
                "scores": scores,
                "generic_scores": generic_scores,
                "expectation": summary["expectation"],
                "expectation_note": expectation_note,
                "seconds": summary["seconds"],
            }
        )


_SUBJECT_KEYS = ("dataset", "root", "scenario", "user", "data", "available_context", "method", "seed", "metric")


def _expectation(
    evidence: Path | None,
    dataset: str,
    subject: dict[str, Any],
    method: str,
    metric: str,
    scores: dict[str, dict[str, float]],
    generic_scores: dict[str, dict[str, float]],
) -> tuple[Any, str]:
    """The population expectation for this person (:func:`crop.report.expect.person_expectation`):
    chosen by their available-context scores only; unseen-context scores are never passed."""
    from crop.report.expect import person_expectation

    key = "available (test split)"
    own = 100 * scores[key][metric] if key in scores else None
    gen = 100 * generic_scores[key][metric] if key in generic_scores else None
    return person_expectation(
        evidence,
        dataset=dataset,
        scenario=subject.get("scenario"),
        method=method,
        metric=metric,
        person=subject.get("user"),
        generic_available=gen,
        available=own,
    )


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
    workers: Annotated[
        int,
        typer.Option(
            help="with --population: worker processes for the grid points (the result is the same for any number)",
            min=1,
            max=MAX_WORKERS,
        ),
    ] = 1,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="print one JSON summary on stdout: files, chosen values, trials, scores"),
    ] = False,
) -> None:
    """Grid-search a method's config for one person on the available-context validation split.

    As the paper's Appendix A.3; unseen-context data is only used to report the chosen model."""
    from crop.analysis import tune as run_tune
    from crop.analysis._tune import default_grid, expand_grid, grid_configs, parse_grid_option
    from crop.api import evaluate
    from crop.models.directory import MODEL, model_directory
    from crop.models.io import model_bytes
    from crop.personalization.registry import get_method

    _json_mode(json_out)
    out = check_out_dir(out, "--out", ("tune.md", "tune.csv", "chosen.json", MODEL))
    spec = get_method(method)
    _metric(metric)
    configs = _load_configs(config, [method])
    chosen_grid = parse_grid_option(grid) if grid is not None else default_grid(method, configs.get(method))
    grid_configs(configs.get(method) or spec.config_class(), expand_grid(chosen_grid), method)  # before any work
    if population:
        _population_tune_cmd(
            out, user, scenario, data, method, grid, budget, seed, configs.get(method), metric, workers, json_out
        )
        return
    if workers != 1:
        raise CropError("--workers applies to --population (the available-context search runs here)")
    generic, _, split, unseen, subject = _person(user, scenario, data, model, available, seed)
    points = len(expand_grid(chosen_grid))
    total = min(points, budget) if budget else points
    with model_directory(out) as lock, _progress(transient=True) as bar:  # one run per directory
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
        lock.check()
        paths = result.write(out)
        meta = {"method": method, "seed": seed, "tuned": result.chosen}
        lock.replace_files({MODEL: model_bytes(result.best_result.model, meta, out / MODEL)})
    console.print(_rich_table(result.table()))
    console.print(f"chosen: {result.chosen}")
    scores = {"available (test split)": evaluate(result.best_result.model, split.test)} if len(split.test) else {}
    scores.update({f"unseen: {k}": evaluate(result.best_result.model, v) for k, v in unseen.items()})
    for name, value in scores.items():
        console.print(f"chosen model, {name}: {100 * value[metric]:.2f} % {metric}")
    console.print(f"wrote {paths['table']}, {paths['chosen']} and {out / 'model.safetensors'} ({subject})")
    if json_out:
        files = {"table": paths["table"], "chosen": paths["chosen"], "model": out / MODEL}
        _emit_json(_tune_json(out, files, subject, method, metric, result, scores))


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
    workers: int = 1,
    json_out: bool = False,
) -> None:
    """``crop tune --population``: the search of :func:`crop.analysis.population_tune` for the
    fold that serves ``user``, then that user's model with the chosen config."""
    from crop.analysis import population_tune
    from crop.analysis._tune import default_grid, expand_grid, parse_grid_option
    from crop.api import evaluate
    from crop.models.directory import MODEL, model_directory
    from crop.models.io import model_bytes

    if user is None or data is not None:
        raise CropError("--population needs --user (a HAPT user): other people's sessions come from HAPT")
    if budget is not None:
        raise CropError("--budget applies to available-context tuning; population tuning runs the whole grid")
    generic, _, split, unseen, subject = _person(user, scenario, None, None, None, seed)
    from crop.data.scenarios import parse_scenarios
    from crop.generic import fold_of

    kind = parse_scenarios(scenario)[0].generic
    chosen_grid = parse_grid_option(grid) if grid is not None else default_grid(method, base_config)
    with model_directory(out) as lock:  # one run per directory
        with _progress(transient=True) as bar:
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
                workers=workers,
            )
        fitted = get_method_fit(method)(generic, split, result.best_config, seed=seed, metric=metric)
        lock.check()
        md, _ = result.table().write(out, "tune")
        chosen = json.dumps(result.to_dict(), indent=1, default=str).encode("utf-8")
        meta = {"method": method, "seed": seed, "tuned": result.chosen}
        lock.replace_files({"chosen.json": chosen, MODEL: model_bytes(fitted.model, meta, out / MODEL)})
    console.print(_rich_table(result.table()))
    console.print(f"chosen on users {result.users} (never user {user}): {result.chosen}")
    scores = {"available (test split)": evaluate(fitted.model, split.test)} if len(split.test) else {}
    scores.update({f"unseen: {k}": evaluate(fitted.model, v) for k, v in unseen.items()})
    for name, value in scores.items():
        console.print(f"user {user} with the chosen config, {name}: {100 * value[metric]:.2f} % {metric}")
    console.print(f"wrote {md}, {out / 'chosen.json'} and {out / 'model.safetensors'} ({subject})")
    if json_out:
        files = {"table": md, "chosen": out / "chosen.json", "model": out / MODEL}
        _emit_json(
            {**_tune_json(out, files, subject, method, metric, result, scores), "population_users": result.users}
        )


def _tune_json(
    out: Path,
    files: dict[str, Any],
    subject: dict[str, Any],
    method: str,
    metric: str,
    result: Any,
    scores: dict[str, Any],
) -> dict[str, Any]:
    """The --json summary of crop tune: files, the person, the chosen values, every trial, and
    the chosen model's scores per context (fractions)."""
    return {
        "command": "tune",
        "out": out,
        "files": files,
        **{k: subject[k] for k in _SUBJECT_KEYS if k in subject},
        "method": method,
        "metric": metric,
        "chosen": result.chosen,
        "trials": result.to_dict().get("trials"),
        "scores": scores,
    }


def get_method_fit(method: str) -> Callable[..., Any]:
    from crop.personalization.registry import get_method

    return get_method(method).fit

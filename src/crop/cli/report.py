"""``crop report``, ``crop fairness`` and ``crop analyze``: tables, fairness report and the
Section 7 analyses of a finished bench (or personalization) directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from crop.cli._common import (
    OUTPUT,
    _emit_json,
    _guard,
    _json_mode,
    _methods,
    _metric,
    _rich_table,
    _users,
    console,
    note_console,
)
from crop.errors import CropError
from crop.outputs import check_input_dir, check_out_dir
from crop.validate import (
    MAX_SEED,
    int_list,
)


def _check_report_targets(out: Path) -> None:
    """The files a report writes into ``out`` are regular files or absent (checked before the
    first one is written, and before a bench runs)."""
    from crop.outputs import check_write_target

    check_out_dir(out / "tables", "the tables directory")
    if out.is_dir():
        check_out_dir(out / "faults", "the fault sweep directory")
        figures = [*out.glob("robustness-*.png"), *out.glob("faults/fault-*.png")]
        for path in [
            out / "table.md",
            out / "deltas.png",
            out / "gains.png",
            out / "harm.png",
            out / "index.html",
            *figures,
            *out.glob("tables/*.csv"),
        ]:
            check_write_target(path)


def _write_tables(out: Path, metric: str) -> list[Any]:
    """table.md, tables/*.csv, the figures and the results page (index.html) of ``out``."""
    from crop.bench.runner import load_results
    from crop.report.files import write_text_atomic
    from crop.report.plots import delta_bars, robustness_curves
    from crop.report.tables import all_tables, performance, render_markdown

    _metric(metric)
    _check_report_targets(out)
    records = load_results(out)
    perf = performance(records, metric)
    figures: list[Path | None] = []
    if {k[1] for k in perf} - {"generic"}:
        figures.append(
            delta_bars(perf, out / "deltas.png", f"Δ_P and Δ_G ({metric}), mean over users, 95 % bootstrap interval")
        )
    if len({k[2] for k in perf}) >= 5 and "finetune" in {k[1] for k in perf} and len({k[1] for k in perf}) > 2:
        from crop.report.plots import gain_strips

        figures.append(gain_strips(perf, out / "gains.png"))
    if len({k[2] for k in perf}) >= 5 and "generic" in {k[1] for k in perf} and len({k[1] for k in perf}) > 1:
        from crop.report.plots import harm_strips

        figures.append(harm_strips(perf, out / "harm.png"))
    from crop.safe_names import data_path

    for scenario in sorted({r["scenario"] for r in records if "radius" in r}):
        figures.append(robustness_curves(records, scenario, data_path(out, "robustness", scenario, suffix=".png")))
    dataset = next((r["dataset"] for r in records if isinstance(r.get("dataset"), str)), "hapt")
    text = render_markdown(records, metric, dataset)
    sweep_text, sweep_tables, sweep_figures = _fault_sweeps(records, metric, out)
    text += sweep_text
    figures += sweep_figures
    summary = out / "fairness" / "summary.md"
    fragment = None
    if summary.is_file():  # written by crop fairness / crop bench --fairness (escaped there; raw HTML never)
        from crop.report.escape import markdown_fragment

        fragment = markdown_fragment(summary.read_text(encoding="utf-8", errors="replace"))
        text += "\n## Fairness (full report: fairness/fairness.md)\n\n" + fragment
    write_text_atomic(out / "table.md", text)
    tables = all_tables(records, metric, dataset)
    (out / "tables").mkdir(exist_ok=True)
    for i, t in enumerate(tables):
        write_text_atomic(out / "tables" / f"{i:02d}.csv", t.csv())
    from crop.bench.checks import read_settings
    from crop.report.page import write_page

    try:  # the page's header only: a bench.json it cannot read leaves the settings out
        settings = read_settings(out) if (out / "bench.json").is_file() else {}
    except CropError:
        settings = {}
    written = [p for p in figures if p is not None]
    write_page(out, records, metric, dataset, [*tables, *sweep_tables], written, settings, fragment)
    return tables


def _fault_sweeps(records: list[dict], metric: str, out: Path) -> tuple[str, list[Any], list[Path]]:
    """Severity sweeps of ``crop bench --faults`` results: figures in ``out/faults/``, the
    tables as Markdown, the tables and the figures' paths (empty when the records hold no
    faulted context)."""
    from crop.report.faults import plot_sweeps, sweep, sweep_tables

    result = sweep(records, metric)
    if not result:
        return "", [], []
    paths = plot_sweeps(result, out / "faults", f"{metric} (%)")
    tables = sweep_tables(result)
    text = "\n## Fault severity sweeps (figures: faults/fault-NAME.png)\n\n"
    return text + "\n".join(t.markdown_section(3) for t in tables), tables, paths


@_guard
def report(
    out: Annotated[str, typer.Argument(help="a bench output directory")],
    metric: Annotated[
        str | None, typer.Option(help="accuracy measure (default: the one the bench ran with, bench.json)")
    ] = None,
) -> None:
    """Rewrite table.md, tables/*.csv, the figures and the results page index.html from a bench directory's results.jsonl."""
    directory = check_input_dir(out, "DIR")
    if metric is None:
        from crop.bench.checks import read_settings

        ran = read_settings(directory).get("metric") if (directory / "bench.json").is_file() else None
        metric = ran if isinstance(ran, str) else "balanced_accuracy"
    _metric(metric)
    tables = _write_tables(directory, metric)
    for t in tables:
        console.print(_rich_table(t))
    console.print(f"wrote {directory / 'index.html'}", soft_wrap=True)


def _fairness_report(out: Path, attributes: Path | None, resamples: int = 2000, quiet: bool = False) -> Any:
    from crop.fairness import run_fairness
    from crop.report.console import data_status

    with data_status(note_console, "fairness report") as status:
        report = run_fairness(out, attributes, resamples=resamples, say=None if quiet or OUTPUT.quiet else status)
    for t in report.summary_tables:
        console.print(_rich_table(t))
    console.print(f"wrote {report.path}")
    return report


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
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="print one JSON summary on stdout: the report's path, its headline tables (raw values) and each "
            "person's unseen-context gain per scenario and method",
        ),
    ] = False,
) -> None:
    """Fairness of a bench's models, group-wise and across people, into DIR/fairness/.

    Per-person balanced accuracy and gains (spread, worst person, share harmed); with `crop bench
    --fairness` results also per group of each attribute: HAPT traits measured on the available
    context (movement intensity, walking cadence, the generic model's accuracy), attributes the
    dataset's files carry (stress: the readme demographics), the --attributes columns, the
    activity and the context. See crop docs FAIRNESS."""
    from crop.fairness._command import check_targets

    _json_mode(json_out)
    out_dir = check_input_dir(out, "DIR")
    check_targets(out_dir)
    report = _fairness_report(out_dir, attributes, resamples)
    if json_out:
        _emit_json(
            {
                "command": "fairness",
                "path": report.path,
                "tables": [
                    {"title": t.title, "kind": t.kind, "header": t.header, "rows": t.rows}
                    for t in report.summary_tables
                ],
                "person_gains_pp": report.person_gains,
            }
        )


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

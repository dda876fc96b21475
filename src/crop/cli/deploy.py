"""``crop export`` (a model file as ONNX), ``crop predict`` (a model on new windows) and ``crop resources`` (the paper's Tables 7 and 8:
what each method costs to personalize and to run, on this machine)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crop.cli._common import _emit_json, _guard, _json_mode, _methods, _note, _progress, console
from crop.errors import CropError
from crop.outputs import check_out_dir, check_out_file
from crop.validate import MAX_SEED


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CropError(
            f"--input-shape must be comma-separated positive integers such as 6,128, got {text!r}"
        ) from None
    if not shape or any(v < 1 or v > 1_000_000 for v in shape):
        raise CropError(f"--input-shape must be comma-separated positive integers such as 6,128, got {text!r}")
    from crop.deploy.export import check_input_shape

    check_input_shape(shape)  # before the model is read
    return shape


@_guard
def export(
    model: Annotated[Path, typer.Argument(help="a crop model file (model.safetensors or model.sparse.safetensors)")],
    out: Annotated[str, typer.Option(help="the ONNX file to write")],
    generic: Annotated[
        Path | None, typer.Option(help="the generic model file, whose SHA-256 goes into the metadata")
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="one sample's shape, e.g. 13,100 (default: the architecture's)")
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="print one JSON summary on stdout: path, bytes, max_abs_diff, metadata"),
    ] = False,
) -> None:
    """Export a crop model file (dense or sparse) to ONNX, checked and run with onnxruntime.

    The graph passes onnx.checker and onnxruntime's outputs are compared with PyTorch's before
    anything is written; classes, input shape, method and hashes go into the file's metadata.
    Needs the onnx extra: pip install 'crop[onnx]' (onnx and onnxruntime)."""
    from crop.deploy.export import export_file, require

    _json_mode(json_out)
    target = check_out_file(out)
    shape = _shape(input_shape)
    require("onnx")
    require("onnxruntime")
    result = export_file(model, target, generic=generic, input_shape=shape)
    meta = result.metadata
    console.print(
        f"wrote {result.path} ({result.bytes / 1024:.1f} KiB, input {meta['input_shape']}, "
        f"method {meta.get('method', 'unknown')}); onnxruntime vs PyTorch max |diff| {result.max_abs_diff:.2e}",
        highlight=False,
        soft_wrap=True,
    )
    if json_out:
        _emit_json(
            {
                "command": "export",
                "path": str(result.path),
                "bytes": result.bytes,
                "max_abs_diff": float(result.max_abs_diff),
                "metadata": meta,
            }
        )


@_guard
def resources(
    out: Annotated[str, typer.Option(help="output directory: resources.md, resources.csv, machine.json")],
    methods: Annotated[str, typer.Option(help="comma-separated methods, or all (every registered method)")] = "all",
    user: Annotated[int, typer.Option(help="the HAPT user personalized", min=1, max=30)] = 2,
    scenario: Annotated[str, typer.Option(help="the HAPT scenario")] = "hapt-session:1",
    seed: Annotated[int, typer.Option(help="split and training seed", min=0, max=MAX_SEED)] = 0,
    repeats: Annotated[
        int, typer.Option(help="fresh-process runs per method; medians are reported", min=1, max=50)
    ] = 3,
) -> None:
    """Measure what each method costs on this machine (the paper's Tables 7 and 8).

    One-time personalization time and peak memory (a fresh process per method and repeat),
    inference latency and throughput on one thread (PyTorch, and onnxruntime from crop[onnx]), parameters,
    non-zero parameters and file sizes; Markdown + CSV with the machine described."""
    from crop.data.scenarios import parse_scenarios
    from crop.deploy.resources import machine, measure_resources, write_resources
    from crop.personalization.registry import available_methods

    target = check_out_dir(out, "--out", ("resources.md", "resources.csv", "machine.json"))
    chosen = available_methods() if methods.strip() == "all" else _methods(methods)
    if len(parse_scenarios(scenario)) != 1:
        raise CropError(f"--scenario must name one scenario such as {scenario}:1")
    info = machine()
    with _progress(transient=True) as bar:
        task = bar.add_task("measuring", total=repeats * len(chosen))

        def progress(method: str, done: int, total: int) -> None:
            bar.update(task, completed=done, description=f"{method} ({done // len(chosen) + 1}/{repeats})")

        costs = measure_resources(chosen, user=user, scenario=scenario, seed=seed, repeats=repeats, progress=progress)
    info["load_average_end_1_5_15"] = machine()["load_average_1_5_15"]
    setting = {"user": user, "scenario": scenario, "seed": seed, "repeats": repeats}
    paths = write_resources(target, costs, info, setting)
    failed = [c.method for c in costs if c.repeats == 0]
    if failed:
        console.print(f"not measured: {', '.join(failed)} (see resources.md)", highlight=False)
    console.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False, soft_wrap=True)


@_guard
def predict(
    model: Annotated[
        Path,
        typer.Argument(help="a crop model file (model.safetensors, dense or sparse) or an ONNX file from crop export"),
    ],
    data: Annotated[
        Path,
        typer.Option(help="a .npz file of windows: array X (n, *sample_shape); labels y (n,) are scored if present"),
    ],
    out: Annotated[
        str,
        typer.Option(help="where to write the predictions: a .csv or .json file, or - for CSV on standard output"),
    ],
) -> None:
    """Run a model on new windows: per window the class, its name and the class probabilities.

    CSV columns: window, class, class_name, p_<class name>...; JSON: {"model", "data",
    "classes", "windows": [{"window", "class", "class_name", "probabilities"}]}. With labels
    (array y) the accuracy and balanced accuracy are printed too."""
    from crop.deploy.predict import predict as run_predict
    from crop.deploy.predict import read_windows, scores_of
    from crop.report.files import write_text_atomic

    to_stdout = out == "-"
    target = None
    if not to_stdout:
        target = check_out_file(out)
        if target.suffix not in (".csv", ".json"):
            raise CropError(f"--out {out}: give a .csv or .json file (or - for CSV on standard output)")
    X, y = read_windows(data)
    result = run_predict(model, X)
    if y is not None and len(result.names) and int(y.max()) >= len(result.names):
        raise CropError(f"--data {data}: label {int(y.max())} in y, but the model has {len(result.names)} classes")
    if to_stdout:
        sys.stdout.write(result.to_csv())
        sys.stdout.flush()
    else:
        assert target is not None
        text = result.to_csv() if target.suffix == ".csv" else result.to_json(model=str(model), data=str(data))
        write_text_atomic(target, text)
    counts = ", ".join(f"{name} {n}" for name, n in result.counts().items())
    where = "standard output" if to_stdout else str(target)
    _note(f"predicted {len(result)} windows into {where}: {counts}")
    if y is not None:
        scores = scores_of(result, y)
        _note(
            f"against the labels in {data}: accuracy {100 * scores['accuracy']:.2f} %, "
            f"balanced accuracy {100 * scores['balanced_accuracy']:.2f} %"
        )

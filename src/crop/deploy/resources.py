"""What each method costs: the paper's Tables 7 (one-time personalization) and 8 (inference).

For every method, :func:`measure_resources` starts a fresh Python process (so one method's
memory never counts for the next, and every method pays the same imports) that

1. loads one HAPT user's available-context split and the generic model that serves the user;
2. records its resident set size (RSS), personalizes with the method's default configuration on
   one thread, and records the time and the process's peak RSS (``ru_maxrss``: imports, data
   and the generic model included, which a device pays as well) right after;
3. writes the model as crop writes it (``model.safetensors``, plus ``model.sparse.safetensors``
   for sparse methods) and, when ``onnx`` / ``onnxruntime`` are installed, exports the module
   to ONNX (also the methods whose model is a class of their own);
4. times inference on the user's own test windows, one thread: the median latency of one
   window (batch 1) and the throughput of batches of :data:`BATCH` windows, in PyTorch and in
   onnxruntime; and counts parameters and non-zero parameters.

The process prints one JSON line; the parent collects them, repeats the whole thing
``repeats`` times and reports medians (other jobs share the CPU: a median of repeats is less
sensitive to one busy moment than a single run). The machine is described with every table:
CPU model, cores, load average, torch and onnxruntime versions.

Memory is read from ``/proc`` and ``getrusage`` rather than with psutil, which would be one more
dependency for two numbers the kernel already reports.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crop.errors import CropError

BATCH = 256  # windows per batch for throughput
LATENCY_CALLS = 300
THROUGHPUT_CALLS = 10


@dataclass
class MethodCost:
    """Medians over repeats of one method's measurements (``None``: not measured)."""

    method: str
    personalize_s: float | None = None
    peak_rss_mb: float | None = None
    rss_before_mb: float | None = None
    latency_ms_torch: float | None = None
    latency_ms_onnx: float | None = None
    throughput_torch: float | None = None
    throughput_onnx: float | None = None
    parameters: int | None = None
    nonzero_parameters: int | None = None
    file_bytes: int | None = None
    sparse_file_bytes: int | None = None
    onnx_file_bytes: int | None = None
    repeats: int = 0
    error: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list, repr=False)


COLUMNS = [
    "method",
    "personalize_s",
    "peak_rss_mb",
    "rss_before_mb",
    "latency_ms_torch",
    "latency_ms_onnx",
    "throughput_torch",
    "throughput_onnx",
    "parameters",
    "nonzero_parameters",
    "file_bytes",
    "sparse_file_bytes",
    "onnx_file_bytes",
    "repeats",
    "error",
]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _median_seconds(call: Callable[[], Any], n: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _inference(model: Any, windows: Any, onnx_path: Path | None) -> dict[str, float]:
    import numpy as np
    import torch

    one = windows[:1]
    batch = windows[np.arange(BATCH) % len(windows)]
    x1, xb = torch.as_tensor(one), torch.as_tensor(batch)
    out: dict[str, float] = {}
    with torch.inference_mode():
        out["latency_ms_torch"] = 1e3 * _median_seconds(lambda: model(x1), LATENCY_CALLS)
        out["throughput_torch"] = BATCH / _median_seconds(lambda: model(xb), THROUGHPUT_CALLS, warmup=2)
    if onnx_path is not None:
        from crop.deploy.export import onnx_session

        session = onnx_session(onnx_path, threads=1)
        name = session.get_inputs()[0].name
        f1 = {name: np.ascontiguousarray(one, dtype=np.float32)}
        fb = {name: np.ascontiguousarray(batch, dtype=np.float32)}
        out["latency_ms_onnx"] = 1e3 * _median_seconds(lambda: session.run(None, f1), LATENCY_CALLS)
        out["throughput_onnx"] = BATCH / _median_seconds(lambda: session.run(None, fb), THROUGHPUT_CALLS, warmup=2)
    return out


def measure_one(method: str, user: int, scenario: str, seed: int, workdir: Path) -> dict[str, Any]:
    """Personalize one HAPT user with ``method`` in this process and measure it (see module)."""
    import torch

    torch.set_num_threads(1)
    from crop.api import personalize
    from crop.data.scenarios import build_user_scenario, parse_scenarios
    from crop.generic import generic_for_user, kind_for_method
    from crop.models.io import save_model

    spec = parse_scenarios(scenario)[0]
    generic, _ = generic_for_user(kind_for_method(spec.generic, method), user)  # as crop bench picks it
    us = build_user_scenario(user, spec, seed)
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    result = personalize(generic, us.available, method=method, seed=seed)
    seconds = time.perf_counter() - t0
    peak = _peak_rss_mb()
    model = result.model.eval()
    row: dict[str, Any] = {"personalize_s": seconds, "peak_rss_mb": peak, "rss_before_mb": rss_before}
    dense = save_model(model, workdir / "model.safetensors", {"method": method, "seed": seed})
    row["file_bytes"] = dense.stat().st_size
    if "density" in result.info and "masks" in result.info:  # as `crop personalize` does
        from crop.models.io import save_sparse

        row["sparse_file_bytes"] = save_sparse(model, workdir / "model.sparse.safetensors").stat().st_size
    row["parameters"] = sum(p.numel() for p in model.parameters())
    row["nonzero_parameters"] = sum(int((p != 0).sum()) for p in model.parameters())
    windows = us.available.test.X if len(us.available.test) else us.available.train.X
    onnx_path = None
    try:  # the module itself (a method may return a class of its own, e.g. PTN's prototype head)
        from crop.deploy.export import export_model

        shape = tuple(windows.shape[1:])
        onnx_path = export_model(model, workdir / "model.onnx", input_shape=shape, metadata={"method": method}).path
        row["onnx_file_bytes"] = onnx_path.stat().st_size
    except CropError as exc:  # onnx not installed, or the model does not export
        row["onnx_error"] = str(exc)
    row.update(_inference(model, windows, onnx_path))
    return row


def _child(argv: list[str]) -> None:
    method, user, scenario, seed = argv[0], int(argv[1]), argv[2], int(argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        try:
            row = measure_one(method, user, scenario, seed, Path(tmp))
        except CropError as exc:
            row = {"error": str(exc)}
    print("CROP-RESOURCES " + json.dumps(row), flush=True)


def run_child(method: str, user: int, scenario: str, seed: int, timeout: float = 900) -> dict[str, Any]:
    """One fresh process measuring ``method``; its JSON row (or ``{"error": ...}``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    from crop.workers import child_command

    cmd = child_command("crop.deploy.resources", method, str(user), scenario, str(seed))  # dies with this process
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("CROP-RESOURCES "):
            return json.loads(line.removeprefix("CROP-RESOURCES "))
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"measuring process exited with {proc.returncode}: {last[:200]}"}


def _median(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    if not values:
        return None
    m = statistics.median(values)
    return int(m) if all(isinstance(v, int) for v in values) and float(m).is_integer() else m


def summarize(method: str, runs: list[dict[str, Any]]) -> MethodCost:
    """Medians over the runs that succeeded; the first error if none did."""
    good = [r for r in runs if "error" not in r]
    cost = MethodCost(method, repeats=len(good), runs=runs)
    if not good:
        cost.error = next((r["error"] for r in runs if "error" in r), "not run")
        return cost
    for name in COLUMNS[1:-2]:
        setattr(cost, name, _median([r.get(name) for r in good]))
    cost.error = next((r["onnx_error"] for r in good if "onnx_error" in r), None)
    return cost


def measure_resources(
    methods: list[str],
    *,
    user: int = 2,
    scenario: str = "hapt-session:1",
    seed: int = 0,
    repeats: int = 3,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[MethodCost]:
    """Measure every method ``repeats`` times, each in a fresh process; rounds go over all
    methods in turn, so a busy minute on a shared machine touches every method a little rather
    than one method a lot."""
    if repeats < 1:
        raise CropError(f"--repeats must be at least 1, got {repeats}")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    done, total = 0, repeats * len(methods)
    for _ in range(repeats):
        for method in methods:
            if progress is not None:
                progress(method, done, total)
            runs[method].append(run_child(method, user, scenario, seed))
            done += 1
    return [summarize(m, runs[m]) for m in methods]


def machine() -> dict[str, Any]:
    """The machine the numbers were measured on."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads_measured": 1,
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "system": f"{platform.system()} {platform.release()}",
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _kib(value: int | None) -> str:
    return "—" if value is None else f"{value / 1024:.1f}"


def to_markdown(costs: list[MethodCost], info: dict[str, Any], setting: dict[str, Any]) -> str:
    """Tables 7 and 8 as Markdown, with the machine and the setting above them; every string
    from outside (machine description, method, error text) escaped (:mod:`crop.report.escape`)."""
    from crop.report.escape import markdown_text as md

    info = {k: md(v) if isinstance(v, str) else v for k, v in info.items()}
    setting = {k: md(v) if isinstance(v, str) else v for k, v in setting.items()}
    lines = [
        "# Resources per method (the paper's Tables 7 and 8)",
        "",
        f"Machine: {info['cpu']}, {info['logical_cores']} logical cores ({info['usable_cores']} usable), "
        f"1 thread measured; load average at the start {info['load_average_1_5_15'][0]} (1 min); "
        f"Python {info['python']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}, {info['system']}.",
        f"Setting: HAPT user {setting['user']}, {setting['scenario']}, seed {setting['seed']}, default "
        f"configuration of each method; medians of {setting['repeats']} repeats, each in a fresh process.",
        "",
        "## One-time personalization (Table 7)",
        "",
        "| method | time (s) | peak RSS (MB) | RSS before (MB) |",
        "|---|---|---|---|",
    ]
    for c in costs:
        if c.repeats == 0:
            lines.append(f"| {md(c.method)} | not run: {md(c.error)} | | |")
            continue
        lines.append(
            f"| {md(c.method)} | {_fmt(c.personalize_s)} | {_fmt(c.peak_rss_mb, 0)} | {_fmt(c.rss_before_mb, 0)} |"
        )
    lines += [
        "",
        "Peak RSS is the whole process (Python, torch, the user's data and the generic model "
        "included); RSS before is the same process just before personalization started.",
        "",
        f"## Inference (Table 8), one window and batches of {BATCH}",
        "",
        "| method | latency torch (ms) | latency ONNX (ms) | windows/s torch | windows/s ONNX "
        "| parameters | non-zero | file (KiB) | sparse file (KiB) | ONNX file (KiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in costs:
        if c.repeats == 0:
            continue
        lines.append(
            f"| {md(c.method)} | {_fmt(c.latency_ms_torch, 3)} | {_fmt(c.latency_ms_onnx, 3)} "
            f"| {_fmt(c.throughput_torch, 0)} | {_fmt(c.throughput_onnx, 0)} | {_fmt(c.parameters)} "
            f"| {_fmt(c.nonzero_parameters)} | {_kib(c.file_bytes)} | {_kib(c.sparse_file_bytes)} "
            f"| {_kib(c.onnx_file_bytes)} |"
        )
    notes = [f"{md(c.method)}: {md(c.error)}" for c in costs if c.repeats and c.error]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(lines) + "\n"


def to_csv(costs: list[MethodCost]) -> str:
    """One row per method; text cells neutralized against spreadsheet formulas."""
    from crop.report.escape import csv_row

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for c in costs:
        writer.writerow(csv_row("" if getattr(c, k) is None else getattr(c, k) for k in COLUMNS))
    return buffer.getvalue()


def write_resources(out: Path, costs: list[MethodCost], info: dict[str, Any], setting: dict[str, Any]) -> list[Path]:
    """``resources.md``, ``resources.csv`` and ``machine.json`` (with every run) under ``out``."""
    from crop.report.files import write_text_atomic

    raw = {"machine": info, "setting": setting, "runs": {c.method: c.runs for c in costs}}
    return [
        write_text_atomic(out / "resources.md", to_markdown(costs, info, setting)),
        write_text_atomic(out / "resources.csv", to_csv(costs)),
        write_text_atomic(out / "machine.json", json.dumps(raw, indent=2)),
    ]


if __name__ == "__main__":  # the measuring process started by run_child
    _child(sys.argv[1:])

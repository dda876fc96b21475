"""Shared pieces of the ``crop`` commands: the consoles and output modes, the error guard that turns a refused
input into one line on stderr, and the parsers of options several commands take (users, methods,
metrics, TOML method configs)."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

from crop.errors import CropError
from crop.interrupts import stop_line
from crop.report.console import DataConsole, LineProgress, TextTable
from crop.report.escape import visible
from crop.validate import (
    int_list,
    split_list,
)

# Every string printed is data: no console markup, control characters visible (crop.report.console).
# Results (tables, summaries, --json) go to stdout; progress and notes to stderr (note_console,
# silenced by --quiet); errors and warnings to stderr always (err_console).
console = DataConsole()
err_console = DataConsole(stderr=True)
note_console = DataConsole(stderr=True)


class _Output:
    """The output modes of the running command: ``quiet`` (no notes or progress), ``verbose``
    (notes with more detail, e.g. timings), ``json`` (one JSON document is all of stdout)."""

    quiet = False
    verbose = False
    json = False


OUTPUT = _Output()


def _set_output(quiet: bool = False, verbose: bool = False) -> None:
    """Start a command with these modes (the root options ``--quiet`` / ``--verbose``)."""
    OUTPUT.quiet, OUTPUT.verbose, OUTPUT.json = quiet, verbose and not quiet, False
    note_console.quiet = quiet
    console.quiet = False


def _quiet() -> None:
    """A command's own ``--quiet`` (``crop bench --quiet``): as the root option."""
    _set_output(quiet=True, verbose=False)


def _json_mode(on: bool) -> None:
    """``--json``: stdout gets the JSON document only (tables and summaries are not printed)."""
    OUTPUT.json = on
    console.quiet = on


def _jsonable(value: Any) -> Any:
    """``value`` for JSON: numpy scalars and arrays as numbers and lists, a NaN or infinity as
    ``null``, paths and other objects as strings."""
    import math

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _emit_json(payload: Any) -> None:
    """``payload`` as one JSON document on stdout (numbers as numbers; paths as strings)."""
    text = json.dumps(_jsonable(payload), indent=2, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _note(message: Any) -> None:
    """An informational line on stderr (not with --quiet)."""
    note_console.print(message, highlight=False, markup=False, soft_wrap=True)


def _detail(message: Any) -> None:
    """A line on stderr with --verbose only."""
    if OUTPUT.verbose:
        _note(message)


def _progress(*columns: Any, transient: bool = False, disable: bool = False) -> Any:
    """A progress display on stderr: a rich bar on a terminal, else :class:`LineProgress` (one
    line per finished unit, where the caller prints them); nothing with --quiet."""
    from crop.report.console import data_progress

    disable = disable or OUTPUT.quiet
    if not note_console.is_terminal:
        return LineProgress(note_console, disable=disable)
    return data_progress(*columns, console=note_console, transient=transient, disable=disable)


def _say(prefix: str, message: Any) -> None:
    """One line on stderr (newlines in ``message`` become spaces, other control characters
    visible escapes: :func:`crop.report.escape.visible`)."""
    text = visible(" ".join(str(message).split()))
    err_console.print(f"{prefix}{text}", highlight=False, markup=False, soft_wrap=True)


STOPS_REPORTED: list[str] = []  # the stop lines printed (crop.cli.run prints one typer swallowed)


def _guard(func: Callable[..., None]) -> Callable[..., None]:
    """Turn :class:`CropError` (and an unusable file or directory, :class:`OSError`) into one
    line on stderr and exit code 2; Ctrl-C and SIGTERM into one line and 130 / 143
    (:mod:`crop.interrupts`); anything else is an internal error (exit 1). No traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - never dump a traceback on a user
            code = _report(exc)
            if code is None:
                raise
            raise typer.Exit(code) from None

    return wrapper


def _report(exc: BaseException) -> int | None:
    """Print the one line that ends a command stopped by ``exc``; its exit code (``None``: let
    ``exc`` go on, e.g. :class:`SystemExit`, or any error with ``CROP_DEBUG`` set)."""
    stop = stop_line(exc)
    if stop is not None:
        err_console.print(stop[0], highlight=False, markup=False)
        STOPS_REPORTED.append(stop[0])
        return stop[1]
    if isinstance(exc, CropError):
        _say("crop: error: ", exc)
        return 2
    if isinstance(exc, OSError):  # crop's own readers and writers name the file in a CropError; a last resort
        names = [str(n) for n in (exc.filename, exc.filename2) if n]
        if not names and os.environ.get("CROP_DEBUG"):
            return None  # the traceback says where
        where = f" ({' -> '.join(names)})" if names else " (in a file crop did not name: set CROP_DEBUG=1 to see where)"
        _say("crop: error: ", f"{exc.strerror or exc}{where}")
        return 2
    if not isinstance(exc, Exception) or os.environ.get("CROP_DEBUG"):
        return None
    first = visible(str(exc).splitlines()[0]) if str(exc) else ""
    err_console.print(
        f"crop: internal error: {type(exc).__name__}: {first} (set CROP_DEBUG=1 for the traceback)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return 1


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
    from crop.tomlfile import read_toml

    return read_toml(path)  # size, line length and nesting checked before parsing


def _dataset_configs(
    path: Path | None, dataset: str, preset: str = "paper", methods: Sequence[str] = ()
) -> tuple[dict[str, Any], Any]:
    """Method configs (the dataset's preset, then the TOML table of each method) and the
    generic-training config (``[generic-training]``: the dataset's Table 9 preset overridden).
    With ``preset="cpu"`` every method of ``methods`` and the generic training get the CPU
    preset (:mod:`crop.data.datasets.presets`) under the TOML's values."""
    from crop.bench.datasets import GENERIC_TABLE, generic_config, method_config
    from crop.data.datasets.presets import check_preset, preset_name
    from crop.personalization.registry import get_method

    check_preset(preset)
    if preset != "paper" and preset_name(dataset) is None:
        raise CropError(f"--preset {preset} applies to the paper's datasets (crop docs DATASETS), not {dataset}")
    raw = _read_toml(path) if path is not None else {}
    configs: dict[str, Any] = {}
    generic_training = None
    for name, values in raw.items():
        if not isinstance(values, dict):
            raise CropError(f"{path}: [{name}] must be a table of options")
        if name == GENERIC_TABLE:
            from crop.data.datasets import uses_given_model

            if uses_given_model(dataset):
                raise CropError(
                    f"{path}: [{GENERIC_TABLE}] does not apply to --dataset {dataset} (its model is --model)"
                )
            generic_training = generic_config(dataset, values, f"{path}:[{name}]", preset)
            continue
        get_method(name)
        configs[name] = method_config(dataset, name, values, f"{path}:[{name}]", preset)
    if preset != "paper":
        if generic_training is None:
            generic_training = generic_config(dataset, preset=preset)
        for name in methods:
            configs.setdefault(name, method_config(dataset, name, preset=preset))
    return configs, generic_training


def _load_configs(path: Path | None, methods: list[str]) -> dict[str, Any]:
    """Method configs from a TOML file with one table per method name."""
    from crop.personalization.registry import config_from_dict, get_method

    if path is None:
        return {}
    raw = _read_toml(path)
    out = {}
    for name, values in raw.items():
        spec = get_method(name)
        if not isinstance(values, dict):
            raise CropError(f"{path}: [{name}] must be a table of options")
        out[name] = config_from_dict(spec.config_class, values, f"{path}:[{name}]")
    return out


def _rich_table(table: Any) -> TextTable:
    """A :class:`crop.report.table.Table` for the console; every title, header and cell shown
    literally on one line (:func:`crop.report.escape.visible`): a box table on a terminal, whole
    Markdown text in a pipe or a file (:class:`crop.report.console.TextTable`)."""
    rows = [[table.cell(c, v) for c, v in zip(table.header, row, strict=True)] for row in table.rows]
    return TextTable(table.title, list(table.header), rows)

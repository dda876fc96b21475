"""Raw sensor streams in a long-format CSV table, resampled and cut into windows (``--dataset csv``).

The table: a header row naming the columns ``user``, ``context``, ``label``, ``time`` (seconds;
any order) and one column per sensor channel (every other column, in header order), then one row
per reading. Rows of different users and contexts may interleave; the rows of one user and
context in one file are one recording, in time order (strictly increasing ``time``).

From the rows to windows (:func:`windows_of`):

1. **Segments.** A recording is split where two consecutive rows are more than
   :data:`GAP_PERIODS` sample periods of the target rate apart (``time[i+1] - time[i] >
   GAP_PERIODS / rate``, with a relative tolerance of 1e-6 for rounding: a *gap*) and where the
   label changes. Each segment is one user, one context, one label, no gap.
2. **Resampling.** Each segment is resampled onto the grid ``t0 + k / rate`` (``t0`` its first
   timestamp, ``k = 0, 1, ...`` up to its last timestamp) by linear interpolation per channel
   between the two neighbouring readings (:func:`numpy.interp`).
3. **Windows.** ``window`` consecutive grid samples starting every ``stride`` samples, as long as
   the window fits inside the segment; so no window spans a gap or a label change (those are
   dropped), and a segment shorter than ``window`` samples gives none.

Labels (strings or integers) become classes 0..K-1 in sorted order: numerically when every label
is an integer, else as text; the names are kept (:attr:`StreamTable.classes`).

Limits, checked before the work they bound (one-line :class:`~crop.errors.CropError`):
:data:`MAX_FILE_BYTES` per file and :data:`MAX_TOTAL_BYTES` in all (from the file sizes, before
reading), :data:`MAX_FILES` files, :data:`MAX_LINE` bytes per line, :data:`MAX_COLUMNS`
columns, :data:`MAX_NAME` characters per user, context or label, and :data:`MAX_VALUES`
numbers in the resampled streams and in the windows (counted before either is built). Reading
runs at roughly 5 MiB of table per second on one core; the windows are cached (see
:mod:`crop.data.datasets.base`), so a second run does not read the table again.
"""

from __future__ import annotations

import codecs
import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crop.data.sensing import MAX_ABS_VALUE
from crop.errors import CropError

REQUIRED = ("user", "context", "label", "time")
GAP_PERIODS = 2.0  # more than this many target sample periods between two readings: a gap
GAP_TOLERANCE = 1e-6  # relative, so that rounding in the timestamps does not make a gap
MAX_FILE_BYTES = 256 * 2**20  # one .csv file
MAX_TOTAL_BYTES = 2**30  # every .csv file under --root together
MAX_FILES = 10_000
MAX_LINE = 2**20  # bytes of one line
MAX_COLUMNS = 1024
MAX_NAME = 256  # characters of a user, context or label
MAX_VALUES = 2**28  # numbers of the resampled streams, and of the windows (float32: 1 GiB)
MAX_RATE = 100_000.0
MAX_WINDOW = 100_000
_CHUNK = 65_536  # rows converted to numbers at once
_INTEGER = re.compile(r"^[+-]?\d{1,18}$")


@dataclass(frozen=True)
class Recording:
    """The rows of one user and context in one file, in time order."""

    path: Path
    user: str
    context: str
    time: np.ndarray  # (n,) float64, strictly increasing
    values: np.ndarray  # (n, channels) float64
    labels: np.ndarray  # (n,) str
    lines: np.ndarray  # (n,) int: each row's line number in the file


@dataclass(frozen=True)
class StreamTable:
    """Windows per user: ``X`` ``(n, channels, window)`` float32, ``y`` ``(n,)`` int64 (index into
    ``classes``), ``context`` ``(n,)`` str."""

    users: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    classes: tuple[str, ...]
    channels: tuple[str, ...]


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_options(rate: float, window: int, stride: int) -> tuple[float, int, int]:
    """``--rate`` (Hz), ``--window`` and ``--stride`` (samples), checked (one-line errors)."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
        raise CropError(f"--rate must be a number of samples per second, got {rate!r}")
    if not 0 < rate <= MAX_RATE:
        raise CropError(f"--rate must lie in (0, {MAX_RATE:g}] Hz, got {rate:g}")
    for name, value in (("--window", window), ("--stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise CropError(f"{name} must be a whole number of samples, got {value!r}")
        if not 1 <= value <= MAX_WINDOW:
            raise CropError(f"{name} must lie in 1..{MAX_WINDOW} samples, got {value}")
    if window < 2:
        raise CropError(f"--window must be at least 2 samples, got {window}")
    return float(rate), int(window), int(stride)


def table_files(root: Path) -> list[Path]:
    """``root`` itself (a ``.csv`` file) or the ``*.csv`` files directly inside it, sorted."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.glob("*.csv") if p.is_file())


def check_sizes(files: list[Path], root: Path) -> None:
    """Refuse, from the file sizes alone, too many files, a file over :data:`MAX_FILE_BYTES` or
    more than :data:`MAX_TOTAL_BYTES` in all."""
    if not files:
        raise CropError(f"{root}: no .csv files (a table with columns user, context, label, time, <channels>)")
    if len(files) > MAX_FILES:
        raise CropError(f"{root}: {len(files)} .csv files; at most {MAX_FILES} (crop.data.streams.MAX_FILES)")
    total = 0
    for path in files:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise CropError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if size > MAX_FILE_BYTES:
            raise CropError(
                f"{path}: {_size(size)}; at most {_size(MAX_FILE_BYTES)} per file (crop.data.streams.MAX_FILE_BYTES)"
            )
        total += size
    if total > MAX_TOTAL_BYTES:
        raise CropError(
            f"{root}: its .csv files take {_size(total)}; at most {_size(MAX_TOTAL_BYTES)} in all "
            "(crop.data.streams.MAX_TOTAL_BYTES)"
        )


def _lines(f, path: Path) -> Iterator[str]:
    """The lines of the binary file ``f`` as text, each checked for length and decoded alone (so a
    bad byte is reported with its line)."""
    for number, raw in enumerate(f, 1):
        body = raw.rstrip(b"\r\n")
        if len(body) > MAX_LINE:
            raise CropError(f"{path}, line {number}: {len(body)} bytes; at most {MAX_LINE} per line")
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CropError(f"{path}, line {number}: not UTF-8 text (byte {exc.start + 1} of the line)") from None


def _header(row: list[str], path: Path, line: int) -> tuple[dict[str, int], list[str]]:
    names = [c.strip() for c in row]
    if len(names) > MAX_COLUMNS:
        raise CropError(f"{path}, line {line}: {len(names)} columns; at most {MAX_COLUMNS}")
    for i, name in enumerate(names):
        if not name:
            raise CropError(f"{path}, line {line}, column {i + 1}: empty column name")
        if names.index(name) != i:
            raise CropError(f"{path}, line {line}, column {name!r}: given twice")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        shown = ", ".join(repr(c) for c in missing)
        raise CropError(
            f"{path}, line {line}, column {shown}: missing required column{'s' if len(missing) > 1 else ''} "
            f"(the header must name {', '.join(REQUIRED)} and the channels)"
        )
    channels = [c for c in names if c not in REQUIRED]
    if not channels:
        raise CropError(
            f"{path}, line {line}: no channel columns (one column per sensor channel after {', '.join(REQUIRED)})"
        )
    return {c: names.index(c) for c in names}, channels


def _numbers(texts: tuple[str, ...], lines: list[int], path: Path, column: str, bound: bool) -> np.ndarray:
    """The column's values as float64; the first bad one refused with its line and column."""
    try:
        out = np.asarray(texts).astype(np.float64)
    except ValueError:
        out = None
    if out is not None:
        bad = ~np.isfinite(out)
        if bound:
            bad |= np.abs(np.where(bad, 0.0, out)) > MAX_ABS_VALUE
        if not bad.any():
            return out
    checked = []
    for text, line in zip(texts, lines, strict=True):
        try:
            value = float(text)
        except ValueError:
            raise CropError(f"{path}, line {line}, column {column!r}: not a number: {text.strip()[:40]!r}") from None
        if not math.isfinite(value):
            raise CropError(f"{path}, line {line}, column {column!r}: {text.strip()[:40]!r} is not a finite number")
        if bound and abs(value) > MAX_ABS_VALUE:
            raise CropError(
                f"{path}, line {line}, column {column!r}: {value:g} exceeds the sane magnitude {MAX_ABS_VALUE:g}"
            )
        checked.append(value)
    return np.asarray(checked, dtype=np.float64)  # numpy's parser refused what Python's reads (e.g. 1_000)


class _Columns:
    """The parsed columns of one file, filled a chunk of rows at a time (the text of a chunk is
    dropped once it is converted: numbers as float64, names as integer codes)."""

    def __init__(self, path: Path, index: dict[str, int], channels: list[str]) -> None:
        self.path, self.index, self.channels = path, index, channels
        self.names: dict[str, dict[str, int]] = {c: {} for c in ("user", "context", "label")}
        self.codes: dict[str, list[np.ndarray]] = {c: [] for c in self.names}
        self.times: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.lines: list[np.ndarray] = []

    def add(self, rows: list[list[str]], lines: list[int]) -> None:
        columns = list(zip(*rows, strict=True))
        for c, known in self.names.items():
            texts = columns[self.index[c]]
            longest = max(range(len(texts)), key=lambda i: len(texts[i]))
            if len(texts[longest]) > MAX_NAME:  # checked before numpy sizes an array by the longest
                raise CropError(
                    f"{self.path}, line {lines[longest]}, column {c!r}: {len(texts[longest])} characters; "
                    f"a user, context or label has at most {MAX_NAME}"
                )
            field = np.char.strip(np.asarray(texts, dtype=str))
            empty = np.flatnonzero(field == "")
            if len(empty):
                raise CropError(f"{self.path}, line {lines[empty[0]]}, column {c!r}: empty")
            unique, inverse = np.unique(field, return_inverse=True)
            ids = np.asarray([known.setdefault(str(u), len(known)) for u in unique], dtype=np.int64)
            self.codes[c].append(ids[inverse.reshape(-1)])
        self.times.append(_numbers(columns[self.index["time"]], lines, self.path, "time", False))
        self.values.append(
            np.stack([_numbers(columns[self.index[c]], lines, self.path, c, True) for c in self.channels], axis=1)
        )
        self.lines.append(np.asarray(lines, dtype=np.int64))

    def recordings(self) -> list[Recording]:
        """One :class:`Recording` per user and context, in order of first appearance; time checked."""
        path = self.path
        time, X, line_of = np.concatenate(self.times), np.concatenate(self.values), np.concatenate(self.lines)
        user, context, label = (np.concatenate(self.codes[c]) for c in ("user", "context", "label"))
        names = {c: np.asarray(list(known), dtype=str) for c, known in self.names.items()}
        keys = user * len(self.names["context"]) + context
        _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        by_group = np.split(np.argsort(inverse.reshape(-1), kind="stable"), np.cumsum(counts)[:-1])
        out = []
        for group in np.argsort(first, kind="stable"):
            rows_of = by_group[group]  # the group's rows in file order
            who, where = str(names["user"][user[rows_of[0]]]), str(names["context"][context[rows_of[0]]])
            t = time[rows_of]
            back = np.flatnonzero(np.diff(t) <= 0)
            if len(back):
                i = back[0]
                raise CropError(
                    f"{path}, line {line_of[rows_of[i + 1]]}, column 'time': {t[i + 1]:g} does not come after "
                    f"{t[i]:g} (line {line_of[rows_of[i]]}) for user {who!r}, context {where!r}; each "
                    "recording's rows must be in increasing time"
                )
            labels = names["label"][label[rows_of]]
            out.append(Recording(path, who, where, t, X[rows_of], labels, line_of[rows_of]))
        return out


def read_table(path: Path) -> tuple[list[str], list[Recording]]:
    """The channel names and the recordings (one per user and context) of one ``.csv`` file."""
    columns: _Columns | None = None
    try:
        with path.open("rb") as f:
            reader = csv.reader(_lines(f, path))
            width = 0
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not row:  # an empty line; a line of empty fields is refused (an empty user)
                    continue
                if columns is None:
                    columns = _Columns(path, *_header(row, path, reader.line_num))
                    width = len(row)
                    continue
                if len(row) != width:
                    raise CropError(
                        f"{path}, line {reader.line_num}: {len(row)} fields, the header has {width} "
                        f"(column {columns.channels[-1]!r} is the last)"
                    )
                rows.append(row)
                lines.append(reader.line_num)
                if len(rows) == _CHUNK:
                    columns.add(rows, lines)
                    rows, lines = [], []
            if rows:
                assert columns is not None
                columns.add(rows, lines)
    except CropError:
        raise
    except (OSError, csv.Error) as exc:
        raise CropError(f"{path}: not a readable CSV file ({exc})") from None
    if columns is None:
        raise CropError(f"{path}: empty file (expected a header row: {', '.join(REQUIRED)}, <channels>)")
    if not columns.times:
        raise CropError(f"{path}: no data rows after the header")
    return columns.channels, columns.recordings()


def class_order(labels: set[str]) -> tuple[str, ...]:
    """Label names in class order: numerically when every label is an integer, else as text."""
    if all(_INTEGER.match(x) for x in labels):
        by_value = {int(x): x for x in sorted(labels)}
        if len(by_value) == len(labels):
            return tuple(by_value[v] for v in sorted(by_value))
    return tuple(sorted(labels))


def segments(rec: Recording, rate: float) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` of ``rec`` without a gap or a label change (module docstring)."""
    limit = GAP_PERIODS / rate * (1 + GAP_TOLERANCE)
    breaks = np.flatnonzero((np.diff(rec.time) > limit) | (rec.labels[1:] != rec.labels[:-1])) + 1
    edges = [0, *breaks.tolist(), len(rec.time)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def grid_size(t0: float, t1: float, rate: float) -> int:
    """Grid samples ``t0 + k / rate`` that lie in ``[t0, t1]`` (with a 1e-9 tolerance for rounding)."""
    return int(math.floor((t1 - t0) * rate + 1e-9)) + 1


def window_count(n: int, window: int, stride: int) -> int:
    return 0 if n < window else (n - window) // stride + 1


def resample(t: np.ndarray, values: np.ndarray, rate: float) -> np.ndarray:
    """``values`` ``(n, channels)`` at times ``t`` on the grid ``t[0] + k / rate`` up to ``t[-1]``,
    by linear interpolation per channel: ``(grid, channels)``."""
    grid = t[0] + np.arange(grid_size(float(t[0]), float(t[-1]), rate)) / rate
    grid = np.minimum(grid, t[-1])  # rounding must not push the last point past the last reading
    return np.stack([np.interp(grid, t, values[:, c]) for c in range(values.shape[1])], axis=1)


def windows_of(
    recordings: list[Recording], classes: tuple[str, ...], rate: float, window: int, stride: int, where: str
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per user ``(X (n, channels, window) float32, y (n,) int64, context (n,) str)``, in the order of
    the recordings and then of time. Sizes are counted before anything is resampled."""
    code = {name: i for i, name in enumerate(classes)}
    plan = []
    grid_values = window_values = 0
    channels = recordings[0].values.shape[1] if recordings else 0
    for rec in recordings:
        for a, b in segments(rec, rate):
            n = grid_size(float(rec.time[a]), float(rec.time[b - 1]), rate)
            count = window_count(n, window, stride)
            if count:
                plan.append((rec, a, b, count))
                grid_values += n * channels
                window_values += count * window * channels
    if max(grid_values, window_values) > MAX_VALUES:
        raise CropError(
            f"{where}: --rate {rate:g} --window {window} --stride {stride} make {max(grid_values, window_values):,} "
            f"values; at most {MAX_VALUES:,} (crop.data.streams.MAX_VALUES): lower the rate or raise the stride"
        )
    parts: dict[str, list[tuple[np.ndarray, int, str]]] = {}
    for rec, a, b, count in plan:
        grid = resample(rec.time[a:b], rec.values[a:b], rate)
        view = np.lib.stride_tricks.sliding_window_view(grid, window, axis=0)[::stride][:count]  # (count, C, window)
        parts.setdefault(rec.user, []).append((view.astype(np.float32), code[str(rec.labels[a])], rec.context))
    out = {}
    for user, items in parts.items():
        X = np.concatenate([x for x, _, _ in items])
        y = np.concatenate([np.full(len(x), label, dtype=np.int64) for x, label, _ in items])
        context = np.concatenate([np.full(len(x), ctx) for x, _, ctx in items]).astype(str)
        out[user] = (X, y, context)
    return out


def read_streams(root: Path, rate: float, window: int, stride: int) -> StreamTable:
    """Every ``.csv`` table under ``root`` (a file or a directory), checked, resampled and windowed."""
    files = table_files(root)
    check_sizes(files, root)
    channels: list[str] | None = None
    first: Path | None = None
    recordings: list[Recording] = []
    for path in files:
        names, recs = read_table(path)
        if channels is None:
            channels, first = names, path
        elif names != channels:
            extra = [c for c in names if c not in channels] + [c for c in channels if c not in names]
            column = extra[0] if extra else next(a for a, b in zip(names, channels, strict=True) if a != b)
            raise CropError(
                f"{path}, line 1, column {column!r}: channel columns {', '.join(names)} differ from "
                f"{first.name}'s {', '.join(channels)} (every file needs the same channels in the same order)"
            )
        recordings.extend(recs)
    assert channels is not None
    classes = class_order({str(x) for rec in recordings for x in rec.labels.tolist()})
    users = windows_of(recordings, classes, rate, window, stride, str(root))
    for rec in recordings:
        if rec.user not in users:
            longest = max(
                (
                    float(rec2.time[b - 1] - rec2.time[a])
                    for rec2 in recordings
                    if rec2.user == rec.user
                    for a, b in segments(rec2, rate)
                ),
                default=0.0,
            )
            raise CropError(
                f"{rec.path}: user {rec.user!r} has no complete window ({window} samples at {rate:g} Hz = "
                f"{(window - 1) / rate:g} s of one context and label without a gap; their longest such stretch is "
                f"{longest:g} s): lower --window, or --rate (a gap is more than 2 periods of --rate)"
            )
    return StreamTable(users, classes, tuple(channels))

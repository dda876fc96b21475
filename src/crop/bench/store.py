"""Append-only JSON-lines result store that survives a crash and never loses a valid record.

Each finished unit of work (one user x seed x method in one scenario) is appended as a block
of lines with a single ``write`` on a file opened in append mode, then flushed and fsynced;
its last record carries ``unit_complete``. A crash can leave at most one unfinished block at
the end (possibly with a torn last line): :meth:`ResultStore.load` ignores it and
:meth:`ResultStore.repair` truncates it before a resumed run appends.

A damaged line elsewhere (not JSON, not a record, a missing field, a non-numeric value) never
hides the records after it: it is skipped with a :class:`ResultsWarning` that names the line,
and every other record is kept. A unit written twice (two complete blocks) counts once, the
last block.
"""

from __future__ import annotations

import json
import math
import os
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crop.errors import CropError, ResultsWarning

if TYPE_CHECKING:
    from crop.dirlock import DirectoryLock

UNIT_FIELDS = ("dataset", "scenario", "user", "seed", "method")


def unit_key(record: dict[str, Any]) -> tuple:
    return tuple(record[f] for f in UNIT_FIELDS)


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a usable result record (``None`` when it is)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for name in UNIT_FIELDS:
        if name not in record:
            return f"missing field {name!r}"
    for name in ("dataset", "scenario", "method"):
        if not isinstance(record[name], str):
            return f"field {name!r} is not a string"
    if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
        return "field 'seed' is not an integer"
    user = record["user"]  # an int (HAPT, most datasets) or a non-empty str (ExtraSensory UUIDs, your files)
    if isinstance(user, bool) or not (isinstance(user, int) or (isinstance(user, str) and user)):
        return "field 'user' is not an integer or a name"
    status = record.get("status", "ok")
    if status not in ("ok", "failed"):
        return f"unknown status {status!r}"
    if status == "ok":
        if not isinstance(record.get("metric"), str):
            return "field 'metric' is missing or not a string"
        if record.get("context") not in ("available", "unseen"):
            return "field 'context' is not 'available' or 'unseen'"
        value = record.get("value")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return f"field 'value' is not a finite number ({str(value)[:20]!r})"
    return None


class ResultStore:
    """``results.jsonl`` under a benchmark directory. A running bench passes the results
    directory's ``lock`` (:class:`crop.dirlock.DirectoryLock`): then every change goes through
    it, so records are only ever written into the directory the bench locked."""

    def __init__(self, path: str | Path, lock: DirectoryLock | None = None) -> None:
        self.path = Path(path)
        self.lock = lock

    def _lines(self) -> list[bytes]:
        if not self.path.is_file():
            return []
        try:
            return self.path.read_bytes().splitlines(keepends=True)
        except OSError as exc:
            raise CropError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def _scan(self) -> tuple[list[dict[str, Any]], list[tuple[int, str]], int, int]:
        """Records of complete units; damaged lines and abandoned blocks (followed by other
        records), as (line, why); the byte offset and line number after the last complete unit."""
        done: dict[tuple, tuple[int, list[dict]]] = {}
        block: list[dict] = []
        block_key: tuple | None = None
        problems: list[tuple[int, str]] = []
        pos = keep = kept_lines = 0
        for number, raw in enumerate(self._lines(), start=1):
            pos += len(raw)
            if not raw.endswith(b"\n"):
                break  # a torn last line: the crash tail, repaired on resume
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                problems.append((number, "not JSON"))
                continue
            problem = record_problem(record)
            if problem is not None:
                problems.append((number, problem))
                continue
            key = unit_key(record)
            if key != block_key:
                if block:
                    problems.append((number - len(block), f"{len(block)} record(s) of an unfinished unit"))
                block, block_key = [], key
            block.append(record)
            if record.get("unit_complete"):
                done[key] = (number, block)
                block, block_key = [], None
                keep, kept_lines = pos, number
        records = [r for _, rs in sorted(done.values(), key=lambda item: item[0]) for r in rs]
        return records, problems, keep, kept_lines

    def load(self) -> list[dict[str, Any]]:
        """Records of completely written units. A damaged line is skipped with a
        :class:`ResultsWarning` naming it, every other record kept; an unfinished block at the
        end (a crash) is ignored."""
        records, problems, _, _ = self._scan()
        if problems:
            shown = "; ".join(f"line {n}: {why}" for n, why in problems[:5])
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            warnings.warn(
                f"{self.path}: skipped {shown}{more}; every other record is kept", ResultsWarning, stacklevel=2
            )
        return records

    def load_required(self) -> list[dict[str, Any]]:
        """Like :meth:`load`, but a file without any usable record is a one-line error (that
        names the damaged lines) instead of an empty list."""
        records, problems, _, _ = self._scan()
        if not records:
            damaged = f" (skipped: {'; '.join(f'line {n}: {why}' for n, why in problems[:3])})" if problems else ""
            raise CropError(f"no results in {self.path}{damaged}")
        return self.load()

    def repair(self) -> None:
        """Truncate what follows the last complete unit (an unfinished block, a torn line) before
        a resumed run appends; say so unless it is only a torn line. Damaged lines before it stay
        in place (and :meth:`load` skips them): no valid record is ever removed."""
        lines = self._lines()
        _, _, keep, kept_lines = self._scan()
        size = sum(len(raw) for raw in lines)
        if keep == size:
            return
        whole = [n for n, raw in enumerate(lines, start=1) if n > kept_lines and raw.endswith(b"\n")]
        if whole:
            warnings.warn(
                f"{self.path}: removed lines {whole[0]}-{whole[-1]} after the last complete unit (an interrupted "
                "unit; it is recomputed)",
                ResultsWarning,
                stacklevel=2,
            )
        if self.lock is not None:
            self.lock.truncate(self.path.name, keep)
            return
        try:
            with self.path.open("r+b") as f:
                f.truncate(keep)
        except OSError as exc:
            raise CropError(f"cannot repair {self.path}: {exc.strerror or exc}") from None

    def done_units(self) -> set[tuple]:
        """Units whose block of records has been written completely."""
        return {unit_key(r) for r in self.load() if r.get("unit_complete")}

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append a unit's records atomically (one write); the last one is flagged complete."""
        records = list(records)
        if not records:
            return
        records[-1] = {**records[-1], "unit_complete": True}
        blob = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
        if self.lock is not None:
            self.lock.append(self.path.name, blob, sync=True)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise CropError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CropError(f"refusing to append to {self.path}: not a regular file")
            os.write(fd, blob)
            os.fsync(fd)
        except OSError as exc:
            raise CropError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

"""Append-only JSON-lines result store that survives a crash and never loses a valid record.

Each finished unit of work (one user x seed x method in one scenario) is appended as a block
of lines with a single ``write`` on a file opened in append mode, then flushed and fsynced;
its last record carries ``unit_complete``. A crash can leave at most one unfinished block at
the end (possibly with a torn last line): :meth:`ResultStore.load` ignores it and
:meth:`ResultStore.repair` truncates it before a resumed run appends.

This class is the one reader of ``results.jsonl``: every record and every unit is checked
against the schema of :mod:`crop.bench.schema` on read. A damaged line or unit anywhere (not
JSON, not a record, a missing field, a value of the wrong type or out of range, a unit without
its unseen context, a user id of another kind than the file's) never hides the records after
it: it is skipped with one :class:`ResultsWarning` that names its lines, and every other
record is kept. A record that follows another program's partial line on the same line is
kept; a complete last record without its newline is kept (and gets its newline on resume). A
unit written twice (two complete blocks) counts once, the last valid block.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crop.bench.schema import UNIT_FIELDS, odd_units, record_problem, unit_problem
from crop.errors import CropError, ResultsWarning

if TYPE_CHECKING:
    from crop.dirlock import DirectoryLock

__all__ = ["UNIT_FIELDS", "ResultStore", "ResultsWarning", "record_problem", "unit_key"]


def unit_key(record: dict[str, Any]) -> tuple:
    return tuple(record[f] for f in UNIT_FIELDS)


MAX_SALVAGE = 1 << 16  # bytes of a damaged line searched for whole records
_WHITESPACE = " \t\r\n"


def _parse(raw: bytes) -> tuple[list[dict[str, Any]], str | None, int]:
    """The records of one line, why it holds none (``None`` when it holds some), and how many
    characters of it are damage. A line is normally one record; when it is not JSON, the records
    that stand whole on it are kept: one appended after another program's partial line, two
    joined where a writer left out a newline."""
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # JSON errors, too many digits, too deep
        pass
    else:
        problem = record_problem(record)
        return ([record] if problem is None else []), problem, 0
    if len(raw) > MAX_SALVAGE:
        return [], "not JSON", 0
    text = raw.decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    records: list[dict[str, Any]] = []
    pos, damage = 0, 0
    for _ in range(64):
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= len(text):
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            value = None
        if value is not None and record_problem(value) is None:
            records.append(value)
            pos = end
            continue
        after = text.find('{"', pos + 1)
        damage += (after if after >= 0 else len(text)) - pos
        if after < 0:
            break
        pos = after
    return records, (None if records else "not JSON"), damage


def _lines_text(numbers: list[int]) -> str:
    return f"line {numbers[0]}" if len(numbers) == 1 else f"lines {numbers[0]}-{numbers[-1]}"


def _describe(record: dict[str, Any]) -> str:
    return (
        f"unit {record['scenario'][:40]} user {str(record['user'])[:40]} seed {record['seed']} {record['method'][:40]}"
    )


@dataclass
class _Scan:
    """What a pass over the file found (:meth:`ResultStore._scan`)."""

    records: list[dict[str, Any]] = field(default_factory=list)  # of complete, valid units; last copy wins
    done: set[tuple] = field(default_factory=set)  # their unit keys
    problems: list[tuple[int, str]] = field(default_factory=list)  # (first line, "line(s) N: why")
    notes: list[str] = field(default_factory=list)  # records kept after damage on their line
    keep: int = 0  # byte offset after the last complete block of records (a crash tail follows)
    tail_is_crash: bool = True  # what follows ``keep`` is records of one unfinished unit (and a torn line)
    tail_lines: list[int] = field(default_factory=list)  # whole lines after ``keep``
    unterminated: bool = False  # the last line has no newline ...
    last_is_record: bool = False  # ... and is a valid record (kept: a missing final newline)
    size: int = 0

    def warning(self, path: Path) -> str | None:
        if not self.problems and not self.notes:
            return None
        problems = [why for _, why in sorted(self.problems)]
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        text = f"{path}: skipped {shown}; every other record is kept" if problems else f"{path}:"
        if self.notes:
            text += ("; " if problems else " ") + "; ".join(self.notes[:5])
        return text


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

    def _scan(self) -> _Scan:
        """One pass: each line against the record schema, records grouped into units (a unit's
        block ends with ``unit_complete``; a new block starts where the unit key changes or a
        (context, metric) repeats), each complete unit against the unit schema, the units against
        the file (one dataset, one kind of user id)."""
        scan = _Scan()
        blocks: list[tuple[list[tuple[int, dict[str, Any]]], bool]] = []  # (numbered records, damaged inside)
        block: list[tuple[int, dict[str, Any]]] = []
        hurt = False  # a damaged line lies inside the current block
        key: tuple | None = None
        seen: set[tuple] = set()
        pos = 0
        lines = self._lines()
        for number, raw in enumerate(lines, start=1):
            pos += len(raw)
            records, problem, damage = _parse(raw)
            if raw.endswith(b"\n"):
                scan.tail_lines.append(number)
            else:  # only the last line can lack its newline
                scan.unterminated = True
                if problem is not None:
                    break  # a torn last line: the crash tail, repaired on resume
                scan.last_is_record = True
            if problem is not None:
                scan.problems.append((number, f"line {number}: {problem}"))
                scan.tail_is_crash = False
                hurt = hurt or bool(block)
                continue
            if damage or len(records) > 1:
                scan.notes.append(
                    f"line {number}: kept {len(records)} whole record(s) beside {damage} damaged characters"
                )
                scan.tail_is_crash = False
            for record in records:
                signature = (record.get("context"), record.get("context_name"), record.get("metric"))
                if unit_key(record) != key or signature in seen:
                    if block:
                        first = block[0][0]
                        scan.problems.append((first, f"{_lines_text([first, number - 1])}: an unfinished unit"))
                        scan.tail_is_crash = False
                    block, key, seen, hurt = [], unit_key(record), set(), False
                block.append((number, record))
                seen.add(signature)
                if record.get("unit_complete"):
                    blocks.append((block, hurt))
                    block, key, seen, hurt = [], None, set(), False
                    scan.keep, scan.tail_is_crash, scan.tail_lines = pos, True, []
        scan.size = pos
        valid: list[list[tuple[int, dict[str, Any]]]] = []
        for b, damaged in blocks:
            problem = "a damaged line inside it" if damaged else unit_problem([r for _, r in b])
            if problem is None:
                valid.append(b)
            else:
                where = _lines_text([b[0][0], b[-1][0]])
                scan.problems.append((b[0][0], f"{where}: {_describe(b[0][1])}: {problem}"))
        odd = odd_units([[r for _, r in b] for b in valid])
        done: dict[tuple, list[tuple[int, dict[str, Any]]]] = {}
        for i, b in enumerate(valid):
            if i in odd:
                scan.problems.append((b[0][0], f"{_lines_text([b[0][0], b[-1][0]])}: {odd[i]}"))
                continue
            done[unit_key(b[0][1])] = b
        ordered = sorted(done.values(), key=lambda b: b[-1][0])
        scan.records = [r for b in ordered for _, r in b]
        scan.done = set(done)
        return scan

    def _warn(self, scan: _Scan) -> None:
        text = scan.warning(self.path)
        if text is not None:
            warnings.warn(text, ResultsWarning, stacklevel=3)

    def load(self) -> list[dict[str, Any]]:
        """Records of completely written, valid units (:mod:`crop.bench.schema`). A damaged line
        or unit is skipped with one :class:`ResultsWarning` naming its lines, every other record
        kept; an unfinished block at the end (a crash) is ignored; a complete last record without
        its newline is kept."""
        scan = self._scan()
        self._warn(scan)
        return scan.records

    def load_required(self) -> list[dict[str, Any]]:
        """Like :meth:`load`, but a file without any usable record is a one-line error (that
        names the damaged lines) instead of an empty list."""
        scan = self._scan()
        if not scan.records:
            problems = [why for _, why in sorted(scan.problems)]
            damaged = f" (skipped: {'; '.join(problems[:3])})" if problems else ""
            raise CropError(f"no results in {self.path}{damaged}")
        self._warn(scan)
        return scan.records

    def repair(self) -> None:
        """Make the file safe to append to, before a resumed run appends. The crash tail (the
        records of one unfinished unit after the last complete one, and a torn last line) is
        truncated, loudly unless it is only a torn line. Anything else is kept: a damaged line,
        and the valid records after it, stay where they are (:meth:`load` skips what is damaged),
        only a torn last line that is no record is cut, and a complete last record without its
        newline gets one. No valid record is ever removed but those of an unfinished unit."""
        scan = self._scan()
        if scan.tail_is_crash and scan.keep < scan.size:
            if scan.tail_lines:
                warnings.warn(
                    f"{self.path}: removed lines {scan.tail_lines[0]}-{scan.tail_lines[-1]} after the last complete unit (an "
                    "interrupted unit; it is recomputed)",
                    ResultsWarning,
                    stacklevel=2,
                )
            self._truncate(scan.keep)
        elif scan.unterminated and scan.last_is_record:
            self._write_end(b"\n")
        elif scan.unterminated:
            self._truncate(scan.size - len(self._lines()[-1]))

    def _truncate(self, size: int) -> None:
        if self.lock is not None:
            self.lock.truncate(self.path.name, size)
            return
        try:
            with self.path.open("r+b") as f:
                f.truncate(size)
        except OSError as exc:
            raise CropError(f"cannot repair {self.path}: {exc.strerror or exc}") from None

    def _write_end(self, blob: bytes, sync: bool = False) -> None:
        """Append ``blob`` with one ``write`` (through the lock when the run holds one)."""
        if self.lock is not None:
            self.lock.append(self.path.name, blob, sync=sync)
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
            if sync:
                os.fsync(fd)
        except OSError as exc:
            raise CropError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def _ends_without_newline(self) -> bool:
        """Whether the file ends with a partial line (another program's, or a record whose
        newline is missing)."""
        if self.lock is not None:
            self.lock.check()  # the path still names the locked directory
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                if not size:
                    return False
                f.seek(size - 1)
                return f.read(1) != b"\n"
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise CropError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def done_units(self) -> set[tuple]:
        """Units whose block of records has been written completely (and passes the schema)."""
        scan = self._scan()
        self._warn(scan)
        return scan.done

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append a unit's records atomically (one write); the last one is flagged complete. After
        a last line without its newline (another program's partial line) a newline comes first,
        so the unit's first record never joins it."""
        records = list(records)
        if not records:
            return
        records[-1] = {**records[-1], "unit_complete": True}
        blob = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
        if self._ends_without_newline():
            blob = b"\n" + blob
        self._write_end(blob, sync=True)

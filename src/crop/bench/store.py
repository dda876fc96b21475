"""Append-only JSON-lines result store that survives a crash.

Each finished unit of work (one user x seed x method in one scenario) is appended as a block
of lines with a single ``write`` on a file opened in append mode, then flushed and fsynced.
A crash can leave at most one partial last line, which :meth:`ResultStore.load` drops (and
:meth:`ResultStore.repair` truncates), so a resumed run never sees half a unit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

UNIT_FIELDS = ("dataset", "scenario", "user", "seed", "method")


def unit_key(record: dict[str, Any]) -> tuple:
    return tuple(record[f] for f in UNIT_FIELDS)


class ResultStore:
    """``results.jsonl`` under a benchmark directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> list[dict[str, Any]]:
        """Records of completely written units (a torn or unfinished tail is ignored)."""
        if not self.path.is_file():
            return []
        records = []
        with self.path.open("r", encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        done = {unit_key(r) for r in records if r.get("unit_complete")}
        return [r for r in records if unit_key(r) in done]

    def repair(self) -> None:
        """Truncate the file after the last line that completes a unit."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        pos, good = 0, 0
        for line in data.splitlines(keepends=True):
            pos += len(line)
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            if record.get("unit_complete"):
                good = pos
        if good != len(data):
            with self.path.open("r+b") as f:
                f.truncate(good)

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)

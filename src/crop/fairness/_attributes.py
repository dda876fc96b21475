"""Attributes of people and of windows, and the checks an attribute table must pass.

**Per-person attributes** come from a table the user supplies (``--attributes FILE``), keyed by
user id, or are computed from the recordings (:mod:`crop.fairness._traits`). The table is CSV
(a header row with a ``user`` column and one column per attribute) or JSON (an object
``{"<user>": {"<attribute>": "<group>", ...}, ...}`` or a list of objects with a ``user``
key). Values are group labels, read as text. A table is refused, with a one-line
:class:`~crop.errors.CropError`, when:

* it cannot be read, is not CSV/JSON, is larger than 10 MiB, or has no attribute column;
* the ``user`` column is missing, or a row lacks a value of some column (**missing column**);
* a user id is not an integer, repeats, or is not a user of the dataset (**unknown user**);
* a user of the benchmark has no row;
* among the benchmark's users, an attribute has a **group of one person** (it would single
  that person out, and a one-person group has no spread to measure) or only one group
  (nothing to compare);
* a column is named like a built-in attribute (``activity``, ``context`` or a trait).

**Per-window attributes** need no table: ``activity`` (the true class of each window) and
``context`` (the available-context test split or an unseen context).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crop.errors import CropError

MAX_BYTES = 10 * 2**20
MAX_LABEL = 100
WINDOW_ATTRIBUTES = ("activity", "context")


@dataclass(frozen=True)
class PersonAttributes:
    """Per-person attributes: ``groups[attribute][user]`` is that user's group.

    ``order[attribute]`` lists the groups in display order; ``notes[attribute]`` says how the
    attribute was obtained; ``values[attribute][user]`` holds the measured value of a computed
    trait (absent for attributes read from a table)."""

    groups: dict[str, dict[int, str]]
    order: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[int, float]] = field(default_factory=dict)

    def merged(self, other: PersonAttributes) -> PersonAttributes:
        clash = sorted(set(self.groups) & set(other.groups))
        if clash:
            raise CropError(f"attribute(s) {clash} defined twice")
        return PersonAttributes(
            {**self.groups, **other.groups},
            {**self.order, **other.order},
            {**self.notes, **other.notes},
            {**self.values, **other.values},
        )


def _rows_from_csv(text: str, path: Path) -> list[dict[str, str]]:
    try:
        reader = csv.reader(io.StringIO(text))
        rows = [r for r in reader if any(cell.strip() for cell in r)]
    except csv.Error as exc:
        raise CropError(f"{path}: not readable as CSV ({exc})") from None
    if not rows:
        raise CropError(f"{path}: empty attribute table")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise CropError(f"{path}: the header row has empty or repeated column names: {header}")
    if "user" not in header:
        raise CropError(f"{path}: missing column 'user' (the user id of each row); columns: {header}")
    if len(header) < 2:
        raise CropError(f"{path}: no attribute column besides 'user'")
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) > len(header):
            raise CropError(f"{path}: line {number} has {len(row)} cells, the header {len(header)}")
        cells = [c.strip() for c in row] + [""] * (len(header) - len(row))
        out.append({h: c for h, c in zip(header, cells, strict=True) if c != ""} | {"__line": f"line {number}"})
    return [{"__columns": ",".join(header), **r} for r in out]


def _rows_from_json(text: str, path: Path) -> list[dict[str, str]]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CropError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(raw, dict):
        items = []
        for key, value in raw.items():
            if not isinstance(value, dict):
                raise CropError(f"{path}: the entry of user {key!r} must be an object of attribute: group")
            if "user" in value:
                raise CropError(f"{path}: the entry of user {key!r} repeats the user id inside")
            items.append({"user": key, **value})
    elif isinstance(raw, list):
        items = raw
        if any(not isinstance(v, dict) for v in items):
            raise CropError(f"{path}: a list of objects with a 'user' key expected")
    else:
        raise CropError(f"{path}: expected an object keyed by user id or a list of objects")
    if not items:
        raise CropError(f"{path}: empty attribute table")
    columns: list[str] = []
    for item in items:
        for key in item:
            if key not in columns:
                columns.append(str(key))
    if "user" not in columns:
        raise CropError(f"{path}: missing column 'user' (the user id of each entry)")
    if len(columns) < 2:
        raise CropError(f"{path}: no attribute besides 'user'")
    rows = []
    for i, item in enumerate(items, start=1):
        row = {}
        for key, value in item.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
                who = item.get("user", f"entry {i}")
                raise CropError(f"{path}: user {who}: {key!r} must be a non-empty text or number, got {value!r}")
            row[str(key)] = str(value).strip()
        rows.append({"__columns": ",".join(columns), "__line": f"entry {i}", **row})
    return rows


def read_attribute_table(path: str | Path) -> dict[int, dict[str, str]]:
    """``{user: {attribute: group}}`` from a CSV or JSON table (format checks only)."""
    path = Path(path)
    if not path.exists():
        raise CropError(f"attributes file not found: {path}")
    if not path.is_file():
        raise CropError(f"attributes file {path} is not a regular file")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CropError(f"{path}: {size} bytes; an attribute table is at most {MAX_BYTES} bytes")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CropError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise CropError(f"cannot read {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _rows_from_csv(text, path)
    elif suffix == ".json":
        rows = _rows_from_json(text, path)
    else:
        raise CropError(f"{path}: an attribute table must be a .csv or .json file")
    table: dict[int, dict[str, str]] = {}
    for row in rows:
        columns = row.pop("__columns").split(",")
        where = row.pop("__line")
        if "user" not in row:
            raise CropError(f"{path}: {where}: missing column 'user'")
        text_id = row.pop("user")
        try:
            user = int(text_id)
        except ValueError:
            raise CropError(f"{path}: {where}: user {text_id!r} is not an integer user id") from None
        if user in table:
            raise CropError(f"{path}: user {user} has two rows")
        missing = [c for c in columns if c != "user" and c not in row]
        if missing:
            raise CropError(f"{path}: user {user}: missing column {missing[0]!r} (every row needs every attribute)")
        for name, value in row.items():
            if len(value) > MAX_LABEL or len(name) > MAX_LABEL:
                raise CropError(f"{path}: user {user}: attribute names and groups are at most {MAX_LABEL} characters")
        table[user] = row
    return table


def load_attributes(
    path: str | Path,
    *,
    users: Iterable[int],
    known_users: Sequence[int],
    reserved: Iterable[str] = (),
    dataset: str = "hapt",
) -> PersonAttributes:
    """Read and check the attribute table at ``path`` for the benchmark's ``users``.

    ``known_users``: every user id of the dataset (others are unknown users); ``reserved``:
    names of built-in attributes a column may not take. Raises :class:`CropError` (module
    docstring)."""
    path = Path(path)
    table = read_attribute_table(path)
    unknown = sorted(u for u in table if u not in known_users)
    if unknown:
        span = f"{min(known_users)}-{max(known_users)}" if known_users else "none"
        raise CropError(f"{path}: unknown user {unknown[0]} ({dataset} users are {span})")
    users = sorted(set(users))
    absent = [u for u in users if u not in table]
    if absent:
        raise CropError(f"{path}: no row for user(s) {absent} of the benchmark")
    names = sorted({k for row in table.values() for k in row})
    taken = sorted(set(names) & (set(reserved) | set(WINDOW_ATTRIBUTES)))
    if taken:
        raise CropError(f"{path}: column {taken[0]!r} is the name of a built-in attribute; rename it")
    groups: dict[str, dict[int, str]] = {}
    order: dict[str, list[str]] = {}
    for name in names:
        mapping = {u: table[u][name] for u in users}
        check_groups(mapping, name, str(path))
        groups[name] = mapping
        order[name] = sorted(set(mapping.values()))
    notes = {name: f"from {path.name}" for name in names}
    return PersonAttributes(groups, order, notes)


def check_groups(mapping: dict[int, str], name: str, where: str) -> None:
    """Every group of ``name`` holds at least two of the people, and there are two groups."""
    members: dict[str, list[int]] = {}
    for user, group in mapping.items():
        members.setdefault(group, []).append(user)
    single = sorted((g, m[0]) for g, m in members.items() if len(m) == 1)
    if single:
        group, user = single[0]
        raise CropError(
            f"{where}: attribute {name!r}: group {group!r} has one person (user {user}) among the benchmark's users; "
            "a group of one person singles them out and has no spread: merge it with another group"
        )
    if len(members) < 2:
        raise CropError(
            f"{where}: attribute {name!r} has a single group among the benchmark's users: nothing to compare"
        )

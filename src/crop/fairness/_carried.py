"""Per-person attributes that a dataset's own files carry (``DatasetData.attributes``).

The WESAD-style stress dataset keeps each subject's readme (``S<k>_readme.txt``): age, gender,
dominant hand, height and weight (:mod:`crop.data.datasets.stress`). ``crop fairness`` groups
the people of a benchmark by them without any table from the user:

* **text values** (gender, dominant hand) are the groups, lower-cased;
* **numbers** (age in years, height in cm, weight in kg) are cut into three bands of (nearly)
  equal size by rank across the benchmark's people, ``low`` / ``mid`` / ``high``, as the HAPT
  traits are (:func:`crop.fairness._traits.rank_terciles`; ties at a cut split by user id); the
  note of the attribute gives each band's range. Bands need at least six people.

An attribute is **left out, with a note saying why**, when a person of the benchmark lacks it,
when it would form a group of one person among the benchmark's people (it would single that
person out, and one person has no spread to measure), or when everyone shares one group. A table
given with ``--attributes`` is refused for the same reasons (:mod:`crop.fairness._attributes`);
carried attributes are not the user's choice, so they are dropped instead of stopping the audit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from crop.fairness._attributes import PersonAttributes
from crop.fairness._traits import MIN_PEOPLE, rank_terciles

BANDS = ("low", "mid", "high")
UNITS = {"age": "years", "height_cm": "cm", "weight_kg": "kg"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def carried_attributes(
    carried: Mapping[Any, Mapping[str, Any]], users: Iterable[Any], source: str = "the dataset's files"
) -> tuple[PersonAttributes, list[str]]:
    """Groups of the benchmark's ``users`` by each attribute in ``carried`` (``{user: {name:
    value}}``), and one note per attribute left out (module docstring)."""
    users = sorted(set(users), key=str)
    names = sorted({name for u in users for name in carried.get(u, {})})
    groups: dict[str, dict[Any, str]] = {}
    order: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    values: dict[str, dict[Any, float]] = {}
    skipped: list[str] = []
    for name in names:
        raw = {u: carried.get(u, {}).get(name) for u in users}
        lacking = [u for u, v in raw.items() if v is None or (isinstance(v, str) and not v.strip())]
        if lacking:
            skipped.append(f"{name} (from {source}): left out, not given for user(s) {lacking}")
            continue
        numbers = {u: _number(v) for u, v in raw.items()}
        if all(v is not None for v in numbers.values()):
            if len(users) < MIN_PEOPLE:
                skipped.append(f"{name} (from {source}): left out, bands need at least {MIN_PEOPLE} people")
                continue
            by_user = {u: float(v) for u, v in numbers.items() if v is not None}
            mapping = rank_terciles(by_user, BANDS)
            ranges = []
            for band in BANDS:
                members = [by_user[u] for u, b in mapping.items() if b == band]
                ranges.append(f"{band} {min(members):g}-{max(members):g}")
            unit = f" ({UNITS[name]})" if name in UNITS else ""
            note = f"{name}{unit} from {source}, terciles by rank across the people: " + ", ".join(ranges)
            values[name] = by_user
            band_order = list(BANDS)
        else:
            mapping = {u: str(v).strip().lower() for u, v in raw.items()}
            note = f"{name} from {source}"
            band_order = sorted(set(mapping.values()))
        members: dict[str, list[Any]] = {}
        for u, g in mapping.items():
            members.setdefault(g, []).append(u)
        single = sorted((g, m[0]) for g, m in members.items() if len(m) == 1)
        if single:
            skipped.append(f"{name} (from {source}): left out, group {single[0][0]!r} would hold one person")
            values.pop(name, None)
            continue
        if len(members) < 2:
            skipped.append(f"{name} (from {source}): left out, every person is in one group")
            values.pop(name, None)
            continue
        groups[name] = mapping
        order[name] = band_order
        notes[name] = note
    return PersonAttributes(groups, order, notes, values), skipped

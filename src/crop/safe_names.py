"""File names made from data: one rule, and every such file checked to stay in its directory.

Some of crop's outputs are named after strings it read: ``robustness-<scenario>.png``,
``fairness/tables/<scenario>-groups-<attribute>.csv``, ``fairness/group-gains-<scenario>.png``,
``analysis/<scenario>/user<u>-seed<s>-<method>/``, ``<model directory>.html`` of ``crop card
--out``. Those strings come from files anyone can edit (``results.jsonl``, ``bench.json``, an
``--attributes`` table, directory names), so they may hold ``/``, ``..``, NUL, control
characters or ten thousand characters, or differ from another only in case or punctuation.
Used as they are, they would write outside the output directory (path traversal) or make two
outputs share one file.

**The rule** (:func:`name_part`) maps a string to one file-name part:

1. a *plain* string is kept as it is: lowercase ASCII letters and digits in runs joined by
   single ``-``, ``_`` or ``.`` (no leading, trailing or doubled separator), at most 64
   characters, not ending in ``-<digits>``: ``crop``, ``wise-ft``, ``generic_accuracy``,
   ``dead-gyro``;
2. a scenario ``<plain>:<digits>`` (at most 6 digits) becomes ``<plain>-<digits>``:
   ``hapt-session:1`` -> ``hapt-session-1``;
3. anything else becomes a slug, ``--`` and the first 10 hex digits of the SHA-256 of the
   string (its UTF-8 bytes; an undecodable byte of a file name as that byte): the slug keeps
   lowercase ASCII letters and digits, turns every other run into one ``-`` and is cut to 40
   characters (``x`` when nothing is left). ``Hand`` -> ``hand--<hash>``, ``/../../x`` ->
   ``x--<hash>``, ``hapt-session-1`` -> ``hapt-session-1--<hash>``.

The three kinds cannot meet: only kind 3 holds ``--``, only kind 2 ends in ``-<digits>``
without one, and kind 2 is undone by splitting at its last ``-``. So two different strings
get two different names (up to a 40-bit hash collision), names are lowercase ASCII (no two
differ only in case, on any file system) and at most 64 characters, and no name is ``.``,
``..``, hidden, or holds a separator.

Every path built from such parts goes through :func:`inside`, which refuses, with a one-line
:class:`~crop.errors.CropError`, a name that is not one plain component or a path that resolves
outside its directory (a symbolic link on the way). A writer that names several files from
several strings (``<scenario>-groups-<attribute>``) checks with :func:`distinct` that no two
different sources share one file before it writes anything.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from crop.errors import CropError

MAX_PLAIN = 64
MAX_SLUG = 40
HASH_DIGITS = 10
_PLAIN = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
_ENDS_IN_NUMBER = re.compile(r".*-[0-9]+")
_SCENARIO = re.compile(r"(?P<name>[a-z0-9]+(?:[-_.][a-z0-9]+)*):(?P<number>[0-9]{1,6})")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _digest(text: str) -> str:
    try:
        data = text.encode("utf-8", "surrogateescape")  # a non-UTF-8 file name: its own bytes
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:HASH_DIGITS]


def _plain(text: str) -> bool:
    return len(text) <= MAX_PLAIN and bool(_PLAIN.fullmatch(text)) and not _ENDS_IN_NUMBER.fullmatch(text)


def name_part(value: Any) -> str:
    """The file-name part of ``value`` (a string, or anything with ``str``) by the module's rule.

    >>> name_part("crop"), name_part("hapt-session:1")
    ('crop', 'hapt-session-1')
    >>> name_part("/../../x")[:3]
    'x--'
    """
    text = value if isinstance(value, str) else str(value)
    if _plain(text):
        return text
    scenario = _SCENARIO.fullmatch(text)
    if scenario and len(text) <= MAX_PLAIN:
        return f"{scenario['name']}-{scenario['number']}"
    slug = _NOT_SLUG.sub("-", text.lower()).strip("-")[:MAX_SLUG].strip("-") or "x"
    return f"{slug}--{_digest(text)}"


def file_name(*parts: Any, suffix: str = "") -> str:
    """``parts`` through :func:`name_part`, joined by ``-``, then ``suffix`` (crop's own, such as
    ``.png``): ``file_name("robustness", "hapt-session:1", suffix=".png")`` is
    ``robustness-hapt-session-1.png``."""
    return "-".join(name_part(p) for p in parts) + suffix


def inside(directory: str | Path, name: str) -> Path:
    """``directory / name``, where ``name`` must be one plain path component (no separator, NUL,
    ``.`` or ``..``, at most 255 bytes) and the path must resolve inside ``directory`` (no
    symbolic link leading out). Anything else is a one-line :class:`CropError`: the name was not
    made by :func:`file_name`."""
    directory = Path(directory)
    shown = name.encode("unicode_escape").decode("ascii")
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name or len(os.fsencode(name)) > 255:
        raise CropError(f"refusing to write {shown!r} under {directory}: not a plain file name")
    path = directory / name
    base = os.path.realpath(directory)
    if os.path.dirname(os.path.realpath(path)) != base:
        raise CropError(f"refusing to write {path}: it resolves outside {directory}")
    return path


def data_path(directory: str | Path, *parts: Any, suffix: str = "") -> Path:
    """:func:`inside` of :func:`file_name`: the one way to name a file after data."""
    return inside(directory, file_name(*parts, suffix=suffix))


def distinct(named: Iterable[tuple[Any, Path]], what: str = "outputs") -> None:
    """Refuse (one-line :class:`CropError`) when two different sources map to one path; call it
    with every ``(source, path)`` a writer is about to write, before the first write."""
    seen: dict[Path, Any] = {}
    for source, path in named:
        if path in seen and seen[path] != source:
            raise CropError(
                f"{what} {seen[path]!r} and {source!r} would both be written to {path.name}; rename one of them"
            )
        seen.setdefault(path, source)

"""The user documentation that ships inside the package: ``crop docs [TOPIC]``.

The repository's ``docs/*.md`` are the source; ``src/crop/docs`` is a link to that directory,
so an editable install reads them in place and a wheel carries them as package data
(``crop/docs/*.md``, pyproject's ``[tool.setuptools.package-data]``). A topic is a file's name
without ``.md`` (``DATASETS`` for ``docs/DATASETS.md``), matched without regard to case; help
and error texts point to a topic as ``crop docs DATASETS``.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from crop.errors import CropError

if TYPE_CHECKING:
    from importlib.abc import Traversable


def _docs() -> Traversable:
    return resources.files("crop").joinpath("docs")


def topics() -> dict[str, Traversable]:
    """Every topic, sorted by name: ``{"ANALYSIS": <docs/ANALYSIS.md>, ...}`` (empty when the
    package was installed without its documentation)."""
    root = _docs()
    if not root.is_dir():
        return {}
    found = {entry.name[: -len(".md")]: entry for entry in root.iterdir() if entry.name.endswith(".md")}
    return {name: found[name] for name in sorted(found) if name and found[name].is_file()}


def title(entry: Traversable) -> str:
    """The first Markdown heading of a topic's file (without its ``#``), else ``""``."""
    with entry.open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return ""


def find(topic: str) -> Traversable:
    """The file of ``topic`` (``DATASETS``, ``datasets`` or ``DATASETS.md``), or a
    :class:`CropError` naming every topic."""
    known = topics()
    if not known:
        raise CropError("this installation of crop has no documentation files (crop/docs/*.md)")
    key = topic.strip()
    if key.lower().endswith(".md"):
        key = key[: -len(".md")]
    for name, entry in known.items():
        if key and name.lower() == key.lower():
            return entry
    shown = repr(topic) if len(topic) <= 60 else repr(topic[:57]) + "..."
    raise CropError(f"unknown documentation topic {shown}; topics: {', '.join(known)}")


def read(topic: str) -> str:
    """The Markdown text of ``topic``."""
    return find(topic).read_text(encoding="utf-8")

"""Read a TOML config file (``--config``) with its size and shape checked before it is parsed.

``tomllib`` has no limits of its own: a key of 100 000 dotted parts costs it minutes and
gigabytes (its work grows with the square of the key), a value nested 1000 deep overflows
Python's stack, an integer of 4300 digits is a ``ValueError`` of the ``int`` type. A method
config is a few tables of short ``key = value`` lines, so :func:`read_toml` refuses, in one
line and before ``tomllib`` sees the text, anything far outside that:

=====================  =========================================================================
:data:`MAX_BYTES`      64 KiB of file (every field of every registered method takes about 23 KiB)
:data:`MAX_LINE`       1000 characters per line
:data:`MAX_DEPTH`      32 levels of nesting: arrays and inline tables inside each other, and the
                       parts of one dotted key or table header (``[crop.initial]`` is 2)
=====================  =========================================================================

These are checked on the raw text by a small scanner that skips strings and comments; any error
``tomllib`` still finds (including an integer of more than 4300 digits) is one line too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import tomllib

from crop.errors import CropError

MAX_BYTES = 64 * 1024
MAX_LINE = 1000
MAX_DEPTH = 32


def _string_end(text: str, i: int) -> int:
    """Index just past the string that starts at ``text[i]`` (a quote); the end of the line for
    an unterminated one-line string (``tomllib`` reports it)."""
    for quote in ('"""', "'''"):
        if text.startswith(quote, i):
            j = i + 3
            while True:
                k = text.find(quote, j)
                if k < 0:
                    return len(text)
                if quote == '"""' and _escaped(text, k):
                    j = k + 1
                    continue
                return k + 3
    quote = text[i]
    j = i + 1
    while j < len(text) and text[j] != "\n":
        if text[j] == "\\" and quote == '"':
            j += 2
            continue
        if text[j] == quote:
            return j + 1
        j += 1
    return j


def _escaped(text: str, k: int) -> bool:
    n = 0
    while k - n - 1 >= 0 and text[k - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def check_toml_text(text: str, where: str) -> None:
    """Refuse (one line) a TOML text with a line longer than :data:`MAX_LINE` characters or
    nested deeper than :data:`MAX_DEPTH` (module docstring), before it is parsed."""
    for number, line in enumerate(text.split("\n"), start=1):
        if len(line) > MAX_LINE:
            raise CropError(f"{where}: line {number} has {len(line)} characters; a config line has at most {MAX_LINE}")
    depth = 0
    parts = 0  # parts of the dotted key (or table header) being read; 0 outside a key
    statement = True  # at the start of a statement: the next non-blank character begins a key or header
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            i = _string_end(text, i)
            statement = False
            continue
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "\n":
            statement, parts = depth == 0, 0
            i += 1
            continue
        if c in " \t\r":
            i += 1
            continue
        if statement:
            statement, parts = False, 1
        if parts and c == ".":
            parts += 1
        elif parts and c == "=":
            parts = 0
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        if depth > MAX_DEPTH or parts > MAX_DEPTH:
            line = text.count("\n", 0, i) + 1
            raise CropError(f"{where}: line {line} nests deeper than {MAX_DEPTH} levels (arrays, tables, dotted keys)")
        i += 1


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML file ``path``; a missing, oversized, non-UTF-8, too deeply nested or
    invalid file is one line (:class:`CropError`) naming it. The size is checked before the file
    is read, the shape (:func:`check_toml_text`) before it is parsed."""
    path = Path(path)
    if not path.is_file():
        raise CropError(f"config file not found: {path}")
    try:
        with path.open("rb") as f:
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode) and os.fstat(f.fileno()).st_size > MAX_BYTES:
                raise CropError(f"{path}: {os.fstat(f.fileno()).st_size} bytes; a config file has at most {MAX_BYTES}")
            blob = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CropError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(blob) > MAX_BYTES:
        raise CropError(f"{path}: more than {MAX_BYTES} bytes; a config file has at most {MAX_BYTES}")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CropError(f"{path}: not valid TOML (not UTF-8 text: {exc.reason} at byte {exc.start})") from None
    check_toml_text(text, str(path))
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError; so is int()'s digit limit
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CropError(f"{path}: not valid TOML ({first[:200]})") from None

"""Environment variables, validated like command-line options (one-line errors).

* ``CROP_THREADS``: torch CPU threads, an integer in ``[1, 256]`` (default 1);
* ``CROP_CACHE_DIR``: cache directory (HAPT arrays, generic fold models, searches): an existing
  writable directory or a new path under one;
* ``CROP_HAPT_FILE``: the HAPT recordings, a regular gzip file (``HAPT.pkl.gz``);
* ``CROP_DEBUG``: any non-empty value shows tracebacks of internal errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from crop.errors import CropError
from crop.validate import MAX_THREADS


def threads(default: int = 1) -> int:
    """``CROP_THREADS`` as an integer in ``[1, MAX_THREADS]``."""
    raw = os.environ.get("CROP_THREADS")
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise CropError(f"CROP_THREADS={raw!r} is not allowed: must be an integer in [1, {MAX_THREADS}]") from None
    if not 1 <= value <= MAX_THREADS:
        raise CropError(f"CROP_THREADS={raw!r} is not allowed: must be an integer in [1, {MAX_THREADS}]")
    return value


def cache_dir_override() -> Path | None:
    """``CROP_CACHE_DIR`` if set, checked: a writable directory, or a new path under one."""
    raw = os.environ.get("CROP_CACHE_DIR")
    if raw is None:
        return None
    if not raw.strip() or "\0" in raw:
        raise CropError(f"CROP_CACHE_DIR={raw!r} is not allowed: give a directory path")
    path = Path(raw)
    if os.path.lexists(path) and not path.is_dir():
        raise CropError(f"CROP_CACHE_DIR={raw!r} is not a directory")
    existing = next(p for p in [path, *path.parents, Path(".")] if os.path.lexists(p))
    if not existing.is_dir():
        raise CropError(f"CROP_CACHE_DIR={raw!r}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CropError(f"CROP_CACHE_DIR={raw!r}: {existing} is not writable")
    return path


def hapt_file_override() -> Path | None:
    """``CROP_HAPT_FILE`` if set, checked: an existing regular file that starts like gzip."""
    raw = os.environ.get("CROP_HAPT_FILE")
    if raw is None:
        return None
    if not raw.strip() or "\0" in raw:
        raise CropError(f"CROP_HAPT_FILE={raw!r} is not allowed: give the path of HAPT.pkl.gz")
    path = Path(raw)
    if not path.is_file():
        raise CropError(f"CROP_HAPT_FILE points to a missing file (or not a regular file): {path}")
    try:
        with path.open("rb") as f:
            magic = f.read(2)
    except OSError as exc:
        raise CropError(f"CROP_HAPT_FILE {path}: cannot read ({exc.strerror or exc})") from None
    if magic != b"\x1f\x8b":
        raise CropError(f"CROP_HAPT_FILE {path}: not a gzip file (expected HAPT.pkl.gz)")
    return path


def check_all() -> int:
    """Validate every ``CROP_*`` variable (the CLI does this before any command); returns the threads."""
    cache_dir_override()
    hapt_file_override()
    return threads()

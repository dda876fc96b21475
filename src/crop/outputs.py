"""Where ``crop`` may write: output paths are checked before any work starts.

An atomic write (:func:`crop.report.files.publish`) replaces its target with ``os.replace``,
which would as happily replace a device node, a FIFO, a symbolic link (the link itself) or a
socket. So a target must be a regular file or not exist yet; anything else is refused with a
one-line :class:`~crop.errors.CropError` and left untouched. Output options are checked the
same way up front: a command whose ``--out`` is a directory needs a directory or a new path; a
command whose ``--out`` is a file needs a regular file or a new path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from crop.errors import CropError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_write_target(path: str | Path) -> Path:
    """``path`` is a regular file (not a link) or does not exist; else a one-line error."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise CropError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise CropError(f"refusing to write {path}: it is {_kind(mode)}, not a regular file")
    return path


def _text(value: str | Path | None, option: str) -> Path:
    text = str(value) if isinstance(value, Path) else value
    if text is None or not text.strip():
        raise CropError(f"{option}: empty path")
    if "\0" in text:
        raise CropError(f"{option}: the path contains a NUL character")
    return Path(text)


def _nearest_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if os.path.lexists(parent):
            return parent
    return Path(".")


def _writable_dir(path: Path, option: str, shown: Path) -> None:
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise CropError(f"{option} {shown}: {existing} is {_kind(os.lstat(existing).st_mode)}, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CropError(f"{option} {shown}: directory {existing} is not writable")


def check_out_dir(value: str | Path | None, option: str = "--out", files: Iterable[str] = ()) -> Path:
    """An output directory: an existing directory (a link to one is fine) or a new path whose
    nearest existing ancestor is a writable directory. ``files`` (names inside it) must be
    regular files or absent."""
    path = _text(value, option)
    if os.path.lexists(path) and not path.is_dir():
        raise CropError(f"{option} {path} is {_kind(os.lstat(path).st_mode)}; give a directory or a new path")
    _writable_dir(path, option, path)
    for name in files:
        check_write_target(path / name)
    return path


def check_out_file(value: str | Path | None, option: str = "--out") -> Path:
    """An output file: a regular file or a new path in a writable directory."""
    path = _text(value, option)
    if path.name in ("", ".", ".."):
        raise CropError(f"{option} {path}: give a file path")
    check_write_target(path)
    _writable_dir(path.parent, option, path)
    return path


def check_input_dir(value: str | Path | None, option: str) -> Path:
    """An existing directory to read (``crop report DIR``)."""
    path = _text(value, option)
    if not path.is_dir():
        what = _kind(os.lstat(path).st_mode) if os.path.lexists(path) else "missing"
        raise CropError(f"{option} {path}: not a directory ({what})")
    return path

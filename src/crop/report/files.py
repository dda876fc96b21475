"""Atomic file writes: a reader never sees a half-written output, and a failed or interrupted
write leaves nothing behind (:func:`atomic_target`, the one way crop writes an output file)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crop.dirlock import temporary_name
from crop.errors import CropError
from crop.outputs import check_write_target


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, for a moment, for every
    thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Move a finished temporary file into place with the usual permissions (safetensors writes
    its files owner-only). On failure the temporary file is removed and a :class:`CropError`
    names the target. Only a regular file is ever replaced: a directory, device node, FIFO,
    socket or symbolic link at ``path`` is refused and left untouched."""
    try:
        check_write_target(path)
    except CropError:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        if Path(path).is_dir():
            raise IsADirectoryError(f"{path} is a directory")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CropError(f"cannot write {path}: {exc.strerror or exc}") from None
    return Path(path)


@contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; when the block ends, the
    temporary replaces ``path`` (:func:`publish`).

    If the block fails or is interrupted, the temporary is removed and ``path`` is left as it
    was; an :class:`OSError` (a full disk, a file-size limit...) becomes a one-line
    :class:`CropError` that names ``path``. SIGINT and SIGTERM are held back until the block
    and the rename are done (:func:`crop.interrupts.signals_held`): an interrupt never leaves a
    temporary behind. The temporary keeps ``path``'s suffixes (:func:`crop.dirlock.temporary_name`) for writers
    that choose a format by them."""
    from crop.interrupts import signals_held

    path = check_write_target(path)
    tmp = path.with_name(temporary_name(path.name))
    with signals_held():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)  # never write through a link left at the temporary name
            yield tmp
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise CropError(f"cannot write {path}: {exc.strerror or exc}") from None
            raise
        publish(tmp, path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file (:func:`atomic_target`): a reader
    never sees a half-written file, a failed write leaves nothing behind, and only a regular
    file is ever replaced."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_bytes_atomic` of ``text`` as UTF-8. A lone surrogate (a byte of a non-UTF-8
    file name that reached the text) is written as its backslash escape (``\\udcff``): the file
    stays valid UTF-8 and the write never fails on it."""
    return write_bytes_atomic(path, text.encode("utf-8", "backslashreplace"))

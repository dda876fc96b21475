"""One writer per output directory, bound to the directory itself rather than to its path.

``crop bench`` / ``crop demo`` (a results directory) and ``crop personalize`` / ``crop tune`` (a
model directory) hold an exclusive ``flock`` on their output directory for the whole run; a
second run on the same directory is refused at once with one line (:class:`DirectoryLock`).

A lock taken through a path binds to the directory the path named when it was opened. If that
directory is renamed, deleted or replaced while the run goes on, the path names something else
or nothing; another run may then create and lock a new directory there, and a writer that kept
using the path would recreate the directory or write into the other run's one. So every write of
a locked run goes through its :class:`DirectoryLock`, which guarantees two things:

* before every write, :meth:`DirectoryLock.check` compares the directory the path names now
  with the held one (``st_dev`` and ``st_ino``) and stops the run with a one-line
  :class:`~crop.errors.CropError` when they differ: a run never recreates a directory that
  vanished under it, and never writes into a directory that may be another run's;
* the files are opened relative to the held directory's descriptor (``dir_fd``), so a rename
  that falls between the check and the write still lands in the locked directory, never
  elsewhere.

No lock file is created: the lock is on the directory itself, and the kernel releases it when
the descriptor closes, also when the process is killed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from crop.errors import CropError
from crop.interrupts import signals_held


def temporary_name(name: str, pid: int | None = None) -> str:
    """The hidden temporary a process writes before it renames it to ``name``:
    ``.model.tmp<pid>.safetensors`` for ``model.safetensors`` (the suffix kept, for writers that
    pick a format by it)."""
    stem, dot, suffix = name.partition(".") if not name.startswith(".") else (name, "", "")
    return f".{stem}.tmp{os.getpid() if pid is None else pid}{dot}{suffix}"


def _is_temporary_of(entry: str, name: str) -> bool:
    stem, dot, suffix = name.partition(".")
    return re.fullmatch(rf"\.{re.escape(stem)}\.tmp\d+{re.escape(dot + suffix)}", entry) is not None


class DirectoryLock:
    """An exclusive ``flock`` on the directory ``path``, and the only way a locked run writes there.

    Use as a context manager (``with DirectoryLock(out, "results directory") as lock``): entering
    opens and locks the directory, or raises a one-line :class:`CropError` at once if another run
    holds it; leaving releases it. ``what`` names the directory in messages. Files are named by
    their plain name inside the directory (no ``/``)."""

    def __init__(self, path: str | Path, what: str = "output directory") -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None

    # ------------------------------------------------------------------------------ lock

    def __enter__(self) -> DirectoryLock:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise CropError(f"cannot open the {self.what} {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CropError(
                    f"{self.path} is in use by another crop run (it holds the {self.what}'s lock); "
                    "wait for it to finish or use another --out"
                ) from None
            raise CropError(f"cannot lock the {self.what} {self.path}: {exc.strerror or exc}") from None
        st = os.fstat(fd)
        self._fd, self._identity = fd, (st.st_dev, st.st_ino)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"the {self.what} {self.path} is not locked")
        return self._fd

    def check(self) -> None:
        """The path still names the locked directory; else a one-line error (the run stops and
        recreates nothing)."""
        self.fd  # noqa: B018 - raises when not held
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise CropError(
                f"the {self.what} {self.path} was deleted or moved away while this run was writing it; "
                "stopping without recreating it"
            ) from None
        except OSError as exc:
            raise CropError(f"cannot check the {self.what} {self.path}: {exc.strerror or exc}") from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise CropError(
                f"{self.path} is no longer the {self.what} this run locked (it was moved, deleted or replaced "
                "while the run was writing it); stopping without writing into another directory"
            )

    # ------------------------------------------------------------------------------ files

    def _name(self, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"a plain file name inside the directory expected, got {name!r}")
        return name

    def _cannot(self, name: str, exc: OSError) -> CropError:
        return CropError(f"cannot write {self.path / name}: {exc.strerror or exc}")

    def _regular_or_absent(self, name: str) -> bool:
        """Whether ``name`` exists; a one-line error unless it is a regular file (never a link,
        device, FIFO, socket or directory: those are left untouched)."""
        try:
            mode = os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._cannot(name, exc) from None
        if not stat.S_ISREG(mode):
            from crop.outputs import _kind

            raise CropError(f"refusing to write {self.path / name}: it is {_kind(mode)}, not a regular file")
        return True

    def open(self, name: str, flags: int, mode: int = 0o644) -> int:
        """A descriptor of the regular file ``name`` in the locked directory (after :meth:`check`;
        links are not followed)."""
        name = self._name(name)
        self.check()
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        except OSError as exc:
            raise self._cannot(name, exc) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise CropError(f"refusing to write {self.path / name}: not a regular file")
        return fd

    def append(self, name: str, data: bytes, *, sync: bool = False) -> None:
        """Append ``data`` to ``name`` (created if absent) with one ``write``; ``sync``: fsync
        before returning. An I/O error (a full disk...) is a one-line error naming the file."""
        fd = self.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        except OSError as exc:
            raise self._cannot(name, exc) from None
        finally:
            os.close(fd)

    def truncate(self, name: str, size: int) -> None:
        """Cut ``name`` to ``size`` bytes (a resumed run removing a crash tail)."""
        fd = self.open(name, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            raise self._cannot(name, exc) from None
        finally:
            os.close(fd)

    def replace_files(self, files: Mapping[str, bytes | None]) -> None:
        """Replace the files of ``files`` as one step, as far as a file system allows.

        Every file is first staged as a hidden temporary in the locked directory (and fsynced);
        only when all are written does :meth:`check` run again and the temporaries are renamed
        into place, in the order of ``files``; ``None`` removes that file. SIGINT and SIGTERM
        are held back meanwhile (:func:`~crop.interrupts.signals_held`), and a failure (a full
        disk...) removes the temporaries and leaves every existing file as it was. Each rename is
        atomic, the sequence is not: a SIGKILL or power cut between two renames can leave some
        files replaced, which is why :mod:`crop.models.directory` binds its files together by
        their SHA-256. Only regular files are ever replaced or removed."""
        names = [self._name(n) for n in files]
        self.check()
        for name in names:
            self._regular_or_absent(name)
        self._remove_stale_temporaries(names)
        staged: dict[str, str] = {}
        with signals_held():
            try:
                for name, data in files.items():
                    if data is not None:
                        staged[name] = temporary_name(name)
                        self._stage(staged[name], data, name)
                self.check()
                for name, data in files.items():
                    try:
                        if data is None:
                            if self._regular_or_absent(name):
                                os.unlink(name, dir_fd=self.fd)
                        else:
                            os.replace(staged[name], name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
                            del staged[name]
                    except OSError as exc:
                        raise self._cannot(name, exc) from None
            finally:
                for tmp in staged.values():
                    with _ignored():
                        os.unlink(tmp, dir_fd=self.fd)

    def _remove_stale_temporaries(self, names: list[str]) -> None:
        """Temporaries of ``names`` that a killed run left behind (SIGKILL skips every clean-up).
        Only runs holding this lock write them, so none of them is in use."""
        try:
            entries = os.listdir(self.fd)
        except OSError:
            return
        for entry in entries:
            if entry.startswith(".") and any(_is_temporary_of(entry, name) for name in names):
                with _ignored():
                    if stat.S_ISREG(os.stat(entry, dir_fd=self.fd, follow_symlinks=False).st_mode):
                        os.unlink(entry, dir_fd=self.fd)

    def _stage(self, tmp: str, data: bytes, name: str) -> None:
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=self.fd
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._cannot(name, exc) from None


@contextmanager
def _ignored() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass

"""How the ``crop`` command ends when it is told to stop: Ctrl-C (SIGINT) and SIGTERM.

* Ctrl-C at any moment, from the first imports on, ends with one line ``crop: interrupted`` on
  stderr and exit code 130; SIGTERM with ``crop: terminated`` and exit code 143 (128 + the
  signal's number, the shell's convention). No traceback.
* **Start-up** (:mod:`crop.__main__` installs the handlers before anything heavy is imported;
  ``import crop`` imports nothing heavy): nothing has been written yet, so the handler prints
  the line and ends the process at once. It must not raise there: an exception raised inside
  torch's initialisation aborts the interpreter with a C++ ``terminate`` and a page of frames.
* **Once the command runs** (:func:`unwind`), a stop unwinds the stack instead
  (:class:`KeyboardInterrupt`, :class:`Terminated`), so nothing is left half-written: atomic
  writers remove their temporary files, a model directory's staged files are removed, worker
  pools are stopped (:mod:`crop.workers`), locks are released. A stop that arrives while a
  module is being imported (scipy, matplotlib... are imported on first use) is delivered again
  50 ms later, until it falls outside the import: an interrupted import can leave a library
  half-initialised. The few renames that publish a model directory hold both signals back
  until they are done (:func:`crop.dirlock.signals_held`).
* The handling is the command's: importing crop as a library changes no signal handling, and
  a signal an embedding program has set to anything but the default is left alone.

Outside crop's reach are the first few tens of milliseconds of the interpreter's own start-up,
before any crop code runs, and the last moments of its tear-down after the command has finished
and flushed its output: Python's defaults hold there, and a signal ends the process by the
signal itself, silently (the shell reports 130 / 143 all the same).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTED = 130  # 128 + SIGINT
TERMINATED = 143  # 128 + SIGTERM
REDELIVER_SECONDS = 0.05  # a stop that fell inside an import is tried again after this


class Terminated(BaseException):  # noqa: N818 - named like KeyboardInterrupt, its sibling
    """SIGTERM arrived; raised in the main thread by the ``crop`` command's handler."""


_requested: list[int] = []  # the stop signals the command's handlers received
_phase: list[object] = ["start-up"]  # "start-up", "command", or the exit code of a finished command


def _stop(signum: int) -> tuple[str, int]:
    return ("crop: terminated", TERMINATED) if signum == signal.SIGTERM else ("crop: interrupted", INTERRUPTED)


def _unsafe(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an import or a finalizer, where an exception is lost or
    leaves a library half-initialised."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib._bootstrap") or code.co_name == "__del__":
            return True
        if code.co_filename.endswith("weakref.py"):  # weakref.finalize callbacks
            return True
        frame = frame.f_back
    return False


def _handle(signum: int, frame: FrameType | None) -> None:
    _requested.append(signum)
    phase = _phase[0]
    if phase == "start-up":  # nothing written yet, and raising in torch's import aborts
        line, code = _stop(signum)
        os.write(2, (line + "\n").encode())
        os._exit(code)
    if phase != "command":  # finished, output flushed: skip the interpreter's clean-up
        os._exit(int(phase))  # type: ignore[call-overload]
    if _unsafe(frame):  # raise once the import or finalizer is done, not inside it
        import threading

        timer = threading.Timer(REDELIVER_SECONDS, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def install() -> None:
    """Install the command's handlers of SIGINT and SIGTERM (start-up mode: print the line and
    exit at once). Call from the main thread of a process the ``crop`` command owns."""
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _handle):
        signal.signal(signal.SIGINT, _handle)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, _handle):
        signal.signal(signal.SIGTERM, _handle)


def unwind() -> None:
    """From now on a stop raises (:class:`KeyboardInterrupt`, :class:`Terminated`) so that the
    command can clean up: call when the command starts, before it writes anything."""
    _phase[0] = "command"


def finished(code: int) -> None:
    """The command is done (exit code ``code``) and its output flushed: a stop from now on ends
    the process at once with that code, without a second line."""
    _phase[0] = code


def stop_line(exc: BaseException) -> tuple[str, int] | None:
    """The line and exit code of a stop request, ``None`` for any other exception.

    An exception raised after a stop request counts as the stop: a library the signal
    interrupted can turn it into an error of its own, which is not a fault of the input."""
    if isinstance(exc, KeyboardInterrupt):
        return _stop(signal.SIGINT)
    if isinstance(exc, Terminated):
        return _stop(signal.SIGTERM)
    if _requested and isinstance(exc, Exception):
        return _stop(_requested[0])
    return None


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for a short block (writing a file and renaming it into place):
    they are delivered, and their handlers run, when the block ends, so the block is never left
    halfway. Only the main thread runs Python's handlers; in another thread the block runs as is."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

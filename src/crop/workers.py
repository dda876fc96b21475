"""Worker processes that never outlive the run that started them.

crop runs work in other processes in two ways: the local process pool of ``crop bench
--workers N`` and of population tuning (:func:`process_pool`, the only way crop makes a pool),
and single helper processes such as the measuring runs of ``crop resources``
(:func:`child_command`). Left to themselves they outlive a killed parent: a pool worker waits
forever on its task queue, whose pipe it holds open itself, and multiprocessing's resource
tracker waits for the workers; each worker holds about 300 MB and the caller's pipes.

What is guaranteed:

* **The parent is killed (SIGKILL, a crash):** every worker dies within about half a second.
  The first thing a worker does, before it imports torch (``import crop`` imports nothing
  heavy), is :func:`die_with_parent`: on Linux the kernel sends it SIGKILL when its parent
  goes (``prctl(PR_SET_PDEATHSIG)``); everywhere, and as a second line on Linux, a watchdog
  thread polls :func:`os.getppid` every 0.2 s. Multiprocessing's resource tracker exits by
  itself once the last process holding its pipe (the parent and the workers) is gone.
* **The parent stops with an exception** (a one-line error, Ctrl-C, SIGTERM turned into
  :class:`crop.interrupts.Terminated` by the ``crop`` command, a generator closed early):
  :func:`process_pool` terminates its workers at once, without waiting for the tasks they run,
  and shuts the pool down (manager thread, queues, semaphores), then lets the exception go on.
* **Ctrl-C at a terminal** reaches the whole process group: workers ignore SIGINT, so only the
  parent answers it (one line, exit 130) instead of every worker printing a traceback.

The parent-death signal fires when the *thread* that started the worker ends. A pool starts its
workers from the thread that submits to it, and :func:`process_pool` shuts the pool down before
that thread leaves the ``with`` block, so in practice it fires when the process dies.
Workers do not change what is computed: results are byte-identical for any number of workers.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

WATCHDOG_SECONDS = 0.2  # how often a worker checks that its parent is still there
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent ends (Linux); whether it did."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:  # re-parented: the parent is gone
            os._exit(1)
        time.sleep(WATCHDOG_SECONDS)


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when the process ``parent_pid`` (its parent) ends: the parent-death
    signal on Linux plus a watchdog thread everywhere; end at once if it is already gone."""
    _parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:  # died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="crop-parent-watchdog", daemon=True).start()


def _init_worker(parent_pid: int, threads: int, preload: tuple[str, ...]) -> None:
    """Initializer of every pool worker: bound to the parent first, then the imports."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent answers Ctrl-C
    import importlib
    import warnings

    from crop.errors import DataWarning

    warnings.simplefilter("ignore", DataWarning)  # the parent loaded the same files and said it once

    from crop._heap import freeze_imports, paused_collector

    with paused_collector():
        import torch

        for module in preload:
            importlib.import_module(module)
    torch.set_num_threads(threads)
    freeze_imports()  # a worker process is ours: its collections skip the imported modules


@contextmanager
def process_pool(workers: int, *, threads: int = 1, preload: Sequence[str] = ()) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` spawned processes (no inherited locks or thread pools) with
    ``threads`` torch threads each, ``preload`` modules imported before the first task, that
    die with this process (see the module's guarantees).

    Example::

        with process_pool(2, preload=("crop.bench.runner",)) as pool:
            results = list(pool.map(work, items))
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(), threads, tuple(preload))
    )
    try:
        yield pool
    except BaseException:
        for process in set(multiprocessing.active_children()) - before:  # this pool's workers
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def child_command(module: str, *args: str) -> list[str]:
    """The command line of a helper process that runs ``python -m module args`` and dies with
    this process: :func:`die_with_parent` runs before ``module`` (and torch) is imported."""
    code = (
        "import runpy, sys; from crop.workers import die_with_parent; "
        f"die_with_parent({os.getpid()}); del sys.argv[0]; "
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", code, module, *args]

"""The garbage collector at start-up: paused while the heavy imports run, then told to skip them.

Importing torch (and with it crop, numpy, typer, rich) leaves about 170,000 Python objects
that the collector tracks (modules, classes, functions, dispatcher tables), all living as long
as the process. CPython's cyclic garbage collector walks them again and again: during the
import itself, and in every full collection afterwards, which the many short-lived objects of
a training loop trigger.
Those walks find next to nothing and cost time (on this project's 2-core machine: about 0.2 s
during the import and 0.4 s during one HAPT personalization, of a 3.8 s ``crop personalize``;
docs/BENCHMARKS.md, start-up).

* :func:`paused_collector` pauses the collector for a block (the imports) and restores it as it
  was, so a library user's setting is left alone.
* :func:`freeze_imports` moves every object alive now into the collector's permanent generation
  (:func:`gc.freeze`): later collections no longer walk them. Only entry points that own the
  process call it (the ``crop`` command, bench worker processes), never the library.

Neither changes what is computed: the collector only frees unreachable cycles, and results are
bit-identical with and without it (``tests/test_startup.py``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_collector() -> Iterator[None]:
    """Run the block with the cyclic collector off; restore its previous state after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def freeze_imports() -> None:
    """Put every object alive now (the imported modules) out of the collector's reach."""
    gc.freeze()

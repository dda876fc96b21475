"""Run many tiny tensor operations on one thread: for a (1, 16, 64) convolution the thread-pool
hand-off costs more than the arithmetic, and on a loaded machine far more."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

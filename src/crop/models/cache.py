"""Generic models trained on first use and cached, with their provenance recorded and checked.

A cached generic model decides every later benchmark that uses it, so its bytes must not depend
on which process happened to train it first. They depended on that process's torch thread count
(a reduction split over two threads adds in another order): a fold model trained through the
Python API in a process with two threads differed from the one ``crop bench`` trains with one,
under the same file name. So:

* every cached model is trained on :data:`TRAIN_THREADS` torch thread(s)
  (:func:`training_threads`, which restores the caller's setting afterwards): the bytes are
  those of ``crop``'s one-thread commands, whatever the caller set;
* the file name's key is the hash of the model's provenance (:func:`provenance`: what it was
  trained on and how, plus the torch version, the thread count and :data:`FORMAT`), recorded
  in the file's metadata (``provenance``);
* :func:`load_or_train` uses a cached file only when its recorded provenance is exactly the one
  asked for; a file without it (written before this check), another one, or an unreadable file
  is trained again and replaced, with a :class:`~crop.errors.CacheWarning` saying why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crop.errors import CacheWarning, CropError

TRAIN_THREADS = 1  # torch threads of all generic training (the setting of crop's commands and bench workers)
FORMAT = 2  # 2: trained on TRAIN_THREADS threads, provenance recorded (1: neither; never used again)


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """Run the block on :data:`TRAIN_THREADS` torch threads; the caller's setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def provenance(what: dict[str, Any]) -> dict[str, Any]:
    """``what`` a cached model is (kind, users, config, ...) plus what its bytes depend on besides:
    the torch version, the training thread count and the cache format."""
    return {**what, "torch": torch.__version__, "torch_threads": TRAIN_THREADS, "format": FORMAT}


def cache_key(prov: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``prov`` (canonical JSON)."""
    text = json.dumps(prov, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(prov: dict[str, Any]) -> Any:
    return json.loads(json.dumps(prov, sort_keys=True, default=str))


def recorded_provenance(path: Path) -> tuple[dict[str, Any] | None, dict[str, str], str | None]:
    """The provenance recorded in the cached file ``path``, its metadata, and why it cannot be
    used (``None`` when the file is readable and records a provenance)."""
    from crop.models.io import metadata_of

    try:
        meta = metadata_of(path)
    except CropError as exc:
        return None, {}, f"unreadable ({exc})"
    text = meta.get("provenance")
    if text is None:
        return None, meta, "no recorded provenance (written before crop recorded it; maybe on other threads)"
    try:
        recorded = json.loads(text)
    except ValueError:
        return None, meta, "a damaged provenance record"
    if not isinstance(recorded, dict):
        return None, meta, "a damaged provenance record"
    return recorded, meta, None


def load_or_train(
    target: Path, prov: dict[str, Any], train: Callable[[], tuple[nn.Module, dict[str, Any]]]
) -> tuple[nn.Module, str, float | None]:
    """The model cached at ``target`` if its recorded provenance is ``prov``, else
    ``train()`` (a model and its metadata) run under :func:`training_threads`, saved to ``target``
    with ``prov`` and the seconds it took. Returns the model, ``"cached"`` or ``"trained"`` and
    the training seconds."""
    from crop.models.io import load_model, save_model

    if target.is_file():
        recorded, meta, problem = recorded_provenance(target)
        if problem is None and recorded != _canonical(prov):
            differ = sorted(k for k in set(recorded) | set(prov) if recorded.get(k) != _canonical(prov).get(k))
            problem = f"recorded provenance differs in {', '.join(differ[:5])}"
        if problem is None:
            seconds = json.loads(meta.get("train_seconds", "null"))
            return load_model(target), "cached", seconds
        warnings.warn(f"cached model {target}: {problem}; training it again", CacheWarning, stacklevel=3)
    t0 = time.perf_counter()
    with training_threads():
        model, meta = train()
    seconds = round(time.perf_counter() - t0, 2)
    meta = {**meta, "provenance": json.dumps(prov, sort_keys=True, default=str), "train_seconds": seconds}
    save_model(model, target, meta)
    return model, "trained", seconds

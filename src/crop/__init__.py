"""crop: trustworthy static personalization of human-sensing models (CRoP).

Quick start::

    import crop
    result = crop.personalize(generic_model, user_data)          # CRoP, Algorithm 1
    crop.evaluate(result.model, {"available": test_a, "unseen": test_u})

The names below are imported on first use (PEP 562), not by ``import crop`` itself: the package
imports nothing heavy, so the ``crop`` command (:mod:`crop.__main__`) can install its Ctrl-C and
SIGTERM handling before torch loads, and a worker process can arrange to die with its parent
(:mod:`crop.workers`) before it spends seconds importing. ``from crop import personalize`` and
``crop.personalize`` work as before.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up stays in milliseconds)

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "evaluate": "crop.api",
    "personalize": "crop.api",
    "ContextSplit": "crop.data.sensing",
    "SensingData": "crop.data.sensing",
    "stratified_split": "crop.data.sensing",
    "CropError": "crop.errors",
    "load_generic": "crop.generic",
    "load_model": "crop.models.io",
    "predict": "crop.deploy.predict",
    "Predictions": "crop.deploy.predict",
    "load_state": "crop.models.io",
    "save_model": "crop.models.io",
    "CRoPConfig": "crop.personalization",
    "FinetuneConfig": "crop.personalization",
    "PersonalizationResult": "crop.personalization",
    "TrainConfig": "crop.personalization",
    "available_methods": "crop.personalization",
}

__all__ = [
    "CRoPConfig",
    "ContextSplit",
    "CropError",
    "FinetuneConfig",
    "PersonalizationResult",
    "Predictions",
    "SensingData",
    "TrainConfig",
    "available_methods",
    "evaluate",
    "load_generic",
    "load_model",
    "load_state",
    "personalize",
    "predict",
    "save_model",
    "stratified_split",
]

if TYPE_CHECKING:
    from typing import Any

    from crop.api import evaluate, personalize
    from crop.data.sensing import ContextSplit, SensingData, stratified_split
    from crop.deploy.predict import Predictions, predict
    from crop.errors import CropError
    from crop.generic import load_generic
    from crop.models.io import load_model, load_state, save_model
    from crop.personalization import CRoPConfig, FinetuneConfig, PersonalizationResult, TrainConfig, available_methods


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'crop' has no attribute {name!r}")
    import importlib

    from crop._heap import paused_collector

    with paused_collector():  # torch's import without the collector's fruitless passes (crop._heap)
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

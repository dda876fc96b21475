"""crop: trustworthy static personalization of human-sensing models (CRoP).

Quick start::

    import crop
    result = crop.personalize(generic_model, user_data)          # CRoP, Algorithm 1
    crop.evaluate(result.model, {"available": test_a, "unseen": test_u})
"""

from crop._heap import paused_collector as _paused_collector

with _paused_collector():  # torch's import without the collector's fruitless passes (crop._heap)
    from crop.api import evaluate, personalize
    from crop.data.sensing import ContextSplit, SensingData, stratified_split
    from crop.errors import CropError
    from crop.models.io import load_model, load_state, save_model
    from crop.personalization import CRoPConfig, FinetuneConfig, PersonalizationResult, TrainConfig, available_methods

__version__ = "0.1.0"

__all__ = [
    "CRoPConfig",
    "ContextSplit",
    "CropError",
    "FinetuneConfig",
    "PersonalizationResult",
    "SensingData",
    "TrainConfig",
    "available_methods",
    "evaluate",
    "load_model",
    "load_state",
    "personalize",
    "save_model",
    "stratified_split",
]

"""The short public API: :func:`personalize` and :func:`evaluate`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from crop.data.sensing import ContextSplit, SensingData, stratified_split
from crop.errors import CropError
from crop.metrics import get_metric
from crop.models.utils import predict
from crop.personalization.registry import PersonalizationResult, check_config, config_from_dict, get_method
from crop.validate import check_seed


def personalize(
    generic_model: nn.Module,
    available: ContextSplit | SensingData,
    config: Any = None,
    *,
    method: str = "crop",
    seed: int = 0,
    metric: str = "balanced_accuracy",
) -> PersonalizationResult:
    """Personalize ``generic_model`` for one person from their available-context data.

    Args:
        generic_model: any ``torch.nn.Module`` mapping a batch of windows to class logits.
            It is copied, never modified.
        available: the person's labelled available-context data, either already split
            (:class:`~crop.data.ContextSplit`) or as one :class:`~crop.data.SensingData`, which
            is split 60/20/20 per class with ``seed``.
        config: the method's config dataclass, a dict of overrides, or ``None`` for defaults.
        method: a registered method name (``"crop"``, ``"finetune"``, ...).
        seed: makes the result reproducible: same inputs and seed give identical weights.
        metric: the accuracy measure used for checkpoint selection and ToleratedPrune.

    Returns:
        a :class:`~crop.personalization.PersonalizationResult` with ``model``, ``states`` and
        ``prune_amount``.

    Example:
        >>> import numpy as np, torch, crop
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(60, 4)).astype("float32"); y = (X[:, 0] > 0).astype(int)
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> result = crop.personalize(net, crop.SensingData(X, y), {"initial": {"epochs": 3}, "final": {"epochs": 3}})
        >>> sorted(result.states)
        ['final', 'generic', 'initial', 'mixed', 'pruned']
    """
    spec = get_method(method)
    if config is None:
        config = spec.config_class()
    elif isinstance(config, Mapping):
        config = config_from_dict(spec.config_class, dict(config), f"{method} config")
    elif not isinstance(config, spec.config_class):
        raise CropError(f"config for {method!r} must be a {spec.config_class.__name__} or a dict")
    check_config(config, f"{method} config")
    check_seed(seed, "seed")
    get_metric(metric)
    if isinstance(available, SensingData):
        available.validate()
        available = stratified_split(available, seed)
    if not isinstance(available, ContextSplit):
        raise CropError("available must be a SensingData or a ContextSplit")
    return spec.fit(generic_model, available, config, seed=seed, metric=metric)


def evaluate(
    model: nn.Module,
    data: SensingData | Mapping[str, SensingData],
    metrics: Sequence[str] = ("balanced_accuracy", "accuracy", "f1"),
) -> dict[str, Any]:
    """Accuracy measures of ``model`` on one dataset, or on each of a dict of named contexts.

    Returns ``{metric: value}`` for one dataset and ``{context: {metric: value}}`` for a dict;
    values are fractions in [0, 1].
    """
    fns = {m: get_metric(m) for m in metrics}
    if isinstance(data, SensingData):
        data.validate()
        pred = predict(model, data.X)
        return {m: fn(data.y, pred) for m, fn in fns.items()}
    return {name: evaluate(model, d, metrics) for name, d in data.items()}

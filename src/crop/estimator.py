"""A scikit-learn estimator around personalization: :class:`PersonalizedClassifier`.

``fit(X, y)`` personalizes a generic model with one person's labelled windows (CRoP by
default, any registered method by name); ``predict``, ``predict_proba`` and ``score`` run the
personalized model. It follows scikit-learn's conventions (parameters stored as given in
``__init__``, fitted state in attributes ending in ``_``, ``get_params`` / ``set_params``,
``clone``), so it fits in pipelines, ``cross_val_score`` and grid searches over ``config``
or ``method``.

The generic model decides the classes: with a model (or a shipped kind such as ``"hapt"``),
``y`` holds class indices of that model's outputs and ``classes_`` is ``0..K-1``; with a
factory ``generic(sample_shape, n_classes) -> nn.Module`` (your own architecture, built for
the data), any labels work and ``classes_`` are the sorted labels. Which of scikit-learn's
estimator checks apply, and why the others do not: ``tests/test_estimator.py``.

Example:
    >>> import numpy as np, crop
    >>> from crop.estimator import PersonalizedClassifier
    >>> from crop.data.scenarios import build_user_scenario, parse_scenarios
    >>> us = build_user_scenario(2, parse_scenarios("hapt-session:1")[0], seed=0)
    >>> train = us.available.train
    >>> clf = PersonalizedClassifier("hapt", method="finetune").fit(train.X, train.y)
    >>> clf.predict_proba(train.X[:3]).shape
    (3, 6)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from crop.errors import CropError


class PersonalizedClassifier(ClassifierMixin, BaseEstimator):
    """Personalize ``generic`` to one person's windows with ``method`` (see module docstring).

    Args:
        generic: an ``nn.Module`` (copied, never changed), a shipped kind (``"hapt"``; default
            ``None`` means ``"hapt"``), or a factory ``(sample_shape, n_classes) -> nn.Module``.
        method: a registered method name (``crop.available_methods()``).
        config: the method's config dataclass or a dict of overrides (``None``: defaults).
        seed: the personalization's seed (the result is a pure function of model, data,
            config and seed).
        metric: the measure used for checkpoint selection and ToleratedPrune.

    Fitted attributes: ``model_`` (the served model), ``result_`` (the
    :class:`~crop.personalization.PersonalizationResult`), ``classes_``, ``n_features_in_``
    (for 2-D ``X``).
    """

    def __init__(
        self,
        generic: nn.Module | str | Callable[..., nn.Module] | None = None,
        method: str = "crop",
        config: Any = None,
        seed: int = 0,
        metric: str = "balanced_accuracy",
    ) -> None:
        self.generic = generic
        self.method = method
        self.config = config
        self.seed = seed
        self.metric = metric

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # windows (n, channels, samples)
        tags.non_deterministic = False
        return tags

    def _check_X(self, X: Any, reset: bool) -> np.ndarray:
        return validate_data(self, X, reset=reset, allow_nd=True, dtype=np.float32, ensure_min_samples=1)

    def _generic_model(self, X: np.ndarray, y: np.ndarray) -> tuple[nn.Module, np.ndarray, np.ndarray]:
        """The generic model, the class labels and ``y`` as class indices."""
        generic = "hapt" if self.generic is None else self.generic
        if isinstance(generic, str):
            from crop.generic import load_generic

            generic = load_generic(generic)
        if isinstance(generic, nn.Module):
            n_classes = _n_outputs(generic, X)
            if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
                raise ValueError("with a generic model, y must hold class indices of its outputs (integers)")
            codes = y.astype(np.int64)
            if codes.min() < 0 or codes.max() >= n_classes:
                raise ValueError(f"y holds class {int(codes.max())}; the generic model has {n_classes} classes")
            return generic, np.arange(n_classes), codes
        if callable(generic):
            classes, codes = np.unique(y, return_inverse=True)
            model = generic(tuple(X.shape[1:]), len(classes))
            if not isinstance(model, nn.Module):
                raise TypeError(
                    f"generic(sample_shape, n_classes) must return an nn.Module, got {type(model).__name__}"
                )
            return model, classes, codes.astype(np.int64)
        raise TypeError(
            f"generic must be an nn.Module, a shipped kind or a factory (sample_shape, n_classes), got {type(generic).__name__}"
        )

    def fit(self, X: Any, y: Any) -> PersonalizedClassifier:
        """Personalize the generic model with windows ``X`` and labels ``y`` (split 60/20/20 per
        class with ``seed`` for the method's training, validation and test parts)."""
        import crop
        from crop.data.sensing import SensingData

        X, y = validate_data(self, X, y, allow_nd=True, dtype=np.float32, y_numeric=False)
        from sklearn.utils.multiclass import check_classification_targets

        check_classification_targets(y)
        if len(X) < 2:
            raise ValueError(f"n_samples={len(X)}: personalization needs windows of at least 2 classes")
        model, classes, codes = self._generic_model(X, np.asarray(y))
        if len(np.unique(codes)) < 2:
            raise ValueError("personalization needs windows of at least 2 classes (one class given)")
        try:
            result = crop.personalize(
                model, SensingData(X, codes, "fit"), self.config, method=self.method, seed=self.seed, metric=self.metric
            )
        except CropError as exc:
            raise ValueError(str(exc)) from None
        self.result_ = result
        self.model_ = result.model
        self.classes_ = classes
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, len(classes_))``, columns in the order of ``classes_``."""
        from crop.deploy.predict import predict

        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        return predict(self.model_, X).probabilities

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each window (labels of ``classes_``)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def _n_outputs(model: nn.Module, X: np.ndarray) -> int:
    """How many classes the generic model scores (its outputs on two windows)."""
    from crop.deploy.predict import model_scores

    return int(model_scores(model, np.ascontiguousarray(X[:2]), 2).shape[1])

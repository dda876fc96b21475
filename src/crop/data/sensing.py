"""Containers for labelled sensor windows and their validation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crop.errors import CropError

MAX_ABS_VALUE = 1e6  # no sensor reading in physical units comes near this; larger values are corrupt data


@dataclass(frozen=True)
class SensingData:
    """Labelled windows of one or more people in one context.

    Attributes:
        X: float32 array of shape ``(n, channels, time)`` (any trailing shape the model accepts).
        y: int64 class labels of shape ``(n,)``, in ``0 .. n_classes - 1``.
        name: a label used in error messages (e.g. ``"user 2 session 1"``).
        group: optional per-window attribute of shape ``(n,)`` (integers or strings, e.g. a
            device or a recording condition): the groups that fairness mitigation
            (:mod:`crop.personalization.mitigation`, ``groups="attribute"``) balances. ``None``: none.
    """

    X: np.ndarray
    y: np.ndarray
    name: str = "data"
    group: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "X", np.ascontiguousarray(self.X, dtype=np.float32))
        object.__setattr__(self, "y", np.ascontiguousarray(self.y, dtype=np.int64))
        if self.group is not None:
            object.__setattr__(self, "group", np.asarray(self.group))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: np.ndarray, name: str | None = None) -> SensingData:
        group = self.group[index] if self.group is not None else None
        return SensingData(self.X[index], self.y[index], name or self.name, group)

    def validate(self, n_classes: int | None = None, input_shape: tuple[int, ...] | None = None) -> None:
        """Raise :class:`CropError` (one line) if the data cannot be used as it is."""
        if self.X.ndim < 2:
            raise CropError(f"{self.name}: X must have shape (n, ...) with at least 2 dims, got {self.X.shape}")
        if self.y.ndim != 1 or self.y.shape[0] != self.X.shape[0]:
            raise CropError(f"{self.name}: y must have shape ({self.X.shape[0]},) to match X, got {self.y.shape}")
        if len(self) == 0:
            raise CropError(f"{self.name}: no samples (empty context)")
        if self.group is not None and self.group.shape != self.y.shape:
            raise CropError(f"{self.name}: group must have shape {self.y.shape} to match y, got {self.group.shape}")
        if input_shape is not None and tuple(self.X.shape[1:]) != tuple(input_shape):
            raise CropError(
                f"{self.name}: windows have shape {tuple(self.X.shape[1:])}, the model expects {tuple(input_shape)}"
            )
        if not np.isfinite(self.X).all():
            bad = int((~np.isfinite(self.X)).any(axis=tuple(range(1, self.X.ndim))).sum())
            raise CropError(f"{self.name}: {bad} window(s) contain NaN or inf values")
        if self.X.size and float(np.abs(self.X).max()) > MAX_ABS_VALUE:
            raise CropError(
                f"{self.name}: values up to {float(np.abs(self.X).max()):.3g} exceed the sane magnitude "
                f"{MAX_ABS_VALUE:g} (sensor readings in physical units are far smaller)"
            )
        if self.y.min() < 0 or (n_classes is not None and self.y.max() >= n_classes):
            raise CropError(
                f"{self.name}: labels must lie in 0..{(n_classes or 0) - 1}, got {self.y.min()}..{self.y.max()}"
            )


@dataclass(frozen=True)
class ContextSplit:
    """The available-context data of one person split for personalization.

    ``train`` is finetuned on, ``val`` drives early stopping / checkpoint selection, ``test``
    is held out for reporting. None of it may come from an unseen context.
    """

    train: SensingData
    val: SensingData
    test: SensingData


def stratified_split(
    data: SensingData, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> ContextSplit:
    """Split ``data`` per class into train / validation / test with a seeded shuffle.

    Every class present gets at least one training window; classes with three or more windows
    get at least one validation and one test window.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise CropError(f"split fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for cls in np.unique(data.y):
        idx = np.flatnonzero(data.y == cls)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        n_val = max(1, round(n * fractions[1])) if n >= 3 else 0
        n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
        n_train = n - n_val - n_test
        parts[0].extend(idx[:n_train])
        parts[1].extend(idx[n_train : n_train + n_val])
        parts[2].extend(idx[n_train + n_val :])
    train, val, test = (np.sort(np.asarray(p, dtype=np.int64)) for p in parts)
    if len(val) == 0:
        raise CropError(f"{data.name}: too few windows to hold out a validation split")
    return ContextSplit(
        data.subset(train, f"{data.name} [train]"),
        data.subset(val, f"{data.name} [val]"),
        data.subset(test, f"{data.name} [test]"),
    )


def load_npz(path: str | Path, name: str | None = None) -> tuple[SensingData, np.ndarray | None]:
    """Read a user's data file: ``.npz`` with ``X``, ``y`` and optionally ``context``.

    Returns the data and the per-window context labels (``None`` if absent). Object arrays are
    refused (``allow_pickle=False``), so the file cannot execute code, and arrays above
    :data:`crop.data.npzfile.MAX_NPZ_BYTES` decompressed are refused before they are inflated.
    """
    path = Path(path)
    if not path.is_file():
        raise CropError(f"data file not found: {path}")
    from crop.data.npzfile import read_npz

    arrays = read_npz(path, ("X", "y", "context"))  # sizes checked before decompressing
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise CropError(f"{path}: missing array(s) {', '.join(missing)} (need X, y, optional context)")
    X, y, context = arrays["X"], arrays["y"], arrays.get("context")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise CropError(f"{path}: y must hold integer class labels, got dtype {y.dtype}")
    if context is not None and context.shape != y.shape:
        raise CropError(f"{path}: context must have shape {y.shape} to match y, got {context.shape}")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise CropError(f"{path}: X must hold real numbers, got dtype {X.dtype}")
    if np.issubdtype(y.dtype, np.integer) and y.size and (y.min() < 0 or y.max() > np.iinfo(np.int64).max):
        raise CropError(f"{path}: y must hold class labels 0, 1, 2, ..., got {y.min()}..{y.max()}")
    return SensingData(X, y, name or path.name), context

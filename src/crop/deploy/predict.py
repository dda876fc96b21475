"""Running a model on new windows: :func:`predict` (Python) and ``crop predict`` (command).

A model is a ``torch.nn.Module``, a crop model file (``model.safetensors``, dense or sparse,
a routed model included) or an ONNX file written by ``crop export``; the windows are an array
``(n, *sample_shape)`` or a ``.npz`` file holding one (``X``, as in ``--dataset npz``; optional
``y`` labels are scored). The result, :class:`Predictions`, holds per window the class index,
the class name and the class probabilities (the softmax of the model's outputs; a routed
model's outputs are already log-probabilities, whose softmax is the same probabilities), and
writes itself as CSV or JSON.

Example:
    >>> import numpy as np, torch, crop
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))
    >>> out = crop.predict(net, np.zeros((4, 2, 4), dtype="float32"), class_names=["a", "b", "c"])
    >>> out.probabilities.shape, len(out.names)
    ((4, 3), 3)
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crop.errors import CropError

WINDOWS_KEY = "X"
LABELS_KEY = "y"
MAX_CLASS_NAME = 200


@dataclass(frozen=True)
class Predictions:
    """Per-window predictions: ``classes`` ``(n,)`` class indices, ``probabilities`` ``(n, K)``
    (rows sum to 1), ``names`` the ``K`` class names."""

    classes: np.ndarray
    probabilities: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    @property
    def class_names(self) -> list[str]:
        """The predicted class's name for every window."""
        return [self.names[int(c)] for c in self.classes]

    def counts(self) -> dict[str, int]:
        """How many windows each class got (every class, in class order)."""
        found = np.bincount(self.classes, minlength=len(self.names))
        return {name: int(found[i]) for i, name in enumerate(self.names)}

    def rows(self) -> list[dict[str, Any]]:
        """One dict per window: ``window``, ``class``, ``class_name``, ``probabilities``."""
        return [
            {
                "window": i,
                "class": int(c),
                "class_name": self.names[int(c)],
                "probabilities": [float(p) for p in self.probabilities[i]],
            }
            for i, c in enumerate(self.classes)
        ]

    def to_csv(self) -> str:
        """CSV text: ``window,class,class_name,p_<name>...`` (cells that a spreadsheet would run
        as formulas are neutralized: :func:`crop.report.escape.csv_cell`)."""
        from crop.report.escape import csv_row

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(csv_row(["window", "class", "class_name", *(f"p_{n}" for n in self.names)]))
        for i, c in enumerate(self.classes):
            probs = [f"{float(p):.6g}" for p in self.probabilities[i]]
            writer.writerow(csv_row([i, int(c), self.names[int(c)], *probs]))
        return buffer.getvalue()

    def to_json(self, **extra: Any) -> str:
        """JSON text: ``{"classes": names, "windows": rows(), **extra}``."""
        return json.dumps({**extra, "classes": list(self.names), "windows": self.rows()}, allow_nan=False) + "\n"


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _check_windows(X: Any, shape: tuple[int, ...] | None, where: str) -> np.ndarray:
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise CropError(f"{where}: not an array of windows ({exc})") from None
    if array.dtype.kind not in "biuf":
        raise CropError(f"{where}: windows must be real numbers, got dtype {array.dtype}")
    if array.ndim < 2 or array.shape[0] == 0:
        raise CropError(
            f"{where}: expected an array (n_windows, *sample_shape) with n_windows >= 1, got shape {list(array.shape)}"
        )
    if shape is not None and tuple(array.shape[1:]) != tuple(shape):
        raise CropError(f"{where}: windows of shape {list(array.shape[1:])}; the model takes {list(shape)}")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))[0, 0])
        raise CropError(f"{where}: window {bad} holds a value that is not a finite number")
    return array


def _names(names: list[str] | None, n_classes: int, where: str) -> list[str]:
    if names is None:
        return [str(i) for i in range(n_classes)]
    names = [str(n) for n in names]
    if len(names) != n_classes:
        raise CropError(f"{where}: {len(names)} class names for a model with {n_classes} outputs")
    if len(set(names)) != len(names) or any(not n or len(n) > MAX_CLASS_NAME for n in names):
        raise CropError(f"{where}: class names must be distinct, non-empty and at most {MAX_CLASS_NAME} characters")
    return names


def _finish(scores: np.ndarray, names: list[str] | None, where: str) -> Predictions:
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise CropError(f"{where}: the model's output has shape {list(scores.shape)}, not (n_windows, n_classes)")
    if not np.isfinite(scores).all():
        raise CropError(f"{where}: the model's outputs are not finite numbers")
    return Predictions(
        scores.argmax(axis=1).astype(np.int64),
        _softmax(scores.astype(np.float64)),
        _names(names, scores.shape[1], where),
    )


def predict(
    model: nn.Module | str | Path,
    X: Any,
    *,
    class_names: list[str] | None = None,
    batch_size: int = 2048,
) -> Predictions:
    """Class, class name and class probabilities of every window of ``X`` ``(n, *sample_shape)``.

    ``model``: a module (its outputs are class scores), a crop model file or an ONNX file from
    ``crop export``. ``class_names`` default to HAPT's activities for the HAPT network (what an
    ONNX file records), else the class indices. Bad input raises :class:`~crop.errors.CropError` (one
    line), e.g. windows of a shape the model does not take."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise CropError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(model, str | Path):
        return _predict_file(Path(model), X, class_names, batch_size)
    if not isinstance(model, nn.Module):
        raise CropError(f"model must be a torch.nn.Module or a model file, got {type(model).__name__}")
    from crop.deploy.export import class_names as default_names
    from crop.deploy.export import input_shape_of

    windows = _check_windows(X, input_shape_of(model), "windows")
    scores = model_scores(model, windows, batch_size)
    return _finish(scores, class_names if class_names is not None else default_names(model, scores.shape[1]), "windows")


def model_scores(model: nn.Module, windows: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """The model's outputs ``(n, n_classes)`` (float64) for ``windows`` (float32), in eval mode
    (its mode is restored) and batches of ``batch_size``; a model that does not take the
    windows is a one-line :class:`CropError`."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [model(torch.from_numpy(windows[i : i + batch_size])) for i in range(0, len(windows), batch_size)]
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CropError(
            f"the model does not accept these windows (shape {list(windows.shape[1:])}): {first[:200]}"
        ) from None
    finally:
        model.train(was_training)
    return torch.cat(parts).double().numpy()


def _predict_file(path: Path, X: Any, names: list[str] | None, batch_size: int) -> Predictions:
    if not path.is_file():
        raise CropError(f"{path}: no such model file")
    if path.suffix == ".onnx":
        from crop.deploy.export import onnx_session, read_metadata, require, run_session

        require("onnxruntime")
        meta = read_metadata(path)
        shape = _recorded_shape(meta.get("input_shape"))
        windows = _check_windows(X, shape, "windows")
        if names is None and meta.get("classes"):
            names = _recorded_names(meta["classes"], path)
        try:
            session = onnx_session(path)
            scores = np.concatenate(
                [run_session(session, windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
            )
        except CropError:
            raise
        except Exception as exc:  # onnxruntime's own error kinds
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CropError(f"{path}: onnxruntime cannot run it on these windows: {first[:200]}") from None
        return _finish(scores.astype(np.float64), names, "windows")
    from crop.deploy.export import class_names as default_names
    from crop.deploy.export import input_shape_of
    from crop.models.io import load_model

    model = load_model(path)
    windows = _check_windows(X, input_shape_of(model), "windows")
    scores = model_scores(model, windows, batch_size)
    return _finish(scores, names if names is not None else default_names(model, scores.shape[1]), "windows")


def _recorded_shape(text: str | None) -> tuple[int, ...] | None:
    try:
        shape = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(s, int) and s > 0 for s in shape[1:]):
        return tuple(shape[1:])
    return None


def _recorded_names(text: str, path: Path) -> list[str] | None:
    try:
        names = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    raise CropError(f"{path}: its recorded class names are not a list of strings")


def read_windows(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The windows ``X`` of a ``.npz`` file (and its labels ``y`` when it has them; checked
    for size from the arrays' headers before anything is inflated: :mod:`crop.data.npzfile`)."""
    from crop.data.npzfile import read_npz

    path = Path(path)
    if path.suffix != ".npz":
        raise CropError(f"--data {path}: expected a .npz file of windows (array {WINDOWS_KEY!r})")
    if not path.is_file():
        raise CropError(f"--data {path}: no such file")
    arrays = read_npz(path, (WINDOWS_KEY, LABELS_KEY))
    if WINDOWS_KEY not in arrays:
        raise CropError(f"--data {path}: no array {WINDOWS_KEY!r} (the windows, shape (n, *sample_shape))")
    X, y = arrays[WINDOWS_KEY], arrays.get(LABELS_KEY)
    if y is not None:
        if y.shape != (len(X),) or y.dtype.kind not in "iu" or (len(y) and int(y.min()) < 0):
            raise CropError(
                f"--data {path}: {LABELS_KEY!r} must hold one class index >= 0 per window, shape ({len(X)},)"
            )
    return X, y


def scores_of(predictions: Predictions, y: np.ndarray) -> dict[str, float]:
    """Accuracy and balanced accuracy of ``predictions`` against labels ``y`` (as in
    :mod:`crop.metrics`)."""
    from crop.metrics import METRICS

    out = {}
    for name in ("accuracy", "balanced_accuracy"):
        value = float(METRICS[name](y, predictions.classes))
        out[name] = value if math.isfinite(value) else float("nan")
    return out

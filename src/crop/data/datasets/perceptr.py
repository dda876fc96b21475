"""PERCEPT-R-style speech features: rhotic vs derhotic /r/, context = treatment phase.

The PERCEPT-R corpus is shared on request (audio); crop reads features that you extract from
it (e.g. MFCCs or formants per frame), one file per speaker. **Format** (defined here):
``<speaker id>.npz`` under ``--root`` (the id an integer, as the paper's speaker numbers), with

* ``X``: float ``(n, features, frames)``, one feature sequence per utterance (channels first,
  zero-padded to a common number of frames);
* ``y``: ``(n,)`` rhoticity: integers 0 (derhotic) / 1 (fully rhotic), or listener ratings in
  [0, 1] (averaged binary judgements), made binary at 0.5 (``>= 0.5`` is rhotic);
* ``phase``: ``(n,)`` strings ``baseline`` / ``pre-treatment`` (the available context) or
  ``treatment`` (unseen).

Speakers with only one phase serve generic training only. The paper's 16 personalization
speakers are :data:`PAPER_SPEAKERS`; one generic model, trained on the other speakers with a
person-disjoint 10 % held out for validation (the paper does not give the share). Scenario
``perceptr:1``: available pre-treatment, unseen treatment. Metric: balanced accuracy.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from torch import nn

from crop.data.datasets import register_dataset
from crop.data.datasets.base import Dataset, DatasetData, UserData, UserId, finish
from crop.errors import CropError

PAPER_SPEAKERS = (17, 25, 28, 336, 344, 361, 362, 55, 586, 587, 589, 590, 591, 61, 67, 80)
PHASES = {"baseline": "pre-treatment", "pre-treatment": "pre-treatment", "treatment": "treatment"}


def read_speaker(path: Path) -> UserData:
    """One speaker's file, checked (one-line errors; no pickled objects are ever loaded)."""
    from crop.data.npzfile import read_npz

    arrays = read_npz(path, ("X", "y", "phase"))  # sizes checked before decompressing; no objects
    missing = [k for k in ("X", "y", "phase") if k not in arrays]
    if missing:
        raise CropError(f"{path}: missing array(s) {', '.join(missing)} (need X, y, phase)")
    X, y, phase = arrays["X"], arrays["y"], arrays["phase"]
    if X.ndim != 3 or not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise CropError(f"{path}: X must be a real array (n, features, frames), got shape {X.shape}")
    if y.shape != (len(X),) or phase.shape != (len(X),):
        raise CropError(f"{path}: y and phase must have shape ({len(X)},), got {y.shape} and {phase.shape}")
    if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all() or (y.size and (y.min() < 0 or y.max() > 1)):
        raise CropError(f"{path}: y must hold 0/1 labels or ratings in [0, 1]")
    names = np.char.lower(np.char.strip(phase.astype(str)))
    unknown = sorted(set(names.tolist()) - set(PHASES))
    if unknown:
        raise CropError(f"{path}: unknown phase {unknown[0]!r}; use baseline, pre-treatment or treatment")
    context = np.asarray([PHASES[p] for p in names.tolist()], dtype=str)
    return UserData(X.astype(np.float32), (y >= 0.5).astype(np.int64), context)


@register_dataset
class PerceptR(Dataset):
    name = "perceptr"
    metric = "balanced_accuracy"
    class_names = ("derhotic", "rhotic")
    paper_users = PAPER_SPEAKERS
    families = {"perceptr": {1: (("pre-treatment",), {"treatment": ("treatment",)})}}
    default_family = "perceptr"
    val_fraction = 0.1

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*.npz") if re.fullmatch(r"\d+", p.stem))

    def read(self) -> DatasetData:
        files = self.files()
        if not files:
            raise CropError(f"{self.root}: no <speaker id>.npz files (PERCEPT-R features; crop docs DATASETS)")
        users: dict[UserId, UserData] = {int(p.stem): read_speaker(p) for p in files}
        shapes = {u: d.X.shape[1:] for u, d in users.items()}
        if len(set(shapes.values())) > 1:
            first = next(iter(shapes.items()))
            other = next((u, s) for u, s in shapes.items() if s != first[1])
            raise CropError(
                f"{self.root}: speakers {first[0]} and {other[0]} have features of shapes {first[1]} and {other[1]}"
            )
        return finish(self, users)

    def make_model(self, data: DatasetData) -> nn.Module:
        from crop.models.paper import PerceptBiLSTM

        return PerceptBiLSTM(features=data.input_shape[0], n_classes=2)

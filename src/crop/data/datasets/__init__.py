"""The paper's datasets (and your own) behind one interface, looked up by name.

* ``extrasensory`` -- ``<uuid>.features_labels.csv.gz``; balanced accuracy; CNN-GRU on the
  2 x 26 accelerometer / gyroscope features (``extrasensory-raw``: on 6 x 800 raw bursts);
* ``stress`` -- WESAD-style ``S<k>/S<k>.pkl`` + ``S<k>_readme.txt``; F1; MLP 3 x 128 on 34 features;
* ``widar`` -- Widar3.0 BVP ``.mat`` files; accuracy; LeNet on 22 x 20 x 20;
* ``perceptr`` -- one ``<speaker>.npz`` of feature sequences; balanced accuracy; BiLSTM;
* ``npz`` -- one ``<user>.npz`` per user and your own model (``--model``, ``--arch``);
* ``csv`` -- raw sensor streams in a long-format CSV table, resampled and windowed
  (``--rate``, ``--window``, ``--stride``), and your own model, as ``npz``.

HAPT stays the built-in dataset of :mod:`crop.data.hapt` (``--dataset hapt``). Layouts, what
was inferred where the paper is silent, and the commands of Table 3: docs/DATASETS.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crop.data.datasets.base import Dataset, DatasetData, DatasetScenario, UserData, UserId
from crop.errors import CropError

DATASETS: dict[str, type[Dataset]] = {}


def register_dataset(cls: type[Dataset]) -> type[Dataset]:
    """Class decorator: make ``cls`` available as ``--dataset cls.name``."""
    if cls.name in DATASETS and DATASETS[cls.name] is not cls:
        raise ValueError(f"dataset {cls.name!r} registered twice")
    DATASETS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    import crop.data.datasets.extrasensory  # noqa: F401
    import crop.data.datasets.npz  # noqa: F401
    import crop.data.datasets.perceptr  # noqa: F401
    import crop.data.datasets.stream  # noqa: F401
    import crop.data.datasets.stress  # noqa: F401
    import crop.data.datasets.widar  # noqa: F401


def dataset_names() -> list[str]:
    """Every ``--dataset`` value: ``hapt`` (built in) and the registered datasets."""
    _load_builtin()
    return ["hapt", *sorted(DATASETS)]


def dataset_class(name: str) -> type[Dataset]:
    _load_builtin()
    if name not in DATASETS:
        raise CropError(f"unknown dataset {name!r}; choose from {', '.join(dataset_names())}")
    return DATASETS[name]


def uses_given_model(name: str) -> bool:
    """``True`` when ``--dataset name`` takes your generic model (``--model``, ``--arch``)."""
    _load_builtin()
    cls = DATASETS.get(name)
    return bool(cls is not None and cls.given_model)


def get_dataset(name: str, root: str | Path | None, **options: Any) -> Dataset:
    """The dataset ``name`` over the directory ``root`` (checked: an existing directory)."""
    cls = dataset_class(name)
    if root is None or not str(root).strip():
        raise CropError(f"--dataset {name} needs --root (the directory holding its files; crop docs DATASETS)")
    dataset = cls(root, **options)
    dataset.check_root()
    return dataset


__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetData",
    "DatasetScenario",
    "UserData",
    "UserId",
    "dataset_class",
    "dataset_names",
    "get_dataset",
    "register_dataset",
    "uses_given_model",
]

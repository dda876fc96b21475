"""Raw sensor streams in a CSV table, with your own model: ``--dataset csv``.

``--root`` is one ``.csv`` file or a directory of them (``*.csv`` directly inside it), each a
long-format table: a header naming ``user``, ``context``, ``label``, ``time`` (seconds) and one
column per sensor channel, then one row per reading (:mod:`crop.data.streams`). Every
recording is resampled onto ``rate`` Hz (linear interpolation within each continuous stretch)
and cut into windows of ``window`` samples every ``stride`` samples; windows that would span
a gap (more than two sample periods between two readings) or a label change are dropped.
After that the data behave exactly as ``--dataset npz``: per-user windows ``X`` ``(n,
channels, window)``, ``y`` and ``context``; the same scenarios (``--scenario CONTEXT``), the
same given model (``--model``, ``--arch``). Labels become classes 0..K-1 in sorted order
(numerically when all are integers); their names are kept (:attr:`DatasetData.classes`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crop.data.datasets import register_dataset
from crop.data.datasets.base import DatasetData, UserData, finish
from crop.data.datasets.npz import GivenModelDataset
from crop.data.streams import check_options, read_streams, table_files
from crop.errors import CropError

DEFAULT_RATE = 50.0  # Hz
DEFAULT_WINDOW = 128  # samples (2.56 s at 50 Hz, as HAPT's windows)
DEFAULT_STRIDE = 64  # samples (half a window)
OPTIONS = ("rate", "window", "stride")


@register_dataset
class CsvDataset(GivenModelDataset):
    name = "csv"
    metric = "balanced_accuracy"

    def __init__(self, root: str | Path, **options: Any) -> None:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise CropError(f"--dataset csv: unknown option {unknown[0]!r}; options: {', '.join(OPTIONS)}")
        rate, window, stride = check_options(
            options.get("rate", DEFAULT_RATE),
            options.get("window", DEFAULT_WINDOW),
            options.get("stride", DEFAULT_STRIDE),
        )
        super().__init__(root, rate=rate, window=window, stride=stride)  # complete, so the cache key is stable

    def check_root(self) -> None:
        """An existing, readable directory or ``.csv`` file (one-line error otherwise)."""
        if self.root.is_file():
            if self.root.suffix.lower() != ".csv":
                raise CropError(f"--root {self.root}: give a .csv file or a directory of .csv files")
            if not os.access(self.root, os.R_OK):
                raise CropError(f"--root {self.root}: not readable")
            return
        super().check_root()

    def files(self) -> list[Path]:
        return table_files(self.root)

    def read(self) -> DatasetData:
        o = self.options
        table = read_streams(self.root, o["rate"], o["window"], o["stride"])
        users = {u: UserData(X, y, context) for u, (X, y, context) in table.users.items()}
        return finish(self, users, classes=table.classes)

"""ExtraSensory (Vaizman et al., 2017): walking vs sitting, context = where the phone is.

Files under ``--root`` (the public release, unzipped):

* ``<UUID>.features_labels.csv.gz`` per user: a header ``timestamp, <sensor>:<feature>...,
  label:<LABEL>..., label_source`` and one row per minute-example; label cells are ``1``, ``0``
  or empty / ``nan`` (missing).
* only for ``extrasensory-raw``: ``raw_acc/<UUID>/<timestamp>.m_raw_acc.dat`` and
  ``proc_gyro/<UUID>/<timestamp>.m_proc_gyro.dat`` (the raw-measurement zips), one burst per
  example, rows ``time x y z`` (whitespace separated, time in seconds).

Examples: a row is **walking** (class 1) when ``label:FIX_walking`` is 1 and ``label:SITTING`` is
not, **sitting** (class 0) in the opposite case, otherwise dropped; its context is the one of
``label:PHONE_IN_HAND`` (``hand``), ``label:PHONE_IN_POCKET`` (``pocket``),
``label:PHONE_IN_BAG`` (``bag``) that is 1 (rows with none or several are dropped).

Input of the CNN-GRU:

* ``extrasensory``: the 26 phone-accelerometer (``raw_acc:``) and 26 gyroscope (``proc_gyro:``)
  features of :data:`FEATURES` as ``(2, 26)`` (sensor x feature); rows with a missing feature
  are dropped;
* ``extrasensory-raw``: each burst resampled by linear interpolation onto 800 points at 40 Hz
  (20 s) over its own time axis: ``(6, 800)`` = acc x, y, z, gyro x, y, z; examples without
  both bursts (or with fewer than 2 samples) are dropped.

A user whose file gives no usable row (in the public release, several users never have the
phone in hand, pocket or bag while labelled walking or sitting) is left out: the load says
how many and which in one :class:`~crop.errors.DataWarning`, and asking for such a user says
that the user exists but has no usable rows, and why.

Users are named by their UUID (upper case); ``--users 80,9D`` match by prefix, as the paper
names its personalization users (80, 9D, B7, 61, 7C). Generic model: one, trained on the other
users with 10 of every 52 held out for validation (the paper: 42 train, 10 validation).
Scenarios (Table 2): ``extrasensory:1`` available hand + pocket, unseen bag;
``extrasensory:2`` available bag + pocket, unseen hand.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from pathlib import Path

import numpy as np
from torch import nn

from crop.data.datasets import register_dataset
from crop.data.datasets.base import Dataset, DatasetData, UserData, UserId, finish
from crop.errors import CropError

FEATURE_NAMES = (
    *(f"magnitude_stats:{s}" for s in ("mean", "std", "moment3", "moment4", "percentile25", "percentile50")),
    *(f"magnitude_stats:{s}" for s in ("percentile75", "value_entropy", "time_entropy")),
    *(f"magnitude_spectrum:log_energy_band{i}" for i in range(5)),
    "magnitude_spectrum:spectral_entropy",
    "magnitude_autocorrelation:period",
    "magnitude_autocorrelation:normalized_ac",
    *(f"3d:{s}" for s in ("mean_x", "mean_y", "mean_z", "std_x", "std_y", "std_z", "ro_xy", "ro_xz", "ro_yz")),
)
SENSORS = ("raw_acc", "proc_gyro")
FEATURES = tuple(f"{sensor}:{name}" for sensor in SENSORS for name in FEATURE_NAMES)  # 2 x 26
WALKING, SITTING = "label:FIX_walking", "label:SITTING"
CONTEXT_LABELS = {"hand": "label:PHONE_IN_HAND", "pocket": "label:PHONE_IN_POCKET", "bag": "label:PHONE_IN_BAG"}
REQUIRED = ("timestamp", *FEATURES, WALKING, SITTING, *CONTEXT_LABELS.values())
SUFFIX = ".features_labels.csv.gz"
BURST_HZ, BURST_SECONDS = 40, 20
BURST_LENGTH = BURST_HZ * BURST_SECONDS
_UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


def read_features_labels(path: Path) -> tuple[list[str], np.ndarray]:
    """Header and cells (str array ``(rows, columns)``) of one ``features_labels.csv.gz``."""
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, csv.Error) as exc:
        raise CropError(f"{path}: not a readable gzip CSV file ({type(exc).__name__}: {exc})") from None
    if not rows:
        raise CropError(f"{path}: empty file (expected a header row)")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CropError(f"{path}: missing column {missing[0]!r}{more}")
    body = rows[1:]
    bad = next((i for i, r in enumerate(body) if len(r) != len(header)), None)
    if bad is not None:
        raise CropError(f"{path}: row {bad + 2} has {len(body[bad])} cells, the header {len(header)}")
    return header, np.asarray(body, dtype=str).reshape(len(body), len(header))


def _numbers(cells: np.ndarray, path: Path, what: str) -> np.ndarray:
    cleaned = np.where(np.char.strip(cells) == "", "nan", cells)
    try:
        return cleaned.astype(np.float64)
    except ValueError:
        raise CropError(f"{path}: non-numeric value in the {what} columns") from None


NO_ROWS = "the file has no rows"
NOT_LABELLED = "no row is labelled walking or sitting (label:FIX_walking or label:SITTING, not both)"
NO_PLACE = (
    "no row labelled walking or sitting has the phone in exactly one of the scenarios' contexts "
    "(label:PHONE_IN_HAND, label:PHONE_IN_POCKET, label:PHONE_IN_BAG)"
)
NO_FEATURES = "every labelled row in hand, pocket or bag misses a phone accelerometer or gyroscope feature"
NO_BURSTS = "no labelled row in hand, pocket or bag has both raw bursts (raw_acc and proc_gyro)"


def examples_of(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(timestamps, features (n, 2, 26), y (n,), context (n,))`` of the usable rows of a file
    (features may hold NaN; the caller decides)."""
    return _examples(path)[:4]


def _examples(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """:func:`examples_of` and why no row is usable (for a file without one)."""
    header, cells = read_features_labels(path)
    col = {h: i for i, h in enumerate(header)}
    labels = _numbers(cells[:, [col[c] for c in (WALKING, SITTING, *CONTEXT_LABELS.values())]], path, "label")
    bad = ~np.isnan(labels) & (labels != 0) & (labels != 1)
    if bad.any():
        raise CropError(f"{path}: label cells must be 1, 0 or missing, found {labels[bad][0]:g}")
    walking, sitting, places = labels[:, 0] == 1, labels[:, 1] == 1, labels[:, 2:] == 1
    keep = (walking ^ sitting) & (places.sum(axis=1) == 1)
    features = _numbers(cells[:, [col[c] for c in FEATURES]], path, "feature").reshape(len(cells), 2, -1)
    times = _numbers(cells[:, [col["timestamp"]]], path, "timestamp")[:, 0]
    context = np.asarray(list(CONTEXT_LABELS))[places.argmax(axis=1)]
    why = NO_ROWS if not len(cells) else NOT_LABELLED if not (walking ^ sitting).any() else NO_PLACE
    return times[keep], features[keep], walking[keep].astype(np.int64), context[keep], why


def read_burst(path: Path) -> np.ndarray | None:
    """A raw burst ``(3, 800)`` on a 40 Hz grid over its own time axis, or ``None`` if unusable."""
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise CropError(f"{path}: not a burst file of rows 'time x y z' ({exc})") from None
    if values.shape[1] != 4:
        raise CropError(f"{path}: burst rows must have 4 columns (time x y z), found {values.shape[1]}")
    if len(values) < 2 or not np.isfinite(values).all():
        return None
    t = values[:, 0] - values[0, 0]
    if np.any(np.diff(t) < 0):
        return None
    grid = np.arange(BURST_LENGTH) / BURST_HZ
    return np.stack([np.interp(grid, t, values[:, k]) for k in (1, 2, 3)])


@register_dataset
class ExtraSensory(Dataset):
    name = "extrasensory"
    metric = "balanced_accuracy"
    class_names = ("sitting", "walking")
    paper_users = ("80", "9D", "B7", "61", "7C")  # UUID prefixes (Table 2)
    families = {
        "extrasensory": {1: (("hand", "pocket"), {"bag": ("bag",)}), 2: (("bag", "pocket"), {"hand": ("hand",)})}
    }
    default_family = "extrasensory"
    val_fraction = 10 / 52
    raw = False
    version = 2  # 2: users without usable rows recorded with why
    sample_word = "rows"

    def files(self) -> list[Path]:
        found = sorted(self.root.glob(f"*{SUFFIX}"))
        if self.raw:
            found += sorted(self.root.glob("raw_acc/*/*.m_raw_acc.dat"))
            found += sorted(self.root.glob("proc_gyro/*/*.m_proc_gyro.dat"))
        return found

    def read(self) -> DatasetData:
        tables = sorted(self.root.glob(f"*{SUFFIX}"))
        if not tables:
            raise CropError(f"{self.root}: no *{SUFFIX} files (the ExtraSensory per-user feature files)")
        users: dict[UserId, UserData] = {}
        reasons: dict[UserId, str] = {}
        for path in tables:
            uuid = path.name[: -len(SUFFIX)].upper()
            if not _UUID.match(uuid):
                raise CropError(f"{path}: the file name must be <UUID>{SUFFIX}")
            times, features, y, context, why = _examples(path)
            if len(y):
                why = NO_BURSTS if self.raw else NO_FEATURES
            if self.raw:
                X, keep = self._bursts(uuid, times)
                y, context = y[keep], context[keep]
            else:
                keep = np.isfinite(features).all(axis=(1, 2))
                X, y, context = features[keep], y[keep], context[keep]
            users[uuid] = UserData(np.asarray(X, np.float32), y, context.astype(str))
            reasons[uuid] = why
        return finish(self, users, reasons=reasons)

    def _bursts(self, uuid: str, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        acc_dir, gyro_dir = self.root / "raw_acc" / uuid, self.root / "proc_gyro" / uuid
        if not acc_dir.is_dir() and not (self.root / "raw_acc" / uuid.lower()).is_dir():
            raise CropError(f"{self.root / 'raw_acc' / uuid}: missing (extrasensory-raw needs the raw_acc bursts)")
        acc_dir = acc_dir if acc_dir.is_dir() else self.root / "raw_acc" / uuid.lower()
        gyro_dir = gyro_dir if gyro_dir.is_dir() else self.root / "proc_gyro" / uuid.lower()
        X, keep = [], []
        for t in times:
            stamp = f"{int(t)}"
            acc = acc_dir / f"{stamp}.m_raw_acc.dat"
            gyro = gyro_dir / f"{stamp}.m_proc_gyro.dat"
            a = read_burst(acc) if acc.is_file() else None
            g = read_burst(gyro) if gyro.is_file() else None
            keep.append(a is not None and g is not None)
            if keep[-1]:
                X.append(np.concatenate([a, g]))
        return (np.stack(X) if X else np.zeros((0, 6, BURST_LENGTH))), np.asarray(keep, dtype=bool)

    def make_model(self, data: DatasetData) -> nn.Module:
        from crop.models.paper import ExtraSensoryCNNGRU

        channels, length = data.input_shape
        return ExtraSensoryCNNGRU(channels=channels, length=length, n_classes=2, stride=2 if self.raw else 1)

    # Users are UUIDs; the paper names them by a prefix.

    def paper_user_ids(self) -> list[UserId]:
        """Every UUID that starts with one of the paper's prefixes (all of them are kept out of
        the shared generic model, even when a prefix is ambiguous)."""
        present = sorted(self.load().users)
        return [u for prefix in self.paper_users for u in present if str(u).startswith(prefix)]

    def default_users(self) -> list[UserId]:
        present = sorted(self.load().users)
        for prefix in self.paper_users:
            if sum(str(u).startswith(prefix) for u in present) > 1:
                raise CropError(f"{self.root}: several UUIDs start with the paper's prefix {prefix}; give --users")
        return super().default_users()

    def parse_user(self, text: str) -> UserId:
        prefix = text.strip().upper()
        data = self.load()
        present = sorted(data.users)
        match = [u for u in present if str(u).startswith(prefix)] if prefix else []
        if len(match) == 1:
            return match[0]
        unusable = [u for u in sorted(data.unusable) if str(u).startswith(prefix)] if prefix else []
        if not match and len(unusable) == 1:
            self.check_usable(unusable[0], text)
        if not match and unusable:
            raise CropError(
                f"extrasensory user {text!r}: the {len(unusable)} UUIDs under {self.root} that start with it "
                f"have no usable rows ({', '.join(map(str, unusable))})"
            )
        if not match:
            raise CropError(f"unknown extrasensory user {text!r}: no UUID under {self.root} starts with it")
        raise CropError(
            f"extrasensory user {text!r} is ambiguous: {len(match)} UUIDs start with it; give more characters"
        )


@register_dataset
class ExtraSensoryRaw(ExtraSensory):
    name = "extrasensory-raw"
    raw = True


def write_csv_gz(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write a ``features_labels.csv.gz``-style file (used by the replica writer)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write(text.getvalue())

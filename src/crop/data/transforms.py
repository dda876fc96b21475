"""Context transforms for 6-channel inertial windows (acc x/y/z in g, gyro x/y/z in rad/s).

Used to build unseen contexts (a rotated sensor frame, sensor faults) and as augmentation when
training a generic model that should know every orientation. All functions are pure: they take
``X`` of shape ``(n, 6, time)`` and a seeded generator and return a new array.
"""

from __future__ import annotations

import numpy as np

# scipy's Rotation is imported where it is used: importing scipy.spatial costs about a second
# of every command's start-up, and most commands never rotate anything.


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices drawn uniformly from SO(3), shape ``(n, 3, 3)``."""
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=rng).as_matrix().astype(np.float32).reshape(n, 3, 3)


def rotate(X: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Express both sensors in a rotated frame: ``R`` is ``(3, 3)`` or one per window ``(n, 3, 3)``.

    The accelerometer and the gyroscope sit on the same board, so both triads turn together.
    """
    R = np.asarray(R, dtype=np.float32)
    if R.ndim == 2:
        R = np.broadcast_to(R, (X.shape[0], 3, 3))
    out = np.empty_like(X)
    out[:, 0:3] = np.einsum("nij,njt->nit", R, X[:, 0:3])
    out[:, 3:6] = np.einsum("nij,njt->nit", R, X[:, 3:6])
    return out


# Sensor faults ("sensor errors" of the research programme). Magnitudes are in sensor units.
FAULTS = ("noise", "bias-drift", "dead-gyro", "saturation")


def add_noise(X: np.ndarray, rng: np.random.Generator, acc_sigma: float = 0.1, gyro_sigma: float = 0.1) -> np.ndarray:
    """White Gaussian noise: ``acc_sigma`` g on the accelerometer, ``gyro_sigma`` rad/s on the gyroscope."""
    sigma = np.array([acc_sigma] * 3 + [gyro_sigma] * 3, dtype=np.float32)[None, :, None]
    return X + rng.standard_normal(X.shape).astype(np.float32) * sigma


def bias_drift(X: np.ndarray, rng: np.random.Generator, max_bias: float = 0.3) -> np.ndarray:
    """A bias that grows linearly over the session, reaching up to ``max_bias`` per channel.

    Window ``i`` of ``n`` (recording order) gets bias ``d_c * i / (n - 1)``, ``d_c ~ U(-max_bias, max_bias)``.
    """
    n = X.shape[0]
    final = rng.uniform(-max_bias, max_bias, size=X.shape[1]).astype(np.float32)
    ramp = (np.arange(n, dtype=np.float32) / max(n - 1, 1))[:, None, None]
    return X + ramp * final[None, :, None]


def dead_gyro(X: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """The gyroscope reports zeros."""
    out = X.copy()
    out[:, 3:6] = 0.0
    return out


def saturate(
    X: np.ndarray, rng: np.random.Generator | None = None, acc_limit: float = 1.2, gyro_limit: float = 1.0
) -> np.ndarray:
    """Readings clip at the sensor's range: ``acc_limit`` g, ``gyro_limit`` rad/s."""
    out = X.copy()
    out[:, 0:3] = np.clip(out[:, 0:3], -acc_limit, acc_limit)
    out[:, 3:6] = np.clip(out[:, 3:6], -gyro_limit, gyro_limit)
    return out


def apply_fault(kind: str, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    funcs = {"noise": add_noise, "bias-drift": bias_drift, "dead-gyro": dead_gyro, "saturation": saturate}
    return funcs[kind](X, rng)


# Held-out context changes: never used to build a shipped scenario's training or to choose any
# setting; ``hapt-heldout`` evaluates on them to check that results carry over to shifts nobody tuned for.
HELDOUT_SHIFTS = ("tilt-30", "flip-180", "gain", "tempo")


def tilt(X: np.ndarray, rng: np.random.Generator, degrees: float = 30.0) -> np.ndarray:
    """The phone tilted by ``degrees`` about a random axis (both sensors together)."""
    from scipy.spatial.transform import Rotation

    axis = rng.standard_normal(3)
    R = Rotation.from_rotvec(np.radians(degrees) * axis / np.linalg.norm(axis)).as_matrix().astype(np.float32)
    return rotate(X, R)


def flip(X: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """The phone worn the other way round: a 180-degree turn about the device's z axis."""
    return rotate(X, np.diag([-1.0, -1.0, 1.0]).astype(np.float32))


def gain(X: np.ndarray, rng: np.random.Generator, spread: float = 0.15) -> np.ndarray:
    """Per-channel calibration error: each channel scaled by a factor in ``1 +- spread``."""
    factors = rng.uniform(1 - spread, 1 + spread, size=X.shape[1]).astype(np.float32)
    return X * factors[None, :, None]


def resample(X: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Read each window at fractional sample positions ``source`` (linear interpolation; positions
    beyond the window read its last sample, since a window holds no later ones)."""
    T = X.shape[2]
    source = np.clip(source, 0, T - 1)
    lo = np.floor(source).astype(int)
    hi = np.minimum(lo + 1, T - 1)
    w = (source - lo).astype(np.float32)
    return (X[:, :, lo] * (1 - w) + X[:, :, hi] * w).astype(np.float32)


def tempo(X: np.ndarray, rng: np.random.Generator | None = None, rate: float = 1.15) -> np.ndarray:
    """Movements ``rate`` times faster: each window resampled (linear interpolation) so that it
    covers ``rate`` times the time, keeping its length (the end reads the window's last sample)."""
    return resample(X, np.arange(X.shape[2]) * rate)


def apply_heldout(kind: str, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    funcs = {"tilt-30": tilt, "flip-180": flip, "gain": gain, "tempo": tempo}
    return funcs[kind](X, rng)

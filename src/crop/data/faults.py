"""The fault library: sensor faults and noise of inertial data, each with a severity.

Every fault is a pure function ``fault(X, severity, rng) -> X'`` on 6-channel windows
``(n, 6, time)`` (accelerometer x/y/z in g, gyroscope x/y/z in rad/s) that returns a new array,
with **severity 0 the identity** (the same values, bit for bit). Severities are in the fault's own
unit (below); the sweep grids in :data:`SWEEPS` go from 0 to beyond what a working device shows.

=================  ==============================================================  ===============
fault              what happens                                                    severity
=================  ==============================================================  ===============
``noise``          white Gaussian noise on every channel                           sigma (g, rad/s)
``bias-drift``     a per-channel bias growing over the session (recording order)   final bias bound
``dead-gyro``      the gyroscope reads zeros                                       share of windows
``dead-acc``       the accelerometer reads zeros                                   share of windows
``axis-dropout``   single axes read zeros                                          P(axis dead)
``stuck``          one sensor freezes at its last value until the window ends      share of window
``spikes``         impulses (4 g / 8 rad/s) on single samples                      P(sample spiked)
``saturation``     readings clip at the range +-1.2 g / +-1.0 rad/s divided by s   range divisor
``quantization``   readings rounded to a step of ``severity`` units                step (g, rad/s)
``clock-drift``    the sampling clock runs fast by a rate rising 0 -> s over       final rate error
                   the window (a time warp)
``sample-rate``    the sensor samples at a wrong rate: the window covers 1 + s     rate error
                   times the time the model expects (a constant stretch)
=================  ==============================================================  ===============

The four faults of ``hapt-faults`` are ``noise=0.1``, ``bias-drift=0.3``, ``dead-gyro=1`` and
``saturation=1`` here (that scenario keeps its own generator order, so its results do not change).
Faulted data is test data: scenarios put it in unseen contexts only, and no personalization
method is ever given it (the modality-masking methods mask channels themselves, by name).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crop.data import transforms
from crop.errors import CropError

ACC = slice(0, 3)
GYRO = slice(3, 6)
SPIKE_AMPLITUDE = (4.0, 8.0)  # g, rad/s: a shock or an electrical glitch, well outside walking
SATURATION_RANGE = (1.2, 1.0)  # severity 1: the range of hapt-faults' saturation


def _check(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3 or X.shape[1] != 6:
        raise CropError(f"faults apply to 6-channel inertial windows (n, 6, time), got shape {X.shape}")
    return X


def noise(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    return X + (severity * rng.standard_normal(X.shape)).astype(np.float32)


def bias_drift(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    return transforms.bias_drift(X, rng, max_bias=severity)


def _dead(channels: slice) -> Callable[[np.ndarray, float, np.random.Generator], np.ndarray]:
    def fault(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
        out = X.copy()
        hit = rng.random(X.shape[0]) < severity
        out[hit, channels] = 0.0
        return out

    return fault


def axis_dropout(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    dead = rng.random(X.shape[:2]) < severity
    return np.where(dead[:, :, None], np.float32(0.0), X).astype(np.float32)


def stuck(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    out = X.copy()
    T = X.shape[2]
    frozen = int(round(severity * T))
    sensors = rng.integers(0, 2, size=X.shape[0])
    if frozen == 0:
        return out
    start = T - frozen
    for i, s in enumerate(sensors):
        ch = ACC if s == 0 else GYRO
        out[i, ch, start:] = X[i, ch, max(start - 1, 0)][:, None]
    return out


def spikes(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(X.shape) < severity
    sign = np.where(rng.random(X.shape) < 0.5, -1.0, 1.0).astype(np.float32)
    amp = np.array([SPIKE_AMPLITUDE[0]] * 3 + [SPIKE_AMPLITUDE[1]] * 3, dtype=np.float32)[None, :, None]
    return np.where(hit, X + sign * amp, X).astype(np.float32)


def saturation(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    if severity == 0:
        return X.copy()
    return transforms.saturate(X, acc_limit=SATURATION_RANGE[0] / severity, gyro_limit=SATURATION_RANGE[1] / severity)


def quantization(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    if severity == 0:
        return X.copy()
    return (np.round(X / severity) * severity).astype(np.float32)


def clock_drift(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    if severity == 0:
        return X.copy()
    T = X.shape[2]
    t = np.arange(T, dtype=np.float64)
    # instantaneous rate 1 + severity * t / T: the position is its integral
    return transforms.resample(X, t + severity * t**2 / (2 * T))


def sample_rate(X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    if severity == 0:
        return X.copy()
    return transforms.resample(X, np.arange(X.shape[2], dtype=np.float64) * (1 + severity))


@dataclass(frozen=True)
class Fault:
    """One fault of the library: its function, the unit of its severity, the largest severity
    accepted and the sweep grid."""

    name: str
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    unit: str
    maximum: float
    sweep: tuple[float, ...]
    touches: str  # "acc", "gyro" or "both": which sensor's channels the fault may change


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("noise", noise, "sigma (g, rad/s)", 10.0, (0.0, 0.05, 0.1, 0.2, 0.4), "both"),
        Fault("bias-drift", bias_drift, "final bias bound (g, rad/s)", 10.0, (0.0, 0.15, 0.3, 0.6, 1.0), "both"),
        Fault("dead-gyro", _dead(GYRO), "share of windows", 1.0, (0.0, 0.25, 0.5, 0.75, 1.0), "gyro"),
        Fault("dead-acc", _dead(ACC), "share of windows", 1.0, (0.0, 0.25, 0.5, 0.75, 1.0), "acc"),
        Fault("axis-dropout", axis_dropout, "P(axis dead)", 1.0, (0.0, 0.1, 0.2, 0.35, 0.5), "both"),
        Fault("stuck", stuck, "share of the window frozen", 1.0, (0.0, 0.25, 0.5, 0.75, 1.0), "both"),
        Fault("spikes", spikes, "P(sample spiked)", 1.0, (0.0, 0.005, 0.01, 0.02, 0.05), "both"),
        Fault(
            "saturation", saturation, "range divisor (1: +-1.2 g, +-1 rad/s)", 20.0, (0.0, 0.5, 1.0, 1.5, 2.0), "both"
        ),
        Fault("quantization", quantization, "step (g, rad/s)", 10.0, (0.0, 0.05, 0.1, 0.2, 0.4), "both"),
        Fault("clock-drift", clock_drift, "final rate error", 1.0, (0.0, 0.1, 0.2, 0.3, 0.5), "both"),
        Fault("sample-rate", sample_rate, "rate error", 1.0, (0.0, 0.1, 0.2, 0.3, 0.5), "both"),
    )
}


def get_fault(name: str) -> Fault:
    try:
        return FAULTS[name]
    except KeyError:
        raise CropError(f"unknown fault {name!r}; choose from {', '.join(FAULTS)}") from None


def check_severity(name: str, severity: float) -> float:
    fault = get_fault(name)
    try:
        value = float(severity)
    except (TypeError, ValueError):
        raise CropError(f"severity of {name} must be a number, got {severity!r}") from None
    if not np.isfinite(value) or value < 0 or value > fault.maximum:
        raise CropError(f"severity of {name} must be in [0, {fault.maximum:g}] ({fault.unit}), got {severity!r}")
    return value


def fault_rng(user: int | str, name: str, severity: float) -> np.random.Generator:
    """The generator of one person's faulted context: fixed by (user, fault, severity), so the
    context is the same across training seeds and whatever other faults a run asks for."""
    key = f"{user}|{name}|{severity!r}".encode()
    return np.random.default_rng([10_000, zlib.crc32(key)])


def apply_fault(name: str, X: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """``X`` with fault ``name`` at ``severity`` (a new array; severity 0 returns an equal copy)."""
    X = _check(X)
    severity = check_severity(name, severity)
    return get_fault(name).apply(X, severity, rng)


def context_name(name: str, severity: float) -> str:
    """How results name a faulted context: ``dead-gyro=1``, ``noise=0.05``; every fault at 0 is ``clean``."""
    return "clean" if severity == 0 else f"{name}={severity:g}"


def parse_faults(spec: str) -> list[tuple[str, float]]:
    """``"dead-gyro=1,noise=0.1"`` -> ``[("dead-gyro", 1.0), ("noise", 0.1)]``. ``NAME`` alone is
    its sweep grid (``"dead-acc"`` -> every severity of :data:`SWEEPS`); ``all`` is every fault's
    grid. Unknown names, severities out of range, empty items and repeats are refused."""
    if not isinstance(spec, str) or not spec.strip():
        raise CropError("no fault given (e.g. --faults dead-gyro=1,noise=0.1 or --faults all)")
    out: list[tuple[str, float]] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            raise CropError(f"empty item in --faults {spec!r}")
        name, sep, value = item.partition("=")
        name = name.strip()
        if name == "all" and not sep:
            pairs = [(f.name, s) for f in FAULTS.values() for s in f.sweep]
        elif not sep:
            pairs = [(name, s) for s in get_fault(name).sweep]
        else:
            if not value.strip():
                raise CropError(f"missing severity in {item!r} (NAME=SEVERITY)")
            pairs = [(name, check_severity(name, value.strip()))]
        out += pairs
    return check_faults(out, repr(spec))


def check_faults(faults: list[tuple[str, float]], where: str = "--faults") -> list[tuple[str, float]]:
    """``(fault, severity)`` pairs as floats, each fault and severity checked; an empty list or a
    pair given twice is refused (``where`` names the list in the message)."""
    if not faults:
        raise CropError(f"{where} is empty")
    out: list[tuple[str, float]] = []
    for name, severity in faults:
        pair = (name, check_severity(name, severity))
        if pair in out:
            raise CropError(f"fault {context_name(*pair)} given twice in {where}")
        out.append(pair)
    return out


def faulted_contexts(X: np.ndarray, user: int | str, faults: list[tuple[str, float]]) -> dict[str, np.ndarray]:
    """One array per context name: every (fault, severity) of ``faults`` applied to ``X``;
    severities 0 share the single ``clean`` context."""
    out: dict[str, np.ndarray] = {}
    for name, severity in faults:
        key = context_name(name, severity)
        if key not in out:
            out[key] = apply_fault(name, X, severity, fault_rng(user, name, severity))
    return out


def parse_context(name: str) -> tuple[str, float] | None:
    """``"session 2 dead-gyro=0.5"`` or ``"dead-gyro=0.5"`` -> ``("dead-gyro", 0.5)``; a clean
    context -> ``("clean", 0.0)``; a context of no fault -> ``None``."""
    last = name.rsplit(" ", 1)[-1]
    if last == "clean":
        return ("clean", 0.0)
    fault, sep, value = last.partition("=")
    if not sep or fault not in FAULTS:
        return None
    try:
        return (fault, float(value))
    except ValueError:
        return None

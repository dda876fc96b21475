"""A cheap sensor-fault detector for 6-channel inertial windows, and the repair it enables.

For each window it flags which sensor (accelerometer, gyroscope) is faulty, so a model can route
around it (:mod:`crop.models.modality`). Every rule is a physical plausibility check with a
threshold fixed from sensor physics, not fitted to any fault scenario; their false-alarm rates on
clean HAPT windows and miss rates on faulted ones are measured in docs/FAULTS.md
(``benchmarks/fault_detector.py``).

=================  ===========================================================================
rule               a sensor is flagged when ...
=================  ===========================================================================
``nonfinite``      any of its readings is NaN or infinite
``flatline``       one of its axes does not change over the whole window (peak-to-peak < 1e-6)
``stuck``          all three axes repeat the same reading for >= 25 samples (0.5 s at 50 Hz)
``saturation``     an axis sits at its window extreme, >= 0.5 units from zero, for >= 4
                   consecutive samples (a clipped reading; real motion passes through its peak)
``magnitude``      accelerometer: window mean of |a| below 0.5 g (gravity is missing) or above
                   4 g, or any |a| > 16 g; gyroscope: any |w| > 35 rad/s (2000 deg/s)
=================  ===========================================================================

Spikes (single samples > 2 g or > 4 rad/s away from the mean of their two neighbours, which
are themselves close to each other) are not a reason to drop a sensor: :func:`repair` replaces
each spiked sample by that mean. Non-finite readings are set to 0 by :func:`repair` (the sensor
is flagged, so a routing model does not read them).

Written with torch tensor operations (no library offers these rules); the same function serves
numpy arrays through :func:`detect_faults`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

RULES = ("nonfinite", "flatline", "stuck", "saturation", "magnitude")
SENSORS = ("acc", "gyro")
FLAT_EPS = 1e-6
STUCK_SAMPLES = 25
SATURATION_SAMPLES = 4
SATURATION_MIN = 0.5
ACC_MEAN_NORM = (0.5, 4.0)
ACC_MAX = 16.0
GYRO_MAX = 35.0
SPIKE = (2.0, 4.0)  # acc g, gyro rad/s


@dataclass
class FaultFlags:
    """What the detector found: ``rules[name]`` is a bool tensor ``(n, 2)`` (accelerometer,
    gyroscope) per rule; ``faulty`` their union; ``spikes`` a bool tensor ``(n, 6, time)``."""

    rules: dict[str, torch.Tensor]
    faulty: torch.Tensor
    spikes: torch.Tensor


def _longest_run_at_least(mask: torch.Tensor, length: int) -> torch.Tensor:
    """``mask (n, T)`` bool -> ``(n,)``: some run of ``length`` consecutive True values
    (a window sum of ``length`` over the running count)."""
    if mask.shape[-1] < length:
        return torch.zeros(mask.shape[0], dtype=torch.bool)
    count = F.pad(mask.to(torch.int32).cumsum(-1), (1, 0))
    return ((count[:, length:] - count[:, :-length]) >= length).any(dim=-1)


def _sensor(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rules for one sensor's readings ``(n, 3, T)`` (finite values only)."""
    n = x.shape[0]
    flat = (x.amax(-1) - x.amin(-1) < FLAT_EPS).any(dim=1)
    same = ((x[..., 1:] - x[..., :-1]).abs() < FLAT_EPS).all(dim=1)  # (n, T-1): no axis moved
    stuck = _longest_run_at_least(same, STUCK_SAMPLES - 1)
    peak = x.abs().amax(-1, keepdim=True)
    at_peak = (x.abs() >= peak - FLAT_EPS) & (peak >= SATURATION_MIN)
    saturated = _longest_run_at_least(at_peak.reshape(n * 3, -1), SATURATION_SAMPLES).reshape(n, 3).any(dim=1)
    return {"flatline": flat, "stuck": stuck, "saturation": saturated}


@torch.no_grad()
def detect(x: torch.Tensor) -> FaultFlags:
    """Flag the faulty sensor(s) of each window of ``x`` ``(n, 6, T)``."""
    x = x.float()
    finite = torch.isfinite(x)
    nonfinite = torch.stack([~finite[:, 0:3].all(-1).all(-1), ~finite[:, 3:6].all(-1).all(-1)], dim=1)
    clean = torch.where(finite, x, torch.zeros((), dtype=x.dtype))
    acc, gyro = clean[:, 0:3], clean[:, 3:6]
    a, g = _sensor(acc), _sensor(gyro)
    norm = acc.norm(dim=1)
    acc_bad = (norm.mean(-1) < ACC_MEAN_NORM[0]) | (norm.mean(-1) > ACC_MEAN_NORM[1]) | (norm.amax(-1) > ACC_MAX)
    gyro_bad = gyro.norm(dim=1).amax(-1) > GYRO_MAX
    rules = {"nonfinite": nonfinite}
    for rule in ("flatline", "stuck", "saturation"):
        rules[rule] = torch.stack([a[rule], g[rule]], dim=1)
    rules["magnitude"] = torch.stack([acc_bad, gyro_bad], dim=1)
    faulty = torch.zeros_like(nonfinite)
    for flags in rules.values():
        faulty = faulty | flags  # not in place: torch.onnx cannot export aten::__ior_
    return FaultFlags(rules, faulty, _spikes(clean))


def _spikes(x: torch.Tensor) -> torch.Tensor:
    thresholds = torch.tensor([SPIKE[0]] * 3 + [SPIKE[1]] * 3, dtype=x.dtype)[None, :, None]
    out = torch.zeros_like(x, dtype=torch.bool)
    if x.shape[-1] < 3:
        return out
    left, mid, right = x[..., :-2], x[..., 1:-1], x[..., 2:]
    between = (left + right) / 2
    out[..., 1:-1] = ((mid - between).abs() > thresholds) & ((left - right).abs() < thresholds)
    return out


@torch.no_grad()
def repair(x: torch.Tensor, flags: FaultFlags) -> torch.Tensor:
    """``x`` with non-finite readings set to 0 and spiked samples replaced by their neighbours' mean."""
    out = torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype))
    if torch.jit.is_tracing() or flags.spikes.any():  # traced (ONNX export): keep the path in the graph
        between = torch.zeros_like(out)
        between[..., 1:-1] = (out[..., :-2] + out[..., 2:]) / 2
        out = torch.where(flags.spikes, between, out)
    return out


def detect_faults(X: np.ndarray) -> dict[str, np.ndarray]:
    """numpy front end of :func:`detect`: ``{rule: (n, 2) bool}`` plus ``"faulty"`` and
    ``"spiked"`` (``(n,)``: the window has a spiked sample)."""
    flags = detect(torch.as_tensor(np.asarray(X, dtype=np.float32)))
    out = {rule: t.numpy() for rule, t in flags.rules.items()}
    out["faulty"] = flags.faulty.numpy()
    out["spiked"] = flags.spikes.flatten(1).any(dim=1).numpy()
    return out

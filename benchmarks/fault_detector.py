"""False-alarm and miss rates of the fault detector (crop.data.detect) on HAPT.

Clean: every window of every HAPT user, both sessions. Faulted: the same windows with each fault
of crop.data.faults at each severity of its sweep grid (and NaN readings, which the library does
not apply because a model without the detector cannot read them at all). A window counts as
*affected* for a sensor when the fault changed that sensor's readings; the miss rate is the share
of affected (window, sensor) pairs the detector does not flag. Faults the detector is not meant to
catch (noise, drift, time warps, quantization) get their flag rate reported, not a miss rate.

    .venv/bin/python benchmarks/fault_detector.py [--out docs/results/fault_detector.md]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from crop.data import hapt
from crop.data.detect import RULES, detect_faults
from crop.data.faults import FAULTS, apply_fault, fault_rng

MEANT = ("dead-gyro", "dead-acc", "axis-dropout", "stuck", "saturation")  # faults the detector is for


def affected(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``(n, 2)``: the fault changed the accelerometer / gyroscope readings of the window."""
    diff = ~np.isclose(before, after, equal_nan=False) | np.isnan(after)
    return np.stack([diff[:, 0:3].any(axis=(1, 2)), diff[:, 3:6].any(axis=(1, 2))], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="also write the Markdown tables here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    X = np.concatenate([hapt.load_session(u, s).X for u in hapt.USERS for s in (1, 2)])
    lines = [f"Clean HAPT windows: {len(X)} (30 users, both sessions).", ""]
    t0 = time.perf_counter()
    flags = detect_faults(X)
    seconds = time.perf_counter() - t0
    lines += ["| rule | accelerometer flagged | gyroscope flagged |", "|---|---|---|"]
    for rule in RULES:
        a, g = flags[rule].mean(axis=0) * 100
        lines.append(f"| {rule} | {a:.2f} % | {g:.2f} % |")
    a, g = flags["faulty"].mean(axis=0) * 100
    lines.append(f"| **any (false alarm)** | **{a:.2f} %** | **{g:.2f} %** |")
    lines.append(f"| windows with a spiked sample (repaired, not flagged) | {flags['spiked'].mean() * 100:.2f} % | |")
    lines += ["", f"Detector time: {seconds * 1e6 / len(X):.1f} us per window (1 thread, batch of {len(X)}).", ""]

    lines += [
        "| fault | severity | affected (acc / gyro) | flagged (acc / gyro) | miss rate on affected | main rule |",
        "|---|---|---|---|---|---|",
    ]
    rng = np.random.default_rng(0)
    nan = X.copy()
    hit = rng.random(len(X)) < 0.5
    sensor = rng.integers(0, 2, len(X))
    for i in np.flatnonzero(hit):
        s = slice(0, 3) if sensor[i] == 0 else slice(3, 6)
        nan[i, s, rng.integers(0, X.shape[2], 5)] = np.nan
    cases = [("nan (5 samples)", 0.5, nan)]
    for name, fault in FAULTS.items():
        for severity in fault.sweep[1:]:
            cases.append((name, severity, apply_fault(name, X, severity, fault_rng(0, name, severity))))
    for name, severity, Y in cases:
        hit = affected(X, Y)
        f = detect_faults(Y)
        flagged = f["faulty"]
        aff = hit.sum()
        miss = (hit & ~flagged).sum() / aff * 100 if aff else float("nan")
        counts = {rule: int((f[rule] & hit).sum()) for rule in RULES}
        main = max(counts, key=counts.get) if aff and max(counts.values()) else "-"
        meant = name in MEANT or name.startswith("nan")
        miss_text = f"{miss:.1f} %" if meant else f"({miss:.1f} %, not a target)"
        lines.append(
            f"| {name} | {severity:g} | {hit[:, 0].mean() * 100:.1f} / {hit[:, 1].mean() * 100:.1f} % "
            f"| {flagged[:, 0].mean() * 100:.1f} / {flagged[:, 1].mean() * 100:.1f} % | {miss_text} | {main} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from pathlib import Path

        from crop.report.files import write_text_atomic

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, text)


if __name__ == "__main__":
    main()

"""Write ``docs/examples/stream.csv``, the sample table of ``--dataset csv`` (docs/DATASETS.md), and
optionally a small generic model for it.

    python docs/examples/make_stream.py                      # rewrites docs/examples/stream.csv
    python docs/examples/make_stream.py --model generic.safetensors   # + a generic model (about 10 s)

The table: two people (``alice``, ``bob``), two contexts (phone in the ``hand``, in the
``pocket``), two activities (``sit``, ``walk``), six channels (accelerometer and gyroscope
x, y, z), read at about 25 Hz with jittered timestamps, three seconds per activity. Bob's
pocket walk misses half a second of readings: a gap, so the windows across it are dropped.
Deterministic (seed 0): running it again writes the same file.

The model (``--model``): crop's built-in 1-D CNN (``hapt_cnn``: 6 channels, 32 samples, 2 classes)
trained briefly on three other simulated people (never alice or bob), so that

    crop bench --dataset csv --root docs/examples/stream.csv --rate 20 --window 32 --stride 4 \\
        --scenario hand --model generic.safetensors --methods generic,finetune --out out/stream

runs as is.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
RAW_RATE = 25.0  # Hz, before jitter
SECONDS = 3.0  # per activity and context


def readings(person: int, context: str, label: str, start: float, rng: np.random.Generator):
    """Timestamps (jittered ~25 Hz) and the six channels of one activity bout."""
    n = int(SECONDS * RAW_RATE)
    t = start + np.arange(n) / RAW_RATE + rng.uniform(-0.004, 0.004, n)
    step = 1.8 + 0.15 * person  # each person walks at their own pace
    if label == "walk":
        acc = np.stack(
            [np.sin(2 * np.pi * step * t), 0.5 * np.cos(2 * np.pi * step * t), 9.8 + np.sin(4 * np.pi * step * t)]
        )
        gyro = np.stack([0.8 * np.cos(2 * np.pi * step * t), 0.3 * np.sin(2 * np.pi * step * t), 0.1 * t / t.max()])
    else:
        acc = np.stack([0.05 * np.ones(n), 0.02 * np.ones(n), 9.8 * np.ones(n)])
        gyro = np.zeros((3, n))
    if context == "pocket":  # the phone lies sideways: gravity on y, motion damped
        acc = np.stack([0.6 * acc[1], acc[2], 0.6 * acc[0]])
        gyro = 0.6 * gyro[[1, 0, 2]]
    values = np.concatenate([acc, gyro]) + rng.normal(0, 0.05, (6, n))
    return t, values.T


def table(people: dict[str, int], seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for user, person in people.items():
        for context in ("hand", "pocket"):
            start = 0.0
            for label in ("sit", "walk"):
                t, values = readings(person, context, label, start, rng)
                keep = np.ones(len(t), bool)
                if user == "bob" and context == "pocket" and label == "walk":
                    keep[30:43] = False  # about half a second without readings: a gap
                for ti, v in zip(t[keep], values[keep], strict=True):
                    rows.append([user, context, label, f"{ti:.3f}", *(f"{x:.4f}" for x in v)])
                start = float(t[-1]) + 1 / RAW_RATE
    return rows


def write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["user", "context", "label", "time", *CHANNELS])
        writer.writerows(rows)


def train_model(path: Path) -> None:
    import tempfile

    import torch

    from crop.data.streams import read_streams
    from crop.models.hapt import HAPTNet
    from crop.models.io import save_model
    from crop.models.paper import set_standardization

    with tempfile.TemporaryDirectory() as tmp:
        others = Path(tmp) / "others.csv"
        write(others, table({"carol": 2, "dan": 3, "erin": 4}, seed=1))
        streams = read_streams(others, 20.0, 32, 4)
    X = torch.as_tensor(np.concatenate([x for x, _, _ in streams.users.values()]))
    y = torch.as_tensor(np.concatenate([y for _, y, _ in streams.users.values()]))
    torch.manual_seed(0)
    model = HAPTNet(channels=6, n_classes=len(streams.classes), length=32, width=8)
    flat = X.transpose(0, 1).reshape(6, -1)
    set_standardization(model, flat.mean(1), flat.std(1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        for batch in torch.randperm(len(y)).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(X[batch]), y[batch]).backward()
            optimizer.step()
    save_model(model.eval(), path)
    print(f"wrote {path} (classes {', '.join(streams.classes)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "stream.csv")
    parser.add_argument("--model", type=Path, help="also write a generic model for the sample table")
    args = parser.parse_args()
    rows = table({"alice": 0, "bob": 1}, seed=0)
    write(args.out, rows)
    print(f"wrote {args.out} ({len(rows)} rows)")
    if args.model is not None:
        train_model(args.model)


if __name__ == "__main__":
    main()

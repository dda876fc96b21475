"""Small synthetic replicas of each dataset's on-disk format, for tests and demos.

Each writer creates, under ``root``, files in exactly the layout the loader reads (see the
loaders' docstrings and docs/DATASETS.md) for a few users and every context, with signals
made so that the classes are separable, contexts shift them and users differ a little. They
are **not** data: numbers are drawn from a seeded generator, so the same call writes the same
files. Nothing here is ever committed; the tests write them into temporary directories.

    >>> from crop.data.datasets.replica import write_replica
    >>> write_replica("stress", "/tmp/stress-demo")  # doctest: +SKIP
    >>> # crop bench --dataset stress --root /tmp/stress-demo --config tiny.toml --out out/
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------- ExtraSensory

ES_USERS = (
    "80A1C2D3-0000-4000-8000-000000000001",
    "9D00BEEF-0000-4000-8000-000000000002",
    "11111111-0000-4000-8000-000000000003",
    "22222222-0000-4000-8000-000000000004",
    "33333333-0000-4000-8000-000000000005",
)
ES_UNUSABLE_USER = "44444444-0000-4000-8000-000000000006"  # labelled rows, never in hand, pocket or bag


def write_extrasensory(
    root: str | Path,
    *,
    raw: bool = False,
    per_cell: int = 8,
    seed: int = 0,
    unusable_user: bool = False,
    without: dict[str, tuple[str, ...]] | None = None,
) -> Path:
    """``<UUID>.features_labels.csv.gz`` per user (and, with ``raw``, the raw bursts): 5 users
    (two of the paper's personalization prefixes, 80 and 9D), walking / sitting in hand, pocket
    and bag, ``per_cell`` examples each, plus rows the loader must drop (no label, both labels,
    no phone location, a missing feature).

    ``unusable_user``: a sixth user (:data:`ES_UNUSABLE_USER`) whose rows are labelled walking
    or sitting but never have the phone in hand, pocket or bag (as several real users): no
    usable row. ``without``: ``{uuid: places}`` leaves those phone places out of that user's
    file (an empty context for a scenario); the other rows are the same as without it."""
    from crop.data.datasets.extrasensory import CONTEXT_LABELS, FEATURES, SITTING, WALKING, write_csv_gz

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    extra_features = ["watch_acceleration:magnitude_stats:mean", "location:num_valid_updates"]
    labels = [WALKING, SITTING, "label:LYING_DOWN", *CONTEXT_LABELS.values(), "label:PHONE_ON_TABLE"]
    header = ["timestamp", *FEATURES, *extra_features, *labels, "label_source"]
    for u, uuid in enumerate(ES_USERS):
        rows, t = [], 1_444_000_000 + 100_000 * u
        user_shift = rng.normal(0, 0.2, size=len(FEATURES))
        for place_i, place in enumerate(CONTEXT_LABELS):
            for walking in (1, 0):
                for _ in range(per_cell):
                    t += 60
                    f = rng.normal(0, 0.3, size=len(FEATURES)) + user_shift + 1.5 * walking + 0.8 * place_i
                    cells = {WALKING: str(walking), SITTING: str(1 - walking), "label:LYING_DOWN": "0"}
                    cells.update({CONTEXT_LABELS[p]: "1" if p == place else "0" for p in CONTEXT_LABELS})
                    cells["label:PHONE_ON_TABLE"] = "0"
                    row = [str(t), *(f"{v:.6f}" for v in f), "1.0", "nan", *(cells[c] for c in labels), "2"]
                    if place not in (without or {}).get(uuid, ()):
                        rows.append(row)
                    if raw:
                        _write_bursts(root, uuid, t, walking, place_i, rng)
        for kind in ("nolabel", "both", "noplace", "nanfeature"):  # rows the loader drops
            t += 60
            f = [f"{v:.6f}" for v in rng.normal(0, 1, size=len(FEATURES))]
            cells = dict.fromkeys(labels, "0")
            cells[WALKING], cells[SITTING] = {"nolabel": ("", "nan"), "both": ("1", "1")}.get(kind, ("1", "0"))
            cells[CONTEXT_LABELS["hand"]] = "0" if kind == "noplace" else "1"
            if kind == "nanfeature":
                f[3] = "nan"
            rows.append([str(t), *f, "0", "0", *(cells[c] for c in labels), "2"])
        write_csv_gz(root / f"{uuid}.features_labels.csv.gz", header, rows)
    if unusable_user:
        rows, t = [], 1_444_900_000
        for walking in (1, 0) * per_cell:
            t += 60
            cells = dict.fromkeys(labels, "0")
            cells[WALKING], cells[SITTING], cells["label:PHONE_ON_TABLE"] = str(walking), str(1 - walking), "1"
            f = (f"{v:.6f}" for v in rng.normal(0, 0.3, size=len(FEATURES)))
            rows.append([str(t), *f, "1.0", "nan", *(cells[c] for c in labels), "2"])
        write_csv_gz(root / f"{ES_UNUSABLE_USER}.features_labels.csv.gz", header, rows)
    return root


def _write_bursts(root: Path, uuid: str, t: int, walking: int, place: int, rng: np.random.Generator) -> None:
    n = int(rng.integers(700, 820))
    time = t + np.arange(n) / 40.0 + rng.normal(0, 0.001, n).cumsum().clip(-0.01, 0.01)
    phase = np.arange(n) / 40.0 * 2 * np.pi * (1.8 if walking else 0.2)
    for sensor, name, scale in (("raw_acc", "m_raw_acc", 1.0), ("proc_gyro", "m_proc_gyro", 0.5)):
        xyz = np.stack([np.sin(phase + k) * (0.6 * walking + 0.05) * scale + 0.3 * place for k in range(3)], axis=1)
        xyz += rng.normal(0, 0.05, xyz.shape)
        folder = root / sensor / uuid
        folder.mkdir(parents=True, exist_ok=True)
        np.savetxt(folder / f"{t}.{name}.dat", np.column_stack([time, xyz]), fmt="%.5f")


# ---------------------------------------------------------------- Stress (WESAD layout)

STRESS_SUBJECTS = (1, 2, 3, 4, 5, 6)
_BLOCK_S = 150  # seconds per (context, condition) block


def write_stress(
    root: str | Path,
    *,
    subjects: tuple[int, ...] = STRESS_SUBJECTS,
    annotate: bool = True,
    seed: int = 0,
    response: dict[int, float] | None = None,
) -> Path:
    """``S<k>/S<k>.pkl`` (plain dicts of NumPy arrays, protocol 2 as WESAD's) and
    ``S<k>_readme.txt`` per subject; with ``annotate`` a ``contexts.csv`` that gives every
    2.5-minute block its wrist and movement (both wrists, still and moving, each with calm and
    stress blocks). Without it the recording alternates still and moving on one wrist.

    ``response``: a factor per subject (default 1) on the size of their stress response: the
    rise of heart rate (27 bpm at 1) and of skin conductance (3 uS), the extra skin-conductance
    responses (5) and the fall of skin temperature (0.6 deg C). Below 1 the subject's stress is
    harder to tell from calm: a planted, documented difference between people for fairness
    checks. With every factor 1 the files are byte for byte those written without it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    annotation = ["subject,start_s,end_s,wrist,movement"]
    for k in subjects:
        contexts = [("left", "still"), ("left", "moving"), ("right", "still"), ("right", "moving")]
        blocks = [(w, m, cond) for w, m in contexts for cond in (1, 2, 3) if cond != 3 or m == "still"]
        order = rng.permutation(len(blocks))
        blocks = [blocks[i] for i in order]
        signal = {"ACC": [], "BVP": [], "EDA": [], "TEMP": []}
        label = []
        r = 1.0 if response is None else float(response.get(k, 1.0))
        for i, (wrist, movement, cond) in enumerate(blocks):
            stressed = cond == 2
            n = {key: _BLOCK_S * hz for key, hz in (("ACC", 32), ("BVP", 64), ("EDA", 4), ("TEMP", 4))}
            t_acc = np.arange(n["ACC"]) / 32
            shake = (0.4 if movement == "moving" else 0.005) * 64
            side = 1.0 if wrist == "left" else -1.0
            acc = np.stack([side * 20 + shake * np.sin(2 * np.pi * 1.5 * t_acc + j) for j in range(3)], axis=1)
            signal["ACC"].append(acc + rng.normal(0, 0.3, acc.shape) + np.array([0, 0, 60]))
            hr = 68 + (27 * r if stressed else 0) + k + rng.normal(0, 2)
            t_bvp = np.arange(n["BVP"]) / 64
            signal["BVP"].append((50 * np.sin(2 * np.pi * hr / 60 * t_bvp) + rng.normal(0, 3, n["BVP"]))[:, None])
            level = 2.0 + (3.0 * r if stressed else 0.0) + 0.2 * k + (0.5 if wrist == "right" else 0.0)
            t_eda = np.arange(n["EDA"]) / 4
            bumps = sum(
                np.exp(-((t_eda - c) ** 2) / 8) for c in rng.uniform(0, _BLOCK_S, 1 + round(5 * r) if stressed else 1)
            )
            signal["EDA"].append((level + 0.3 * bumps + rng.normal(0, 0.02, n["EDA"]))[:, None])
            temp = (
                33.5 - (0.6 * r if stressed else 0.0) + np.linspace(0, 0.1, n["TEMP"]) + rng.normal(0, 0.01, n["TEMP"])
            )
            signal["TEMP"].append(temp[:, None])
            label.append(np.full(_BLOCK_S * 700, cond, dtype=np.int8))
            annotation.append(f"S{k},{i * _BLOCK_S},{(i + 1) * _BLOCK_S},{wrist},{movement}")
        data = {
            "signal": {"wrist": {key: np.concatenate(v).astype(np.float64) for key, v in signal.items()}},
            "label": np.concatenate(label),
            "subject": f"S{k}",
        }
        folder = root / f"S{k}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"S{k}.pkl").write_bytes(pickle.dumps(data, protocol=2))
        hand = "left" if k % 3 == 0 else "right"
        (folder / f"S{k}_readme.txt").write_text(
            "### Personal information ###\n"
            f"Age: {24 + k}\nHeight (cm): {160 + 3 * k}\nWeight (kg): {55 + 2 * k}\n"
            f"Gender: {'female' if k % 2 else 'male'}\nDominant hand: {hand}\n\n"
            "### Study pre-requisites ###\nDid you drink coffee today? NO\n"
        )
    if annotate:
        (root / "contexts.csv").write_text("\n".join(annotation) + "\n")
    return root


# ---------------------------------------------------------------- WIDAR 3.0 BVP

WIDAR_FILE_USERS = (1, 2, 3, 4, 5)  # crop users 0-4; 0, 1, 2 are the paper's
_ROOMS = {1: ("20181130", (1, 2, 3), 1), 2: ("20181209", (4, 5), 2)}  # date, orientations, repetitions


WIDAR_DAMAGED = ("empty", "truncated", "empty-array", "not-matlab")


def write_widar(
    root: str | Path,
    *,
    file_users: tuple[int, ...] = WIDAR_FILE_USERS,
    seed: int = 0,
    damaged: tuple[str, ...] = (),
    without_room: dict[int, int] | None = None,
) -> Path:
    """``BVP/<date>-VS/[6-link/]user<k>/user<k>-<g>-<loc>-<ori>-<rep>-<suffix>.mat`` with
    ``velocity_spectrum_ro`` (20 x 20 x T, T between 12 and 30): the six gestures in room 1
    (20181130, orientations 1-3, one repetition) and room 2 (20181209, orientations 4-5, two),
    plus a gesture outside the six (Draw-N) that the loader leaves out.

    ``damaged``: extra files of the first user, one per kind of :data:`WIDAR_DAMAGED` (a 0-byte
    file, a truncated one, one whose ``velocity_spectrum_ro`` is empty (20 x 20 x 0), one that is
    not MATLAB at all), as the real release has. ``without_room``: ``{file user: room}`` leaves
    that room out for that user (an empty context); the other files are the same."""
    from scipy.io import savemat

    from crop.data.datasets.widar import CLASSES, GESTURES_BY_DATE

    root = Path(root)
    rng = np.random.default_rng(seed)
    grid = np.arange(20)
    for k in file_users:
        for room, (date, orientations, repetitions) in _ROOMS.items():
            folder = root / "BVP" / f"{date}-VS" / ("6-link" if date != "20181130" else "") / f"user{k}"
            folder.mkdir(parents=True, exist_ok=True)
            ids = {name: i for i, name in GESTURES_BY_DATE[date].items()}
            names = [*CLASSES, *(["Draw-N(Horizontal)"] if "Draw-N(Horizontal)" in ids else [])]
            for name in names:
                g = CLASSES.index(name) if name in CLASSES else 6
                for ori, rep in ((o, r) for o in orientations for r in range(1, repetitions + 1)):
                    T = int(rng.integers(12, 31))
                    t = np.linspace(0, 1, T)
                    cx = 10 + 6 * np.cos(2 * np.pi * (t * (1 + g % 3) + g / 6))
                    cy = 10 + 6 * np.sin(2 * np.pi * (t * (1 + g // 3) + g / 6)) + (ori - 3)
                    blob = np.exp(-((grid[:, None, None] - cx) ** 2 + (grid[None, :, None] - cy) ** 2) / 6)
                    bvp = 0.05 * blob * (1.0 if room == 1 else 0.6) + rng.uniform(0, 0.004 * room, (20, 20, T))
                    bvp *= 1 + 0.05 * k
                    name_ = f"user{k}-{ids[name]}-{int(rng.integers(1, 6))}-{ori}-{rep}-1e-07-100-20-100000-L0.mat"
                    if (without_room or {}).get(k) != room:
                        savemat(folder / name_, {"velocity_spectrum_ro": bvp.astype(np.float64)})
    if damaged:
        _write_damaged_widar(root, file_users[0], damaged)
    return root


def _write_damaged_widar(root: Path, k: int, kinds: tuple[str, ...]) -> None:
    from io import BytesIO

    from scipy.io import savemat

    unknown = sorted(set(kinds) - set(WIDAR_DAMAGED))
    if unknown:
        raise ValueError(f"unknown damaged Widar file {unknown[0]!r}; choose from {', '.join(WIDAR_DAMAGED)}")
    folder = root / "BVP" / "20181130-VS" / f"user{k}"
    folder.mkdir(parents=True, exist_ok=True)
    good = BytesIO()
    savemat(good, {"velocity_spectrum_ro": np.full((20, 20, 15), 0.01)})
    content = {
        "empty": b"",
        "truncated": good.getvalue()[: len(good.getvalue()) // 2],
        "not-matlab": b"this is not a MATLAB file\n" * 8,
    }
    for i, kind in enumerate(kinds):
        path = folder / f"user{k}-1-1-1-{90 + i}-1e-07-100-20-100000-L0.mat"  # Push&Pull, orientation 1
        if kind == "empty-array":
            savemat(path, {"velocity_spectrum_ro": np.zeros((20, 20, 0))})
        else:
            path.write_bytes(content[kind])


# ---------------------------------------------------------------- PERCEPT-R-style features

PERCEPT_SPEAKERS = (17, 25, 100, 101, 102, 103)  # 17, 25: the paper's; the others pre-treatment only


def write_perceptr(root: str | Path, *, features: int = 13, frames: int = 20, seed: int = 0) -> Path:
    """``<speaker>.npz`` with ``X`` (n, features, frames), ``y`` (ratings in [0, 1] for one
    speaker, 0/1 for the others) and ``phase``; speakers 17 and 25 have baseline and treatment
    utterances, the others one phase only."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for s in PERCEPT_SPEAKERS:
        phases = ["baseline", "treatment"] if s in (17, 25) else ["pre-treatment" if s % 2 else "treatment"]
        X, y, phase = [], [], []
        for p in phases:
            for label in (0, 1):
                for _ in range(10):
                    curve = np.sin(np.linspace(0, np.pi, frames)) * (1.5 if label else -1.5)
                    x = (
                        rng.normal(0, 0.5, (features, frames))
                        + curve
                        + (0.7 if p == "treatment" else 0)
                        + 0.1 * (s % 7)
                    )
                    X.append(x)
                    y.append(label if s != 25 else (0.8 if label else 0.2))
                    phase.append(p)
        np.savez(root / f"{s}.npz", X=np.asarray(X, np.float32), y=np.asarray(y), phase=np.asarray(phase))
    return root


# ---------------------------------------------------------------- your own data (npz)


def write_npz(root: str | Path, *, users: tuple[str, ...] = ("alice", "bob"), features: int = 8, seed: int = 0) -> Path:
    """``<user>.npz`` (``X`` (n, features), ``y`` in {0, 1, 2}, ``context`` left / right) and an
    ``attributes.csv``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, user in enumerate(users):
        y = np.repeat(np.arange(3), 12)
        context = np.tile(np.array(["left", "right"]).repeat(6), 3)
        X = rng.normal(0, 0.5, (len(y), features)) + y[:, None] + (context == "right")[:, None] * 0.8 + 0.1 * i
        np.savez(root / f"{user}.npz", X=X.astype(np.float32), y=y, context=context)
    rows = ["user,age,gender"] + [f"{u},{30 + i},{'f' if i % 2 else 'm'}" for i, u in enumerate(users)]
    (root / "attributes.csv").write_text("\n".join(rows) + "\n")
    return root


WRITERS = {
    "extrasensory": write_extrasensory,
    "stress": write_stress,
    "widar": write_widar,
    "perceptr": write_perceptr,
    "npz": write_npz,
}


def write_replica(name: str, root: str | Path, **options) -> Path:
    """Write the replica of dataset ``name`` (``extrasensory-raw``: with raw bursts) under ``root``."""
    if name == "extrasensory-raw":
        return write_extrasensory(root, raw=True, **options)
    if name not in WRITERS:
        raise ValueError(f"no replica writer for {name!r}; choose {', '.join([*WRITERS, 'extrasensory-raw'])}")
    return WRITERS[name](root, **options)

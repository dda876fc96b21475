"""Widar3.0 body-velocity profiles (BVP): six gestures, context = room x torso orientation.

Files under ``--root``: the BVP release as unzipped, e.g.
``BVP/20181109-VS/6-link/user1/user1-1-1-1-1-1-1e-07-100-20-100000-L0.mat``. Every ``.mat`` file
named ``user<id>-<gesture>-<torso location>-<face orientation>-<repetition>[-...].mat`` below the
root is read; its **date** (and so its room and gesture numbering) comes from the nearest
directory whose name starts with ``YYYYMMDD``. The file holds ``velocity_spectrum_ro``, a
``20 x 20 x T`` array (x and y velocity bins, T steps of 0.1 s), read with
``scipy.io.loadmat``; MATLAB v7.3 (HDF5) files need ``h5py`` (a one-line error says so).

A file that cannot be read (0 bytes, truncated, not a MATLAB file) or whose
``velocity_spectrum_ro`` is empty (no sample: the release has a few) is **skipped**, and the
load says so in one :class:`~crop.errors.DataWarning`: ``widar: skipped N unreadable files
under ROOT (...), first: PATH (why)``. A readable file with other content (no
``velocity_spectrum_ro``, a wrong shape) is refused with a one-line error.

Each BVP becomes ``(22, 20, 20)``: time first (as channels of the LeNet), zero-padded or cut
to 22 steps (SenseFi's input); the model standardises with SenseFi's constants.

Gesture ids mean different gestures on different dates (:data:`GESTURES_BY_DATE`, transcribed
from the Widar3.0 release notes; on 20181205 they differ between user 2 and user 3). The
paper's six classes (its ids 0, 1, 2, 3, 5, 8 of the 22-gesture list) are :data:`CLASSES`:
push & pull, sweep, clap, slide, draw O (horizontal), draw zigzag (horizontal); every other
gesture is left out. Rooms by date (:data:`ROOM_BY_DATE`): 1 classroom, 2 hall, 3 office.

Users are numbered from 0 as in the paper (crop user ``u`` = Widar ``user<u+1>``); the
personalization users are 0, 1, 2, each served by a generic model trained on every other user
(2 of every 16 held out for validation: the paper's 14/2 split). Contexts ``room<r>/o<k>``
(k = face orientation 1-5). Scenarios (Table 2): ``widar:1`` available room 1 orientations
1-3, unseen room 2 orientations 4-5; ``widar:2`` the reverse. Metric: accuracy.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
from torch import nn

from crop.data.datasets import register_dataset
from crop.data.datasets.base import Dataset, DatasetData, UserData, UserId, finish
from crop.errors import CropError

CLASSES = (
    "Push&Pull",
    "Sweep",
    "Clap",
    "Slide",
    "Draw-O(Horizontal)",
    "Draw-Zigzag(Horizontal)",
)
FRAMES = 22
_BASIC = ("Push&Pull", "Sweep", "Clap", "Slide")
_DRAW_H = tuple(f"Draw-{s}(Horizontal)" for s in ("O", "Zigzag", "N", "Triangle", "Rectangle"))
_DRAW_V = tuple(f"Draw-{s}(Vertical)" for s in ("O", "Zigzag", "N"))
_DIGITS = tuple(f"Draw-{d}" for d in (*range(1, 10), 0))


def _ids(*names: str) -> dict[int, str]:
    return {i: n for i, n in enumerate(names, start=1)}


# date -> {gesture id: gesture}; "20181205/user<k>" where the numbering depends on the user.
GESTURES_BY_DATE: dict[str, dict[int, str]] = {
    "20181109": _ids(*_BASIC, "Draw-Zigzag(Vertical)", "Draw-N(Vertical)"),
    "20181112": _ids(*_DIGITS),
    "20181115": _ids("Push&Pull", "Sweep", "Clap", *_DRAW_V),
    "20181116": _ids(*_DIGITS),
    "20181117": _ids("Push&Pull", "Sweep", "Clap", *_DRAW_V),
    "20181118": _ids("Push&Pull", "Sweep", "Clap", *_DRAW_V),
    "20181121": _ids("Slide", *_DRAW_H),
    "20181127": _ids("Slide", *_DRAW_H),
    "20181128": _ids("Push&Pull", "Sweep", "Clap", *_DRAW_H[:3]),
    "20181130": _ids(*_BASIC, *_DRAW_H),
    "20181204": _ids(*_BASIC, *_DRAW_H),
    "20181205/user2": _ids(*_DRAW_H),
    "20181205/user3": _ids("Slide", *_DRAW_H),
    "20181208": _ids(*_BASIC),
    "20181209": _ids(*_BASIC, *_DRAW_H[:2]),
    "20181211": _ids(*_BASIC, *_DRAW_H[:2]),
}
ROOM_BY_DATE = {
    **dict.fromkeys(("20181109", "20181112", "20181115", "20181116", "20181121", "20181130"), 1),
    **dict.fromkeys(("20181117", "20181118", "20181127", "20181128", "20181204", "20181205", "20181208"), 2),
    "20181209": 2,
    "20181211": 3,
}
_NAME = re.compile(r"^user(\d+)-(\d+)-(\d+)-(\d+)-(\d+)(?:-.*)?\.mat$")
_DATE = re.compile(r"^(\d{8})")


def gesture_of(date: str, user_file_id: int, gesture_id: int) -> str | None:
    """The gesture a file's id means on its date (``None`` when the id is not listed)."""
    table = GESTURES_BY_DATE.get(f"{date}/user{user_file_id}") or GESTURES_BY_DATE.get(date, {})
    return table.get(gesture_id)


class UnreadableFile(CropError):
    """A BVP file that cannot be read or holds no sample (the loader skips it and counts it)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def read_bvp(path: Path) -> np.ndarray:
    """``velocity_spectrum_ro`` of one file as ``(20, 20, T)`` float64 (one-line errors;
    :class:`UnreadableFile` for a file that cannot be read or whose array is empty)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(str(path), variable_names=["velocity_spectrum_ro"])
        bvp = content.get("velocity_spectrum_ro")
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        bvp = _read_hdf5(path)
    except (
        MatReadError,  # 0 bytes or truncated header
        ValueError,
        OSError,
        TypeError,
        IndexError,
        KeyError,
        EOFError,
        OverflowError,
        MemoryError,
        UnicodeDecodeError,
        struct.error,
        zlib.error,
    ) as exc:  # what scipy raises on a damaged or foreign file
        raise UnreadableFile(f"{path}: not a readable MATLAB file ({_first_line(exc)})") from None
    if bvp is None:
        raise CropError(f"{path}: no variable 'velocity_spectrum_ro' (expected a Widar3.0 BVP file)")
    bvp = np.asarray(bvp)
    if bvp.size == 0:
        raise UnreadableFile(f"{path}: velocity_spectrum_ro is empty (shape {bvp.shape}, no sample)")
    if bvp.ndim == 2 and bvp.shape == (20, 20):
        bvp = bvp[:, :, None]
    if bvp.ndim != 3 or bvp.shape[:2] != (20, 20) or not np.issubdtype(bvp.dtype, np.number):
        raise CropError(f"{path}: velocity_spectrum_ro must be a numeric 20 x 20 x T array, got shape {bvp.shape}")
    return bvp.astype(np.float64)


def _read_hdf5(path: Path) -> np.ndarray:
    try:
        import h5py
    except ImportError:
        raise CropError(f"{path}: a MATLAB v7.3 (HDF5) file; install h5py to read it, or save it as v7 (-v7)") from None
    try:
        with h5py.File(path, "r") as f:
            if "velocity_spectrum_ro" not in f:
                return None
            return np.asarray(f["velocity_spectrum_ro"]).T  # HDF5 stores MATLAB arrays transposed
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFile(f"{path}: not a readable HDF5 MATLAB file ({_first_line(exc)})") from None


def to_frames(bvp: np.ndarray, frames: int = FRAMES) -> np.ndarray:
    """``(20, 20, T)`` -> ``(frames, 20, 20)``: time first, zero-padded or cut."""
    x = np.transpose(bvp, (2, 0, 1))[:frames]
    if len(x) < frames:
        x = np.concatenate([x, np.zeros((frames - len(x), *x.shape[1:]))])
    return x


def date_of(path: Path, root: Path) -> str:
    for parent in path.relative_to(root).parents:
        m = _DATE.match(parent.name)
        if m:
            return m.group(1)
    raise CropError(f"{path}: cannot tell its date (room and gesture numbering): no parent directory named YYYYMMDD...")


@register_dataset
class Widar(Dataset):
    name = "widar"
    metric = "accuracy"
    class_names = CLASSES
    paper_users = (0, 1, 2)
    families = {
        "widar": {
            1: (("room1/o1", "room1/o2", "room1/o3"), {"room2 o4-5": ("room2/o4", "room2/o5")}),
            2: (("room2/o4", "room2/o5"), {"room1 o1-3": ("room1/o1", "room1/o2", "room1/o3")}),
        }
    }
    default_family = "widar"
    val_fraction = 2 / 16
    per_user_generic = True
    version = 2  # 2: unreadable and empty files skipped (were an error / all-zero samples)

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*.mat") if _NAME.match(p.name))

    def read(self) -> DatasetData:
        files = self.files()
        if not files:
            raise CropError(
                f"{self.root}: no Widar3.0 BVP files user<id>-<gesture>-<location>-<orientation>-<rep>*.mat"
            )
        parts: dict[UserId, tuple[list, list, list]] = {}
        skipped: list[UnreadableFile] = []
        for path in files:
            m = _NAME.match(path.name)
            assert m is not None
            file_user, gesture_id, _location, orientation, _rep = (int(g) for g in m.groups())
            date = date_of(path, self.root)
            if date not in ROOM_BY_DATE:
                raise CropError(f"{path}: unknown Widar3.0 date {date} (dates: {', '.join(sorted(ROOM_BY_DATE))})")
            gesture = gesture_of(date, file_user, gesture_id)
            if gesture not in CLASSES:
                continue
            try:
                x = to_frames(read_bvp(path))
            except UnreadableFile as exc:
                skipped.append(exc)
                continue
            user = file_user - 1
            X, y, ctx = parts.setdefault(user, ([], [], []))
            X.append(x)
            y.append(CLASSES.index(gesture))
            ctx.append(f"room{ROOM_BY_DATE[date]}/o{orientation}")
        users = {
            u: UserData(np.asarray(X, np.float32), np.asarray(y, np.int64), np.asarray(c, str))
            for u, (X, y, c) in parts.items()
        }
        notes = []
        if skipped:
            s = "s" if len(skipped) > 1 else ""
            notes.append(
                f"widar: skipped {len(skipped)} unreadable file{s} under {self.root} "
                f"(0 bytes, truncated, not MATLAB, or an empty velocity_spectrum_ro), first: {skipped[0]}"
            )
        return finish(self, users, notes=notes)

    def make_model(self, data: DatasetData) -> nn.Module:
        from crop.models.paper import WidarLeNet

        frames, size, _ = data.input_shape
        return WidarLeNet(frames=frames, n_classes=len(CLASSES), size=size)

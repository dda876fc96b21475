"""Sparse model files and sparse CPU inference.

File format: a safetensors file (no pickling) in which every floating tensor of two or more
dimensions whose density is at most ``max_density`` is stored in compressed sparse row form
over its ``(shape[0], rest)`` matrix view: ``<name>::crow`` (int32, rows + 1 offsets),
``<name>::col`` (the smallest of uint8 / int16 / int32 that holds the column count) and
``<name>::val`` (the non-zero values, original dtype). Other tensors are stored dense. The
metadata key ``crop_sparse`` maps each sparse name to its shape; the usual ``crop_arch`` /
``crop_config`` keys are kept, so a built-in architecture is rebuilt by :func:`load_sparse_model`.

:func:`to_sparse_inference` swaps ``Linear`` / ``Conv1d`` layers for versions that multiply by a
``torch.sparse_csr_tensor`` (a convolution as an unfolded matrix product).
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crop.errors import CropError
from crop.models.io import load_model, load_state, model_metadata, read_file, write_tensors


def _csr(matrix: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.detach().contiguous().to_sparse_csr()


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


def save_sparse(
    model: nn.Module, path: str | Path, *, max_density: float = 0.5, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model.state_dict()`` to ``path`` with sparse tensors in CSR form (atomically)."""
    tensors: dict[str, torch.Tensor] = {}
    sparse: dict[str, list[int]] = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        if t.is_floating_point() and t.dim() >= 2 and t.numel() and float((t != 0).float().mean()) <= max_density:
            crow, col, val = to_csr(t)
            tensors[f"{name}::crow"], tensors[f"{name}::col"], tensors[f"{name}::val"] = crow, col, val
            sparse[name] = list(t.shape)
        else:
            tensors[name] = t.contiguous().clone()
    meta = {**model_metadata(model, metadata), "crop_sparse": json.dumps(sparse)}
    return write_tensors(tensors, path, meta)


MAX_DENSE_ELEMENTS = 2**27  # a sparse file never expands to more than this many values per tensor


def load_sparse_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Dense state dict and metadata of a file written by :func:`save_sparse`."""
    raw, meta = read_file(path)
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
    return state, meta


def load_sparse_model(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load a sparse file into ``model`` or, if ``None``, into the built-in architecture it records."""
    if model is None:
        return load_model(path)
    return load_state(model, path).eval()


class SparseLinear(nn.Module):
    """``nn.Linear`` with a CSR weight (inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = _csr(linear.weight)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = torch.sparse.mm(self.weight, flat.T).T
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], -1)


class SparseConv1d(nn.Module):
    """``nn.Conv1d`` (groups 1, zero padding) as a CSR matrix times the unfolded input."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise CropError("SparseConv1d supports groups=1 with numeric zero padding only")
        self.c_out, self.kernel = conv.out_channels, conv.kernel_size[0]
        self.stride, self.padding, self.dilation = conv.stride[0], conv.padding[0], conv.dilation[0]
        # column order (kernel position, input channel) matches the unfolded layout below
        self.weight = _csr(conv.weight.detach().permute(0, 2, 1).reshape(self.c_out, -1))
        self.bias = None if conv.bias is None else conv.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        span = self.dilation * (self.kernel - 1) + 1
        cols = F.pad(x, (self.padding, self.padding)).unfold(2, span, self.stride)[..., :: self.dilation]
        batch, steps = x.shape[0], cols.shape[2]
        cols = cols.permute(3, 1, 0, 2).reshape(-1, batch * steps)  # (K * C_in, B * L_out)
        out = torch.sparse.mm(self.weight, cols).reshape(self.c_out, batch, steps).transpose(0, 1)
        return out + self.bias[:, None] if self.bias is not None else out


def to_sparse_inference(model: nn.Module, *, max_density: float = 0.5) -> nn.Module:
    """A copy of ``model`` whose Linear / Conv1d layers with weight density ``<= max_density``
    multiply by sparse CSR weights. Same outputs up to rounding; eval mode only."""
    out = copy.deepcopy(model).eval()

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            dense = isinstance(child, (nn.Linear, nn.Conv1d))
            if dense and float((child.weight != 0).float().mean()) <= max_density:
                if isinstance(child, nn.Linear):
                    setattr(parent, name, SparseLinear(child))
                elif child.groups == 1 and not isinstance(child.padding, str) and child.padding_mode == "zeros":
                    setattr(parent, name, SparseConv1d(child))
            else:
                swap(child)

    swap(out)
    return out

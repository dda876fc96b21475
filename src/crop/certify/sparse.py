"""Sparse model files and sparse CPU inference.

The file format (safetensors with CSR tensors and a ``crop_sparse`` metadata key) is
:mod:`crop.models.sparse_format`; :func:`save_sparse` and :func:`load_sparse_state` are
re-exported from :mod:`crop.models.io`, and :func:`load_sparse_model` rebuilds a built-in
architecture from such a file.

:func:`to_sparse_inference` swaps ``Linear`` / ``Conv1d`` layers for versions that multiply by a
``torch.sparse_csr_tensor`` (a convolution as an unfolded matrix product).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from crop.errors import CropError
from crop.models.io import load_model, load_sparse_state, load_state, save_sparse
from crop.models.sparse_format import MAX_DENSE_ELEMENTS, from_csr, to_csr

# The file format lives with the model files (crop.models.sparse_format, crop.models.io); its
# names stay importable from here, where sparse models are made.
__all__ = [
    "MAX_DENSE_ELEMENTS",
    "SparseConv1d",
    "SparseLinear",
    "from_csr",
    "load_sparse_model",
    "load_sparse_state",
    "save_sparse",
    "to_csr",
    "to_sparse_inference",
]


def _csr(matrix: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.detach().contiguous().to_sparse_csr()


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

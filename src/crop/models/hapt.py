"""A small 1-D CNN for 6-channel HAPT windows (128 samples at 50 Hz).

Built only from layers every part of ``crop`` understands (Conv1d, BatchNorm1d, ReLU,
AvgPool1d, Flatten, Linear, Dropout, and an affine input standardisation), so it can be pruned,
mixed, exported and certified. About 17 k parameters; the weights file is ~70 KB.
"""

from __future__ import annotations

import torch
from torch import nn


class Standardize(nn.Module):
    """Per-channel ``(x - mean) / std`` with the statistics stored as buffers.

    The generic model carries its training statistics, so raw sensor windows go straight in.
    The buffers have shape ``(channels, 1, ..., 1)`` with ``trailing`` ones: 1 (default) for
    ``(batch, channels, time)`` windows, 0 for feature vectors ``(batch, features)``, 2 for
    ``(batch, channels, height, width)`` inputs. Channel is always the first axis of a sample.
    """

    def __init__(self, channels: int, trailing: int = 1) -> None:
        super().__init__()
        shape = (channels,) + (1,) * trailing
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class HAPTNet(nn.Sequential):
    """Input ``(batch, channels, time)``; output logits ``(batch, n_classes)``.

    ``norm="batch"`` (default) puts a BatchNorm1d after each convolution; ``norm="none"``
    puts an identity there instead (same layer indices), the kind of network the paper's four
    architectures are, whose weights carry everything (no running statistics to go stale after
    pruning or mixing).

    ``widths`` (optional) gives the four layer widths ``(conv1, conv2, conv3, hidden)``
    explicitly instead of ``(width // 2, width, width, 2 * width)``: the shape of a
    channel-pruned network after :func:`crop.certify.compact.compact_model` removed units. It is
    recorded in ``config`` (only when given), so a saved compact model is rebuilt by
    :func:`crop.models.io.load_model`.
    """

    def __init__(
        self,
        channels: int = 6,
        n_classes: int = 6,
        length: int = 128,
        width: int = 32,
        dropout: float = 0.2,
        norm: str = "batch",
        widths: tuple[int, int, int, int] | list[int] | None = None,
    ):
        if norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}")
        pooled = length // 8 // 4
        if widths is None:
            c1, c2, c3, hidden = width // 2, width, width, 2 * width
        else:
            if len(widths) != 4 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
                raise ValueError(f"widths must be four positive integers, got {widths!r}")
            c1, c2, c3, hidden = widths

        def normalize(features: int) -> nn.Module:
            return nn.BatchNorm1d(features) if norm == "batch" else nn.Identity()

        super().__init__(
            Standardize(channels),
            nn.Conv1d(channels, c1, kernel_size=7, stride=2, padding=3),
            normalize(c1),
            nn.ReLU(),
            nn.Conv1d(c1, c2, kernel_size=5, stride=2, padding=2),
            normalize(c2),
            nn.ReLU(),
            nn.Conv1d(c2, c3, kernel_size=5, stride=2, padding=2),
            normalize(c3),
            nn.ReLU(),
            nn.AvgPool1d(4),
            nn.Flatten(),
            nn.Linear(c3 * pooled, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )
        self.config = {
            "channels": channels,
            "n_classes": n_classes,
            "length": length,
            "width": width,
            "dropout": dropout,
        }
        if norm != "batch":  # files of the default network keep their exact metadata
            self.config["norm"] = norm
        if widths is not None:
            self.config["widths"] = [int(w) for w in widths]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate representation (input of the classification layer)."""
        for layer in list(self)[:-1]:
            x = layer(x)
        return x

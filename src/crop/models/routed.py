"""A model that routes each window between a personalized and a generic network.

The routing rule, its sources and its calibration are described in
:mod:`crop.personalization.route`, which builds these models at the end of a personalization.
This module holds the network itself, so that :mod:`crop.models.io` can save, load and export it
like any other architecture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crop.errors import CropError

SPACES = ("generic", "personal", "input")
MAX_REFERENCE = 4096  # enrollment windows kept as the reference set (evenly spaced beyond that)
MAX_SHARED = 8  # a time slice found in more windows than this is a constant, not an overlap


def last_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of ``model`` in registration order (its decision layer)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise CropError("routing needs a model whose decision layer is an nn.Linear (its input is the embedding)")
    return layers[-1]


def input_moments(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and ``log(std + eps)`` over the trailing axes of ``(batch, channels,
    ...)`` windows; the features themselves for ``(batch, features)`` inputs."""
    if x.dim() <= 2:
        return x.reshape(x.shape[0], -1)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    mean = flat.mean(-1)
    std = (flat - mean.unsqueeze(-1)).pow(2).mean(-1).sqrt()
    return torch.cat([mean, torch.log(std + eps)], dim=1)


def knn_distance(query: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """Mean Euclidean distance of each ``query`` row to its ``k`` nearest ``reference`` rows
    (written with matrix products and ``topk`` so that it exports to ONNX)."""
    sq = (query * query).sum(1, keepdim=True) + (reference * reference).sum(1).unsqueeze(0) - 2 * query @ reference.T
    nearest = torch.topk(sq.clamp_min(0.0), k, dim=1, largest=False).values
    return nearest.clamp_min(0.0).sqrt().mean(1)


def network_of(model: nn.Module) -> nn.Module:
    """The network a personalization's states belong to: a routed model's personalized network,
    any other model itself."""
    return model.personal if isinstance(model, RoutedModel) else model


def leave_out_knn_distance(reference: torch.Tensor, excluded: np.ndarray, k: int) -> torch.Tensor:
    """For each reference row, the mean distance to its ``k`` nearest other rows, leaving out
    itself and the rows ``excluded[i]`` marks (fewer than ``k`` left: as many as there are;
    none left: the row is skipped)."""
    sq = (reference * reference).sum(1, keepdim=True) + (reference * reference).sum(1).unsqueeze(0)
    d = (sq - 2 * reference @ reference.T).clamp_min(0.0).sqrt()
    mask = torch.as_tensor(excluded, dtype=torch.bool) | torch.eye(len(reference), dtype=torch.bool)
    d = d.masked_fill(mask, float("inf"))
    nearest = torch.sort(d, dim=1).values[:, :k]
    finite = torch.isfinite(nearest)
    counts = finite.sum(1)
    totals = torch.where(finite, nearest, torch.zeros_like(nearest)).sum(1)
    keep = counts > 0
    return totals[keep] / counts[keep]


def sample_sharing(windows: np.ndarray) -> np.ndarray:
    """``(n, n)`` bool: windows ``i`` and ``j`` (``i != j``) share a raw sample, an identical
    slice along the last (time) axis of ``(n, channels, ..., time)`` windows. Sliding windows
    cut with overlap share samples with their neighbours and are near-copies of them; a new
    recording of the same context shares none. Feature vectors ``(n, features)`` share nothing."""
    n = len(windows)
    out = np.zeros((n, n), dtype=bool)
    if windows.ndim < 3 or n < 2:
        return out
    columns = np.ascontiguousarray(np.moveaxis(windows, -1, 1)).reshape(n, windows.shape[-1], -1)
    holders: dict[bytes, set[int]] = {}
    for i in range(n):
        for column in columns[i]:
            holders.setdefault(column.tobytes(), set()).add(i)
    for group in holders.values():
        if 1 < len(group) <= MAX_SHARED:  # a slice in many windows is a constant (padding, a dead sensor)
            index = np.fromiter(group, dtype=np.int64)
            out[np.ix_(index, index)] = True
    np.fill_diagonal(out, False)
    return out


class _Embedding:
    """Keeps the input of a module's last ``nn.Linear`` from its latest forward pass."""

    def __init__(self, model: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        last_linear(model).register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        self.value = inputs[0].flatten(1)


class RoutedModel(nn.Module):
    """The personalized model ``personal`` where a window is like the person's enrollment data,
    the generic model ``generic`` where it is not, blended in between (module docstring).

    Buffers (per space ``s``): ``ref_s`` (reference windows' standardized features), ``center_s``
    and ``scale_s`` (standardization), ``threshold_s`` (calibrated score); ``input_eps`` (the
    ``eps`` of the input moments). Build with :meth:`build`; :func:`crop.models.io.load_model`
    rebuilds a saved one whose two networks are built-in architectures.
    """

    def __init__(
        self,
        generic: nn.Module,
        personal: nn.Module,
        spaces: Sequence[str] = SPACES,
        dims: Sequence[int] = (),
        n_reference: int = 1,
        neighbours: int = 5,
        sharpness: float = 8.0,
        floor: float = 0.0,
        channels: int = 1,
    ) -> None:
        super().__init__()
        self.generic = generic
        self.personal = personal
        self.spaces = tuple(spaces)
        self.neighbours = int(neighbours)
        self.sharpness = float(sharpness)
        self.floor = float(floor)
        dims = tuple(dims) if dims else (1,) * len(self.spaces)
        for space, dim in zip(self.spaces, dims, strict=True):
            self.register_buffer(f"ref_{space}", torch.zeros(n_reference, dim))
            self.register_buffer(f"center_{space}", torch.zeros(dim))
            self.register_buffer(f"scale_{space}", torch.ones(dim))
            self.register_buffer(f"threshold_{space}", torch.ones(()))
        self.register_buffer("input_eps", torch.full((channels,), 1e-6))
        self._gen_embedding = _Embedding(generic) if "generic" in self.spaces else None
        self._own_embedding = _Embedding(personal) if "personal" in self.spaces else None
        self.config = {
            "spaces": list(self.spaces),
            "dims": list(dims),
            "n_reference": int(n_reference),
            "neighbours": self.neighbours,
            "sharpness": self.sharpness,
            "floor": self.floor,
            "channels": int(channels),
        }

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(
        cls,
        generic: nn.Module,
        personal: nn.Module,
        reference: np.ndarray,
        calibration: np.ndarray,
        config: Any,
    ) -> RoutedModel:
        """Route between ``generic`` and ``personal`` (both kept as they are, in eval mode) with
        ``reference`` (the enrollment training windows) and ``calibration`` (held-out enrollment
        windows, at least one); ``config`` a :class:`crop.personalization.route.RouteConfig`,
        whose ``calibrate`` says which scores set the thresholds: ``"reference"`` (each reference
        window against the others that share no raw sample with it, :func:`sample_sharing`) or
        ``"validation"`` (the calibration windows against the reference)."""
        if len(reference) < 1 or len(calibration) < 1:
            raise CropError("routing needs at least one training and one validation window")
        if len(reference) > MAX_REFERENCE:
            reference = reference[np.linspace(0, len(reference) - 1, MAX_REFERENCE).round().astype(int)]
        calibrate = getattr(config, "calibrate", "reference")
        if calibrate == "reference" and len(reference) < 2:
            calibrate = "validation"  # one reference window has no other to be compared with
        excluded = sample_sharing(np.asarray(reference)) if calibrate == "reference" else None
        generic, personal = generic.eval(), personal.eval()
        ref = torch.as_tensor(np.asarray(reference), dtype=torch.float32)
        cal = torch.as_tensor(np.asarray(calibration), dtype=torch.float32)
        channels = ref.shape[1] if ref.dim() > 2 else 1
        probe = cls(generic, personal, config.spaces, (), 1, 1, config.sharpness, config.floor, channels)
        if ref.dim() > 2:  # moments' eps: 1 % of each channel's typical spread in the enrollment data
            spread = ref.reshape(ref.shape[0], channels, -1).std(-1).mean(0)
            probe.input_eps.copy_(0.01 * spread + 1e-8)
        with torch.no_grad():
            feats_ref = probe.features(ref)
            feats_cal = probe.features(cal)
        k = max(1, min(config.neighbours, len(ref)))
        routed = cls(
            generic,
            personal,
            config.spaces,
            [feats_ref[s].shape[1] for s in config.spaces],
            len(ref),
            k,
            config.sharpness,
            config.floor,
            channels,
        )
        routed.input_eps.copy_(probe.input_eps)
        for space in config.spaces:
            center = feats_ref[space].mean(0)
            spread = feats_ref[space].std(0, unbiased=False) if len(ref) > 1 else torch.ones_like(center)
            scale = spread + 1e-3 * spread.mean() + 1e-8
            standard_ref = (feats_ref[space] - center) / scale
            if excluded is None:
                score = knn_distance((feats_cal[space] - center) / scale, standard_ref, k)
            else:
                score = leave_out_knn_distance(standard_ref, excluded, k)
            threshold = torch.quantile(score, config.quantile).clamp_min(1e-6)
            getattr(routed, f"ref_{space}").copy_(standard_ref)
            getattr(routed, f"center_{space}").copy_(center)
            getattr(routed, f"scale_{space}").copy_(scale)
            getattr(routed, f"threshold_{space}").copy_(threshold)
        return routed.eval()

    # ------------------------------------------------------------------ inference

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw (unstandardized) features of ``x`` in every space, and the two models' logits
        under the keys ``"_generic_logits"`` and ``"_personal_logits"``."""
        out: dict[str, torch.Tensor] = {"_generic_logits": self.generic(x)}
        gen = self._gen_embedding.value if self._gen_embedding is not None else None
        out["_personal_logits"] = self.personal(x)
        own = self._own_embedding.value if self._own_embedding is not None else None
        for space in self.spaces:
            if space == "generic":
                out[space] = gen
            elif space == "personal":
                out[space] = own
            else:
                out[space] = input_moments(x, self.input_eps)
        return out

    def weights(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """The personalized model's weight per window, in ``[floor, 1]``."""
        z = None
        for space in self.spaces:
            center, scale = getattr(self, f"center_{space}"), getattr(self, f"scale_{space}")
            d = knn_distance((feats[space] - center) / scale, getattr(self, f"ref_{space}"), self.neighbours)
            ratio = d / getattr(self, f"threshold_{space}")
            z = ratio if z is None else torch.maximum(z, ratio)
        assert z is not None
        inside = torch.exp(-self.sharpness * (z - 1.0).clamp_min(0.0))
        return self.floor + (1.0 - self.floor) * inside

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)
        w = self.weights(feats).unsqueeze(1)
        prob = w * F.softmax(feats["_personal_logits"], 1) + (1 - w) * F.softmax(feats["_generic_logits"], 1)
        return torch.log(prob.clamp_min(1e-30))

    def export_examples(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs for ``crop export``'s parity check: ``x`` and copies scaled by 0.5, 0.9 and 2,
        which fall at other distances from the enrollment data (so the blend is checked where
        neither model has all the weight)."""
        return torch.cat([x, 0.5 * x, 0.9 * x, 2.0 * x])

    @torch.no_grad()
    def personal_weight(self, X: np.ndarray | torch.Tensor, batch_size: int = 2048) -> np.ndarray:
        """The personalized model's weight for each window of ``X`` (for reports)."""
        was = self.training
        self.eval()
        X = torch.as_tensor(X, dtype=torch.float32)
        out = [self.weights(self.features(X[i : i + batch_size])) for i in range(0, len(X), batch_size)]
        self.train(was)
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


__all__ = [
    "MAX_REFERENCE",
    "MAX_SHARED",
    "SPACES",
    "RoutedModel",
    "input_moments",
    "knn_distance",
    "last_linear",
    "leave_out_knn_distance",
    "network_of",
    "sample_sharing",
]

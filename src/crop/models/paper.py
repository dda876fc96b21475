"""Architectures of the CRoP paper's four datasets (Appendix A.1).

Every model is an ``nn.Sequential`` of layers that pruning, mixing, safetensors files and the
bound propagators of :mod:`crop.certify` all understand, starting with a
:class:`~crop.models.hapt.Standardize` layer that holds the input statistics (optional for
:class:`StressMLP`), so raw sensor units go in and certificates are in those units. Parameter counts are for the default
configuration (the input shape the paper's data gives).

* :class:`WidarLeNet` -- WIDAR (BVP, 6 gestures), input ``(22, 20, 20)``, 296,774 parameters;
* :class:`ExtraSensoryCNNGRU` -- ExtraSensory (walking / sitting), input ``(6, 800)`` raw bursts
  (68,210 parameters) or ``(2, 26)`` features (67,570);
* :class:`StressMLP` -- Stress sensing (stress / calm), input ``(34,)``, 21,250 parameters;
* :class:`PerceptBiLSTM` -- PERCEPT-R (rhotic / derhotic), input ``(13, frames)``, 98,258 parameters.

The paper gives the layer types and counts; widths it does not give are chosen here and stated
in each docstring (docs/DATASETS.md lists every inference).
"""

from __future__ import annotations

import torch
from torch import nn

from crop.models.hapt import Standardize
from crop.models.layers import LastStep, TakeOutput, Transpose

# SenseFi (Yang et al., the normalisation the paper follows for WIDAR): (x - 0.0025) / 0.0119.
WIDAR_BVP_MEAN = 0.0025
WIDAR_BVP_STD = 0.0119


class StressMLP(nn.Sequential):
    """Stress sensing: three linear layers with hidden size 128 (Appendix A.1, after [13]).

    Input ``(batch, in_features)`` (34 wrist-band features), output logits ``(batch, n_classes)``.
    21,250 parameters with the defaults. ``standardize=True`` puts a
    :class:`~crop.models.hapt.Standardize` layer (34 means and standard deviations, set from the
    generic training data) in front, so raw feature values go in; files written without it keep
    their exact layout.
    """

    def __init__(self, in_features: int = 34, n_classes: int = 2, hidden: int = 128, standardize: bool = False) -> None:
        layers: list[nn.Module] = [Standardize(in_features, trailing=0)] if standardize else []
        super().__init__(
            *layers,
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )
        self.config = {"in_features": in_features, "n_classes": n_classes, "hidden": hidden}
        if standardize:
            self.config["standardize"] = True


class WidarLeNet(nn.Sequential):
    """WIDAR: LeNet of SenseFi's Widar benchmark (three Conv2d + two Linear, ReLU after every
    layer but the last; Appendix A.1 after [80]).

    Input ``(batch, frames, 20, 20)``: the body-velocity profile (BVP, 20 x 20 velocity bins)
    with its ``frames`` time steps (0.1 s each, zero-padded or cut to 22) as channels; output
    logits ``(batch, n_classes)``. The first layer standardises with SenseFi's constants
    (mean 0.0025, std 0.0119). 296,774 parameters with the defaults::

        Conv2d(22, 32, 6, stride 2) -> 8x8 -> Conv2d(32, 64, 3) -> 6x6 -> Conv2d(64, 96, 3) -> 4x4
        -> Linear(1536, 128) -> Linear(128, 6)
    """

    fixed_input_statistics = True  # generic training keeps SenseFi's constants

    def __init__(self, frames: int = 22, n_classes: int = 6, size: int = 20) -> None:
        side = ((size - 6) // 2 + 1) - 4
        if side < 1:
            raise ValueError(f"BVP maps of {size}x{size} are too small for WidarLeNet (need at least 14)")
        norm = Standardize(frames, trailing=2)
        norm.mean.fill_(WIDAR_BVP_MEAN)
        norm.std.fill_(WIDAR_BVP_STD)
        super().__init__(
            norm,
            nn.Conv2d(frames, 32, kernel_size=6, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Conv2d(64, 96, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(96 * side * side, 128),
            nn.ReLU(),
            nn.Linear(128, n_classes),
        )
        self.config = {"frames": frames, "n_classes": n_classes, "size": size}


class ExtraSensoryCNNGRU(nn.Sequential):
    """ExtraSensory: CNN-GRU of the HAR literature (Appendix A.1 after [16, 20]).

    Feature extractor: three batch-normalised Conv1d layers, a linear layer applied at every
    time step, a batch-normalised GRU (BatchNorm1d over the GRU's output features), its last
    step, then two linear layers that give the embedding; classification head: two linear
    layers. ReLU after every layer but the last. Input ``(batch, channels, length)``:

    * raw bursts (``extrasensory-raw``): ``(6, 800)``, accelerometer x/y/z and gyroscope x/y/z
      resampled to 40 Hz over 20 s, ``stride=2`` (the GRU sees 100 steps);
    * features (``extrasensory``): ``(2, 26)``, the 26 accelerometer and 26 gyroscope features of
      the ``features_labels`` files as two channels, ``stride=1``.

    Widths (not given by the paper): convolutions 32, 64, 64 (kernel 5), linear and GRU ``width``
    (64), embedding 64 -> 32, head 32 -> 16 -> ``n_classes``. 68,210 parameters with the defaults
    (raw bursts), 67,570 for the feature input (the count does not depend on ``length`` or ``stride``).
    """

    def __init__(
        self, channels: int = 6, length: int = 800, n_classes: int = 2, width: int = 64, stride: int = 2
    ) -> None:
        steps = length
        for _ in range(3):
            steps = (steps + 2 * 2 - 5) // stride + 1
        if steps < 1:
            raise ValueError(f"inputs of length {length} are too short for stride {stride}")
        super().__init__(
            Standardize(channels),
            nn.Conv1d(channels, 32, kernel_size=5, stride=stride, padding=2),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Conv1d(32, 64, kernel_size=5, stride=stride, padding=2),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Conv1d(64, 64, kernel_size=5, stride=stride, padding=2),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            Transpose(1, 2),
            nn.Linear(64, width),
            nn.ReLU(),
            nn.GRU(width, width, batch_first=True),
            TakeOutput(),
            Transpose(1, 2),
            nn.BatchNorm1d(width),
            Transpose(1, 2),
            LastStep(),
            nn.Linear(width, 64),
            nn.ReLU(),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, 16),
            nn.ReLU(),
            nn.Linear(16, n_classes),
        )
        self.config = {"channels": channels, "length": length, "n_classes": n_classes, "width": width, "stride": stride}


class PerceptBiLSTM(nn.Sequential):
    """PERCEPT-R: four bidirectional LSTM layers followed by five linear layers with Hardswish
    activations (Appendix A.1 after Benway et al. [5]).

    Input ``(batch, features, frames)`` (per-frame acoustic features, channels first as every
    crop model); the features are standardised, the LSTM reads the frames in order and its last
    step (both directions) goes through ``Linear(2 hidden, 64) -> 64 -> 32 -> 16 -> n_classes``
    with a Hardswish after every linear layer but the last. Widths (not given by the paper):
    ``hidden`` 32 per direction. 98,258 parameters with the defaults (13 features).
    """

    def __init__(self, features: int = 13, n_classes: int = 2, hidden: int = 32) -> None:
        super().__init__(
            Standardize(features),
            Transpose(1, 2),
            nn.LSTM(features, hidden, num_layers=4, bidirectional=True, batch_first=True),
            TakeOutput(),
            LastStep(),
            nn.Linear(2 * hidden, 64),
            nn.Hardswish(),
            nn.Linear(64, 64),
            nn.Hardswish(),
            nn.Linear(64, 32),
            nn.Hardswish(),
            nn.Linear(32, 16),
            nn.Hardswish(),
            nn.Linear(16, n_classes),
        )
        self.config = {"features": features, "n_classes": n_classes, "hidden": hidden}


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as ``Standardize`` statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def set_standardization(model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Copy per-channel ``mean`` / ``std`` (shape ``(channels,)``) into the model's first
    :class:`~crop.models.hapt.Standardize` layer (standard deviations below 1e-6 become 1)."""
    layer = next((m for m in model.modules() if isinstance(m, Standardize)), None)
    if layer is None:
        raise ValueError(f"{type(model).__name__} has no Standardize layer")
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    layer.mean.copy_(mean.reshape(layer.mean.shape))
    layer.std.copy_(std.reshape(layer.std.shape))

"""Networks that route around a faulty sensor: modality masking and cross-modal co-teaching.

Both take raw 6-channel inertial windows (accelerometer x/y/z, gyroscope x/y/z), run the fault
detector of :mod:`crop.data.detect` on each window (``route=True``), repair spikes and
non-finite readings, and stop reading a sensor the detector flags:

* :class:`MaskedHAPTNet` (the *modality dropout* baseline): a :class:`~crop.models.hapt.HAPTNet`
  whose flagged sensor is replaced by its training mean (0 after standardisation), the input it
  was trained to handle by masking one sensor at random (:func:`mask_sensors`).
* :class:`CoTeachNet` (co-teaching): one encoder per sensor, and for each sensor an *emulator*
  that predicts its embedding from the other sensor's embedding. The classifier reads both
  embeddings; when a sensor is flagged, its embedding is replaced by the one emulated from the
  other sensor. Training (:mod:`crop.personalization.coteach`) has each sensor teach the other's
  emulator, following the cross-modal co-teaching of Xiao et al., "Reading Between the Heat:
  Co-Teaching Body Thermal Signatures for Non-intrusive Stress Detection", IMWUT 7(4), 2023/24
  (there a wearable EDA sensor teaches a thermal branch to emulate its stress representation, so
  only the thermal camera is needed at test time). Adapted here: both directions (either sensor
  may fail), both sensors present in training and at test time unless the detector flags one.

When both sensors are flagged nothing is routed (the model reads the repaired input as it is).
"""

from __future__ import annotations

import torch
from torch import nn

from crop.data.detect import detect, repair
from crop.models.hapt import HAPTNet, Standardize

ACC = slice(0, 3)
GYRO = slice(3, 6)


def mask_sensors(x: torch.Tensor, mean: torch.Tensor, acc_off: torch.Tensor, gyro_off: torch.Tensor) -> torch.Tensor:
    """``x`` with the accelerometer of windows ``acc_off`` and the gyroscope of windows
    ``gyro_off`` (bool ``(n,)``) replaced by ``mean`` (``(6, 1)``, the standardisation mean)."""
    out = x.clone()
    fill = mean.reshape(1, 6, 1).expand_as(x)
    out[:, ACC] = torch.where(acc_off[:, None, None], fill[:, ACC], x[:, ACC])
    out[:, GYRO] = torch.where(gyro_off[:, None, None], fill[:, GYRO], x[:, GYRO])
    return out


def _route(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Repaired input and the (accelerometer, gyroscope) flags, a sensor being dropped only
    when the other one is fine."""
    flags = detect(x)
    x = repair(x, flags)
    acc_off = flags.faulty[:, 0] & ~flags.faulty[:, 1]
    gyro_off = flags.faulty[:, 1] & ~flags.faulty[:, 0]
    return x, acc_off, gyro_off


def fault_examples(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(n, 6, T)`` followed by faulty copies of its first windows that take every path of
    :func:`_route`: dead gyroscope, dead accelerometer, both dead, a spike, a non-finite reading.
    ``crop export`` checks onnxruntime against PyTorch on these too (``export_examples``)."""
    k = min(len(x), 4)
    dead_gyro, dead_acc, both, spike, nan = (x[:k].clone() for _ in range(5))
    dead_gyro[:, GYRO] = 0.0
    dead_acc[:, ACC] = 0.0
    both[:] = 0.0
    if x.shape[-1] >= 3:
        spike[:, 0, x.shape[-1] // 2] += 10.0
    nan[:, 3, 0] = float("nan")
    return torch.cat([x, dead_gyro, dead_acc, both, spike, nan])


class _Routing(nn.Module):
    """A network that routes around a faulty sensor when ``self.route`` is true."""

    route: bool

    def export_examples(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs for ``crop export``'s parity check: ``x`` and, when routing, faulty copies."""
        return fault_examples(x) if self.route else x


class MaskedHAPTNet(_Routing):
    """A :class:`HAPTNet` (``self.net``) behind the fault detector: a flagged sensor is replaced by
    the network's standardisation mean. ``route=False`` reads every window as it is."""

    def __init__(
        self,
        channels: int = 6,
        n_classes: int = 6,
        length: int = 128,
        width: int = 32,
        dropout: float = 0.2,
        route: bool = True,
    ) -> None:
        super().__init__()
        if channels != 6:
            raise ValueError("MaskedHAPTNet reads 6-channel inertial windows (accelerometer + gyroscope)")
        self.net = HAPTNet(channels, n_classes, length, width, dropout)
        self.route = route
        self.config = dict(
            channels=channels, n_classes=n_classes, length=length, width=width, dropout=dropout, route=route
        )

    @classmethod
    def wrap(cls, net: HAPTNet, route: bool = True) -> MaskedHAPTNet:
        """A masked model around a copy of ``net``'s weights (a plain HAPT generic model)."""
        config = {k: v for k, v in net.config.items() if k != "norm"}
        if net.config.get("norm", "batch") != "batch":
            raise ValueError("modality masking is built on the BatchNorm HAPT network")
        model = cls(**config, route=route)
        model.net.load_state_dict(net.state_dict())
        return model

    @property
    def mean(self) -> torch.Tensor:
        return self.net[0].mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.route:
            x, acc_off, gyro_off = _route(x)
            x = mask_sensors(x, self.mean, acc_off, gyro_off)
        return self.net(x)


def _encoder(width: int, length: int) -> nn.Sequential:
    """One sensor's encoder (3 channels): HAPTNet's convolutional stack and its hidden layer."""
    pooled = length // 8 // 4
    return nn.Sequential(
        nn.Conv1d(3, width // 2, kernel_size=7, stride=2, padding=3),
        nn.BatchNorm1d(width // 2),
        nn.ReLU(),
        nn.Conv1d(width // 2, width, kernel_size=5, stride=2, padding=2),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Conv1d(width, width, kernel_size=5, stride=2, padding=2),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.AvgPool1d(4),
        nn.Flatten(),
        nn.Linear(width * pooled, 2 * width),
        nn.ReLU(),
    )


def _emulator(features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(features, features), nn.ReLU(), nn.Linear(features, features), nn.ReLU())


class CoTeachNet(_Routing):
    """Per-sensor encoders, cross-sensor emulators and a shared classifier (see the module doc).

    ``forward(x)`` routes with the detector (``route=True``); :meth:`embed_sensors`,
    :meth:`emulate` and :meth:`classify` are the pieces the co-teaching objective trains.
    """

    def __init__(
        self,
        channels: int = 6,
        n_classes: int = 6,
        length: int = 128,
        width: int = 32,
        dropout: float = 0.2,
        route: bool = True,
    ) -> None:
        super().__init__()
        if channels != 6:
            raise ValueError("CoTeachNet reads 6-channel inertial windows (accelerometer + gyroscope)")
        features = 2 * width
        self.standardize = Standardize(6)
        self.acc = _encoder(width, length)
        self.gyro = _encoder(width, length)
        self.acc_from_gyro = _emulator(features)
        self.gyro_from_acc = _emulator(features)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * features, n_classes))
        self.route = route
        self.config = dict(
            channels=channels, n_classes=n_classes, length=length, width=width, dropout=dropout, route=route
        )

    def embed_sensors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.standardize(x)
        return self.acc(z[:, ACC]), self.gyro(z[:, GYRO])

    def emulate(self, acc: torch.Tensor, gyro: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(accelerometer embedding emulated from the gyroscope, gyroscope from the accelerometer)."""
        return self.acc_from_gyro(gyro), self.gyro_from_acc(acc)

    def classify(self, acc: torch.Tensor, gyro: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([acc, gyro], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc_off = gyro_off = None
        if self.route:
            x, acc_off, gyro_off = _route(x)
        acc, gyro = self.embed_sensors(x)
        # traced (ONNX export): always emulate, so the graph keeps the path for faulty windows
        if acc_off is not None and (torch.jit.is_tracing() or bool(acc_off.any() | gyro_off.any())):
            acc_e, gyro_e = self.emulate(acc, gyro)
            acc, gyro = (
                torch.where(acc_off[:, None], acc_e, acc),
                torch.where(gyro_off[:, None], gyro_e, gyro),
            )
        return self.classify(acc, gyro)

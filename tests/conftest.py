import numpy as np
import pytest
import torch
from torch import nn

from crop.data.sensing import SensingData, stratified_split
from crop.personalization.loop import TrainConfig

torch.set_num_threads(1)  # the tiny test models run fastest on one thread


class TinyNet(nn.Module):
    """A model the library knows nothing about (not a built-in architecture)."""

    def __init__(self, channels: int = 3, length: int = 16, n_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4)
        self.fc1 = nn.Linear(4 * length, 16)
        self.head = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.head(torch.relu(self.fc1(h)))


def make_data(n: int = 90, seed: int = 0, shift: float = 0.0, channels: int = 3, length: int = 16, n_classes: int = 3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, channels, length)).astype(np.float32)
    X[np.arange(n), y % channels, :] += 1.5 + shift
    return SensingData(X, y, f"synthetic seed {seed}")


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def tiny_split():
    return stratified_split(make_data(), seed=0)


@pytest.fixture
def quick():
    return TrainConfig(epochs=4, lr=1e-2, batch_size=16)

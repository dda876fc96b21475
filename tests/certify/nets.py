"""Random small networks and ball samplers shared by the certify tests."""

from __future__ import annotations

import torch
from torch import nn

from crop.certify.modules import LastStep, TakeOutput
from crop.models.hapt import Standardize


def randomize_batchnorm(bn: nn.modules.batchnorm._BatchNorm, gen: torch.Generator) -> None:
    with torch.no_grad():
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=gen, dtype=bn.running_mean.dtype) * 0.5)
        bn.running_var.copy_(torch.rand(n, generator=gen, dtype=bn.running_var.dtype) + 0.5)
        bn.weight.copy_(torch.randn(n, generator=gen, dtype=bn.weight.dtype))
        bn.bias.copy_(torch.randn(n, generator=gen, dtype=bn.bias.dtype) * 0.5)


def conv_net(
    seed: int,
    channels: int,
    length: int,
    n_classes: int = 3,
    *,
    deep: bool = True,
    pool: bool = True,
    standardize: bool = True,
    stride: int = 1,
) -> tuple[nn.Sequential, tuple[int, int]]:
    """Standardize? -> Conv1d -> BN -> ReLU -> [Conv1d -> ReLU] -> AvgPool? -> Flatten -> Linear -> ReLU -> Dropout -> Linear."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    if standardize:
        std = Standardize(channels)
        with torch.no_grad():
            std.mean.copy_(torch.randn(channels, 1, generator=gen) * 0.3)
            std.std.copy_(torch.rand(channels, 1, generator=gen) + 0.5)
        layers.append(std)
    layers += [nn.Conv1d(channels, 4, 3, stride=stride, padding=1), nn.BatchNorm1d(4), nn.ReLU()]
    if deep:
        layers += [nn.Sequential(nn.Conv1d(4, 5, 3, stride=2, padding=1), nn.ReLU())]
    if pool:
        layers.append(nn.AvgPool1d(2))
    layers.append(nn.Flatten())
    model = nn.Sequential(*layers)
    with torch.no_grad():
        n_flat = model(torch.zeros(1, channels, length)).shape[1]
    model.append(nn.Linear(n_flat, 8))
    model.append(nn.ReLU())
    model.append(nn.Dropout(0.3))
    model.append(nn.Linear(8, n_classes))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            randomize_batchnorm(m, gen)
    return model.double().eval(), (channels, length)


def mlp(seed: int, sizes: list[int]) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).double().eval()


def rnn_net(seed: int, kind: str, features: int, hidden: int, layers: int, bidirectional: bool, n_classes: int = 3):
    torch.manual_seed(seed)
    cls = nn.GRU if kind == "gru" else nn.LSTM
    rnn = cls(features, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
    out = hidden * (2 if bidirectional else 1)
    model = nn.Sequential(rnn, TakeOutput(), LastStep(), nn.Linear(out, 8), nn.ReLU(), nn.Linear(8, n_classes))
    return model.double().eval()


def sample_ball(center: torch.Tensor, eps: float, norm: str, n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, B, *shape)`` points of the ball around each centre: half on its boundary (corners for
    L-inf, the sphere for L2), half inside."""
    shape = (n, *center.shape)
    if norm == "linf":
        d = (torch.rand(shape, generator=gen, dtype=center.dtype) * 2 - 1) * eps
        d[: n // 2] = torch.sign(d[: n // 2]) * eps
    else:
        d = torch.randn(shape, generator=gen, dtype=center.dtype)
        d = d / d.flatten(2).norm(dim=-1).reshape(n, center.shape[0], *([1] * (center.dim() - 1)))
        radius = torch.ones(n, center.shape[0], dtype=center.dtype)
        radius[n // 2 :] = torch.rand(n - n // 2, center.shape[0], generator=gen, dtype=center.dtype)
        d = d * (radius * eps).reshape(n, center.shape[0], *([1] * (center.dim() - 1)))
    return center[None] + d


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``f_y - f_j`` with ``+inf`` at ``j = y``; logits ``(..., B, K)``."""
    idx = y.expand(logits.shape[:-1]).unsqueeze(-1)
    m = logits.gather(-1, idx) - logits
    return m.scatter(-1, idx, torch.inf)

"""Generic models for HAPT: training, the shipped weights, and leak-free substitutes.

The shipped models (``models/weights/hapt-generic.safetensors`` and
``hapt-rot-generic.safetensors``) were trained by ``crop train-generic`` on every HAPT user
except :data:`~crop.data.scenarios.PERSONALIZATION_USERS`, with
:data:`~crop.data.scenarios.GENERIC_VAL_USERS` as the person-disjoint validation split, both
sessions each. ``hapt-rot`` adds a uniformly random 3-D rotation of each training window
(accelerometer and gyroscope together), so it knows every phone orientation.

If a personalization user was part of a generic model's training set, :func:`generic_for`
trains (once, cached under the cache directory) a generic model that leaves that user out, so
no personalization result is computed on a model that has seen the person.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crop.data import hapt
from crop.data.scenarios import GENERIC_VAL_USERS, PERSONALIZATION_USERS
from crop.errors import CropError
from crop.models.hapt import HAPTNet
from crop.models.io import load_model, metadata_of, save_model
from crop.personalize.loop import TrainConfig, train

GENERIC_KINDS = ("hapt", "hapt-rot")


@dataclass
class GenericTrainConfig:
    """How a HAPT generic model is trained (Adam, best person-disjoint validation epoch)."""

    epochs: int = 30
    lr: float = 2e-3
    batch_size: int = 64
    width: int = 32
    dropout: float = 0.2
    seed: int = 0


def random_rotation_matrices(n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` rotation matrices uniform on SO(3) (QR of Gaussian matrices, sign-corrected)."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    det = torch.linalg.det(q)
    q[:, :, 0] = q[:, :, 0] * det.unsqueeze(1)
    return q


class RotationAugmentation:
    """Cross-entropy on windows seen through a random sensor rotation each step."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed + 7919)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        R = random_rotation_matrices(len(x), self.gen)
        x = torch.cat(
            [torch.einsum("nij,njt->nit", R, x[:, 0:3]), torch.einsum("nij,njt->nit", R, x[:, 3:6]), x[:, 6:]], 1
        )
        return F.cross_entropy(model(x), y)


def train_generic(
    kind: str = "hapt",
    exclude: tuple[int, ...] = PERSONALIZATION_USERS,
    val_users: tuple[int, ...] = GENERIC_VAL_USERS,
    config: GenericTrainConfig | None = None,
) -> tuple[HAPTNet, dict]:
    """Train a HAPT generic model on all users but ``exclude`` and ``val_users``."""
    if kind not in GENERIC_KINDS:
        raise CropError(f"unknown generic model kind {kind!r}; choose {', '.join(GENERIC_KINDS)}")
    config = config or GenericTrainConfig()
    train_users = tuple(u for u in hapt.USERS if u not in exclude and u not in val_users)
    val_users = tuple(u for u in val_users if u not in exclude)
    train_data = hapt.load_users(train_users)
    val_data = hapt.load_users(val_users)
    torch.manual_seed(config.seed)
    model = HAPTNet(width=config.width, dropout=config.dropout)
    stats = train_data.X.transpose(1, 0, 2).reshape(6, -1)
    mean, std = stats.mean(axis=1), stats.std(axis=1)
    if kind == "hapt-rot":  # rotation mixes axes: one statistic per sensor triad
        mean = np.zeros(6)
        std = np.concatenate(
            [np.repeat(np.sqrt((std[:3] ** 2).mean()), 3), np.repeat(np.sqrt((std[3:] ** 2).mean()), 3)]
        )
    model[0].mean.copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(6, 1))
    model[0].std.copy_(torch.as_tensor(std, dtype=torch.float32).reshape(6, 1))
    objective = RotationAugmentation(config.seed) if kind == "hapt-rot" else None
    if objective is not None:  # validate on rotated windows too
        rng = np.random.default_rng(config.seed)
        from crop.data.sensing import SensingData
        from crop.data.transforms import random_rotations, rotate

        val_data = SensingData(rotate(val_data.X, random_rotations(len(val_data), rng)), val_data.y, val_data.name)
    phase = TrainConfig(epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, select="best")
    out = train(model, train_data, val_data, phase, seed=config.seed, objective=objective)
    info = {
        "kind": kind,
        "train_users": list(train_users),
        "val_users": list(val_users),
        "excluded_users": sorted(exclude),
        "best_epoch": out.best_epoch,
        "val_balanced_accuracy": out.best_score,
        "config": asdict(config),
    }
    return model.eval(), info


def shipped_path(kind: str) -> Path:
    return Path(str(resources.files("crop.models") / "weights" / f"{kind}-generic.safetensors"))


def _training_users(path: Path) -> set[int]:
    meta = metadata_of(path)
    return set(json.loads(meta.get("train_users", "[]"))) | set(json.loads(meta.get("val_users", "[]")))


def generic_for(kind: str, users: list[int] | tuple[int, ...], cache: Path | None = None) -> tuple[nn.Module, dict]:
    """A generic model of ``kind`` that has seen none of ``users``.

    Uses the shipped model when possible; otherwise trains one excluding ``users`` together with
    the documented personalization users, cached by its configuration.
    """
    if kind not in GENERIC_KINDS:
        raise CropError(f"unknown generic model kind {kind!r}; choose {', '.join(GENERIC_KINDS)}")
    path = shipped_path(kind)
    seen = _training_users(path) if path.is_file() else set(hapt.USERS)
    if path.is_file() and not (seen & set(users)):
        return load_model(path), {"source": "shipped", "path": str(path)}
    exclude = tuple(sorted(set(users) | set(PERSONALIZATION_USERS)))
    config = GenericTrainConfig()
    key = hashlib.sha256(json.dumps([kind, exclude, asdict(config)]).encode()).hexdigest()[:16]
    cache = (cache or hapt.cache_dir()) / "generic"
    target = cache / f"{kind}-{key}.safetensors"
    if target.is_file():
        return load_model(target), {"source": "cached", "path": str(target), "excluded_users": list(exclude)}
    model, info = train_generic(kind, exclude=exclude, config=config)
    save_model(model, target, {k: v for k, v in info.items() if k != "config"} | {"config": info["config"]})
    return model, {"source": "trained", "path": str(target), "excluded_users": list(exclude)}

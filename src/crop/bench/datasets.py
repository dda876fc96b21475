"""The paper's datasets in ``crop bench`` / ``crop personalize``: presets and generic models.

* :func:`method_config` -- a method's config for a dataset: the method's defaults, then the
  paper's preset for that dataset (Table 10 and A.3: ``lr``, ``alpha``, ``tau``, ``k``, ``k'``
  and the epochs of CRoP's two phases; conventional finetuning gets the same ``lr`` and the
  two phases' epochs in one), then the user's ``--config`` values.
* :func:`generic_model` -- the generic model that serves a user: the paper's architecture
  trained on the other users (Table 9 preset, cyclic learning rate, best epoch on
  person-disjoint validation users), cached under ``<cache>/generic/`` keyed by dataset, which
  model (shared or per user), the training and validation users' arrays and the config.
* :class:`DatasetSource` -- what the benchmark runner asks of a dataset (picklable for worker
  processes).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crop.data.datasets import Dataset, get_dataset
from crop.data.datasets.presets import PaperGenericConfig, generic_presets, personalization_presets, preset_name
from crop.errors import CropError
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.registry import get_method

GENERIC_TABLE = "generic-training"  # the [generic-training] table of a --config TOML


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def preset_values(dataset: str, config_class: type, preset: str = "paper") -> dict[str, Any]:
    """The preset fields a method config of ``config_class`` takes for ``dataset`` (``{}`` when
    the dataset has no preset or the method none of its fields); ``preset``: ``paper`` or ``cpu``."""
    name = preset_name(dataset)
    presets = personalization_presets(preset)
    if name is None:
        return {}
    p = presets[name]
    fields = {f.name for f in dataclasses.fields(config_class)}
    if {"alpha", "tau", "k", "k_step", "initial", "final"} <= fields:  # CRoP and its ablations
        return {
            "alpha": p.alpha,
            "tau": p.tau,
            "k": p.k,
            "k_step": p.k_step,
            "initial": {"lr": p.lr, "epochs": p.initial_epochs},
            "final": {"lr": p.lr, "epochs": p.final_epochs},
        }
    if "train" in fields and "invariance" in fields:  # conventional finetuning (M^C)
        return {"train": {"lr": p.lr, "epochs": p.initial_epochs + p.final_epochs}}
    return {}


def method_config(
    dataset: str, method: str, overrides: dict[str, Any] | None = None, where: str = "config", preset: str = "paper"
) -> Any:
    """The config of ``method`` on ``dataset``: defaults, the dataset's preset (``paper`` or
    ``cpu``), ``overrides``."""
    from crop.validate import config_from_dict

    cls = get_method(method).config_class
    values = _merge(dataclasses.asdict(cls()), preset_values(dataset, cls, preset))
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            options = ", ".join(f.name for f in dataclasses.fields(cls))
            raise CropError(f"{where}: unknown option {unknown[0]!r}; options: {options}")
        values = _merge(values, overrides)
    return config_from_dict(cls, values, where)


def generic_config(
    dataset: str, overrides: dict[str, Any] | None = None, where: str = "config", preset: str = "paper"
) -> PaperGenericConfig:
    """Generic training of ``dataset``: its Table 9 preset (or the ``cpu`` one) with ``overrides``
    (``[generic-training]``)."""
    from crop.validate import config_from_dict

    base = generic_presets(preset).get(preset_name(dataset) or "", PaperGenericConfig())
    values = _merge(dataclasses.asdict(base), overrides or {})
    return config_from_dict(PaperGenericConfig, values, where)


class CyclicLearningRate(Hook):
    """PyTorch's triangular ``CyclicLR`` between ``base_lr`` and ``max_lr``, advanced every step
    (no momentum cycling, so it works with Adam); a no-op when the two are equal."""

    def __init__(self, base_lr: float, max_lr: float, step_size_up: int) -> None:
        self.base_lr, self.max_lr, self.step_size_up = base_lr, max_lr, max(1, step_size_up)
        self.scheduler: Any = None

    def on_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        if self.max_lr > self.base_lr:
            self.scheduler = torch.optim.lr_scheduler.CyclicLR(
                optimizer, self.base_lr, self.max_lr, step_size_up=self.step_size_up, cycle_momentum=False
            )

    def after_step(self, model: nn.Module) -> None:
        if self.scheduler is not None:
            self.scheduler.step()


def _standardize_from(model: nn.Module, X: np.ndarray) -> None:
    """Set the model's input statistics from the training samples (per channel, axis 1)."""
    from crop.models.hapt import Standardize
    from crop.models.paper import set_standardization

    layer = next((m for m in model.modules() if isinstance(m, Standardize)), None)
    if layer is None or getattr(model, "fixed_input_statistics", False):
        return
    flat = np.moveaxis(X, 1, 0).reshape(X.shape[1], -1).astype(np.float64)
    set_standardization(model, torch.as_tensor(flat.mean(axis=1)), torch.as_tensor(flat.std(axis=1)))


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def generic_model(
    dataset: Dataset, key: str, config: PaperGenericConfig, cache: Path | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The generic model ``key`` (:meth:`Dataset.generic_key`) of ``dataset``, trained on first
    use and cached. Returns the model and its provenance (``source``, ``path``, users, seconds)."""
    from crop.data.hapt import cache_dir
    from crop.models.cache import cache_key, load_or_train, provenance
    from crop.validate import check_config

    check_config(config, "generic training")
    data = dataset.load()
    train_users, val_users = dataset.generic_split(key, config.seed)
    train_data = dataset.pooled(train_users, f"{dataset.name} generic training users")
    val_data = dataset.pooled(val_users, f"{dataset.name} generic validation users")
    digest = _digest(train_data.X, train_data.y, val_data.X, val_data.y)
    prov = provenance({"dataset": dataset.name, "model": key, "data": digest, "config": dataclasses.asdict(config)})
    target = (cache or cache_dir()) / "generic" / f"{dataset.name}-{cache_key(prov)}.safetensors"
    info: dict[str, Any] = {
        "dataset": dataset.name,
        "model": key,
        "train_users": train_users,
        "val_users": val_users,
        "path": str(target),
    }

    def fit() -> tuple[nn.Module, dict[str, Any]]:
        torch.manual_seed(config.seed)
        model = dataset.make_model(data)
        _standardize_from(model, train_data.X)
        batches = max(1, -(-len(train_data) // config.batch_size))
        schedule = CyclicLearningRate(config.base_lr, config.max_lr, config.half_cycle_epochs * batches)
        phase = TrainConfig(epochs=config.epochs, lr=config.base_lr, batch_size=config.batch_size, select="best")
        out = train(model, train_data, val_data, phase, seed=config.seed, metric=dataset.metric, hooks=[schedule])
        meta = {**info, "best_epoch": out.best_epoch, f"val_{dataset.metric}": out.best_score}
        return model.eval(), {**meta, "config": dataclasses.asdict(config)}

    model, source, seconds = load_or_train(target, prov, fit)  # on one torch thread; provenance checked
    return model.eval(), {**info, "source": source, "train_seconds": seconds}


@dataclass
class DatasetSource:
    """What :func:`crop.bench.runner.run_bench` needs of a dataset other than HAPT."""

    name: str
    root: str
    generic: PaperGenericConfig | None = None
    model: str | None = None  # --dataset npz: the given generic model file
    arch: str | None = None  # ... and its factory (package.module:factory)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # --dataset csv: rate, window, stride

    @functools.cached_property
    def dataset(self) -> Dataset:
        return get_dataset(self.name, self.root, **self.options)

    def kind(self, scenario: Any) -> str:
        return self.name

    def serving(self, user: Any) -> str:
        return self.dataset.generic_key(user)

    def generic_config(self) -> PaperGenericConfig:
        return self.generic if self.generic is not None else generic_config(self.name)

    def generic_model(self, key: str, cache: Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
        if key == "given":
            from crop.data.datasets.npz import load_given_model

            if self.model is None:
                raise CropError(f"--dataset {self.name} needs --model (the generic model file)")
            model = load_given_model(self.model, self.arch)
            return model, {"source": "given", "path": str(self.model), "arch": self.arch}
        return generic_model(self.dataset, key, self.generic_config(), cache)

    def user_scenario(self, user: Any, scenario: Any, seed: int) -> Any:
        return self.dataset.user_scenario(user, scenario, seed)


def load_generic_file(path: str, arch: str | None) -> nn.Module:
    """A generic model file as the runner's workers load it (``arch``: ``--dataset npz`` factory)."""
    from crop.data.datasets.npz import load_given_model
    from crop.models.io import load_model

    return load_given_model(path, arch) if arch is not None else load_model(path)

"""Your own data and model, without writing a loader: ``--dataset npz``.

Files under ``--root``:

* ``<user>.npz`` per person (the file name, without ``.npz``, is the user id) with ``X``
  ``(n, ...)`` real numbers (any per-sample shape your model takes), ``y`` ``(n,)`` integer
  class labels 0..K-1 and ``context`` ``(n,)`` (strings or numbers: where each sample was
  recorded);
* optional ``attributes.csv``: a header ``user,<attribute>,...`` and one row per user (e.g.
  age, gender), kept as per-user attributes.

The generic model is yours: ``--model generic.safetensors`` (a file written by ``crop`` or any
safetensors file of your ``state_dict``) and, unless the file records a built-in
architecture, ``--arch package.module:factory`` (a function returning the untrained
``nn.Module``; it is imported, so it runs your code). The same model serves every user: make
sure it never saw them.

Scenarios: ``--scenario CONTEXT`` (or ``A+B`` for several available contexts) makes the named
context(s) available and every other context an unseen one; comma-separated for several
scenarios. Metric: ``--metric`` (default balanced accuracy).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from crop.data.datasets import register_dataset
from crop.data.datasets.base import Dataset, DatasetData, DatasetScenario, UserData, UserId, finish
from crop.data.sensing import load_npz
from crop.errors import CropError

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_factory(spec: str) -> Any:
    """The callable named ``package.module:factory`` (one-line errors)."""
    import importlib

    if not isinstance(spec, str) or not _FACTORY.match(spec):
        raise CropError(f"--arch {spec!r}: expected package.module:factory")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure of user code is the user's input
        raise CropError(f"--arch {spec}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CropError(f"--arch {spec}: {module_name} has no callable {attr!r}")
    return factory


def load_given_model(path: str | Path, arch: str | None) -> nn.Module:
    """The generic model of ``--dataset npz``: a built-in architecture from the file, or
    ``arch()`` with the file's weights (strict)."""
    from crop.models.io import load_model, load_state, metadata_of

    if arch is None:
        if "crop_arch" not in metadata_of(path):
            raise CropError(f"{path}: no built-in architecture recorded; give --arch package.module:factory")
        return load_model(path)
    factory = load_factory(arch)
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - user code
        raise CropError(f"--arch {arch}: calling it failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, nn.Module):
        raise CropError(f"--arch {arch}: returned a {type(model).__name__}, not a torch.nn.Module")
    return load_state(model, path).eval()


def read_attributes(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CropError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows or "user" not in rows[0]:
        raise CropError(f"{path}: need a header row starting with a 'user' column")
    return {str(r["user"]).strip(): {k: v for k, v in r.items() if k != "user"} for r in rows}


class GivenModelDataset(Dataset):
    """What ``--dataset npz`` and ``--dataset csv`` share: your generic model (``--model``,
    ``--arch``) serves every user, every user is a default user, and ``--scenario CONTEXT``
    (``A+B`` for several) makes the named contexts available and every other one unseen."""

    given_model = True

    def make_model(self, data: DatasetData) -> nn.Module:
        raise CropError(
            f"--dataset {self.name} uses your model: give --model (and --arch unless it is a built-in architecture)"
        )

    def default_users(self) -> list[UserId]:
        return self.users()

    def generic_key(self, user: UserId) -> str:
        return "given"

    def parse_scenarios(self, spec: str | None) -> list[DatasetScenario]:
        if spec is None or not str(spec).strip():
            raise CropError(f"--dataset {self.name} needs --scenario CONTEXT (the available context; A+B for several)")
        contexts = sorted({c for d in self.load().users.values() for c in d.context.tolist()})
        out: list[DatasetScenario] = []
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                raise CropError(f"empty scenario in {spec!r}")
            available = tuple(a.strip() for a in item.split("+"))
            unknown = [a for a in available if a not in contexts]
            if unknown or len(set(available)) != len(available):
                raise CropError(f"scenario {item!r}: contexts are {', '.join(contexts)} (each at most once)")
            unseen = tuple((c, (c,)) for c in contexts if c not in available)
            if not unseen:
                raise CropError(f"scenario {item!r}: no context is left to be unseen")
            scenario = DatasetScenario(self.name, "+".join(available), available, unseen)
            if scenario in out:
                raise CropError(f"scenario {scenario.name} given twice in {spec!r}")
            out.append(scenario)
        return out

    def user_scenario(self, user: UserId, scenario: DatasetScenario, seed: int):
        """As the base class, with unseen contexts this user has no samples of left out."""
        from dataclasses import replace

        present = set(self.load().users[user].context.tolist()) if user in self.load().users else set()
        kept = tuple((n, c) for n, c in scenario.unseen if set(c) & present)
        if not kept:
            raise CropError(f"{self.name} user {user}: no samples in any unseen context of scenario {scenario.name}")
        return super().user_scenario(user, replace(scenario, unseen=kept), seed)


@register_dataset
class NpzDataset(GivenModelDataset):
    name = "npz"
    metric = "balanced_accuracy"

    def files(self) -> list[Path]:
        found = sorted(self.root.glob("*.npz"))
        return found + ([self.root / "attributes.csv"] if (self.root / "attributes.csv").is_file() else [])

    def read(self) -> DatasetData:
        files = sorted(self.root.glob("*.npz"))
        if not files:
            raise CropError(f"{self.root}: no <user>.npz files (X, y, context per user)")
        users: dict[UserId, UserData] = {}
        for path in files:
            data, context = load_npz(path, f"user {path.stem}")
            if context is None:
                raise CropError(f"{path}: missing array context (where each sample was recorded)")
            data.validate()
            users[path.stem] = UserData(data.X, data.y, np.asarray([str(c) for c in context.tolist()], dtype=str))
        shapes = {d.X.shape[1:] for d in users.values()}
        if len(shapes) > 1:
            raise CropError(f"{self.root}: users' samples have different shapes {sorted(shapes)}")
        attributes = {}
        if (self.root / "attributes.csv").is_file():
            table = read_attributes(self.root / "attributes.csv")
            attributes = {u: table[u] for u in users if u in table}
        return finish(self, users, attributes)

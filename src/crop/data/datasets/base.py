"""What every dataset of :mod:`crop.data.datasets` provides, and the code they share.

A dataset is a directory on disk (``--root``) in a documented layout plus a loader for it.
Loading gives one :class:`UserData` per person: samples ``X``, labels ``y`` and a context label
per sample (``"hand"``, ``"room1/o2"``, ``"left/still"``...). Scenarios (Table 2 of the paper)
name which context labels are *available* and which form each *unseen* context; a
:class:`~crop.data.scenarios.UserScenario` per (user, scenario, seed) is built the same way for
every dataset: the available samples split per class 60/20/20 (train / validation / test, the
run's seed), every unseen context as test-only data.

Files that cannot be read (a 0-byte or truncated file, say) are skipped by the loaders that
allow it and reported with one counted :class:`~crop.errors.DataWarning`; a user whose files
give no usable sample is left out, listed in a warning with the reason, and refused by name
(:meth:`Dataset.parse_user`) with that reason. Both are kept with the arrays, so a cached load
says them again.

Loaded arrays are cached under the cache directory (``datasets/<name>-<key>.npz``), keyed by the
loader version, its options and the listing of the files it reads (path, size, modification
time), so a second run (or a worker process) does not parse the raw files again.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from crop.data.sensing import MAX_ABS_VALUE, SensingData, stratified_split
from crop.errors import CropError, DataWarning

UserId = int | str


@dataclass(frozen=True)
class UserData:
    """All samples of one person: ``X`` ``(n, ...)`` float32, ``y`` ``(n,)`` int64, ``context``
    ``(n,)`` str (one context label per sample)."""

    X: np.ndarray
    y: np.ndarray
    context: np.ndarray


@dataclass(frozen=True)
class DatasetData:
    """A loaded dataset: every user's samples and, when the files give them, per-user attributes
    (demographics such as age, gender, dominant hand; ``{}`` when unknown).

    ``unusable``: users whose files are there but give no usable sample, with why (they are not
    in ``users``); ``notes``: what the loader left out of the files (each said as a
    :class:`~crop.errors.DataWarning` when the dataset is loaded)."""

    users: dict[UserId, UserData]
    attributes: dict[UserId, dict[str, Any]] = field(default_factory=dict)
    classes: tuple[str, ...] = ()  # label names, index = class, when the files name them (--dataset csv)
    unusable: dict[UserId, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self.users.values())).X.shape[1:])

    def contexts(self, user: UserId) -> list[str]:
        return sorted(set(self.users[user].context.tolist()))


@dataclass(frozen=True)
class DatasetScenario:
    """One scenario of a dataset: the available context labels and the unseen contexts.

    ``name`` is what ``--scenario`` takes and results record (``extrasensory:1``); ``unseen`` maps
    each unseen context's name to the labels it covers."""

    dataset: str
    name: str
    available: tuple[str, ...]
    unseen: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def available_name(self) -> str:
        return "+".join(self.available)

    @property
    def available_session(self) -> str:
        """Grouping key (as HAPT's session): scenarios with the same available context share one
        personalization per user, seed and method."""
        return self.available_name

    @property
    def generic(self) -> str:
        return self.dataset


def _sha(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Dataset(ABC):
    """Base class of the datasets; subclasses set the class attributes and implement
    :meth:`files`, :meth:`read` and :meth:`make_model`.

    Attributes (class level):
        name: what ``--dataset`` takes.
        metric: the paper's accuracy measure (Appendix A.2).
        class_names: label names, index = class.
        paper_users: the paper's personalization users (Table 2), as this loader names them.
        families: scenario families, ``{family: {number: (available, {unseen name: labels})}}``.
        default_family: the family ``--scenario`` defaults to.
        val_fraction: share of the generic model's users held out for person-disjoint
            validation (epoch selection), as the paper's split.
        per_user_generic: ``True`` when each personalization user gets their own generic model
            trained on every other user (WIDAR); else one model, trained without any of the
            paper's personalization users, serves them all.
        given_model: ``True`` when the generic model is yours (``--model``, ``--arch``: ``npz``,
            ``csv``) rather than trained by ``crop``.
        version: bump when the loader's output changes (invalidates the array cache).
        sample_word: what one sample is in the files (``rows`` for ExtraSensory), for messages.
    """

    name = "dataset"
    metric = "balanced_accuracy"
    class_names: tuple[str, ...] = ()
    paper_users: tuple[UserId, ...] = ()
    families: dict[str, dict[int, tuple[tuple[str, ...], dict[str, tuple[str, ...]]]]] = {}
    default_family = ""
    val_fraction = 0.2
    per_user_generic = False
    given_model = False
    version = 1
    sample_word = "samples"

    def __init__(self, root: str | Path, **options: Any) -> None:
        self.root = Path(root)
        self.options = options

    # ------------------------------------------------------------ to implement

    @abstractmethod
    def files(self) -> list[Path]:
        """The files the loader reads (their listing keys the array cache)."""

    @abstractmethod
    def read(self) -> DatasetData:
        """Parse the files into arrays; one-line :class:`CropError` for anything malformed."""

    @abstractmethod
    def make_model(self, data: DatasetData) -> nn.Module:
        """A fresh, untrained network of the paper's architecture for this data's input shape."""

    # ------------------------------------------------------------ shared behaviour

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def __reduce__(self) -> tuple:  # picklable for worker processes
        return (_rebuild, (type(self).name, str(self.root), self.options))

    def check_root(self) -> None:
        """The root is an existing, readable directory (one-line error otherwise)."""
        if not self.root.exists():
            raise CropError(f"--root {self.root}: no such directory")
        if not self.root.is_dir():
            raise CropError(f"--root {self.root}: not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise CropError(f"--root {self.root}: not readable")

    def fingerprint(self) -> str:
        """Key of the loaded arrays: loader, version, options and the files' listing."""
        listing = []
        for path in sorted(self.files()):
            try:
                st = path.stat()
            except OSError as exc:
                raise CropError(f"{path}: cannot read ({exc.strerror or exc})") from None
            listing.append([str(path.relative_to(self.root)), st.st_size, st.st_mtime_ns])
        return _sha([self.name, self.version, self.options, listing])

    def load(self) -> DatasetData:
        """The loaded dataset (kept by this object and memoised per process; arrays cached on disk).
        What was left out (skipped files, users without usable samples) is said once per object
        as a :class:`~crop.errors.DataWarning`."""
        data = self.__dict__.get("_data")
        if data is None:
            self.check_root()
            options = json.dumps(self.options, sort_keys=True)
            data = _load_cached(type(self), str(self.root), options, self.fingerprint())
            self.__dict__["_data"] = data
            for note in (*data.notes, *self._unusable_notes(data)):
                warnings.warn(note, DataWarning, stacklevel=2)
        return data

    def _unusable_notes(self, data: DatasetData) -> list[str]:
        """One line listing the users without usable samples (how many, which, why)."""
        if not data.unusable:
            return []
        by_reason: dict[str, list[str]] = {}
        for user in sorted(data.unusable, key=_user_order):
            by_reason.setdefault(data.unusable[user], []).append(str(user))
        total = len(data.users) + len(data.unusable)
        groups = "; ".join(f"{', '.join(users)} ({reason})" for reason, users in by_reason.items())
        have = "has" if len(data.unusable) == 1 else "have"
        return [
            f"{self.name}: {len(data.unusable)} of {total} users under {self.root} {have} no usable "
            f"{self.sample_word} and {'is' if have == 'has' else 'are'} left out: {groups}"
        ]

    def check_usable(self, user: UserId, text: str | None = None) -> None:
        """A one-line error when ``user`` is one whose files give no usable sample (``text``:
        the user as typed)."""
        reason = self.load().unusable.get(user)
        if reason is not None:
            who = f"{text!r} ({user})" if text is not None and text.strip() != str(user) else f"{user}"
            raise CropError(
                f"{self.name} user {who} exists under {self.root} but has no usable {self.sample_word}: {reason}"
            )

    # ------------------------------------------------------------ users and scenarios

    def users(self) -> list[UserId]:
        return sorted(self.load().users, key=_user_order)

    def paper_user_ids(self) -> list[UserId]:
        """The paper's personalization users present under the root, as user ids."""
        present = self.load().users
        return [u for u in self.paper_users if u in present]

    def default_users(self) -> list[UserId]:
        """The paper's personalization users found under the root."""
        found = self.paper_user_ids()
        if not found:
            shown = ", ".join(map(str, self.paper_users))
            raise CropError(
                f"{self.root}: none of the paper's personalization users ({shown}) is present; give --users"
            )
        return found

    def parse_user(self, text: str) -> UserId:
        """A user id as written on the command line (subclasses may match prefixes)."""
        data = self.load()
        present = data.users
        for user in present:
            if str(user) == text.strip():
                return user
        for user in data.unusable:
            if str(user) == text.strip():
                self.check_usable(user, text)
        raise CropError(f"unknown {self.name} user {text!r}; users under {self.root}: {_shown(present)}")

    def parse_scenarios(self, spec: str | None) -> list[DatasetScenario]:
        """``None`` or ``""`` -> every scenario of the default family; ``family`` -> both of its
        scenarios; ``family:N`` -> one; comma-separated lists allowed, no repeats."""
        if spec is None:
            spec = self.default_family
        if not isinstance(spec, str) or not spec.strip():
            raise CropError("no scenario given")
        out: list[DatasetScenario] = []
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                raise CropError(f"empty scenario in {spec!r}")
            family, sep, number = item.partition(":")
            if family not in self.families:
                raise CropError(f"unknown {self.name} scenario {item!r}; choose from {', '.join(self.families)}")
            numbers = self.families[family]
            if sep and (not number.isdigit() or int(number) not in numbers):
                raise CropError(f"unknown scenario number in {item!r}: use {' or '.join(f':{n}' for n in numbers)}")
            for n in [int(number)] if sep else sorted(numbers):
                available, unseen = numbers[n]
                scenario = DatasetScenario(self.name, f"{family}:{n}", available, tuple(unseen.items()))
                if scenario in out:
                    raise CropError(f"scenario {scenario.name} given twice in {spec!r}")
                out.append(scenario)
        return out

    def user_scenario(self, user: UserId, scenario: DatasetScenario, seed: int):
        """The :class:`~crop.data.scenarios.UserScenario` of ``user``: the available context split
        per class 60/20/20 with ``seed``; each unseen context as test-only data."""
        from crop.data.scenarios import UserScenario

        data = self.load()
        if user not in data.users:
            self.check_usable(user)
            raise CropError(f"unknown {self.name} user {user!r}; users under {self.root}: {_shown(data.users)}")
        ud = data.users[user]
        label = f"{self.name} user {user}"
        has = ", ".join(sorted(set(ud.context.tolist())))
        where = f"{label}, scenario {scenario.name}"
        available = _select(ud, scenario.available, f"{label} {scenario.available_name}", where, "available", has)
        unseen = {
            name: _select(ud, labels, f"{label} {name}", where, "unseen", has) for name, labels in scenario.unseen
        }
        return UserScenario(user, scenario, stratified_split(available, seed), unseen)

    # ------------------------------------------------------------ generic models

    def generic_key(self, user: UserId) -> str:
        """Which generic model serves ``user``: ``"paper"`` (the shared model trained without any
        of the paper's personalization users) or ``"user:<id>"`` (trained without this user)."""
        if not self.per_user_generic and user in self.paper_user_ids():
            return "paper"
        return f"user:{user}"

    def generic_split(self, key: str, seed: int) -> tuple[list[UserId], list[UserId]]:
        """Training and person-disjoint validation users of the generic model ``key``."""
        data = self.load()
        paper = set(self.paper_user_ids())
        if key == "paper":
            excluded = paper
        else:
            served = next((u for u in data.users if f"user:{u}" == key), None)
            if served is None:
                raise CropError(f"unknown generic model {key!r} for {self.name}")
            excluded = {served} | (set() if self.per_user_generic else paper)
        pool = [u for u in sorted(data.users, key=_user_order) if u not in excluded]
        if len(pool) < 2:
            raise CropError(
                f"{self.root}: a generic model needs at least two users besides the personalization users "
                f"(found {len(pool)})"
            )
        n_val = min(len(pool) - 1, max(1, round(len(pool) * self.val_fraction)))
        order = np.random.default_rng(seed).permutation(len(pool))
        val = sorted((pool[i] for i in order[:n_val]), key=_user_order)
        train = sorted((pool[i] for i in order[n_val:]), key=_user_order)
        return train, val

    def pooled(self, users: Sequence[UserId], name: str) -> SensingData:
        """Every sample of ``users`` (all contexts), for generic training."""
        data = self.load()
        parts = [data.users[u] for u in users]
        return SensingData(np.concatenate([p.X for p in parts]), np.concatenate([p.y for p in parts]), name)


def _rebuild(name: str, root: str, options: dict) -> Dataset:
    from crop.data.datasets import get_dataset

    return get_dataset(name, root, **options)


def _user_order(user: UserId) -> tuple:
    return (0, user, "") if isinstance(user, int) else (1, 0, str(user))


def _shown(users: Iterable[UserId]) -> str:
    ordered = sorted(users, key=_user_order)
    text = ", ".join(map(str, ordered[:8]))
    return text + (f", ... ({len(ordered)} in all)" if len(ordered) > 8 else "") if ordered else "none"


def _select(ud: UserData, labels: tuple[str, ...], name: str, where: str, role: str, has: str) -> SensingData:
    mask = np.isin(ud.context, np.asarray(labels, dtype=str))
    if not mask.any():
        raise CropError(
            f"{where}: no samples in the {role} context {'+'.join(labels)} (empty context; this user has: {has})"
        )
    return SensingData(ud.X[mask], ud.y[mask], name)


def check_user_data(ud: UserData, where: str, n_classes: int) -> None:
    """Shapes, finiteness, magnitude and label range of one user's arrays (one-line errors)."""
    if ud.X.ndim < 2 or ud.y.shape != (ud.X.shape[0],) or ud.context.shape != ud.y.shape:
        raise CropError(
            f"{where}: X, y and context have inconsistent shapes {ud.X.shape}, {ud.y.shape}, {ud.context.shape}"
        )
    if len(ud.y) and not np.isfinite(ud.X).all():
        raise CropError(f"{where}: NaN or inf values in the samples")
    if ud.X.size and float(np.abs(ud.X).max()) > MAX_ABS_VALUE:
        raise CropError(f"{where}: values exceed the sane magnitude {MAX_ABS_VALUE:g}")
    if len(ud.y) and (int(ud.y.min()) < 0 or int(ud.y.max()) >= n_classes):
        raise CropError(f"{where}: labels must lie in 0..{n_classes - 1}")


def finish(
    dataset: Dataset,
    users: dict[UserId, UserData],
    attributes: dict | None = None,
    classes: tuple[str, ...] = (),
    *,
    reasons: dict[UserId, str] | None = None,
    notes: Sequence[str] = (),
) -> DatasetData:
    """Validate per-user arrays (same sample shape for everyone, at least one user) and pack them
    (``classes``: the label names, when the files give them).

    A user without samples is left out and recorded as unusable with ``reasons[user]`` (default:
    no usable samples); ``notes`` are what the loader skipped (said when the dataset is loaded)."""
    reasons = reasons or {}
    unusable = {u: reasons.get(u, f"no usable {dataset.sample_word}") for u, d in users.items() if not len(d.y)}
    users = {u: d for u, d in users.items() if len(d.y)}
    if not users:
        why = f": {'; '.join(dict.fromkeys(unusable.values()))}" if unusable else ""
        skipped = f"; {notes[0]}" if notes else ""
        raise CropError(
            f"{dataset.root}: no usable {dataset.name} samples found{why}{skipped} (crop docs DATASETS has the layout)"
        )
    shapes = {tuple(d.X.shape[1:]) for d in users.values()}
    if len(shapes) != 1:
        raise CropError(f"{dataset.root}: samples of different shapes across users: {sorted(shapes)}")
    for user, ud in users.items():
        n_classes = len(classes) or len(dataset.class_names) or int(ud.y.max()) + 1
        check_user_data(ud, f"{dataset.name} user {user}", n_classes)
    return DatasetData(users, attributes or {}, tuple(classes), unusable, tuple(notes))


# ---------------------------------------------------------------- array cache


def _cache_root() -> Path:
    from crop.data.hapt import cache_dir

    return cache_dir() / "datasets"


@lru_cache(maxsize=2)
def _load_cached(cls: type, root: str, options: str, key: str) -> DatasetData:
    dataset = cls(root, **json.loads(options))
    path = _cache_root() / f"{cls.name}-{key}.npz"
    if path.is_file():
        try:
            return _read_cache(path)
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt
            path.unlink(missing_ok=True)
    data = dataset.read()
    _write_cache(path, data)
    return data


def _write_cache(path: Path, data: DatasetData) -> None:
    from crop.report.files import atomic_target

    arrays: dict[str, np.ndarray] = {}
    users = list(data.users)
    for i, user in enumerate(users):
        ud = data.users[user]
        arrays[f"X{i}"], arrays[f"y{i}"], arrays[f"c{i}"] = ud.X, ud.y, ud.context.astype(str)
    meta = {
        "users": users,
        "attributes": [[u, data.attributes.get(u, {})] for u in users],
        "classes": data.classes,
        "unusable": [[u, why] for u, why in data.unusable.items()],
        "notes": list(data.notes),
    }
    arrays["meta"] = np.asarray(json.dumps(meta))
    try:
        with atomic_target(path) as tmp, tmp.open("wb") as f:  # nothing left behind on failure
            np.savez(f, **arrays)
    except CropError:
        pass  # the cache is an optimisation: an unwritable cache directory only costs time


def _read_cache(path: Path) -> DatasetData:
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        users = {}
        for i, user in enumerate(meta["users"]):
            users[user] = UserData(f[f"X{i}"], f[f"y{i}"], f[f"c{i}"])
    attributes = {u: a for u, a in meta["attributes"] if a}
    unusable = {u: str(why) for u, why in meta.get("unusable", [])}
    return DatasetData(
        users, attributes, tuple(meta.get("classes", ())), unusable, tuple(str(n) for n in meta.get("notes", []))
    )

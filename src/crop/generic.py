"""Generic models for HAPT: training, the shipped weights, and leave-users-out folds.

Every person is served by a generic model that never saw them. The 30 HAPT users fall into
:data:`N_FOLDS` fixed folds, ``fold(u) = u mod 6`` (fold 2 is the five documented
personalization users 2, 8, 14, 20, 26). The generic model of fold ``r`` is trained on the
four other folds, with fold ``(r + 3) mod 6`` as its person-disjoint validation split (best
epoch by balanced accuracy): 20 training users, 5 validation users, and the 5 users of fold
``r`` never seen. Fold 2's models are the shipped ones
(``models/weights/hapt-generic.safetensors`` and ``hapt-rot-generic.safetensors``, trained
by ``crop train-generic`` on folds 0, 1, 3, 4 with fold 5 = users 5, 11, 17, 23, 29 as
validation); the other folds are trained on first use (about 20 s each on one CPU thread) and
cached under the cache directory, keyed by their provenance (kind, fold, training configuration,
torch version; :mod:`crop.models.cache`). Generic training always runs on one torch thread,
whatever the caller's setting, so a fold model has the same bytes whichever process trained it
first, and a cached file is used only when its recorded provenance matches.

``hapt-rot`` adds a uniformly random 3-D rotation of each training window (accelerometer and
gyroscope together), so it knows every phone orientation. The suffix ``-nobn``
(``hapt-nobn``, ``hapt-rot-nobn``) gives the same network without BatchNorm (the kind of
network the paper's four architectures are), trained the same way; it has no shipped weights,
so every fold is trained on first use.

The suffixes ``-dropout`` and ``-coteach`` (``hapt-dropout``, ``hapt-rot-coteach``...) are the
networks of the sensor-fault methods (:mod:`crop.models.modality`): a HAPTNet trained with a
random sensor masked, and the co-teaching network trained with the co-teaching loss
(:mod:`crop.personalization.coteach`), on the same users and folds; trained on first use too.
:func:`kind_for_method` gives the kind a method personalizes.

Two more modifiers, for the certified-robustness study (``docs/ROBUSTNESS.md``), come between
the base name and ``-nobn``: ``-w<N>`` (``hapt-w128``) sets the network width (default 32;
width 128 has about 260 k weights against 17 k), and ``-cert`` (``hapt-cert``,
``hapt-w128-cert``) gives a *certifiably trained* generic model: the plain generic model of the
same fold and width, then :data:`CERT_EPOCHS` epochs of CROWN-IBP robust training at L-inf
eps = :data:`CERT_EPS` on the same training users (eps and the clean/robust weight ramped over
the first half, batch-norm statistics frozen so the trained network is the one the bounds
describe; last epoch kept). ``-s<percent>`` (``hapt-s5``) gives a *sparse* generic model: the
plain one, then :data:`SPARSE_EPOCHS` epochs of training on the same users while gradual
magnitude pruning (cubic schedule over the first two thirds) keeps ``percent`` % of the
prunable weights (last epoch kept); ``crop-certified`` with ``start_mask = "generic"``
personalizes inside its mask. These kinds have no shipped weights and are trained and cached per
fold on first use.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crop.data import hapt
from crop.data.augment import rotate_triads, uniform_rotations
from crop.data.scenarios import GENERIC_VAL_USERS, PERSONALIZATION_USERS
from crop.errors import CropError
from crop.models.cache import training_threads
from crop.models.hapt import HAPTNet
from crop.models.io import load_model, metadata_of
from crop.personalization.loop import TrainConfig, train

GENERIC_KINDS = (
    "hapt",
    "hapt-rot",
    "hapt-nobn",
    "hapt-rot-nobn",
    "hapt-dropout",
    "hapt-rot-dropout",
    "hapt-coteach",
    "hapt-rot-coteach",
)
# Generic models for the sensor-fault methods (crop.personalization.coteach): the method picks its variant.
VARIANTS = {"modality-dropout": "dropout", "coteach": "coteach"}
CERT_EPS = 0.01
CERT_EPOCHS = 10
SPARSE_EPOCHS = 15
_MAX_WIDTH = 512


@dataclass(frozen=True)
class KindSpec:
    """A parsed generic model kind: ``<base>[-w<width>][-s<percent>|-cert][-nobn]``."""

    base: str  # hapt or hapt-rot
    width: int | None  # None: the default width (32)
    certified: bool
    nobn: bool
    sparse: int | None = None  # kept percent of the prunable weights (None: dense)
    variant: str | None = None  # "dropout" / "coteach": the network of a sensor-fault method

    @property
    def plain(self) -> str:
        """The kind without ``-cert`` / ``-s`` (the starting point of a certified or sparse one)."""
        return self.base + (f"-w{self.width}" if self.width else "") + ("-nobn" if self.nobn else "")


def parse_kind(kind: str) -> KindSpec:
    """Parse a generic model kind; a one-line :class:`CropError` names any unknown one."""
    for variant in ("dropout", "coteach"):
        if kind in (f"hapt-{variant}", f"hapt-rot-{variant}"):
            return KindSpec(kind[: -len(variant) - 1], None, False, False, None, variant)
    rest, nobn = (kind[: -len("-nobn")], True) if kind.endswith("-nobn") else (kind, False)
    rest, certified = (rest[: -len("-cert")], True) if rest.endswith("-cert") else (rest, False)
    sparse = None
    head, _, tail = rest.rpartition("-s")
    if head and tail.isdigit():
        sparse, rest = int(tail), head
        if not 1 <= sparse <= 99 or certified:
            raise CropError(f"generic model kind {kind!r}: -s<percent> takes 1-99 and no -cert")
    width = None
    head, _, tail = rest.rpartition("-w")
    if head and tail.isdigit():
        width, rest = int(tail), head
        if not 2 <= width <= _MAX_WIDTH or width % 2:
            raise CropError(f"generic model kind {kind!r}: width must be even and in 2-{_MAX_WIDTH}")
    if rest not in ("hapt", "hapt-rot"):
        raise CropError(
            f"unknown generic model kind {kind!r}; choose {', '.join(GENERIC_KINDS)}, "
            "optionally with -w<width> and then -s<percent> or -cert, before -nobn (e.g. hapt-w128-cert)"
        )
    return KindSpec(rest, width, certified, nobn, sparse)


def check_kind(kind: str) -> str:
    """``kind`` if it is a known generic model kind, else a one-line :class:`CropError`."""
    parse_kind(kind)
    return kind


N_FOLDS = 6
SHIPPED_FOLD = 2  # the documented personalization users; served by the shipped models


def fold_of(user: int) -> int:
    """The leave-users-out fold of a HAPT user (``user mod 6``)."""
    if user not in hapt.USERS:
        raise CropError(f"unknown HAPT user {user}: users are 1-30")
    return user % N_FOLDS


def fold_users(fold: int) -> tuple[int, ...]:
    """The users of fold ``fold`` (never seen by that fold's generic model)."""
    if fold not in range(N_FOLDS):
        raise CropError(f"unknown fold {fold}: folds are 0-{N_FOLDS - 1}")
    return tuple(u for u in hapt.USERS if u % N_FOLDS == fold)


def validation_fold(fold: int) -> int:
    """The fold whose users select the epoch of fold ``fold``'s generic model."""
    return (fold + N_FOLDS // 2) % N_FOLDS


@dataclass
class GenericTrainConfig:
    """How a HAPT generic model is trained (Adam, best person-disjoint validation epoch)."""

    epochs: int = 30
    lr: float = 2e-3
    batch_size: int = 64
    width: int = 32
    dropout: float = 0.2
    seed: int = 0
    norm: str = "batch"


class RotationAugmentation:
    """Cross-entropy on windows seen through a random sensor rotation each step."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed + 7919)

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` seen through one random rotation per window (both sensors together)."""
        return rotate_triads(x, uniform_rotations(len(x), self.gen))

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(self.rotate(x)), y)


def train_generic(
    kind: str = "hapt",
    exclude: tuple[int, ...] = PERSONALIZATION_USERS,
    val_users: tuple[int, ...] = GENERIC_VAL_USERS,
    config: GenericTrainConfig | None = None,
) -> tuple[HAPTNet, dict]:
    """Train a HAPT generic model on all users but ``exclude`` and ``val_users``, on one torch
    thread whatever the caller's setting (:func:`crop.models.cache.training_threads`): the same
    bytes from any process."""
    spec = parse_kind(kind)
    if spec.certified or spec.sparse:
        raise CropError(
            f"{kind}: certified and sparse generic models are made by generic_for_fold (from the plain kind)"
        )
    from crop.validate import check_config

    config = check_config(config or GenericTrainConfig(), "generic training")
    if spec.width is not None:
        config = GenericTrainConfig(**{**asdict(config), "width": spec.width})
    train_users = tuple(u for u in hapt.USERS if u not in exclude and u not in val_users)
    val_users = tuple(u for u in val_users if u not in exclude)
    train_data = hapt.load_users(train_users)
    val_data = hapt.load_users(val_users)
    torch.manual_seed(config.seed)
    norm = "none" if spec.nobn else config.norm
    rotated = spec.base == "hapt-rot"
    variant = spec.variant
    model, standardize = _new_network(variant, config, norm)
    stats = train_data.X.transpose(1, 0, 2).reshape(6, -1)
    mean, std = stats.mean(axis=1), stats.std(axis=1)
    if rotated:  # rotation mixes axes: one statistic per sensor triad
        mean = np.zeros(6)
        std = np.concatenate(
            [np.repeat(np.sqrt((std[:3] ** 2).mean()), 3), np.repeat(np.sqrt((std[3:] ** 2).mean()), 3)]
        )
    standardize.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(6, 1))
    standardize.std.copy_(torch.as_tensor(std, dtype=torch.float32).reshape(6, 1))
    objective = RotationAugmentation(config.seed) if rotated else None
    if variant is not None:
        objective = _variant_objective(variant, config.seed, objective)
    if rotated:  # validate on rotated windows too
        rng = np.random.default_rng(config.seed)
        from crop.data.sensing import SensingData
        from crop.data.transforms import random_rotations, rotate

        val_data = SensingData(rotate(val_data.X, random_rotations(len(val_data), rng)), val_data.y, val_data.name)
    phase = TrainConfig(epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, select="best")
    with training_threads():  # the same bytes whatever the caller's torch thread count
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


def _new_network(variant: str | None, config: GenericTrainConfig, norm: str) -> tuple[nn.Module, nn.Module]:
    """The untrained network of a kind and its input standardisation module."""
    if variant is None:
        model = HAPTNet(width=config.width, dropout=config.dropout, norm=norm)
        return model, model[0]
    if norm != "batch":
        raise CropError(f"the {variant} networks have BatchNorm: no -nobn variant")
    from crop.models.modality import CoTeachNet, MaskedHAPTNet

    if variant == "dropout":
        masked = MaskedHAPTNet(width=config.width, dropout=config.dropout)
        return masked, masked.net[0]
    net = CoTeachNet(width=config.width, dropout=config.dropout)
    return net, net.standardize


def _variant_objective(variant: str, seed: int, rotation: RotationAugmentation | None) -> Any:
    """The training objective of a sensor-fault network (the method's defaults), after the
    rotation of ``hapt-rot`` kinds when there is one."""
    from crop.personalization.coteach import CoTeachConfig, CoTeaching, ModalityDropout, ModalityDropoutConfig

    turn = rotation.rotate if rotation is not None else None
    if variant == "dropout":
        return ModalityDropout(ModalityDropoutConfig().p_drop, seed, transform=turn)
    c = CoTeachConfig()
    return CoTeaching(c.missing, c.teach, c.dynamic, transform=turn)


def kind_for_method(kind: str, method: str) -> str:
    """The generic model kind ``method`` personalizes when a scenario uses ``kind``: the
    ``-dropout`` / ``-coteach`` network for the sensor-fault methods, else ``kind`` itself."""
    variant = VARIANTS.get(method)
    if variant is None:
        return kind
    if kind.endswith("-nobn"):
        raise CropError(f"method {method} has no network without BatchNorm: drop --norm none")
    if kind not in ("hapt", "hapt-rot"):
        raise CropError(f"method {method} needs a HAPT generic model kind, got {kind!r}")
    return f"{kind}-{variant}"


def shipped_path(kind: str) -> Path:
    return Path(str(resources.files("crop.models") / "weights" / f"{kind}-generic.safetensors"))


def _training_users(path: Path) -> set[int]:
    meta = metadata_of(path)
    return set(json.loads(meta.get("train_users", "[]"))) | set(json.loads(meta.get("val_users", "[]")))


def certify_generic(
    plain: nn.Module, exclude: tuple[int, ...], val_users: tuple[int, ...], seed: int = 0
) -> tuple[nn.Module, dict]:
    """Robust-train a copy of the plain generic model ``plain`` (CROWN-IBP at :data:`CERT_EPS`,
    :data:`CERT_EPOCHS` epochs, batch-norm statistics frozen) on the users it was trained on."""
    from copy import deepcopy

    from crop.certify.gradual_prune import FreezeBatchNormStatistics
    from crop.certify.training import CertifiedObjective

    train_users = tuple(u for u in hapt.USERS if u not in exclude and u not in val_users)
    train_data = hapt.load_users(train_users)
    val_data = hapt.load_users(tuple(u for u in val_users if u not in exclude))
    model = deepcopy(plain)
    batch_size = GenericTrainConfig().batch_size
    steps = CERT_EPOCHS * -(-len(train_data) // batch_size)
    objective = CertifiedObjective(CERT_EPS, "linf", "crown-ibp", ramp_steps=max(1, steps // 2), kappa_end=0.5)
    phase = TrainConfig(epochs=CERT_EPOCHS, lr=1e-3, batch_size=batch_size, select="last")
    torch.manual_seed(seed)
    with training_threads():
        out = train(
            model, train_data, val_data, phase, seed=seed, objective=objective, hooks=[FreezeBatchNormStatistics()]
        )
    info = {
        "train_users": list(train_users),
        "val_users": list(val_users),
        "excluded_users": sorted(exclude),
        "val_balanced_accuracy": out.history[-1].get("val_metric") if out.history else None,
        "certified": {"eps": CERT_EPS, "epochs": CERT_EPOCHS, "bound": "crown-ibp", "norm": "linf"},
    }
    return model.eval(), info


def sparsify_generic(
    plain: nn.Module, percent: int, exclude: tuple[int, ...], val_users: tuple[int, ...], seed: int = 0
) -> tuple[nn.Module, dict]:
    """Train a copy of ``plain`` on its training users while pruning it to ``percent`` % of the
    prunable weights (global magnitude, cubic schedule; the decision layer is not pruned)."""
    from copy import deepcopy

    from crop.certify.gradual_prune import GradualMagnitudePrune, density_of
    from crop.personalization.prune import prunable_names

    train_users = tuple(u for u in hapt.USERS if u not in exclude and u not in val_users)
    train_data = hapt.load_users(train_users)
    val_data = hapt.load_users(tuple(u for u in val_users if u not in exclude))
    model = deepcopy(plain)
    batch_size = GenericTrainConfig().batch_size
    steps = SPARSE_EPOCHS * -(-len(train_data) // batch_size)
    pruner = GradualMagnitudePrune(model, prunable_names(model), percent / 100, 0, max(1, 2 * steps // 3))
    phase = TrainConfig(epochs=SPARSE_EPOCHS, lr=1e-3, batch_size=batch_size, select="last")
    torch.manual_seed(seed)
    with training_threads():
        out = train(model, train_data, val_data, phase, seed=seed, hooks=[pruner])
    pruner.finish(model)
    info = {
        "train_users": list(train_users),
        "val_users": list(val_users),
        "excluded_users": sorted(exclude),
        "val_balanced_accuracy": out.history[-1].get("val_metric") if out.history else None,
        "sparse": {"percent": percent, "epochs": SPARSE_EPOCHS, "density": density_of(pruner.masks)},
    }
    return model.eval(), info


def _cached_fold_model(kind: str, fold: int, cache: Path | None) -> tuple[nn.Module, dict]:
    """The fold model of ``kind``, trained on first use (on one torch thread, whatever the
    caller's setting) and cached under a key of its provenance (:mod:`crop.models.cache`)."""
    from crop.models.cache import cache_key, load_or_train, provenance

    config = GenericTrainConfig()
    spec = parse_kind(kind)
    exclude = fold_users(fold)
    val_users = fold_users(validation_fold(fold))
    extra = [CERT_EPS, CERT_EPOCHS] if spec.certified else [SPARSE_EPOCHS] if spec.sparse else []
    prov = provenance(
        {"kind": kind, "fold": fold, "excluded_users": exclude, "val_users": val_users, "config": asdict(config)}
        | ({"extra": extra} if extra else {})
    )
    target = (cache or hapt.cache_dir()) / "generic" / f"{kind}-fold{fold}-{cache_key(prov)}.safetensors"
    info = {"fold": fold, "excluded_users": list(exclude), "val_users": list(val_users), "path": str(target)}

    def fit() -> tuple[nn.Module, dict]:
        if spec.certified:
            plain, _ = generic_for_fold(spec.plain, fold, cache)
            model, trained = certify_generic(plain, exclude, val_users)
            trained = {"kind": kind, **trained, "config": asdict(config)}
        elif spec.sparse:
            plain, _ = generic_for_fold(spec.plain, fold, cache)
            model, trained = sparsify_generic(plain, spec.sparse, exclude, val_users)
            trained = {"kind": kind, **trained, "config": asdict(config)}
        else:
            model, trained = train_generic(kind, exclude=exclude, val_users=val_users, config=config)
        meta = {k: v for k, v in trained.items() if k != "config"} | {"config": trained["config"], "fold": fold}
        return model, meta

    model, source, seconds = load_or_train(target, prov, fit)
    return model, {**info, "source": source, "train_seconds": seconds}


def generic_for_fold(kind: str, fold: int, cache: Path | None = None) -> tuple[nn.Module, dict]:
    """The generic model of ``kind`` trained without fold ``fold``'s users.

    Fold 2 (the documented users) is the shipped model; other folds are trained on first use and
    cached. Returns the model and its provenance (``source``: shipped, cached or trained;
    ``fold``; ``train_seconds`` when it was trained here or read from the cache).
    """
    parse_kind(kind)
    fold_users(fold)
    path = shipped_path(kind)
    if fold == SHIPPED_FOLD and path.is_file() and not (_training_users(path) & set(fold_users(fold))):
        return load_model(path), {"source": "shipped", "path": str(path), "fold": fold}
    return _cached_fold_model(kind, fold, cache)


def generic_for_user(kind: str, user: int, cache: Path | None = None) -> tuple[nn.Module, dict]:
    """The generic model of ``kind`` that serves HAPT user ``user``: its fold's model, which
    never saw ``user`` (see :func:`generic_for_fold`)."""
    return generic_for_fold(kind, fold_of(user), cache)


def generic_for(kind: str, users: list[int] | tuple[int, ...], cache: Path | None = None) -> tuple[nn.Module, dict]:
    """A generic model of ``kind`` that has seen none of ``users``: their common fold's model.

    Users of different folds are served by different models; use :func:`generic_for_user`.
    """
    folds = {fold_of(u) for u in users}
    if len(folds) != 1:
        raise CropError(f"users {sorted(users)} belong to different folds; each needs its own generic model")
    return generic_for_user(kind, next(iter(users)), cache)


def load_generic(kind: str = "hapt", user: int | None = None, cache: Path | None = None) -> nn.Module:
    """A generic HAPT model, ready to personalize (eval mode), from any working directory.

    Without ``user``: the model shipped inside the package for ``kind`` (``hapt``, ``hapt-rot``,
    ``hapt-dropout``, ``hapt-coteach``), trained without the documented personalization users
    (2, 8, 14, 20, 26). With ``user`` (1-30): the leave-users-out model of that person's fold,
    which never saw them (trained on first use, about a minute on one thread, then cached; the
    shipped one for the documented users).

    Example:
        >>> import crop
        >>> model = crop.load_generic("hapt")
        >>> type(model).__name__
        'HAPTNet'
    """
    check_kind(kind)
    if user is not None:
        if isinstance(user, bool) or not isinstance(user, int):
            raise CropError(f"user must be a HAPT user id (an integer 1-30), got {user!r}")
        return generic_for_user(kind, user, cache)[0].eval()
    path = shipped_path(kind)
    if not path.is_file():
        shipped = sorted(p.name.removesuffix("-generic.safetensors") for p in path.parent.glob("*-generic.safetensors"))
        raise CropError(
            f"no shipped generic model of kind {kind!r} (shipped: {', '.join(shipped)}); give user=U for a fold model"
        )
    return load_model(path).eval()

"""Personalization methods registered by name, and what each returns.

A method is a function ``fit(generic, available, config, *, seed, metric) -> PersonalizationResult``
with a config dataclass. ``crop bench``, ``crop personalize`` and :func:`crop.personalize` look
methods up here, so adding one is: write the config and ``fit``, decorate with
:func:`register_method`, add a row to the test matrix.

Every ``fit`` is a pure function of (generic model, available-context split, config, seed): it
copies the generic model, never modifies it, and never sees unseen-context data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from crop.data.sensing import ContextSplit
from crop.errors import CropError
from crop.models.utils import State


@dataclass
class PersonalizationResult:
    """A personalized model and how it was reached.

    Attributes:
        method: registered name of the method.
        model: the personalized model (eval mode): what is served, evaluated and saved (for
            ``crop``, a routed model whose ``personal`` network is CRoP's; see :attr:`network`).
        states: named model states; CRoP gives ``generic``, ``initial``, ``pruned``, ``mixed``, ``final``.
        prune_amount: the pruning amount chosen, for methods that prune.
        info: method-specific details (alpha trace, training histories, selected epochs...).
    """

    method: str
    model: nn.Module
    states: dict[str, State] = field(default_factory=dict)
    prune_amount: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def network(self) -> nn.Module:
        """The network whose weights ``states`` hold: ``model`` itself, or, when ``model`` routes
        between the personalized and the generic network (:mod:`crop.personalization.route`),
        its personalized network."""
        from crop.models.routed import network_of

        return network_of(self.model)


FitFn = Callable[..., PersonalizationResult]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    config_class: type
    fit: FitFn
    description: str


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, config_class: type, description: str = "") -> Callable[[FitFn], FitFn]:
    """Decorator registering ``fit`` under ``name`` with its config dataclass."""

    def decorator(fit: FitFn) -> FitFn:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = MethodSpec(name, config_class, fit, description or (fit.__doc__ or "").strip().split("\n")[0])
        return fit

    return decorator


def register_variant(name: str, config_class: type, description: str, base: FitFn, doc: str) -> FitFn:
    """Register ``name``: the method ``base`` (e.g. ``fit_crop``) run with ``config_class``'s
    defaults, its results labelled ``name``. For ablations and option variants that differ from
    their base method in configuration only."""

    def fit(
        generic: nn.Module, available: ContextSplit, config: Any, *, seed: int = 0, metric: str = "balanced_accuracy"
    ) -> PersonalizationResult:
        result = base(generic, available, config, seed=seed, metric=metric)
        result.method = name
        return result

    fit.__name__ = "fit_" + name.replace("-", "_")
    fit.__doc__ = doc
    return register_method(name, config_class, description)(fit)


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:  # crop, crop-paper, finetune and generic register on `import crop`; the rest here
        _load_builtin_methods()
    try:
        return METHODS[name]
    except KeyError:
        raise CropError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}") from None


def available_methods() -> list[str]:
    _load_builtin_methods()
    return sorted(METHODS)


def _load_builtin_methods() -> None:
    import crop.certify.method  # noqa: F401
    import crop.personalization.ablations  # noqa: F401
    import crop.personalization.baselines  # noqa: F401
    import crop.personalization.coteach  # noqa: F401
    import crop.personalization.crop  # noqa: F401
    import crop.personalization.fair_methods  # noqa: F401
    import crop.personalization.finetune  # noqa: F401
    import crop.personalization.peers  # noqa: F401


def config_from_dict(cls: type, values: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a (possibly nested) dict and validate every field (types,
    ranges, choices; :mod:`crop.validate`), with one-line errors naming the key."""
    from crop.validate import config_from_dict as build

    return build(cls, values, where)


def check_config(config: Any, where: str = "config") -> Any:
    """Validate a config dataclass instance (:func:`crop.validate.check_config`)."""
    from crop.validate import check_config as check

    return check(config, where)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def check_available(generic: nn.Module, available: ContextSplit) -> int:
    """Validate the split against the model; return the number of classes."""
    from crop.models.utils import n_classes_of

    available.train.validate()
    n_classes = n_classes_of(generic, available.train.X, available.train.name)
    for part in (available.train, available.val, available.test):
        if len(part):
            part.validate(n_classes=n_classes, input_shape=available.train.X.shape[1:])
    if len(available.val) == 0:
        raise CropError(f"{available.val.name}: no validation windows (needed for checkpoint selection)")
    present = set(available.train.y.tolist())
    absent = [c for c in range(n_classes) if c not in present]
    if absent:
        raise CropError(
            f"{available.train.name}: class(es) {absent} absent from the available-context training data "
            f"(the model has {n_classes} classes)"
        )
    return n_classes

"""One validation layer for configurations and options.

Every config dataclass (a method's config, its nested phases, :class:`~crop.certify.robustness.RobustnessSpec`,
:class:`~crop.generic.GenericTrainConfig`) is checked field by field from its type hints:

* **types**: ``bool`` fields take ``True``/``False`` only; ``int`` fields take integers (not ``2.5``,
  not ``True``); ``float`` fields take real numbers that are finite (no NaN, no inf); ``Literal[...]``
  fields take one of their values, read from the hint itself; ``tuple[...]`` fields take lists;
  nested config dataclasses take a table of options (``initial = 5`` is refused);
* **ranges** and **upper limits**: every ``int`` and ``float`` field has a rule in :data:`RULES`
  (by field name, or ``"ClassName.field"`` where one name means different things); a test
  fails if a field of any registered config has none, so a new field cannot slip through;
* **choices** of plain ``str`` fields and of ``tuple[str, ...]`` fields in :data:`CHOICES`.

Errors are one-line :class:`~crop.errors.CropError` messages naming the key path, the value and
what is allowed. The same module checks command-line scalars and lists (seeds, users, names).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from crop.errors import CropError

# ---------------------------------------------------------------- documented limits

MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 100_000
MAX_LR = 1.0
MAX_SEED = 2**32 - 1
MAX_SEEDS = 100  # seeds in one bench
MAX_THREADS = 256
MAX_WORKERS = 64
MAX_CERTIFY_N = 1_000_000  # smoothing samples (n)
MAX_CERTIFY_N0 = 100_000  # smoothing selection samples (n0)
MAX_PGD_STEPS = 10_000
MAX_ALPHA_CROWN_ITERATIONS = 1_000
MAX_PGD_RESTARTS = 100
MAX_RADII = 32  # eps values / smoothing radii in one --certify
MAX_GRID_POINTS = 1_000  # tune grid combinations (and --budget)
MAX_GRID_VALUES = 100  # values of one tune grid key


@dataclass(frozen=True)
class Rule:
    """Allowed values of a numeric field: ``lo <= value <= hi`` (strict with ``*_open``)."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    max_len: int = MAX_RADII  # for tuple fields: most elements

    def allows(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def text(self) -> str:
        return f"{'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


UNIT = Rule(0, 1)
FRACTION_OPEN = Rule(0, 1, lo_open=True, hi_open=True)
WEIGHT = Rule(0, 100)

# Field name (or "ClassName.field") -> rule. Counts carry their documented upper limit.
RULES: dict[str, Rule] = {
    # a finetuning phase (TrainConfig) and generic training (GenericTrainConfig)
    "epochs": Rule(1, MAX_EPOCHS),
    "lr": Rule(0, MAX_LR, lo_open=True),
    "batch_size": Rule(1, MAX_BATCH_SIZE),
    "weight_decay": Rule(0, 1),
    "patience": Rule(0, MAX_EPOCHS),
    "noise_sigma": Rule(0, 10),
    "width": Rule(2, 4096),
    "dropout": Rule(0, 1, hi_open=True),
    "seed": Rule(0, MAX_SEED),
    # CRoP and its ablations
    "alpha": Rule(0, 100),
    "tau": UNIT,
    "k": FRACTION_OPEN,
    "k_step": FRACTION_OPEN,
    "cycles": Rule(1, 100),
    "cycle_epochs": Rule(0, MAX_EPOCHS),  # 0: no intermediate finetuning
    "CRoPConfig.final.epochs": Rule(0, MAX_EPOCHS),  # 0 skips step 4: the mixed model is the result
    "Phase.epochs": Rule(0, MAX_EPOCHS),  # crop.personalization.loop.train: 0 returns the starting model
    "weight": WEIGHT,  # invariance / contrastive term
    "threshold": UNIT,  # invariance agreement
    "draws": Rule(1, 1_000),
    "temperature": Rule(0, 100, lo_open=True),
    # crop-certified
    "eps": Rule(0, 10),
    "kappa_end": UNIT,
    "warmup": UNIT,
    "ramp": UNIT,
    "density": Rule(0, 1, lo_open=True),
    "prune_start": UNIT,
    "prune_end": UNIT,
    "regrow": UNIT,
    "regrow_every": Rule(1, 1_000_000),
    "regrow_end": UNIT,
    # baselines and peers
    "momentum": UNIT,
    "restore_prob": UNIT,
    "confidence": UNIT,
    "n_augmentations": Rule(1, 1_024),
    "jitter": Rule(0, 10),
    "scaling": Rule(0, 10),
    "rotation_deg": Rule(0, 180),
    "max_shift": UNIT,
    "generic_prune": Rule(0, 1, hi_open=True),
    "user_prune": Rule(0, 1, hi_open=True),
    "PiggybackConfig.mask_init": Rule(-10, 10),
    "PiggybackConfig.threshold": Rule(-10, 10),
    "margin": Rule(0, 100),
    "PTNConfig.k": Rule(1, 1_000),
    "cls_par": WEIGHT,
    "ent_par": WEIGHT,
    "rounds": Rule(1, 100),
    "epsilon": Rule(0, 1, lo_open=True),
    "beta": Rule(0, 1_000),
    "block": Rule(-1_000, 1_000),
    "projection_every": Rule(0, MAX_EPOCHS),
    "projection_steps": Rule(0, 10_000),
    "projection_lr": Rule(0, 10, lo_open=True),
    "mix": UNIT,
    # sensor-fault methods (crop.personalization.coteach)
    "p_drop": UNIT,
    "missing": WEIGHT,
    "teach": WEIGHT,
    # generic training of the paper's datasets (PaperGenericConfig, Table 9)
    "base_lr": Rule(0, MAX_LR, lo_open=True),
    "max_lr": Rule(0, MAX_LR, lo_open=True),
    "half_cycle_epochs": Rule(1, MAX_EPOCHS),
    # fairness mitigation (crop.personalization.mitigation)
    "dro_step": Rule(0, 10, lo_open=True),
    "guard_tolerance": UNIT,
    "guard_steps": Rule(1, 100),
    # per-window routing (crop.personalization.route.RouteConfig)
    "neighbours": Rule(1, 1_000),
    "quantile": Rule(0, 1, lo_open=True),
    "sharpness": Rule(0, 1_000),
    "floor": UNIT,
    # --certify (RobustnessSpec)
    "RobustnessSpec.eps": Rule(0, 10, max_len=MAX_RADII),
    "RobustnessSpec.sigma": Rule(0, 10, lo_open=True),
    "RobustnessSpec.radii": Rule(0, 100, max_len=MAX_RADII),
    "RobustnessSpec.n0": Rule(1, MAX_CERTIFY_N0),
    "RobustnessSpec.n": Rule(1, MAX_CERTIFY_N),
    "RobustnessSpec.alpha": FRACTION_OPEN,
    "RobustnessSpec.pgd_steps": Rule(0, MAX_PGD_STEPS),
    "RobustnessSpec.alpha_crown": Rule(0, MAX_ALPHA_CROWN_ITERATIONS),
    "RobustnessSpec.pgd_restarts": Rule(1, MAX_PGD_RESTARTS),
    "RobustnessSpec.batch_size": Rule(1, 65_536),
}

# Allowed values of plain ``str`` fields and of ``tuple[str, ...]`` fields: a tuple, or
# ("module", "NAME") naming a tuple defined next to the code that uses it.
CHOICES: dict[str, tuple[str, ...] | tuple[str, str]] = {
    "families": ("crop.personalization.invariance", "FAMILIES"),
    "spaces": ("crop.models.routed", "SPACES"),
    "GenericTrainConfig.norm": ("batch", "none"),
    "RobustnessSpec.norm": ("linf", "l2"),
    "RobustnessSpec.lipschitz": ("power", "fft"),
}
_LAZY_CHOICES = {"families", "spaces"}


def rule_for(cls: type, name: str, root: type | None = None, path: str = "") -> Rule | None:
    """The rule of field ``name`` of ``cls``: by its path from a top-level config ``root`` (or one
    of its base classes), e.g. ``CRoPConfig.final.epochs``; by ``ClassName.field``; by name."""
    for base in root.__mro__ if root is not None and path else ():
        if f"{base.__name__}.{path}" in RULES:
            return RULES[f"{base.__name__}.{path}"]
    return RULES.get(f"{cls.__name__}.{name}") or RULES.get(name)


def choices_for(cls: type, name: str) -> tuple[str, ...] | None:
    key = f"{cls.__name__}.{name}" if f"{cls.__name__}.{name}" in CHOICES else name
    if key not in CHOICES:
        return None
    value = CHOICES[key]
    if key in _LAZY_CHOICES:
        module, attr = value
        return tuple(getattr(importlib.import_module(module), attr))
    return tuple(value)


# ---------------------------------------------------------------- type hints


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (hint, False)."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def literal_values(hint: Any) -> tuple[Any, ...] | None:
    """The values of a ``Literal[...]`` hint (``None`` for other hints)."""
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def field_kind(hint: Any) -> str:
    """``bool``, ``int``, ``float``, ``str``, ``literal``, ``tuple``, ``config`` or ``unknown``."""
    hint, _ = _strip_optional(hint)
    if literal_values(hint) is not None:
        return "literal"
    if dataclasses.is_dataclass(hint):
        return "config"
    if typing.get_origin(hint) is tuple:
        return "tuple"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(hint, "unknown")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(where: str, path: str, value: Any, allowed: str) -> CropError:
    prefix = f"{where}: " if where else ""
    return CropError(f"{prefix}{path} = {_shown(value)} is not allowed: {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _same_kind(value: Any, allowed: Any) -> bool:
    if isinstance(allowed, bool):
        return isinstance(value, bool)
    if isinstance(allowed, str):
        return isinstance(value, str)
    return _is_int(value) if isinstance(allowed, int) else _is_real(value)


def check_scalar(value: Any, kind: str, rule: Rule | None, where: str, path: str) -> None:
    """Check one ``bool``/``int``/``float`` value against its kind and rule."""
    if kind == "bool":
        if not isinstance(value, bool):
            raise _fail(where, path, value, "must be true or false")
        return
    if kind == "int" and not _is_int(value):
        raise _fail(where, path, value, f"must be an integer{' in ' + rule.text() if rule else ''}")
    if kind == "float":
        if not _is_real(value):
            raise _fail(where, path, value, f"must be a number{' in ' + rule.text() if rule else ''}")
        if not math.isfinite(value):
            raise _fail(where, path, value, f"must be a finite number{' in ' + rule.text() if rule else ''}")
    if rule is not None and not rule.allows(value):
        raise _fail(where, path, value, f"must be {'an integer' if kind == 'int' else 'a number'} in {rule.text()}")


def _check_field(cls: type, name: str, hint: Any, value: Any, where: str, path: str, root: type) -> None:
    inner, optional = _strip_optional(hint)
    if optional and value is None:
        return
    kind = field_kind(inner)
    if kind == "literal":
        allowed = literal_values(inner)
        if not any(_same_kind(value, a) and value == a for a in allowed):
            raise _fail(where, path, value, "choose " + " or ".join(str(a) for a in allowed))
    elif kind == "config":
        if not isinstance(value, inner):
            raise _fail(where, path, value, f"must be a table of options ({inner.__name__})")
        check_config(value, where, path + ".", root)
    elif kind == "str":
        allowed = choices_for(cls, name)
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            raise _fail(where, path, value, "choose " + " or ".join(allowed) if allowed else "must be a string")
    elif kind == "tuple":
        _check_tuple(cls, name, inner, value, where, path)
    elif kind in ("bool", "int", "float"):
        check_scalar(value, kind, rule_for(cls, name, root, path), where, path)
    # Another type is not checked here; tests/test_validate.py fails until it gets a rule.


def _check_tuple(cls: type, name: str, hint: Any, value: Any, where: str, path: str) -> None:
    args = typing.get_args(hint)
    element = args[0] if args else Any
    kind = field_kind(element)
    if not isinstance(value, tuple | list):
        raise _fail(where, path, value, f"must be a list of {kind} values")
    rule = rule_for(cls, name)
    limit = rule.max_len if rule else MAX_RADII
    if len(value) > limit:
        raise _fail(where, path, value, f"at most {limit} values")
    if len(set(map(repr, value))) != len(value):
        raise _fail(where, path, value, "values must not repeat")
    allowed = choices_for(cls, name)
    for i, item in enumerate(value):
        if kind == "str":
            if not isinstance(item, str) or (allowed is not None and item not in allowed):
                raise _fail(where, f"{path}[{i}]", item, "choose from " + ", ".join(allowed or ("strings",)))
        else:
            check_scalar(item, kind, rule, where, f"{path}[{i}]")


# ---------------------------------------------------------------- configs

# Relations between fields, checked after each field: (class name, lower field, upper field).
ORDERED: tuple[tuple[str, str, str], ...] = (
    ("CertifiedConfig", "prune_start", "prune_end"),
    ("PaperGenericConfig", "base_lr", "max_lr"),
)


def check_config(config: Any, where: str = "config", prefix: str = "", root: type | None = None) -> Any:
    """Validate a config dataclass instance (recursively); return it unchanged. ``root``: the
    top-level config class whose path rules apply (default: ``config``'s own class)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise CropError(f"{where}: expected a config dataclass, got {type(config).__name__}")
    cls = type(config)
    root = root or cls
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        _check_field(cls, f.name, hints[f.name], getattr(config, f.name), where, prefix + f.name, root)
    for owner, low, high in ORDERED:
        if any(c.__name__ == owner for c in cls.__mro__) and getattr(config, low) > getattr(config, high):
            lo, hi = getattr(config, low), getattr(config, high)
            raise CropError(f"{where}: {prefix}{low} = {lo} is not allowed: must be <= {prefix}{high} = {hi}")
    return config


def config_from_dict(cls: type, values: Any, where: str = "config", prefix: str = "", root: type | None = None) -> Any:
    """Build and validate dataclass ``cls`` from a (possibly nested) dict, as read from TOML or JSON."""
    root = root or cls
    if not isinstance(values, dict):
        raise _fail(where, prefix.rstrip(".") or cls.__name__, values, f"must be a table of options ({cls.__name__})")
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            options = ", ".join(known) or "none"
            raise CropError(f"{where}: unknown option {prefix + str(key)!r}; options: {options}")
        inner, optional = _strip_optional(hints[key])
        kind = field_kind(inner)
        if kind == "config" and not (optional and value is None):
            value = config_from_dict(inner, value, where, f"{prefix}{key}.", root)
        elif kind == "tuple" and isinstance(value, list):
            value = tuple(value)
        elif kind == "float" and _is_int(value):
            value = float(value)
        _check_field(cls, key, hints[key], value, where, prefix + key, root)
        kwargs[key] = value
    return check_config(cls(**kwargs), where, prefix, root)


def config_classes(root: type) -> list[type]:
    """``root`` and every config dataclass nested in it."""
    out, todo = [], [root]
    while todo:
        cls = todo.pop()
        if cls in out:
            continue
        out.append(cls)
        hints = typing.get_type_hints(cls)
        todo += [_strip_optional(hints[f.name])[0] for f in dataclasses.fields(cls)]
        todo = [c for c in todo if dataclasses.is_dataclass(c)]
    return out


def unruled_fields(cls: type) -> list[str]:
    """Fields of ``cls`` whose value range nothing in this module defines (should be none)."""
    hints = typing.get_type_hints(cls)
    missing = []
    for f in dataclasses.fields(cls):
        inner, _ = _strip_optional(hints[f.name])
        kind = field_kind(inner)
        element = field_kind(typing.get_args(inner)[0]) if kind == "tuple" and typing.get_args(inner) else None
        numeric = kind in ("int", "float") or element in ("int", "float")
        if kind == "unknown" or (numeric and rule_for(cls, f.name) is None):
            missing.append(f"{cls.__name__}.{f.name}")
        elif (kind == "str" or element == "str") and choices_for(cls, f.name) is None:
            missing.append(f"{cls.__name__}.{f.name}")
    return missing


# ---------------------------------------------------------------- options


def check_int(value: Any, what: str, lo: int, hi: int) -> int:
    """An integer option in ``[lo, hi]``."""
    check_scalar(value, "int", Rule(lo, hi), "", what)
    return int(value)


def check_seed(value: Any, what: str = "--seed") -> int:
    return check_int(value, what, 0, MAX_SEED)


def split_list(text: str | None, what: str) -> list[str]:
    """Comma-separated items: no empty list, no empty item, no repeated item."""
    if text is None or not text.strip():
        raise CropError(f"{what}: empty list; give comma-separated values")
    items = [s.strip() for s in text.split(",")]
    if any(not s for s in items):
        raise CropError(f"{what}: empty item in {text!r}")
    repeated = sorted({s for s in items if items.count(s) > 1})
    if repeated:
        raise CropError(f"{what}: {', '.join(repeated)} given twice in {text!r}")
    return items


def int_list(
    text: str | None, what: str, lo: int | None = None, hi: int | None = None, most: int | None = None
) -> list[int]:
    """Comma-separated integers (in ``[lo, hi]`` when given), without repeats, at most ``most``."""
    items = split_list(text, what)
    try:
        values = [int(s) for s in items]
    except ValueError:
        raise CropError(f"{what} must be comma-separated integers, got {text!r}") from None
    if len(set(values)) != len(values):
        raise CropError(f"{what}: a value is given twice in {text!r}")
    for v in values:
        if lo is not None and hi is not None:
            check_int(v, what, lo, hi)
    if most is not None and len(values) > most:
        raise CropError(f"{what}: at most {most} values, got {len(values)}")
    return values


def check_unique(values: Sequence[Any], what: str, *, key: Callable[[Any], Any] = lambda v: v) -> None:
    """Refuse an empty sequence or one with repeats."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) == 0:
        raise CropError(f"{what}: need a non-empty list, got {_shown(values)}")
    keys = [key(v) for v in values]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise CropError(f"{what}: {', '.join(repeated)} given twice")

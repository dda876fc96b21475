"""Robustness of a personalized model, as extra benchmark records (``crop bench --certify``).

For each evaluated context (the available-context test split and every unseen context) a
:class:`RobustnessSpec` adds records whose ``metric`` names the measure:

* ``verified_ibp@linf:0.01``, ``verified_crown@linf:0.01``, ``verified@linf:0.01`` -- the
  fraction of windows verified at that radius by IBP, by CROWN, and by the element-wise best of
  the two bounds (the reported certificate); with ``alpha_crown=N`` also
  ``verified_alpha@linf:0.01`` (alpha-CROWN, N iterations), and ``verified`` is then the best
  of all three;
* ``lipschitz@linf:0.01`` (with ``lipschitz=power`` or ``1``, or ``lipschitz=fft``) -- the
  fraction certified by the margin / Lipschitz bound: certified L2 radius
  ``margin / (sqrt(2) L)`` with ``L`` the product of the layers' spectral norms, compared with
  ``eps * sqrt(d)`` for L-inf. ``power`` estimates each norm by power iteration (+1 % slack):
  tight, but an estimate, not a proof; ``fft`` uses guaranteed per-layer bounds (looser);
* ``pgd@linf:0.01`` -- the fraction PGD does not break (an upper bound of the true robust
  accuracy, so ``verified <= pgd`` always);
* ``smoothed@l2:0.05`` -- randomized-smoothing certified accuracy at that L2 radius for the
  noise level ``sigma`` of the spec (Cohen's CERTIFY; ``smoothed@l2:0`` is the smoothed
  classifier's clean accuracy counting abstentions as errors).

Each record also carries ``norm``, ``radius`` and (for smoothing) ``sigma`` so tables need not
parse metric names. Every computation is seeded from the unit's seed, so records are
reproducible. Radii are in input units (raw sensor units for HAPT: g and rad/s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from crop.certify.attacks import pgd_attack
from crop.certify.lipschitz import lipschitz_bound, lipschitz_radius
from crop.certify.margin import routed_parts, verify
from crop.certify.smoothing import certified_accuracy, certify
from crop.errors import CropError


@dataclass(frozen=True)
class RobustnessSpec:
    """What ``crop bench --certify`` measures.

    Attributes:
        eps: radii of the bound-propagation certificates and of PGD (``norm`` ball).
        norm: ``"linf"`` or ``"l2"`` for ``eps``.
        sigma: noise level of randomized smoothing; ``None`` skips smoothing.
        radii: L2 radii at which smoothed certified accuracy is reported (default
            ``0, sigma/4, sigma/2, sigma``).
        n0, n, alpha: Cohen's CERTIFY selection samples, estimation samples and failure rate.
        pgd_steps, pgd_restarts: PGD budget (0 steps: no attack).
        lipschitz: also report the margin / Lipschitz certificate at each ``eps``, with the
            Lipschitz bound of :func:`~crop.certify.lipschitz.lipschitz_bound` method ``"power"``
            (estimate) or ``"fft"`` (guaranteed); ``None``: not reported.
        batch_size: windows per bound-propagation batch.
        alpha_crown: iterations of alpha-CROWN (:mod:`crop.certify.alpha_crown`) on top of
            CROWN; 0 (default): not run.
    """

    eps: tuple[float, ...] = (0.003, 0.01, 0.03)
    norm: str = "linf"
    sigma: float | None = None
    radii: tuple[float, ...] | None = None
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    pgd_steps: int = 20
    pgd_restarts: int = 1
    lipschitz: str | None = None
    batch_size: int = 256
    alpha_crown: int = 0

    def smoothing_radii(self) -> tuple[float, ...]:
        if self.sigma is None:
            return ()
        if self.radii is not None:
            return self.radii
        return (0.0, self.sigma / 4, self.sigma / 2, self.sigma)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def to_option(self) -> str:
        """The ``--certify`` text that :func:`parse_robustness_spec` turns back into this spec."""
        default = RobustnessSpec()
        parts = []
        for key, value in asdict(self).items():
            if key != "eps" and value == getattr(default, key):
                continue
            if value is None:
                value = 0 if key == "lipschitz" else value
            if isinstance(value, tuple):
                parts.append(f"{key}=" + ",".join(_fmt(v) for v in value))
            else:
                parts.append(f"{key}={_fmt(value) if isinstance(value, float) else value}")
        return ",".join(parts)


_LIST_KEYS = {"eps", "radii"}
_INT_KEYS = ("n0", "n", "pgd_steps", "pgd_restarts", "batch_size", "alpha_crown")
_ALIASES = {"radius": "radii", "r": "radii", "steps": "pgd_steps", "restarts": "pgd_restarts"}


def parse_robustness_spec(text: str) -> RobustnessSpec:
    """Parse ``"eps=0.003,0.01,sigma=0.1,radius=0,0.05,n=1000"``.

    Items are ``key=value``; a bare value extends the list of the key before it (``eps`` and
    ``radii`` take lists). Keys: eps, norm, sigma, radii (radius), n0, n, alpha, pgd_steps
    (steps), pgd_restarts (restarts), lipschitz (power, fft, 1 = power, 0 = off), batch_size,
    alpha_crown (alpha-CROWN iterations, 0 = off).
    """
    if not isinstance(text, str) or not text.strip():
        raise CropError("--certify: empty; give e.g. eps=0.003,0.01,sigma=0.05")
    fields = {f for f in RobustnessSpec.__dataclass_fields__}
    values: dict[str, Any] = {}
    key: str | None = None
    for item in (s.strip() for s in text.split(",")):
        if not item:
            raise CropError(f"--certify: empty item in {text!r}")
        if "=" in item:
            key, _, raw = item.partition("=")
            key = _ALIASES.get(key.strip(), key.strip())
            if key not in fields:
                raise CropError(f"unknown --certify key {key!r}; choose from {', '.join(sorted(fields))}")
            if key in values:
                raise CropError(f"--certify key {key!r} given twice")
            values[key] = [] if key in _LIST_KEYS else None
        else:
            raw = item
            if key is None or key not in _LIST_KEYS:
                raise CropError(f"--certify value {item!r} has no key (write e.g. eps=0.01,0.03)")
        raw = raw.strip()
        try:
            if key == "norm":
                value: Any = raw
            elif key == "lipschitz":
                choices = {"1": "power", "true": "power", "power": "power", "fft": "fft", "0": None, "false": None}
                if raw.lower() not in choices:
                    raise ValueError(raw)
                value = choices[raw.lower()]
            elif key in _INT_KEYS:
                value = int(raw)
            else:
                value = float(raw)
        except ValueError:
            what = "not power, fft, 1 or 0" if key == "lipschitz" else "not a number"
            if key in _INT_KEYS:
                what = "not an integer"
            raise CropError(f"--certify {key}: {raw!r} is {what}") from None
        if key in _LIST_KEYS:
            values[key].append(value)
        else:
            values[key] = value
    for k in _LIST_KEYS & values.keys():
        values[k] = tuple(values[k])
    smoothing_only = sorted({"radii", "n0", "n", "alpha"} & values.keys())
    if smoothing_only and "sigma" not in values:
        raise CropError(f"--certify {', '.join(smoothing_only)} apply to randomized smoothing: give sigma too")
    spec = RobustnessSpec(**values)
    check_spec(spec)
    return spec


def check_spec(spec: RobustnessSpec) -> None:
    """Types, ranges and documented upper limits of every field (:mod:`crop.validate`): e.g.
    ``n <= 1000000``, ``pgd_steps <= 10000``, at most 32 radii."""
    from crop.validate import check_config

    check_config(spec, "--certify")


def _fmt(x: float) -> str:
    return f"{x:g}"


def robustness_measures(
    model: nn.Module, X: np.ndarray, y: np.ndarray, spec: RobustnessSpec, *, seed: int = 0
) -> list[dict[str, Any]]:
    """``[{"metric", "value", "norm", "radius", ("sigma")}]`` of ``model`` on ``(X, y)``."""
    check_spec(spec)
    model = model.eval()
    Xt = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    out: list[dict[str, Any]] = []
    if len(Xt) == 0:
        raise CropError("no windows to certify")
    with torch.no_grad():
        n_classes = int(model(Xt[:1]).shape[-1])
        for start in range(0, len(Xt), spec.batch_size):
            if not bool(torch.isfinite(model(Xt[start : start + spec.batch_size])).all()):
                raise CropError(
                    "the model's outputs on these windows are not finite numbers (its weights overflow float32 "
                    "arithmetic): nothing to certify"
                )
    if int(yt.min()) < 0 or int(yt.max()) >= n_classes:
        raise CropError(f"labels must lie in 0..{n_classes - 1} for this model, got {int(yt.min())}..{int(yt.max())}")
    for eps in spec.eps:
        method = "alpha-crown" if spec.alpha_crown else "both"
        iterations = spec.alpha_crown or 0
        v = verify(model, Xt, yt, eps, spec.norm, method, batch_size=spec.batch_size, iterations=iterations)
        tag = f"{spec.norm}:{_fmt(eps)}"
        names = [("verified_ibp", "ibp"), ("verified_crown", "crown"), ("verified", "both")]
        if spec.alpha_crown:
            names.insert(2, ("verified_alpha", "alpha-crown"))
        for name, key in names:
            out.append({"metric": f"{name}@{tag}", "value": float(v[key].mean()), "norm": spec.norm, "radius": eps})
        if spec.pgd_steps > 0:
            kept = 0
            for start in range(0, len(Xt), spec.batch_size):
                xb, yb = Xt[start : start + spec.batch_size], yt[start : start + spec.batch_size]
                if eps == 0:
                    broken = model(xb).argmax(1) != yb
                else:
                    _, broken = pgd_attack(
                        model, xb, yb, eps, spec.norm, steps=spec.pgd_steps, restarts=spec.pgd_restarts, seed=seed
                    )
                kept += int((~broken).sum())
            out.append({"metric": f"pgd@{tag}", "value": kept / len(Xt), "norm": spec.norm, "radius": eps})
    if spec.lipschitz and spec.eps:
        # a routed model: the smaller of its two networks' radii (both keep the label inside it, so
        # every mixture of their probabilities does; crop.certify.margin.verify)
        radius_l2 = np.min(
            [
                lipschitz_radius(net, Xt, yt, lipschitz_bound(net, tuple(Xt.shape[1:]), spec.lipschitz).value)
                for net in routed_parts(model) or (model,)
            ],
            axis=0,
        )
        dim = int(np.prod(Xt.shape[1:]))
        for eps in spec.eps:
            needed = eps * math.sqrt(dim) if spec.norm == "linf" else eps
            certified = float(np.mean((radius_l2 > needed) | ((radius_l2 > 0) & (eps == 0))))
            out.append(
                {"metric": f"lipschitz@{spec.norm}:{_fmt(eps)}", "value": certified, "norm": spec.norm, "radius": eps}
            )
    radii = spec.smoothing_radii()
    if radii:
        assert spec.sigma is not None
        pred, radius = certify(model, Xt, spec.sigma, spec.n0, spec.n, spec.alpha, seed=seed)
        acc = certified_accuracy(pred, radius, np.asarray(y), radii)
        for r, a in zip(radii, acc, strict=True):
            out.append(
                {"metric": f"smoothed@l2:{_fmt(r)}", "value": float(a), "norm": "l2", "radius": r, "sigma": spec.sigma}
            )
    return out


def robustness_hook(spec: RobustnessSpec):
    """A ``BenchSpec.unit_hook`` adding :func:`robustness_measures` records for every context."""

    def hook(base: dict[str, Any], model: nn.Module, us: Any) -> list[dict[str, Any]]:
        contexts = [("available", us.available_name, us.available.test)]
        contexts += [("unseen", name, data) for name, data in us.unseen.items()]
        records = []
        for context, name, data in contexts:
            for m in robustness_measures(model, data.X, data.y, spec, seed=int(base.get("seed", 0))):
                value = m.pop("value")
                records.append({**base, "context": context, "context_name": name, **m, "value": round(value, 10)})
        return records

    return hook


def robustness_metrics(records: Sequence[dict[str, Any]]) -> list[str]:
    """The robustness metric names present in ``records``, in a readable order."""
    names = {r["metric"] for r in records if r.get("status") == "ok" and "radius" in r and r.get("metric")}

    def key(name: str) -> tuple[float, float]:
        kind, _, tag = name.partition("@")
        order = {
            "verified_ibp": 1,
            "verified_crown": 2,
            "verified_alpha": 2.5,
            "verified": 3,
            "lipschitz": 4,
            "pgd": 5,
            "smoothed": 6,
        }.get(kind, 9)
        return (order, float(tag.rpartition(":")[2] or 0))

    return sorted(names, key=key)

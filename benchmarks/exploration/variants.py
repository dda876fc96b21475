"""Variants of the development exploration (scratch harness kept for reproducibility).

Every ``crop`` variant is a set of overrides of the paper-literal configuration
(``crop-paper``), which was the ``crop`` default while this exploration ran; ``finetune``
variants override conventional finetuning. Names ending in ``@rot`` run with the ``hapt-rot``
generic model. Run with ``run.py``; summarize with ``summarize.py``.
"""

import copy

import torch

from crop.models.utils import clone_model
from crop.personalization.norm import recalibrate_batchnorm
from crop.personalization.registry import config_from_dict, get_method

KIND = {}
VARIANTS = {
    "generic": ("generic", {}),
    "finetune": ("finetune", {}),
    "crop-paper": ("crop", {}),
    "crop-bn": ("crop", {"recalibrate_bn": True}),
    "crop-bn-loss": ("crop", {"recalibrate_bn": True, "final": {"select_on": "loss", "include_initial": True}}),
    "crop-initial": ("crop-initial", {}),
    "wise05": ("wise", {"mix": 0.5}),
}


def fit(name, spec, generic, available, seed):
    method, cfg = spec
    if method == "crop-initial":
        r = get_method("crop").fit(generic, available, get_method("crop").config_class(), seed=seed)
        m = clone_model(generic)
        m.load_state_dict(r.states["initial"])
        return m.eval()
    if method == "wise":
        r = get_method("finetune").fit(generic, available, get_method("finetune").config_class(), seed=seed)
        g = generic.state_dict()
        f = r.model.state_dict()
        a = cfg["mix"]
        st = {k: ((1 - a) * g[k] + a * f[k]) if g[k].is_floating_point() else f[k] for k in g}
        m = clone_model(generic)
        m.load_state_dict(st)
        recalibrate_batchnorm(m, available.train.X)
        return m
    ms = get_method(method)
    return ms.fit(generic, available, config_from_dict(ms.config_class, copy.deepcopy(cfg)), seed=seed).model


import torch.nn.functional as F

from crop.personalization.baselines.cotta import augment_windows
from crop.personalization.loop import TrainConfig, train


class AugCE:
    def __init__(self, seed, **kw):
        self.gen = torch.Generator().manual_seed(seed + 99)
        self.kw = kw

    def __call__(self, model, x, y):
        return F.cross_entropy(model(augment_windows(x, self.gen, **self.kw)), y)


def ft(generic, available, seed, objective=None, hooks=(), **tc):
    m = clone_model(generic)
    train(m, available.train, available.val, TrainConfig(**tc), seed=seed, objective=objective, hooks=list(hooks))
    return m


VARIANTS.update(
    {
        "ft-lr3e-4": ("ft", {"lr": 3e-4}),
        "ft-loss": ("ft", {"select_on": "loss"}),
        "ft-last": ("ft", {"select": "last"}),
        "ft-aug": ("ft-aug", {}),
        "ft-aug-norot": ("ft-aug", {"rotation_deg": 0.0}),
    }
)

_fit0 = fit


def fit(name, spec, generic, available, seed):
    method, cfg = spec
    if method == "ft":
        return ft(generic, available, seed, **cfg)
    if method == "ft-aug":
        return ft(generic, available, seed, objective=AugCE(seed, **cfg))
    return _fit0(name, spec, generic, available, seed)


BN = {"recalibrate_bn": True}
VARIANTS.update(
    {
        "wise-ft": ("wise-ft", {}),
        "l2-sp": ("l2-sp", {}),
        "lp-ft": ("lp-ft", {}),
        "surgical": ("surgical", {}),
        "tpgm": ("tpgm", {}),
        "crop-bn-pb": ("crop", {**BN, "prune_from": "best"}),
        "crop-bn-pb-noinit": ("crop", {**BN, "prune_from": "best", "final": {"include_initial": False}}),
        "crop-bn-tau02": ("crop", {**BN, "tau": 0.02}),
        "crop-bn-tau10": ("crop", {**BN, "tau": 0.10}),
        "crop-bn-a1e-2": ("crop", {**BN, "alpha": 1e-2}),
        "crop-bn-a1e-4": ("crop", {**BN, "alpha": 1e-4}),
        "crop-bn-flr": ("crop", {**BN, "final": {"lr": 3e-4, "include_initial": True}}),
    }
)

_fit1 = fit


def fit(name, spec, generic, available, seed):
    method, cfg = spec
    if method == "crop":
        # overrides of the paper-literal configuration (the crop defaults when this ran)
        ms = get_method("crop-paper")
        r = ms.fit(generic, available, config_from_dict(ms.config_class, copy.deepcopy(cfg)), seed=seed)
        return r.model, {"prune": r.prune_amount, "ep1": r.info["initial_epoch"], "ep2": r.info["final_epoch"]}
    return _fit1(name, spec, generic, available, seed)


from torch import nn


class Ens(nn.Module):
    def __init__(self, models, weights=None):
        super().__init__()
        self.ms = nn.ModuleList(models)
        self.w = weights or [1 / len(models)] * len(models)

    def forward(self, x):
        return torch.log(sum(w * torch.softmax(m(x), 1) for w, m in zip(self.w, self.ms)) + 1e-12)


class KDAug:
    """CE on clean windows + lam * KL(generic || model) on augmented windows."""

    def __init__(self, generic, seed, lam=1.0, T=2.0, **kw):
        self.g = clone_model(generic).eval()
        self.gen = torch.Generator().manual_seed(seed + 7)
        self.lam = lam
        self.T = T
        self.kw = kw

    def __call__(self, model, x, y):
        loss = F.cross_entropy(model(x), y)
        xa = augment_windows(x, self.gen, **self.kw)
        with torch.no_grad():
            pt = torch.softmax(self.g(xa) / self.T, 1)
        ls = torch.log_softmax(model(xa) / self.T, 1)
        return loss + self.lam * self.T**2 * F.kl_div(ls, pt, reduction="batchmean")


VARIANTS.update(
    {
        "ens-gen-ft": ("ens-gen-ft", {}),
        "ens3-ft": ("ens3-ft", {}),
        "kd-aug": ("kd-aug", {"lam": 1.0}),
        "kd-clean": ("kd-aug", {"lam": 1.0, "jitter": 0.0, "scaling": 0.0, "rotation_deg": 0.0, "max_shift": 0.0}),
    }
)
_fit2 = fit


def fit(name, spec, generic, available, seed):
    method, cfg = spec
    if method == "ens-gen-ft":
        m = ft(generic, available, seed)
        return Ens([clone_model(generic).eval(), m.eval()])
    if method == "ens3-ft":
        return Ens([ft(generic, available, seed + 1000 * i).eval() for i in range(3)])
    if method == "kd-aug":
        return ft(generic, available, seed, objective=KDAug(generic, seed, **cfg))
    return _fit2(name, spec, generic, available, seed)


from crop.personalization.loop import Hook


class SWA(Hook):
    def __init__(self):
        self.sum = None
        self.n = 0

    def on_epoch_end(self, model, record):
        sd = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
        if self.sum is None:
            self.sum = sd
        else:
            for k in sd:
                self.sum[k] += sd[k]
        self.n += 1

    def average(self, like):
        return {k: (v / self.n).to(like[k].dtype) for k, v in self.sum.items()}


class InvCons:
    """CE + lam * KL(model(x) || model(T x)) (consistency under sensor augmentations)."""

    def __init__(self, seed, lam=1.0, **kw):
        self.gen = torch.Generator().manual_seed(seed + 11)
        self.lam = lam
        self.kw = kw

    def __call__(self, model, x, y):
        xa = augment_windows(x, self.gen, **self.kw)
        out = model(torch.cat([x, xa]))
        a, b = out[: len(x)], out[len(x) :]
        loss = F.cross_entropy(a, y)
        return loss + self.lam * F.kl_div(torch.log_softmax(b, 1), torch.softmax(a, 1).detach(), reduction="batchmean")


VARIANTS.update(
    {
        "ft-swa": ("ft-swa", {"select": "last"}),
        "ft-swa10": ("ft-swa", {"select": "last", "epochs": 10}),
        "ft-inv": ("ft-inv", {"lam": 1.0}),
    }
)
_fit3 = fit


def fit(name, spec, generic, available, seed):
    method, cfg = spec
    if method == "ft-swa":
        h = SWA()
        m = ft(generic, available, seed, hooks=[h], **cfg)
        m.load_state_dict(h.average(m.state_dict()))
        recalibrate_batchnorm(m, available.train.X)
        return m
    if method == "ft-inv":
        return ft(generic, available, seed, objective=InvCons(seed, **cfg))
    return _fit3(name, spec, generic, available, seed)


TM = {"recalibrate_bn": True, "prune_eval": "mixed"}
VARIANTS.update(
    {
        "crop-tm": ("crop", {**TM}),
        "crop-tm-pb": ("crop", {**TM, "prune_from": "best"}),
        "crop-tm-val": ("crop", {**TM, "prune_data": "val"}),
        "crop-tm-t0": ("crop", {**TM, "tau": 0.0}),
        "crop-tm-pb-t0": ("crop", {**TM, "prune_from": "best", "tau": 0.0}),
        "wise-tol": ("wise-tol", {"tau": 0.0}),
    }
)
_fit4 = fit


def fit(name, spec, generic, available, seed):
    method, cfg = spec
    if method == "wise-tol":
        from crop.models.utils import score

        m = ft(generic, available, seed)
        f = {k: v.clone() for k, v in m.state_dict().items()}
        g = generic.state_dict()
        ref = score(m, available.val)
        for a in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]:
            st = {k: ((1 - a) * g[k] + a * f[k]) if g[k].is_floating_point() else f[k] for k in g}
            m.load_state_dict(st)
            if 0 < a < 1:
                recalibrate_batchnorm(m, available.train.X)
            if score(m, available.val) >= ref - cfg["tau"] - 1e-9:
                break
        return m.eval(), {"alpha": a}
    return _fit4(name, spec, generic, available, seed)


from crop.generic import RotationAugmentation

VARIANTS.update({"ft-rot": ("ft-rot", {}), "crop-tm-rot": ("crop-rot", {**TM})})
_fit5 = fit


def fit(name, spec, generic, available, seed):
    method, cfg = spec
    if method == "ft-rot":
        return ft(generic, available, seed, objective=RotationAugmentation(seed))
    return _fit5(name, spec, generic, available, seed)


class CleanPlusRot:
    def __init__(self, seed, lam=1.0):
        self.rot = RotationAugmentation(seed)
        self.lam = lam

    def __call__(self, model, x, y):
        return F.cross_entropy(model(x), y) + self.lam * self.rot(model, x, y)


VARIANTS.update({"ft-rotmix": ("ft-rotmix", {})})
_fit6 = fit


def fit(name, spec, generic, available, seed):
    method, cfg = spec
    if method == "ft-rotmix":
        return ft(generic, available, seed, objective=CleanPlusRot(seed))
    return _fit6(name, spec, generic, available, seed)


INV = {"invariance": {"weight": 1.0}}
VARIANTS.update(
    {
        "finetune-inv": ("finetune", INV),
        "crop-bn-inv": ("crop", {**BN, **INV}),
        "crop-bn-pb-inv": ("crop", {**BN, "prune_from": "best", **INV}),
        "crop-tm-inv": ("crop", {**TM, **INV}),
    }
)
for _n in list(VARIANTS):
    VARIANTS[_n + "@rot"] = VARIANTS[_n]
    KIND[_n + "@rot"] = "hapt-rot"
CON = {"contrastive": {"weight": 1.0}}
VARIANTS.update({"finetune-con": ("finetune", CON), "crop-bn-con": ("crop", {**BN, **CON})})
for _n in ("crop-bn-pb", "crop-bn-pb-inv", "crop-paper"):
    VARIANTS[_n + "@rot"] = VARIANTS[_n]
    KIND[_n + "@rot"] = "hapt-rot"

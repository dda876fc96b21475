"""Scratch analysis: gates and ensembles over cached outputs (features.py), scored like the bench.

    python gates.py CACHE_DIR dev [variant-substring]
"""

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, "/work/main/src")
from crop.metrics import balanced_accuracy  # noqa: E402
from crop.report.stats import bootstrap_interval  # noqa: E402

FAMS = {"hapt": ("hapt-session", "hapt-faults"), "hapt-rot": ("hapt-placement",)}


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def knn_score(ref, q, k):
    d = np.sqrt(np.maximum(((q[:, None, :] - ref[None, :, :]) ** 2).sum(-1), 0))
    d.sort(1)
    return d[:, :k].mean(1)


def knn_self(ref, k):
    d = np.sqrt(np.maximum(((ref[:, None, :] - ref[None, :, :]) ** 2).sum(-1), 0))
    np.fill_diagonal(d, np.inf)
    d.sort(1)
    return d[:, :k].mean(1)


def space(f, name, P):
    if name == "gen":
        return f["emb_generic"]
    if name == "per":
        return f[f"emb_{P}"]
    if name == "gout":
        z = f["logit_generic"]
        return z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    if name == "pout":
        z = f[f"logit_{P}"]
        return z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    if name == "stats":
        return np.concatenate([f["mean"], np.log(f["std"] + 1e-3)], 1)
    raise KeyError(name)


def gate_weights(f, P, spec):
    """Per-window weight of the personalized model."""
    part = f["part"]
    kind = spec["kind"]
    n = len(part)
    if kind == "P":
        return np.ones(n)
    if kind == "G":
        return np.zeros(n)
    if kind == "avg":
        return np.full(n, spec["lam"])
    if kind == "guard":
        # (c) refuse a personalized model that collapses a class on held-out augmented views of the
        # enrollment windows (or on the validation split): fall back to the generic model
        y = f["y"]
        aug = part == part.max()
        val = part == 1
        pp, pg = f[f"logit_{P}"].argmax(1), f["logit_generic"].argmax(1)
        bad = False
        for m in (aug, val) if spec.get("val", True) else (aug,):
            for c in np.unique(y[m]):
                mc = m & (y == c)
                if 100 * ((pp[mc] == c).mean() - (pg[mc] == c).mean()) < -spec["margin"]:
                    bad = True
        return np.full(n, 0.0 if bad else 1.0)
    if kind == "choose":
        # (d) per-person choice among generic, finetune and crop by accuracy on held-out
        # augmented views of the enrollment windows plus the validation split
        y = f["y"]
        m = (part == part.max()) | (part == 1)
        scores = {}
        for cand in spec["candidates"]:
            lg = f["logit_generic"] if cand == "generic" else f[f"logit_{cand}"]
            scores[cand] = balanced_accuracy(y[m], lg[m].argmax(1))
        best = max(spec["candidates"], key=lambda c: (scores[c], -spec["candidates"].index(c)))
        return {"__choice__": best}
    if kind == "maha":
        from sklearn.covariance import LedoitWolf

        train = part == 0
        zs = []
        for sp in spec["spaces"]:
            E = space(f, sp, P).astype(np.float64)
            mu, sd = E[train].mean(0), E[train].std(0) + 1e-6
            E = (E - mu) / sd
            if spec.get("classwise"):
                y = f["y"]
                cls = np.unique(y[train])
                means = np.stack([E[train & (y == c)].mean(0) for c in cls])
                resid = E[train] - means[np.searchsorted(cls, y[train])]
                prec = LedoitWolf().fit(resid).precision_
                d = np.stack([np.einsum("ij,jk,ik->i", E - m_, prec, E - m_) for m_ in means], 1).min(1)
            else:
                lw = LedoitWolf().fit(E[train])
                prec = lw.precision_
                d = np.einsum("ij,jk,ik->i", E - lw.location_, prec, E - lw.location_)
            d = np.sqrt(np.maximum(d, 0))
            cal = d[part == 1] if spec["cal"] == "val" else d[part == part.max()]
            zs.append(d / np.quantile(cal, spec["q"]))
        z = np.max(zs, 0)
        w = np.exp(-np.maximum(0, z - 1) * spec["kappa"])
        return spec.get("floor", 0.0) + (spec.get("ceil", 1.0) - spec.get("floor", 0.0)) * w
    if kind == "knn":
        train = part == 0
        cal_mask = {"val": part == 1, "aug": part == part.max(), "self": None, "noov": "noov", "noov+val": "noov+val"}[spec["cal"]]
        zs = []
        for sp in spec["spaces"]:
            E = space(f, sp, P)
            mu, sd = E[train].mean(0), E[train].std(0) + 1e-6
            E = (E - mu) / sd if spec.get("std", True) else E
            if spec.get("cc"):
                # class-conditional: distance to the enrollment windows of the class P predicts
                yt = f["y"][train]
                pred = f[f"logit_{P}"].argmax(1)
                s = np.full(len(E), np.inf)
                for c in np.unique(yt):
                    m = pred == c
                    if m.any():
                        s[m] = knn_score(E[train][yt == c], E[m], min(spec["k"], int((yt == c).sum())))
            else:
                s = knn_score(E[train], E, spec["k"])
            if isinstance(cal_mask, str):
                R = E[train]
                d = np.sqrt(np.maximum(((R[:, None, :] - R[None, :, :]) ** 2).sum(-1), 0))
                d[f["train_adj"]] = np.inf
                np.fill_diagonal(d, np.inf)
                if spec.get("cc"):
                    yt = f["y"][train]
                    d[yt[:, None] != yt[None, :]] = np.inf
                d.sort(1)
                d = np.where(np.isinf(d), np.nan, d)
                cal = np.nanmean(d[:, : spec["k"]], 1)
                cal = cal[np.isfinite(cal)]
                if cal_mask == "noov+val":
                    cal = np.concatenate([cal, s[(part == 1) & ~f["overlap"]]])
            else:
                cal = knn_self(E[train], spec["k"]) if cal_mask is None else s[cal_mask]
            t = np.quantile(cal, spec["q"])
            zs.append(s / t)
        z = np.max(zs, 0)
        w = np.exp(-np.maximum(0, z - 1) * spec["kappa"])
        lo = spec.get("floor", 0.0)
        hi = spec.get("ceil", 1.0)
        w = lo + (hi - lo) * w
        if spec.get("consist"):
            # the generic model's answer on a window should match its answers on the enrollment
            # windows nearest to it; where it does not, the window is not like them
            sp, a = spec["consist"]
            E = space(f, sp, P)
            tr = part == 0
            mu, sd = E[tr].mean(0), E[tr].std(0) + 1e-6
            E = (E - mu) / sd
            R = E[tr]
            d = ((E[:, None, :] - R[None]) ** 2).sum(-1)
            nn = np.argsort(d, 1)[:, : spec["k"]]
            cg = f["logit_generic"].argmax(1)
            agree = (cg[tr][nn] == cg[:, None]).mean(1)
            w = np.where(agree < a, 0.0, w)
        if spec.get("dissent"):
            # the generic model's dissent is credible when its predictions of that class were
            # (almost) always right on the person's labelled enrollment windows
            pi, mn = spec["dissent"]
            lab = (part == 0) | (part == 1)
            y = f["y"]
            cg = f["logit_generic"].argmax(1)
            cp = f[f"logit_{P}"].argmax(1)
            prec = np.zeros(f["logit_generic"].shape[1])
            for c in range(len(prec)):
                m = lab & (cg == c)
                prec[c] = (y[m] == c).mean() if m.sum() >= mn else 0.0
            overrule = (cg != cp) & (prec[cg] >= pi)
            w = np.where(overrule, 0.0, w)
        return w
    raise KeyError(kind)


def evaluate(f, P, spec):
    w = gate_weights(f, P, spec)
    if isinstance(w, dict):
        P = w["__choice__"]
        w = np.ones(len(f["part"])) if P != "generic" else np.zeros(len(f["part"]))
        P = P if P != "generic" else "crop"
    pg, pp = softmax(f["logit_generic"]), softmax(f[f"logit_{P}"])
    if spec.get("pool", "lin") == "lin":
        prob = w[:, None] * pp + (1 - w[:, None]) * pg
    else:
        prob = np.exp(w[:, None] * np.log(pp + 1e-12) + (1 - w[:, None]) * np.log(pg + 1e-12))
    pred = prob.argmax(1)
    out = {}
    names = list(f["names"])
    for i, nm in enumerate(names):
        m = f["part"] == i
        if nm in ("train", "val", "train-aug"):
            continue
        out[nm] = 100 * balanced_accuracy(f["y"][m], pred[m])
        out[nm + "#w"] = float(w[m].mean())
        if nm == "test" and "overlap" in f:
            far = m & ~f["overlap"]
            out["far#n"] = int(far.sum())
            out["far#hit"] = int((pred[far] == f["y"][far]).sum())
            out["far#wsum"] = float(w[far].sum())
    return out


def load_all(root, protocol):
    files = {}
    for kind in ("hapt", "hapt-rot"):
        for s in (1, 2):
            for p in sorted((Path(root) / "features" / protocol / f"{kind}-s{s}").glob("u*-seed*.npz")):
                u, seed = p.stem[1:].split("-seed")
                files[(kind, s, int(u), int(seed))] = dict(np.load(p))
    return files


FAR = defaultdict(lambda: np.zeros(3))


def table(files, variants, fams_only=None):
    # res[variant][(scenario)][user] -> list over seeds of (Ca, Cu)
    res = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    wts = defaultdict(lambda: defaultdict(list))
    from multiprocessing import get_context

    with get_context("fork").Pool(2) as pool:
        outs = dict(pool.map(_work, [(k, f, variants) for k, f in files.items()], chunksize=8))
    for (kind, s, u, seed), f in files.items():
        for vname, (P, spec) in variants.items():
            acc = outs[(kind, s, u, seed)][vname]
            if "far#n" in acc:
                FAR[(vname, kind)] += [acc["far#n"], acc["far#hit"], acc["far#wsum"]]
            for fam in FAMS[kind]:
                scen = f"{fam}:{s}"
                cus = [v for k, v in acc.items() if k.startswith(fam + "/") and not k.endswith("#w")]
                ws = [v for k, v in acc.items() if k.startswith(fam + "/") and k.endswith("#w")]
                res[vname][scen][u].append((acc["test"], float(np.mean(cus))))
                wts[vname][scen].append((acc["test#w"], float(np.mean(ws))))
    return res, wts


def summarize(res, wts, ref="finetune", gen="generic"):
    scens = sorted(next(iter(res.values())).keys())
    lines = []
    for v in res:
        row = [v]
        for sc in scens:
            users = sorted(res[v][sc])
            ca = {u: np.mean([a for a, _ in res[v][sc][u]]) for u in users}
            cu = {u: np.mean([b for _, b in res[v][sc][u]]) for u in users}
            rca = {u: np.mean([a for a, _ in res[ref][sc][u]]) for u in users}
            rcu = {u: np.mean([b for _, b in res[ref][sc][u]]) for u in users}
            gcu = {u: np.mean([b for _, b in res[gen][sc][u]]) for u in users}
            dg = np.array([ca[u] - rca[u] + cu[u] - rcu[u] for u in users])
            harm = np.mean([cu[u] < gcu[u] - 2 for u in users])
            lo, hi = bootstrap_interval(dg, n_resamples=2000)
            w = np.mean(wts[v][sc], 0)
            far = FAR[(v, "hapt-rot" if "placement" in sc else "hapt")]
            row.append(
                f"far {100 * far[1] / max(far[0], 1):.1f}/{far[2] / max(far[0], 1):.2f} "
                f"Ca {np.mean(list(ca.values())):.1f} Cu {np.mean(list(cu.values())):.1f} dG {dg.mean():+.2f}"
                f" [{lo:+.1f},{hi:+.1f}] h{100 * harm:.0f}% w{w[0]:.2f}/{w[1]:.2f}"
            )
        lines.append(row)
    return scens, lines


KNN3 = {"kind": "knn", "spaces": ("gen", "per", "stats"), "k": 5, "cal": "noov", "q": 0.8, "kappa": 8.0}
VARIANTS = {
    # references
    "generic": ("crop", {"kind": "G"}),
    "finetune": ("finetune", {"kind": "P"}),
    "crop (unrouted)": ("crop", {"kind": "P"}),
    # (b) output-space ensembles
    "crop + generic, average": ("crop", {"kind": "avg", "lam": 0.5}),
    "finetune + generic, average": ("finetune", {"kind": "avg", "lam": 0.5}),
    # (c) guard on held-out augmented views and the validation split
    "crop, class-collapse guard (30 pp)": ("crop", {"kind": "guard", "margin": 30}),
    # (d) per-person choice
    "choice of generic / finetune / crop": ("crop", {"kind": "choose", "candidates": ["crop", "finetune", "generic"]}),
    # (a) routing: the default and its neighbours
    "crop, routed (default)": ("crop", KNN3),
    "finetune, routed": ("finetune", KNN3),
    "crop, routed, validation calibration": ("crop", {**KNN3, "cal": "val"}),
    "crop, routed, q0.7": ("crop", {**KNN3, "q": 0.7}),
    "crop, routed, q0.75, sharpness 4": ("crop", {**KNN3, "q": 0.75, "kappa": 4.0}),
    "crop, routed, q0.9": ("crop", {**KNN3, "q": 0.9}),
    "crop, routed, sharpness 4": ("crop", {**KNN3, "kappa": 4.0}),
    "crop, routed, sharpness 16": ("crop", {**KNN3, "kappa": 16.0}),
    "crop, routed, log pooling": ("crop", {**KNN3, "pool": "log"}),
    "crop, routed, generic space only": ("crop", {**KNN3, "spaces": ("gen",)}),
    "crop, routed, personal space only": ("crop", {**KNN3, "spaces": ("per",)}),
    "crop, routed, input moments only": ("crop", {**KNN3, "spaces": ("stats",)}),
    "crop, routed, Mahalanobis (input moments)": ("crop", {"kind": "maha", "spaces": ("stats",), "cal": "val", "q": 0.9, "kappa": 4.0}),
    "crop, routed, class-conditional": ("crop", {**KNN3, "cc": True}),
    "crop, routed, + credible generic dissent": ("crop", {**KNN3, "dissent": (1.0, 3)}),
    "crop, routed, + generic neighbour consistency": ("crop", {**KNN3, "consist": ("gen", 0.5)}),
}


def _work(args):
    key, f, variants = args
    return key, {v: evaluate(f, P, spec) for v, (P, spec) in variants.items()}


def markdown(res, wts):
    scens = sorted(next(iter(res.values())).keys())
    head = "| variant | " + " | ".join(f"{s} Δ_G [95 % CI] / harm / Ca - Ca(finetune)" for s in scens) + " |"
    lines = [head, "|" + "---|" * (len(scens) + 1)]
    for v in res:
        cells = []
        for sc in scens:
            users = sorted(res[v][sc])
            ca = {u: np.mean([a for a, _ in res[v][sc][u]]) for u in users}
            cu = {u: np.mean([b for _, b in res[v][sc][u]]) for u in users}
            rca = {u: np.mean([a for a, _ in res["finetune"][sc][u]]) for u in users}
            rcu = {u: np.mean([b for _, b in res["finetune"][sc][u]]) for u in users}
            gcu = {u: np.mean([b for _, b in res["generic"][sc][u]]) for u in users}
            dg = np.array([ca[u] - rca[u] + cu[u] - rcu[u] for u in users])
            harm = np.mean([cu[u] < gcu[u] - 2 for u in users])
            lo, hi = bootstrap_interval(dg)
            gap = np.mean([ca[u] - rca[u] for u in users])
            cells.append(f"{dg.mean():+.2f} [{lo:+.2f}, {hi:+.2f}] / {100 * harm:.0f} % / {gap:+.2f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    root, protocol = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3 and sys.argv[3] == "--markdown":
        files = load_all(root, protocol)
        res, wts = table(files, VARIANTS)
        print(markdown(res, wts))
        raise SystemExit
    sel = sys.argv[3] if len(sys.argv) > 3 else ""
    files = load_all(root, protocol)
    print(len(files), "files")
    variants = {k: v for k, v in VARIANTS.items() if sel in k or k in ("generic", "finetune")}
    res, wts = table(files, variants)
    scens, lines = summarize(res, wts)
    for sc_i, sc in enumerate(scens):
        print("==", sc)
        for row in lines:
            print(f"  {row[0]:40s} {row[sc_i + 1]}")

"""Scratch harness: for every cached personalization, the outputs a gate or an ensemble needs.

Per (protocol, kind, session, user, seed) one .npz with, for every window of the available
split (train / val / test) and of every unseen context of the scenarios that share that
personalization (development only: session and faults on ``hapt``, placement on ``hapt-rot``):
labels, part index, the logits and penultimate embeddings of the generic model and of each
personalized model, per-channel mean / std of the raw window, and the same for one augmented
view of each training window (perturbation family).

    python features.py CACHE_DIR dev crop,finetune,finetune-invariant
"""

import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np


def embed(model, X):
    import torch

    with torch.no_grad():
        x = torch.as_tensor(X, dtype=torch.float32)
        h = x
        for layer in list(model)[:-1]:
            h = layer(h)
        return h.numpy(), model[-1](h).numpy()


def job(args):
    import torch

    torch.set_num_threads(1)
    from safetensors.torch import load_file

    from crop.data.augment import augment_windows
    from crop.data.scenarios import build_user_scenario, parse_scenarios
    from crop.generic import fold_of, generic_for_fold
    from crop.models.utils import clone_model

    out, protocol, kind, session, user, seed, methods = args
    target = Path(out) / "features" / protocol / f"{kind}-s{session}" / f"u{user}-seed{seed}.npz"
    if target.exists() and "train_adj" in np.load(target).files:
        return None
    fold = fold_of(user) if protocol == "test" else (fold_of(user) + 3) % 6
    gen, _ = generic_for_fold(kind, fold)
    gen.eval()
    fams = ["hapt-placement"] if kind == "hapt-rot" else ["hapt-session", "hapt-faults"]
    if protocol == "test" and kind == "hapt":
        fams.append("hapt-heldout")
    parts, names = [], []
    us = None
    for fam in fams:
        us = build_user_scenario(user, parse_scenarios(f"{fam}:{session}")[0], seed)
        if not parts:
            for nm, d in (("train", us.available.train), ("val", us.available.val), ("test", us.available.test)):
                parts.append(d)
                names.append(nm)
        for c, d in us.unseen.items():
            parts.append(d)
            names.append(f"{fam}/{c}")
    gen_t = torch.Generator().manual_seed(7919 + seed)
    aug = augment_windows(torch.as_tensor(us.available.train.X, dtype=torch.float32), gen_t).numpy()
    X = np.concatenate([p.X for p in parts] + [aug]).astype(np.float32)
    y = np.concatenate([p.y for p in parts] + [us.available.train.y])
    part = np.concatenate([np.full(len(p.y), i) for i, p in enumerate(parts)] + [np.full(len(aug), len(parts))])
    names.append("train-aug")
    # windows that share a half (50 % overlap) with some training window: their Ca is optimistic
    half = X.shape[-1] // 2
    tr = us.available.train.X
    keys = {np.ascontiguousarray(w[:, :half]).tobytes() for w in tr} | {np.ascontiguousarray(w[:, half:]).tobytes() for w in tr}
    Xs = np.concatenate([p.X for p in parts] + [aug])
    overlap = np.array([
        np.ascontiguousarray(w[:, :half]).tobytes() in keys or np.ascontiguousarray(w[:, half:]).tobytes() in keys
        for w in Xs
    ])
    # which training windows share raw samples (a time step, all channels) with which
    cols = [{np.ascontiguousarray(w[:, t]).tobytes() for t in range(w.shape[-1])} for w in tr]
    adj = np.array([[i != j and bool(cols[i] & cols[j]) for j in range(len(tr))] for i in range(len(tr))])
    res = {"train_adj": adj, "overlap": overlap, "y": y, "part": part, "names": np.array(names), "mean": X.mean(-1), "std": X.std(-1)}
    res["emb_generic"], res["logit_generic"] = embed(gen, X)
    for m in methods:
        p = Path(out) / protocol / f"{kind}-s{session}" / f"u{user}-seed{seed}-{m}.safetensors"
        model = clone_model(gen)
        state = load_file(str(p))
        if any(k.startswith("personal.") for k in state):  # a routed crop model: its CRoP network
            state = {k[len("personal."):]: v for k, v in state.items() if k.startswith("personal.")}
        model.load_state_dict(state)
        model.eval()
        res[f"emb_{m}"], res[f"logit_{m}"] = embed(model, X)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target, **res)
    return 1


if __name__ == "__main__":
    out, protocol, methods = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    users = range(1, 31)
    jobs = [
        (out, protocol, kind, s, u, seed, methods)
        for seed in [int(x) for x in os.environ.get("SEEDS", "0,1,2").split(",")]
        for kind in ("hapt", "hapt-rot")
        for s in (1, 2)
        for u in users
    ]
    t0 = time.time()
    with get_context("fork").Pool(int(os.environ.get("NPROC", "2"))) as pool:
        for i, _ in enumerate(pool.imap_unordered(job, jobs, chunksize=4)):
            if i % 100 == 0:
                print(i, len(jobs), round(time.time() - t0), flush=True)
    print("done", round(time.time() - t0), flush=True)

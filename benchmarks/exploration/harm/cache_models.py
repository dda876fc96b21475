"""Scratch harness (issue: do no harm): personalize every user once per (protocol, generic kind,
available session, seed, method) and keep the final weights, so gates and ensembles over them
can be explored post hoc without retraining.

    python cache_models.py CACHE_DIR dev|test crop,finetune,finetune-invariant [users] [seeds]
"""

import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path


def job(args):
    import torch

    torch.set_num_threads(1)
    from safetensors.torch import save_file

    from crop.data.scenarios import build_user_scenario, parse_scenarios
    from crop.generic import fold_of, generic_for_fold
    from crop.personalization.registry import get_method

    out, protocol, kind, session, user, seed, method = args
    target = Path(out) / protocol / f"{kind}-s{session}" / f"u{user}-seed{seed}-{method}.safetensors"
    if target.exists():
        return None
    fold = fold_of(user) if protocol == "test" else (fold_of(user) + 3) % 6
    gen, _ = generic_for_fold(kind, fold)
    us = build_user_scenario(user, parse_scenarios(f"hapt-session:{session}")[0], seed)
    spec = get_method(method)
    t = time.time()
    r = spec.fit(gen, us.available, spec.config_class(), seed=seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in r.model.state_dict().items()}, str(tmp))
    os.replace(tmp, target)
    return time.time() - t


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    from crop.generic import generic_for_fold

    out, protocol, methods = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    users = list(range(1, 31)) if len(sys.argv) < 5 or sys.argv[4] == "all" else [int(u) for u in sys.argv[4].split(",")]
    seeds = [0, 1, 2] if len(sys.argv) < 6 else [int(s) for s in sys.argv[5].split(",")]
    for kind in ("hapt", "hapt-rot"):
        for fold in range(6):
            generic_for_fold(kind, fold)  # train and cache serially first (no two processes race on a fold)
    jobs = [
        (out, protocol, kind, session, user, seed, m)
        for seed in seeds
        for kind in ("hapt", "hapt-rot")
        for session in (1, 2)
        for user in users
        for m in methods
    ]
    t0 = time.time()
    with get_context("fork").Pool(int(os.environ.get("NPROC", "2"))) as pool:
        for i, _ in enumerate(pool.imap_unordered(job, jobs, chunksize=1)):
            if i % 50 == 0:
                print(i, len(jobs), round(time.time() - t0), flush=True)
    print("done", round(time.time() - t0), flush=True)

"""Scratch experiment runner: variants x users x scenarios x seeds, 2 processes, resumable."""

import json
import os
import sys
import time
from multiprocessing import get_context


def work(args):
    import torch

    torch.set_num_threads(1)
    import variants as V

    from crop.data.scenarios import build_user_scenario, parse_scenarios
    from crop.generic import generic_for_user
    from crop.metrics import balanced_accuracy
    from crop.models.utils import predict

    name, spec, scen, user, seed = args
    sc = parse_scenarios(scen)[0]
    import os

    from crop.generic import fold_of, generic_for_fold

    kind = V.KIND.get(name, sc.generic)
    if os.environ.get("MODE") == "pop":
        gen, _ = generic_for_fold(kind, (fold_of(user) + 3) % 6)
    else:
        gen, _ = generic_for_user(kind, user)
    us = build_user_scenario(user, sc, seed)
    t = time.time()
    model = V.fit(name, spec, gen, us.available, seed)
    info = {}
    if isinstance(model, tuple):
        model, info = model
    out = {"variant": name, "scenario": scen, "user": user, "seed": seed, "sec": round(time.time() - t, 2), **info}
    out["Ca"] = 100 * balanced_accuracy(us.available.test.y, predict(model, us.available.test.X))
    cu = {k: 100 * balanced_accuracy(d.y, predict(model, d.X)) for k, d in us.unseen.items()}
    out["Cu"] = sum(cu.values()) / len(cu)
    out["Cu_parts"] = cu
    return out


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import variants as V

    outp = sys.argv[1]
    names = sys.argv[2].split(",")
    scens = sys.argv[3].split(",")
    users = list(range(1, 31)) if sys.argv[4] == "all" else [int(u) for u in sys.argv[4].split(",")]
    seeds = [int(s) for s in sys.argv[5].split(",")]
    done = set()
    if os.path.exists(outp):
        for line in open(outp):
            r = json.loads(line)
            done.add((r["variant"], r["scenario"], r["user"], r["seed"]))
    jobs = [
        (n, V.VARIANTS[n], sc, u, s)
        for n in names
        for sc in scens
        for u in users
        for s in seeds
        if (n, sc, u, s) not in done
    ]
    print(len(jobs), "jobs", flush=True)
    t0 = time.time()
    with get_context("fork").Pool(int(os.environ.get("NPROC", "2"))) as pool, open(outp, "a") as f:
        for i, r in enumerate(pool.imap_unordered(work, jobs, chunksize=1)):
            f.write(json.dumps(r) + "\n")
            f.flush()
            if i % 50 == 0:
                print(i, round(time.time() - t0), flush=True)
    print("done", round(time.time() - t0), flush=True)

"""Development runs of docs/ROBUSTNESS.md's sparse certified section: one method configuration on
a few HAPT users (scenario hapt-session:1, one seed), printed as one JSON line.

Usage:
    PYTHONPATH=src .venv/bin/python benchmarks/sparse_certified_dev.py 2,8,14,20,26 '{"density": 0.05}' \\
        [GENERIC_KIND [METHOD [SEED]]]

``Ca`` and ``Cu`` are the mean over the users of [clean accuracy, verified accuracy at L-inf
eps 0.01, at 0.03] (%, ``crop.certify.verify``, the better of IBP and CROWN per window) on the
available-context test split and on the unseen session; ``kept`` the kept prunable weights of
the last user's model; ``s`` the wall time. Same personalization and splits as ``crop bench``
with that seed (``build_user_scenario(user, scenario, seed)``, ``crop.personalize(..., seed)``),
without the rest of the bench's records; one thread.
"""

import json
import sys
import time

import numpy as np
import torch

import crop
from crop.certify import verify
from crop.data.scenarios import build_user_scenario, parse_scenarios
from crop.generic import generic_for_user


def main() -> None:
    torch.set_num_threads(1)
    users = [int(u) for u in sys.argv[1].split(",")]
    cfg = json.loads(sys.argv[2])
    kind = sys.argv[3] if len(sys.argv) > 3 else "hapt"
    method = sys.argv[4] if len(sys.argv) > 4 else "crop-certified"
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    scenario = parse_scenarios("hapt-session:1")[0]
    rows, kept, t0 = [], None, time.perf_counter()
    for user in users:
        us = build_user_scenario(user, scenario, seed=seed)
        generic, _ = generic_for_user(kind, user)
        result = crop.personalize(generic, us.available, cfg, method=method, seed=seed)
        model = result.model.eval()
        row = []
        for split in (us.available.test, us.unseen["session 2"]):
            X, y = torch.as_tensor(split.X), torch.as_tensor(split.y)
            with torch.no_grad():
                row.append(float((model(X).argmax(1) == y).float().mean()))
            row += [float(verify(model, X, y, eps=e, norm="linf")["both"].mean()) for e in (0.01, 0.03)]
        rows.append(row)
        kept = sum(result.info["kept"].values()) if "kept" in result.info else None
    m = np.mean(rows, 0) * 100
    out = {"cfg": cfg, "kind": kind, "method": method, "seed": seed, "users": users}
    out |= {"Ca": [round(x, 1) for x in m[:3]], "Cu": [round(x, 1) for x in m[3:]], "kept": kept}
    print(json.dumps(out | {"s": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()

"""alpha-CROWN against CROWN on the shipped HAPT model: verified accuracy and time.

Windows: all 1,601 windows of both sessions of the five documented personalization users
(2, 8, 14, 20, 26), the set the issue's reference-verifier comparison used. For each L-inf
radius (raw sensor units, as docs/ROBUSTNESS.md) it reports the windows verified by IBP, by
CROWN, by the reported certificate without alpha-CROWN (the best of IBP and CROWN), and with it
(``margin_bounds(method="alpha-crown")``, which runs alpha-CROWN only on the windows that are
classified correctly and not yet verified), plus the wall time per batch of 64 windows of
``method="both"`` and of ``method="alpha-crown"`` (which includes its own IBP and CROWN).

It also counts how many output bounds of the old ``crown_output_bounds`` (CROWN alone) were
looser than IBP on the first 128 windows, the case the intersection with IBP now fixes.

Usage: .venv/bin/python benchmarks/alpha_crown.py [--eps 0.01,0.03] [--iterations 10] [--lr 0.5]
       [--threads 1] [--limit N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import crop
from crop.certify import NormBall, compile_network, margin_bounds
from crop.certify.crown import crown_linear_bounds, crown_output_bounds, relaxed_bounds
from crop.certify.ibp import ibp_output_bounds
from crop.data import hapt as hapt_data
from crop.data.scenarios import PERSONALIZATION_USERS

BATCH = 64


def windows(limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    sessions = [hapt_data.load_session(u, s) for u in PERSONALIZATION_USERS for s in (1, 2)]
    X = torch.as_tensor(np.concatenate([d.X for d in sessions]))
    y = torch.as_tensor(np.concatenate([d.y for d in sessions]))
    return (X[:limit], y[:limit]) if limit else (X, y)


def output_bound_gap(net, X: torch.Tensor, eps: float) -> dict:
    """Old CROWN-alone output bounds against IBP, and the new intersected ones."""
    domain = NormBall.of(X, eps)
    with torch.no_grad():
        n = net.output_shape[0]
        eye = torch.eye(n).expand(len(X), n, n)
        old_l, old_u = crown_linear_bounds(net, domain, eye, state=relaxed_bounds(net, domain))
        ibp_l, ibp_u = ibp_output_bounds(net, domain)
        new_l, new_u = crown_output_bounds(net, domain)
    looser_u = old_u > ibp_u
    return {
        "bounds": int(old_u.numel()),
        "upper_looser_than_ibp": int(looser_u.sum()),
        "upper_max_gap": float((old_u - ibp_u).clamp_min(0).max()),
        "lower_looser_than_ibp": int((old_l < ibp_l).sum()),
        "new_never_looser": bool((new_u <= torch.minimum(old_u, ibp_u) + 1e-6).all()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--eps", default="0.01,0.03")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="first N windows only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = crop.load_model(Path(crop.__file__).parent / "models" / "weights" / "hapt-generic.safetensors")
    net = compile_network(model, (6, 128))
    X, y = windows(args.limit)
    results: dict = {"windows": len(X), "threads": args.threads, "iterations": args.iterations, "lr": args.lr}
    results["output_bounds_eps0.03"] = output_bound_gap(net, X[:128], 0.03)
    rows = []
    for eps in (float(e) for e in args.eps.split(",")):
        counts = dict.fromkeys(("ibp", "crown", "both", "alpha"), 0)
        t_both = t_alpha = 0.0
        batches = 0
        for start in range(0, len(X), BATCH):
            xb, yb = X[start : start + BATCH], y[start : start + BATCH]
            t0 = time.perf_counter()
            with torch.no_grad():
                both = margin_bounds(net, xb, yb, eps, "linf", "both")
            t1 = time.perf_counter()
            with torch.no_grad():
                alpha = margin_bounds(net, xb, yb, eps, "linf", "alpha-crown", iterations=args.iterations, lr=args.lr)
            t2 = time.perf_counter()
            t_both, t_alpha, batches = t_both + t1 - t0, t_alpha + t2 - t1, batches + 1
            assert torch.equal(both.crown, alpha.crown) and (alpha.lower >= both.lower).all()
            counts["ibp"] += int((both.ibp > 0).all(1).sum())
            counts["crown"] += int((both.crown > 0).all(1).sum())
            counts["both"] += int(both.verified.sum())
            counts["alpha"] += int(alpha.verified.sum())
            print(f"eps {eps}: {start + len(xb)}/{len(X)} windows, {counts}", flush=True)
        rows.append(
            {
                "eps": eps,
                **{f"verified_{k}": v / len(X) for k, v in counts.items()},
                "seconds_per_batch64_crown": t_both / batches,
                "seconds_per_batch64_alpha": t_alpha / batches,
            }
        )
    results["rows"] = rows
    print(json.dumps(results, indent=2))
    print(
        "\n| eps | IBP | CROWN | reported (IBP, CROWN) | + alpha-CROWN | gain (pp) | s / batch of 64: CROWN | alpha-CROWN |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['eps']:g} | {100 * r['verified_ibp']:.2f} | {100 * r['verified_crown']:.2f} | "
            f"{100 * r['verified_both']:.2f} | {100 * r['verified_alpha']:.2f} | "
            f"{100 * (r['verified_alpha'] - r['verified_both']):+.2f} | {r['seconds_per_batch64_crown']:.2f} | "
            f"{r['seconds_per_batch64_alpha']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

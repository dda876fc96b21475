"""How much could a better alpha-CROWN still verify? alpha-CROWN against the exact LP (triangle)
relaxation on the shipped HAPT model (:mod:`crop.certify.lp`).

Windows: the 1,601 windows of ``benchmarks/alpha_crown.py`` (both sessions of the five
documented users), in the same order. For each L-inf radius, the windows that are classified
correctly and that neither CROWN nor alpha-CROWN verifies (the only ones a tighter bound could
add) are taken, the first ``--limit`` of them. For each, with alpha-CROWN's own intermediate
bounds (every unstable neuron's bounds optimised, ``alpha_relaxed_bounds``):

* the LP optimum of every margin row that alpha-CROWN leaves negative: the window is verified
  by the LP relaxation iff all of them are positive. Since alpha-CROWN's bound is a dual feasible
  point of that LP, no choice of ReLU slopes verifies a window the LP does not;
* the gap LP - alpha-CROWN on those rows (how far the slope optimiser is from its optimum).

``--neurons N`` also checks the intermediate bounds: for the first windows, N unstable neurons
of the last hidden ReLU layer (the dense one), the LP lower bound of the pre-activation against
alpha-CROWN's.

Usage: .venv/bin/python benchmarks/alpha_crown_lp.py [--eps 0.01,0.03] [--limit 40] [--iterations 10]
       [--neurons 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from alpha_crown import windows

import crop
from crop.certify import NormBall, compile_network
from crop.certify.alpha_crown import alpha_crown_margin, alpha_relaxed_bounds, select
from crop.certify.lp import lp_lower_bounds
from crop.certify.network import Network

BATCH = 64


def candidates(net, X, y, eps, iterations, lr, limit):
    """Correct windows that CROWN and alpha-CROWN both fail to verify (first ``limit``), with
    alpha-CROWN's state and margins restricted to them."""
    found = []
    for start in range(0, len(X), BATCH):
        xb, yb = X[start : start + BATCH], y[start : start + BATCH]
        with torch.no_grad():
            correct = net.forward(xb).argmax(1) == yb
        ball = NormBall.of(xb, eps, norm="linf")
        with torch.no_grad():
            state = alpha_relaxed_bounds(net, ball, "crown", iterations=iterations, lr=lr)
        _, alpha = alpha_crown_margin(net, ball, yb, iterations=iterations, lr=lr, state=state, layers=())
        keep = correct & ~(alpha > 0).all(1)
        if keep.any():
            sub_ball, sub_state = select(ball, state, keep)
            found.append((sub_ball, sub_state, yb[keep], alpha[keep]))
        if sum(len(f[2]) for f in found) >= limit:
            break
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--eps", default="0.01,0.03")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--neurons", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = crop.load_model(Path(crop.__file__).parent / "models" / "weights" / "hapt-generic.safetensors")
    net = compile_network(model, (6, 128))
    X, y = windows(None)
    report = []
    for eps in (float(e) for e in args.eps.split(",")):
        t0 = time.perf_counter()
        found = candidates(net, X, y, eps, args.iterations, args.lr, args.limit)
        windows_done = lp_verified = rows_solved = 0
        gaps: list[float] = []
        lp_seconds = 0.0
        for ball, state, yb, alpha in found:
            for s in range(len(yb)):
                if windows_done >= args.limit:
                    break
                negative = [j for j in range(alpha.shape[1]) if j != int(yb[s]) and alpha[s, j] <= 0]
                rows = torch.stack([torch.eye(alpha.shape[1])[yb[s]] - torch.eye(alpha.shape[1])[j] for j in negative])
                t1 = time.perf_counter()
                lp = lp_lower_bounds(net, ball, state[0], rows, sample=s)
                lp_seconds += time.perf_counter() - t1
                rows_solved += len(negative)
                gaps += [float(lp[k] - alpha[s, j]) for k, j in enumerate(negative)]
                lp_verified += int((lp > 0).all())
                windows_done += 1
        row = {
            "eps": eps,
            "windows": windows_done,
            "lp_verified": lp_verified,
            "rows": rows_solved,
            "gap_max": max(gaps) if gaps else None,
            "gap_median": float(np.median(gaps)) if gaps else None,
            "gap_min": min(gaps) if gaps else None,
            "lp_seconds_per_row": lp_seconds / max(rows_solved, 1),
            "seconds": time.perf_counter() - t0,
        }
        if args.neurons and found:
            row["intermediate"] = intermediate_check(net, found[0][0], found[0][1], args.neurons)
        print(json.dumps(row), flush=True)
        report.append(row)
    print(
        "\n| eps | windows (correct, not verified by alpha-CROWN) | verified by the LP | margin rows | LP - alpha-CROWN: median / max |"
    )
    print("|---|---|---|---|---|")
    for r in report:
        if r["windows"]:
            print(
                f"| {r['eps']:g} | {r['windows']} | {r['lp_verified']} | {r['rows']} | {r['gap_median']:.2g} / {r['gap_max']:.2g} |"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def intermediate_check(net: Network, ball: NormBall, state, n: int) -> dict:
    """LP against alpha-CROWN lower bounds of ``n`` unstable pre-activations of the last ReLU
    (window 0 of the batch)."""
    bounds, _ = state
    last = max(i for i, op in enumerate(net.ops) if op.kind == "relu")
    lo, hi = bounds[last - 1][0][0].flatten(), bounds[last - 1][1][0].flatten()
    unstable = torch.nonzero((lo < 0) & (hi > 0)).flatten()[:n]
    sub = Network(net.ops[:last], net.input_shape)
    rows = torch.eye(lo.numel())[unstable]
    first = NormBall(ball.center[:1], ball.eps[:1], ball.norm)
    lp = lp_lower_bounds(sub, first, [(a[:1], b[:1]) for a, b in bounds[:last]], rows)
    gaps = lp - lo[unstable].double().numpy()
    return {"neurons": len(unstable), "gap_max": float(gaps.max()), "gap_median": float(np.median(gaps))}


if __name__ == "__main__":
    main()

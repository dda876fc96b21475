"""Randomized-smoothing throughput of the shipped HAPT model: noisy forward passes per second.

For each thread count and batch size (noisy copies per forward pass) it times
``sample_counts`` on one real HAPT window with ``n`` noise draws (Cohen's CERTIFY estimation
step), on the fast path (channels-last oneDNN convolutions, folded batch-norm;
``crop.certify.fast_forward``) and the plain path (``fast=False``: the module itself, as before).
Then it splits one batch of the fast path into its parts: noise generation (``randn``, scaling,
adding the window), the forward pass, and counting (argmax + bincount).

Reported: wall-clock passes per second (median of ``--repeats`` runs after a warm-up) and the
process CPU time per pass, because this machine is shared: the 1-minute load average before and
after each measurement is printed too.

Usage: .venv/bin/python benchmarks/smoothing_throughput.py [--threads 1,2] [--batch 2500,10000]
       [--n 100000] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import crop
from crop.certify.fast_forward import fast_forward
from crop.certify.smoothing import sample_counts
from crop.data import hapt as hapt_data


def measure(fn, repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of ``fn`` after one warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch", default="2500,10000")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    model = crop.load_model(Path(crop.__file__).parent / "models" / "weights" / "hapt-generic.safetensors").eval()
    x = torch.as_tensor(hapt_data.load_session(2, 1).X[:1])
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for batch in (int(b) for b in args.batch.split(",")):
            for fast in (True, False):
                load_before = os.getloadavg()[0]

                def run(batch=batch, fast=fast):
                    gen = torch.Generator().manual_seed(0)
                    sample_counts(model, x, args.sigma, args.n, batch_size=batch, generator=gen, fast=fast)

                wall, cpu = measure(run, args.repeats)
                row = {
                    "threads": threads,
                    "batch": batch,
                    "path": "fast" if fast else "plain",
                    "passes_per_second": args.n / wall,
                    "cpu_us_per_pass": 1e6 * cpu / args.n,
                    "load_before": load_before,
                    "load_after": os.getloadavg()[0],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)

    # where the time goes: one batch of the fast path, one thread
    torch.set_num_threads(1)
    batch = int(args.batch.split(",")[0])
    forward = fast_forward(model, x)
    assert forward is not None
    gen = torch.Generator().manual_seed(0)
    parts = {}
    with torch.inference_mode():
        holder = {}

        def noise():
            z = torch.randn((batch, 1, 128, 6), generator=gen).mul_(args.sigma).add_(x.transpose(1, 2)[None])
            holder["h"] = z.reshape(batch, 128, 6).permute(0, 2, 1).unsqueeze(2)

        def net():
            holder["logits"] = forward(holder["h"])

        def count():
            torch.bincount(holder["logits"].argmax(-1), minlength=6)

        for name, fn in (("noise", noise), ("forward", net), ("count", count)):
            parts[name] = measure(fn, max(5, args.repeats))[1] * 1e6 / batch  # CPU us per pass
        # the forward pass by operator (torch.profiler, self CPU time)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                forward(holder["h"])
        ops = {
            e.key: e.self_cpu_time_total / 5 / batch  # us per pass (with the profiler's overhead)
            for e in prof.key_averages()
            if e.self_cpu_time_total > 0
        }
    top = dict(sorted(ops.items(), key=lambda kv: -kv[1])[:8])
    results = {
        "n": args.n,
        "sigma": args.sigma,
        "rows": rows,
        "cpu_us_per_pass_parts_batch": batch,
        "parts": parts,
        "forward_ops_us_per_pass": top,
    }
    print(json.dumps(results, indent=2))
    print("\n| threads | batch | path | noisy passes / s | CPU us / pass | load (1 min) before / after |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['threads']} | {r['batch']} | {r['path']} | {r['passes_per_second']:,.0f} | "
            f"{r['cpu_us_per_pass']:.1f} | {r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    total = sum(parts.values())
    print(
        f"\nfast path, one thread, batch {batch}: CPU us per pass "
        + ", ".join(f"{k} {v:.2f} ({100 * v / total:.0f} %)" for k, v in parts.items())
    )
    share = sum(top.values())
    print(
        "forward by operator (share of profiled self CPU time): "
        + ", ".join(f"{k} {100 * v / share:.0f} %" for k, v in top.items() if v / share >= 0.005)
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

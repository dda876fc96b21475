"""Speed of crop.certify on CPU, and sparse vs dense model files.

1. IBP and CROWN (margin bounds, L-inf ball of 0.01, the reported bound = both) time per 1,000
   inputs for the shipped HAPT model on 1,000 real HAPT windows (the personalization users'
   sessions) and for the paper's Stress MLP (34 features, 3 linear layers of 128; random
   weights and inputs), plus CROWN time per batch of 64 HAPT windows. CROWN's cost grows with
   the number of unstable ReLUs, so it depends on the data and eps.
2. Randomized smoothing throughput: noisy forward passes per second with n = 100,000 samples
   per window, batched (10,000 noisy copies per forward pass).
3. Sparse model files: the shipped HAPT model pruned to several densities (global magnitude,
   decision layer kept dense) written dense (safetensors) and sparse (CSR safetensors); file
   size and CPU inference time of the dense module vs the sparse-CSR module.

Every timing is the median of ``--repeats`` runs after a warm-up, on ``--threads`` torch
threads (1, as the crop command uses by default).

Usage: .venv/bin/python benchmarks/certify_speed.py [--threads 1] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import crop
from crop.certify.margin import margin_bounds
from crop.certify.network import compile_network
from crop.certify.smoothing import sample_counts
from crop.certify.sparse import save_sparse, to_sparse_inference
from crop.models import StressMLP, save_model
from crop.personalization.prune import global_masks, prunable_names


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bound_times(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, eps: float, repeats: int) -> dict[str, float]:
    net = compile_network(model, tuple(X.shape[1:]))
    out = {}
    for method in ("ibp", "crown", "both"):

        def run(method=method):
            with torch.no_grad():
                for start in range(0, len(X), 250):
                    margin_bounds(net, X[start : start + 250], y[start : start + 250], eps, "linf", method)

        out[method] = timed(run, repeats) * 1000 / len(X)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict = {"threads": args.threads}

    hapt = crop.load_model(Path(crop.__file__).parent / "models" / "weights" / "hapt-generic.safetensors")
    import numpy as np

    from crop.data import hapt as hapt_data
    from crop.data.scenarios import PERSONALIZATION_USERS

    sessions = [hapt_data.load_session(u, s) for u in PERSONALIZATION_USERS for s in (1, 2)]
    X = torch.as_tensor(np.concatenate([d.X for d in sessions])[:1000])
    y = torch.as_tensor(np.concatenate([d.y for d in sessions])[:1000])
    stress = StressMLP().eval()
    Xs = torch.randn(1000, 34)
    ys = stress(Xs).argmax(1)
    results["bounds_seconds_per_1000"] = {
        "hapt_cnn": bound_times(hapt, X, y, 0.01, args.repeats),
        "stress_mlp": bound_times(stress, Xs, ys, 0.01, args.repeats),
    }
    net = compile_network(hapt, (6, 128))

    def crown64() -> None:
        with torch.no_grad():
            for start in range(0, 320, 64):  # five different batches: CROWN's cost depends on the data
                margin_bounds(net, X[start : start + 64], y[start : start + 64], 0.01, "linf", "crown")

    results["crown_seconds_per_batch64_hapt"] = timed(crown64, args.repeats) / 5

    n = 100_000
    one = X[:1]
    secs = timed(lambda: sample_counts(hapt, one, 0.05, n, batch_size=10_000), max(1, args.repeats // 2))
    results["smoothing"] = {"n": n, "batch": 10_000, "seconds_per_window": secs, "passes_per_second": n / secs}

    rows = []
    names = prunable_names(hapt, exclude_last=True)
    batch = X[:256]
    with tempfile.TemporaryDirectory() as tmp:
        for density in (1.0, 0.5, 0.1, 0.05, 0.01):
            model = crop.models.clone_model(hapt)
            params = dict(model.named_parameters())
            if density < 1:
                masks = global_masks({k: params[k].detach().abs() for k in names}, 1 - density)
                with torch.no_grad():
                    for k, keep in masks.items():
                        params[k].mul_(keep)
            dense_file = save_model(model, Path(tmp) / f"d{density}.safetensors")
            sparse_file = save_sparse(model, Path(tmp) / f"s{density}.safetensors")
            fast = to_sparse_inference(model, max_density=0.5)
            with torch.no_grad():
                row = {
                    "density": density,
                    "dense_bytes": dense_file.stat().st_size,
                    "sparse_bytes": sparse_file.stat().st_size,
                    "dense_ms_batch1": 1000 * timed(lambda m=model: m(batch[:1]), args.repeats * 20),
                    "sparse_ms_batch1": 1000 * timed(lambda f=fast: f(batch[:1]), args.repeats * 20),
                    "dense_ms_batch256": 1000 * timed(lambda m=model: m(batch), args.repeats),
                    "sparse_ms_batch256": 1000 * timed(lambda f=fast: f(batch), args.repeats),
                }
            rows.append(row)
    results["sparse"] = rows

    print(json.dumps(results, indent=2))
    b = results["bounds_seconds_per_1000"]
    print("\n| model | IBP s / 1000 | CROWN s / 1000 | IBP+CROWN s / 1000 |\n|---|---|---|---|")
    for name, t in b.items():
        print(f"| {name} | {t['ibp']:.3f} | {t['crown']:.3f} | {t['both']:.3f} |")
    print(f"\nCROWN, one batch of 64 HAPT windows: {results['crown_seconds_per_batch64_hapt']:.3f} s")
    s = results["smoothing"]
    print(
        f"smoothing: {s['passes_per_second']:,.0f} noisy forward passes / s (n = {n}, {s['seconds_per_window']:.2f} s per window)"
    )
    print(
        "\n| density | dense file (KiB) | sparse file (KiB) | dense ms (batch 1) | sparse ms (batch 1) | dense ms (batch 256) | sparse ms (batch 256) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['density']:g} | {r['dense_bytes'] / 1024:.1f} | {r['sparse_bytes'] / 1024:.1f} | {r['dense_ms_batch1']:.3f} | "
            f"{r['sparse_ms_batch1']:.3f} | {r['dense_ms_batch256']:.2f} | {r['sparse_ms_batch256']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

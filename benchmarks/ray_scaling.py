"""Units per minute of ``crop bench`` with the local pool and the Ray executor, and what the
whole HAPT grid would cost on a 16-worker cluster.

1. **Scaling.** One fixed small grid (``hapt-session:1``, users 2, 8, 14, 20, seed 0, methods
   generic, finetune, crop: 12 units, 12 personalizations) run from an empty directory with
   the local executor and with ``--executor ray`` (a private local Ray instance), each with 1
   and 2 workers, in process as ``crop bench`` runs it. Wall time includes every start-up
   (worker processes, Ray); the load average of the machine before and after each run is
   recorded, since other jobs share its cores. Every run must write the same results.jsonl
   (checked). Ray's start-up alone (start and shut down an idle instance) is timed as well.
2. **Per-method cost.** Every registered method on one unit (user 2, seed 0, ``hapt-session:1``)
   with the local executor, 1 worker: the seconds of each personalization from timings.jsonl.
3. **Paper estimate.** All 30 HAPT users x 6 scenarios (``hapt-session``, ``hapt-placement``,
   ``hapt-faults``, both directions) x 3 seeds x every method on a 16-worker cluster. The 6
   scenarios share personalizations: 4 groups per (user, seed, method) (docs/BENCHMARKS.md).
   Seconds per group: the all-user run's ``docs/results/main-timings.jsonl`` (or
   ``ablations-timings.jsonl``, both measured with nothing else running) where it measured the
   method, else step 2's measurement divided by the slow-down of this machine now: the median
   ratio of step 2's seconds to the recorded seconds of the same personalization (user 2, seed
   0, ``hapt-session:1``) over the methods timed in both.
   Estimate = generic models trained in the driver (the all-user run's 160 s) + Ray start-up +
   sum of group seconds / 16, plus Ray's per-task cost beyond start-up where the grid of step 1
   measured one (1-worker Ray wall - 1-worker local wall - start-up, medians, per unit); it
   assumes each worker has a core like this machine's to itself.

Usage: .venv/bin/python benchmarks/ray_scaling.py [--out out/ray-scaling] [--repeats 2] [--skip-methods] [--reuse]
Writes OUT/scaling.json, prints the Markdown tables, and saves docs/figures/ray-scaling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import torch

from crop.bench.runner import BenchSpec, run_bench
from crop.data.scenarios import parse_scenarios
from crop.personalization.registry import available_methods

GRID_USERS = [2, 8, 14, 20]
GRID_METHODS = ["generic", "finetune", "crop"]
ALL_USERS, SEEDS, CLUSTER = 30, 3, 16
GROUPS_PER_USER_SEED = 4  # session:1+faults:1, session:2+faults:2, placement:1, placement:2
GENERIC_TRAINING_S = 160.0  # the ten leave-users-out generic models of the all-user run (docs/BENCHMARKS.md)
DOCS = Path(__file__).resolve().parents[1] / "docs"


def grid_run(out: Path, executor: str, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    spec = BenchSpec(
        parse_scenarios("hapt-session:1"), GRID_USERS, [0], GRID_METHODS, out, executor=executor, workers=workers
    )
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    run_bench(spec, progress=False)
    wall = time.perf_counter() - t0
    units = len(GRID_USERS) * len(GRID_METHODS)
    return {
        "executor": executor,
        "workers": workers,
        "units": units,
        "wall_s": round(wall, 2),
        "units_per_min": round(60 * units / wall, 2),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "results": (out / "results.jsonl").read_bytes().decode(),
    }


def ray_startup() -> float:
    import ray

    from crop.bench.ray_executor import start_ray

    t0 = time.perf_counter()
    start_ray(workers=2)
    ray.shutdown()
    return time.perf_counter() - t0


def method_seconds(out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    methods = available_methods()
    run_bench(BenchSpec(parse_scenarios("hapt-session:1"), [2], [0], methods, out, workers=1), progress=False)
    rows = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
    return {r["method"]: r["seconds"] for r in rows}


def recorded_seconds() -> tuple[dict[str, float], dict[str, str], dict[str, float]]:
    """Mean seconds per group of each method in the all-user run (and the ablations run), their
    source, and the seconds of the same group as step 2 (user 2, seed 0, hapt-session:1)."""
    means, source, same_unit = {}, {}, {}
    for name in ("main", "ablations"):
        per: dict[str, list[float]] = {}
        for line in (DOCS / "results" / f"{name}-timings.jsonl").read_text().splitlines():
            r = json.loads(line)
            per.setdefault(r["method"], []).append(r["seconds"])
            if (r["user"], r["seed"], r["scenarios"][0]) == (2, 0, "hapt-session:1"):
                same_unit.setdefault(r["method"], r["seconds"])
        for m, xs in per.items():
            if m not in means:
                means[m], source[m] = statistics.mean(xs), f"{name}-timings.jsonl ({len(xs)} groups)"
    return means, source, same_unit


def figure(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    width = 0.38
    for i, executor in enumerate(("local", "ray")):
        xs = [w + (i - 0.5) * width for w in (1, 2)]
        ys = [
            statistics.median(r["units_per_min"] for r in runs if r["executor"] == executor and r["workers"] == w)
            for w in (1, 2)
        ]
        bars = ax.bar(xs, ys, width, label=executor)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    loads = [r["load_before"] for r in runs] + [r["load_after"] for r in runs]
    ax.set_xticks([1, 2], ["1 worker", "2 workers"])
    ax.set_ylabel("units per minute (median of runs)")
    ax.set_title(f"crop bench, 12-unit grid, 2-core machine (load {min(loads):.1f}-{max(loads):.1f})", fontsize=9)
    ax.legend(title="executor", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("out/ray-scaling"))
    parser.add_argument("--repeats", type=int, default=2, help="runs of each executor x workers on the grid")
    parser.add_argument("--reuse", action="store_true", help="only the tables and figure, from OUT/scaling.json")
    parser.add_argument("--skip-methods", action="store_true", help="reuse OUT/scaling.json's per-method seconds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    saved = json.loads((args.out / "scaling.json").read_text()) if (args.out / "scaling.json").is_file() else {}

    configs = [("local", 1), ("ray", 1), ("local", 2), ("ray", 2)]
    if args.reuse:
        runs, startup, measured = saved["runs"], saved["ray_startup_s"], saved["method_seconds"]
    else:
        runs = []
        for rep in range(args.repeats):  # interleaved, so a change of the machine's load hits every executor
            order = configs if rep % 2 == 0 else configs[::-1]
            runs += [grid_run(args.out / f"{ex}-{w}", ex, w) | {"repeat": rep} for ex, w in order]
        assert len({r.pop("results") for r in runs}) == 1, "the executors wrote different results"
        startup = ray_startup()
        measured = saved.get("method_seconds") if args.skip_methods else None
        if measured is None:
            measured = method_seconds(args.out / "methods")
    recorded, source, same_unit = recorded_seconds()
    # This machine's load now against the quiet all-user run: the same personalization timed twice
    common = sorted(set(same_unit) & set(measured))
    slowdown = statistics.median(measured[m] / same_unit[m] for m in common if same_unit[m] > 0.1)

    print("| executor | workers | run | units | wall (s) | units / min | load avg before / after |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(runs, key=lambda r: (r["workers"], r["executor"], r["repeat"])):
        print(
            f"| {r['executor']} | {r['workers']} | {r['repeat'] + 1} | {r['units']} | {r['wall_s']:.1f} "
            f"| {r['units_per_min']:.1f} | {r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    print(f"\nRay start-up and shut-down of an idle local instance: {startup:.1f} s")

    wall = {c: statistics.median(r["wall_s"] for r in runs if (r["executor"], r["workers"]) == c) for c in configs}
    units = runs[0]["units"]
    # Ray's cost per task beyond its start-up: 1-worker Ray wall minus 1-worker local wall minus start-up
    per_task = (wall[("ray", 1)] - wall[("local", 1)] - startup) / units
    groups = ALL_USERS * SEEDS * GROUPS_PER_USER_SEED
    print("\n| method | s / group | source | groups | CPU hours |\n|---|---|---|---|---|")
    total = 0.0
    for m in available_methods():
        if m in recorded:
            sec, where = recorded[m], source[m]
        else:
            sec, where = (
                measured[m] / slowdown,
                f"measured here (user 2, 1 group: {measured[m]:.1f} s) / {slowdown:.2f}",
            )
        total += sec * groups
        print(f"| {m} | {sec:.2f} | {where} | {groups} | {sec * groups / 3600:.2f} |")
    n_groups = groups * len(available_methods())
    ideal = GENERIC_TRAINING_S + startup + total / CLUSTER
    with_overhead = ideal + max(0.0, per_task) * n_groups / CLUSTER
    print(f"| all {len(available_methods())} methods | | | {n_groups} | {total / 3600:.2f} |")
    print(
        f"\nslow-down of this run against the quiet all-user run: {slowdown:.2f} (median over {len(common)} methods "
        "of the same personalization, user 2 seed 0 hapt-session:1, timed in both)"
    )
    print(
        f"Ray's cost per task beyond start-up (1 worker, medians): {per_task:+.2f} s"
        f"\n\n16-worker estimate: {ideal / 60:.1f} min = {GENERIC_TRAINING_S:.0f} s generic models + "
        f"{startup:.0f} s Ray start-up + {total:.0f} s of groups / {CLUSTER}; "
        f"{with_overhead / 60:.1f} min adding Ray's measured per-task cost (when positive)"
    )
    figure(runs, DOCS / "figures" / "ray-scaling.png")
    summary = {
        "runs": runs,
        "ray_startup_s": round(startup, 2),
        "method_seconds": measured,
        "ray_per_task_s": round(per_task, 3),
        "groups": n_groups,
        "slowdown_vs_all_user_run": round(slowdown, 3),
        "cpu_hours": round(total / 3600, 3),
        "estimate_16_workers_min": {"ideal": round(ideal / 60, 2), "with_ray_overhead": round(with_overhead / 60, 2)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

"""Speed and memory of personalizing one HAPT user, and CRoP's overhead.

1. ``crop personalize --user U`` for each documented personalization user, run under
   ``/usr/bin/time -v``: wall time and peak RSS of the whole command (start-up included).
2. In process, CRoP on every user x seed: the time of each finetuning phase (without its
   checkpoint-selection work) and CRoP's overhead beyond the two phases: ToleratedPrune,
   mixing, and checkpoint selection (validation passes and state copies) of both phases.

Usage: .venv/bin/python benchmarks/personalize_one_user.py [--seeds 0,1,2] [--repeats 3] [--skip-phases]

``--repeats N`` runs the command N times per user and reports medians, with the CPU time (user +
system) beside the wall time: on a shared machine wall time grows with the other jobs' load,
CPU time much less. ``--skip-phases`` skips part 2.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import crop
from crop.data.scenarios import PERSONALIZATION_USERS, build_user_scenario, parse_scenarios
from crop.generic import generic_for


def command_run(user: int) -> tuple[float, float, float]:
    crop_bin = Path(sys.executable).with_name("crop")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["/usr/bin/time", "-v", str(crop_bin), "personalize", "--user", str(user), "--out", tmp],
            capture_output=True,
            text=True,
            check=True,
        )
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    h, m, s = wall.groups()
    seconds = int(h or 0) * 3600 + int(m) * 60 + float(s)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    cpu = sum(
        float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", proc.stderr).group(1)) for kind in ("User", "System")
    )
    return seconds, rss_kb / 1024, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-phases", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)  # as the crop command does by default

    print(f"## `crop personalize --user U` (whole command, /usr/bin/time -v, median of {args.repeats})\n")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print("| user | wall (s) | CPU user+sys (s) | peak RSS (MB) |\n|---|---|---|---|")
    walls, rsss, cpus, every = [], [], [], []
    for user in PERSONALIZATION_USERS:
        runs = [command_run(user) for _ in range(args.repeats)]
        every += [r[0] for r in runs]
        wall, rss, cpu = (statistics.median(r[i] for r in runs) for i in range(3))
        walls.append(wall)
        rsss.append(rss)
        cpus.append(cpu)
        print(f"| {user} | {wall:.2f} | {cpu:.2f} | {rss:.0f} |")
    print(f"| max | {max(walls):.2f} | {max(cpus):.2f} | {max(rsss):.0f} |\n")
    under = sum(w < 4.0 for w in every)
    print(f"single runs under 4 s wall: {under} of {len(every)} (slowest {max(every):.2f} s)\n")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    if args.skip_phases:
        return

    scenario = parse_scenarios("hapt-session:1")[0]
    generic, _ = generic_for(scenario.generic, list(PERSONALIZATION_USERS))
    rows = []
    for user in PERSONALIZATION_USERS:
        for seed in seeds:
            us = build_user_scenario(user, scenario, seed)
            t = crop.personalize(generic, us.available, seed=seed).info["timings"]
            sel = t["selection_initial"] + t["selection_final"]
            phase1 = t["initial_finetune"] - t["selection_initial"]
            phase2 = t["final_finetune"] - t["selection_final"]
            overhead = t["tolerated_prune"] + t["mix"] + sel
            rows.append(
                (user, seed, phase1, phase2, t["tolerated_prune"], t["mix"], sel, overhead / ((phase1 + phase2) / 2))
            )
    print("## CRoP in process: phases and overhead (seconds)\n")
    print("| user | seed | phase 1 | phase 2 | ToleratedPrune | mix | selection (both) | overhead / one phase |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.4f} | {r[6]:.3f} | {100 * r[7]:.1f} % |"
        )
    ratios = [r[7] for r in rows]
    print(
        f"\noverhead / one finetuning phase: mean {100 * statistics.mean(ratios):.1f} %, max {100 * max(ratios):.1f} %"
    )


if __name__ == "__main__":
    main()

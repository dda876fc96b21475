"""The paper's Tables 7 and 8 on this machine: `crop resources` as a script.

Every registered method (``crop methods``) on HAPT user 2, ``hapt-session:1``, seed 0, default
configurations, each repeat in a fresh process, medians of the repeats; writes
``resources.md``, ``resources.csv`` and ``machine.json`` (every run) under ``--out``.

Usage: .venv/bin/python benchmarks/resources.py --repeats 3 --out out/resources
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crop.deploy.resources import machine, measure_resources, write_resources
from crop.personalization.registry import available_methods


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="all")
    parser.add_argument("--user", type=int, default=2)
    parser.add_argument("--scenario", default="hapt-session:1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="out/resources")
    args = parser.parse_args()
    methods = available_methods() if args.methods == "all" else args.methods.split(",")
    info = machine()
    costs = measure_resources(
        methods,
        user=args.user,
        scenario=args.scenario,
        seed=args.seed,
        repeats=args.repeats,
        progress=lambda m, i, n: print(f"[{i + 1}/{n}] {m}", file=sys.stderr, flush=True),
    )
    info["load_average_end_1_5_15"] = machine()["load_average_1_5_15"]
    setting = {"user": args.user, "scenario": args.scenario, "seed": args.seed, "repeats": args.repeats}
    for path in write_resources(Path(args.out), costs, info, setting):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

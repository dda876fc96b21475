"""Where CRoP gains or loses certificates: verified accuracy after each of its steps.

For every HAPT user x seed, CRoP (the default configuration, or ``--method crop-paper``) is run
from a generic model (``--generic``, e.g. ``hapt-cert``, the certifiably trained one), and the
model after each step of Algorithm 1 is certified (IBP + CROWN, the bench's ``verified``) on the
unseen session, with its clean accuracy:

* ``generic``: the starting model;
* ``initial``: after step 1 (finetuning with the L1 penalty);
* ``pruned``: after ToleratedPrune, the pruned positions at zero;
* ``mixed``: the generic weights put back in the pruned positions (and, by default, BatchNorm
  statistics re-estimated);
* ``final``: after step 4 (the returned model).

Each row gives the mean over people with a 95 % bootstrap interval and the paired gap to the
generic model. The states come from ``PersonalizationResult.states``; nothing is re-trained.

Usage: .venv/bin/python benchmarks/crop_stage_certificates.py --generic hapt-cert [--users all]
    [--seeds 0,1,2] [--eps 0.01,0.03] [--method crop] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import copy
from collections import defaultdict

import numpy as np
import torch

import crop
from crop.certify.margin import verified_accuracy
from crop.data.hapt import USERS
from crop.data.scenarios import build_user_scenario, parse_scenarios
from crop.generic import generic_for_user
from crop.models.utils import predict
from crop.report.files import write_text_atomic
from crop.report.stats import format_interval

STAGES = ("generic", "initial", "pruned", "mixed", "final")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generic", default="hapt-cert")
    parser.add_argument("--users", default="all")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--eps", default="0.01,0.03")
    parser.add_argument("--method", default="crop")
    parser.add_argument("--scenario", default="hapt-session:1")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    users = list(USERS) if args.users == "all" else [int(u) for u in args.users.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    eps = [float(e) for e in args.eps.split(",")]
    scenario = parse_scenarios(args.scenario)[0]

    # per (stage, measure): {(user, seed): value in %}
    values: dict[tuple[str, str], dict[tuple[int, int], float]] = defaultdict(dict)
    mixed_selected = 0
    for user in users:
        generic, _ = generic_for_user(args.generic, user)
        for seed in seeds:
            us = build_user_scenario(user, scenario, seed)
            result = crop.personalize(generic, us.available, method=args.method, seed=seed)
            mixed_selected += bool(result.info.get("mixed_selected"))
            (unseen,) = us.unseen.values()
            for stage in STAGES:
                model = copy.deepcopy(result.model)
                model.load_state_dict(result.states[stage])
                model.eval()
                clean = float(np.mean(predict(model, unseen.X) == unseen.y))
                values[(stage, "clean")][(user, seed)] = 100 * clean
                for e in eps:
                    v = verified_accuracy(model, unseen.X, unseen.y, e)
                    values[(stage, f"verified {e:g}")][(user, seed)] = 100 * v
        print(f"user {user} done", flush=True)

    measures = ["clean"] + [f"verified {e:g}" for e in eps]

    def per_person(stage: str, measure: str) -> dict[int, float]:
        table = values[(stage, measure)]
        return {u: float(np.mean([table[(u, s)] for s in seeds])) for u in users}

    head = "| step | " + " | ".join(f"{m} Cu" for m in measures) + " | "
    head += " | ".join(f"{m} Cu gap to generic" for m in measures) + " |"
    lines = [
        f"CRoP step by step ({args.method}) from `{args.generic}`, {args.scenario}, unseen session; "
        f"{len(users)} users x seeds {','.join(map(str, seeds))}; mean over people [95 % bootstrap].",
        f"The final model is the mixed one (final phase kept its epoch 0) in {mixed_selected} of "
        f"{len(users) * len(seeds)} runs.",
        "",
        head,
        "|---|" + "---|" * (2 * len(measures)),
    ]
    for stage in STAGES:
        cells = [format_interval(list(per_person(stage, m).values())) for m in measures]
        gaps = []
        for m in measures:
            mine, ref = per_person(stage, m), per_person("generic", m)
            gaps.append("0" if stage == "generic" else format_interval([mine[u] - ref[u] for u in users], signed=True))
        lines.append(f"| {stage} | " + " | ".join(cells + gaps) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text_atomic(args.out, text)


if __name__ == "__main__":
    main()

"""The fairness audit on a synthetic replica of the stress dataset's file format (docs/FAIRNESS.md).

The replica (:func:`crop.data.datasets.replica.write_stress`) is WESAD's layout with made-up
signals and made-up readme demographics; it is not data about anyone. One difference between
people is planted on purpose: the odd-numbered subjects (gender ``female`` in the replica's
readme files) get a stress response of :data:`WEAK` times the others' (a smaller rise of heart
rate and skin conductance, fewer skin-conductance responses, a smaller fall of skin
temperature), so stress is harder to tell from calm for them. The audit should find a gender gap
in the generic model; what personalization does to it is what the tables measure. The numbers
test the pipeline (loader attributes -> bench --fairness -> tables), not a claim about people.

Usage:
    .venv/bin/python benchmarks/fairness_stress.py run OUT      # replica in OUT/replica, bench in OUT/bench
    .venv/bin/python benchmarks/fairness_stress.py page OUT     # fill the stress-* blocks of docs/FAIRNESS.md

``run`` executes (nothing else)::

    crop bench --dataset stress --root OUT/replica --scenario stress:1 --users all --seeds 0 \\
      --methods generic,finetune,crop,finetune-guard,crop-guard,finetune-reweight,crop-reweight,\\
finetune-dro,crop-dro --fairness --workers 1 --out OUT/bench
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fairness_page import PAGE, ci, fill, num, rows_of, table  # noqa: E402

SUBJECTS = (1, 2, 3, 4, 5, 6)
WEAK = 0.3
SCENARIO = "stress:1"
METHODS = "generic,finetune,crop,finetune-guard,crop-guard,finetune-reweight,crop-reweight,finetune-dro,crop-dro"
ATTRIBUTES = ("gender", "age", "dominant_hand", "height_cm", "weight_kg", "activity")


def bench_argv(out: Path) -> list[str]:
    return [
        "bench",
        "--dataset",
        "stress",
        "--root",
        str(out / "replica"),
        "--scenario",
        SCENARIO,
        "--users",
        "all",
        "--seeds",
        "0",
        "--methods",
        METHODS,
        "--fairness",
        "--workers",
        "1",
        "--quiet",
        "--out",
        str(out / "bench"),
    ]


def run(out: Path) -> int:
    from crop.cli import run as crop
    from crop.data.datasets.replica import write_stress

    write_stress(out / "replica", subjects=SUBJECTS, response={k: WEAK for k in SUBJECTS if k % 2})
    return crop(bench_argv(out))


def people_block(tables: Path, stem: str) -> str:
    header = ["method", "context", "BA mean", "sd", "worst person", "gain [95 % CI]", "people harmed"]
    out = []
    for r in rows_of(tables / f"{stem}-people.csv"):
        harmed = f"{100 * num(r['harmed']):.0f} %" if r["harmed"] else "-"
        out.append(
            [
                r["method"],
                r["context"],
                f"{num(r['ba_mean']):.1f}",
                f"{num(r['ba_sd']):.1f}",
                f"{num(r['ba_worst']):.1f} (user {r['worst_user']})",
                ci(r["gain_mean"], r["gain_low"], r["gain_high"]),
                harmed,
            ]
        )
    return table(header, out)


def groups_block(tables: Path, stem: str, attribute: str) -> str:
    rows = rows_of(tables / f"{stem}-groups-{attribute}.csv")
    groups = [k[3:] for k in rows[0] if k.startswith("ba:")]
    header = ["method", "context", *groups, "gap [95 % CI] (worst)", "Δgap vs generic [95 % CI]"]
    out = []
    for r in rows:
        gap = ci(r["gap"], r["gap_low"], r["gap_high"], signed=False) + f" ({r['worst_group']})"
        delta = ci(r["delta_gap"], r["delta_low"], r["delta_high"]) if r["method"] != "generic" else "-"
        out.append([r["method"], r["context"], *(f"{num(r['ba:' + g]):.1f}" for g in groups), gap, delta])
    return table(header, out)


def disparities_block(tables: Path, stem: str, attribute: str) -> str:
    path = tables / f"{stem}-disparities-{attribute}.csv"
    rows = rows_of(path)
    keys = list(rows[0])
    header = ["method", "context", "demographic parity difference", "equalized odds difference"]
    out = []
    for r in rows:
        values = [r[k] for k in keys]
        dp, eo = num(values[2]), num(values[3])
        out.append(
            [values[0], values[1], "-" if math.isnan(dp) else f"{dp:.3f}", "-" if math.isnan(eo) else f"{eo:.3f}"]
        )
    return table(header, out)


def page(out: Path) -> None:
    tables = out / "bench" / "fairness" / "tables"
    stem = SCENARIO.replace(":", "-")
    text = PAGE.read_text()
    text = fill(text, "stress-people", people_block(tables, stem))
    for attribute in ("gender", "age"):
        text = fill(text, f"stress-{attribute}", groups_block(tables, stem, attribute))
    text = fill(text, "stress-disparities-gender", disparities_block(tables, stem, "gender"))
    notes = (out / "bench" / "fairness" / "fairness.md").read_text().split("\n## ", 1)[0]
    kept = [line for line in notes.splitlines() if line.startswith("- ") and "bench directory" not in line]
    text = fill(text, "stress-notes", "\n".join(kept))
    PAGE.write_text(text)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("run", "page"):
        print(__doc__)
        return 2
    out = Path(argv[1])
    if argv[0] == "run":
        return run(out)
    page(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

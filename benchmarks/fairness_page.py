"""Write the generated tables of docs/FAIRNESS.md from a bench directory that `crop fairness` has
processed (no number typed by hand).

Usage:
    .venv/bin/python benchmarks/fairness_page.py hapt=DIR

Fills the blocks between ``<!-- BEGIN hapt-... -->`` and ``<!-- END hapt-... -->`` in
docs/FAIRNESS.md from DIR/fairness/tables/*.csv, and copies DIR/fairness/*.png to
docs/figures/fairness-*.png.
"""

from __future__ import annotations

import csv
import math
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = DOCS / "FAIRNESS.md"
ATTRIBUTES = ("movement_intensity", "walking_cadence", "generic_accuracy", "activity")
SHORT = {"movement_intensity": "intensity", "walking_cadence": "cadence", "generic_accuracy": "generic acc."}


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def num(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def ci(mean: str, low: str, high: str, signed: bool = True, digits: int = 1) -> str:
    m, lo, hi = num(mean), num(low), num(high)
    if not math.isfinite(m):
        return "-"
    f = (lambda v: f"{v:+.{digits}f}") if signed else (lambda v: f"{v:.{digits}f}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f(m)
    return f"{f(m)} [{f(lo)}, {f(hi)}]" + ("" if lo - 1e-9 <= m <= hi + 1e-9 else "*")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def people_block(tables: Path, stem: str) -> str:
    rows = rows_of(tables / f"{stem}-people.csv")
    header = ["method", "Cu mean", "Cu sd", "worst person", "Cu p10", "Cu gain [95 % CI]", "worst gain"]
    header += ["people harmed on Cu [95 % CI]", "Ca gain [95 % CI]"]
    out = []
    avail = {r["method"]: r for r in rows if r["context"] == "available"}
    for r in rows:
        if r["context"] != "unseen":
            continue
        a = avail.get(r["method"], {})
        harmed = (
            f"{100 * num(r['harmed']):.0f} % [{100 * num(r['harmed_low']):.0f}, {100 * num(r['harmed_high']):.0f}]"
            if r["harmed"]
            else "-"
        )
        worst_gain = f"{num(r['gain_worst']):+.1f} (user {r['gain_worst_user']})" if r["gain_worst"] else "-"
        out.append(
            [
                r["method"],
                f"{num(r['ba_mean']):.1f}",
                f"{num(r['ba_sd']):.1f}",
                f"{num(r['ba_worst']):.1f} (user {r['worst_user']})",
                f"{num(r['ba_p10']):.1f}",
                ci(r["gain_mean"], r["gain_low"], r["gain_high"]),
                worst_gain,
                harmed,
                ci(a.get("gain_mean", ""), a.get("gain_low", ""), a.get("gain_high", "")),
            ]
        )
    return table(header, out)


def gaps_block(tables: Path, stem: str, context: str, delta: bool) -> str:
    per: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for attribute in ATTRIBUTES:
        path = tables / f"{stem}-groups-{attribute}.csv"
        if not path.is_file():
            continue
        for r in rows_of(path):
            if r["context"] != context:
                continue
            if r["method"] not in order:
                order.append(r["method"])
            if delta:
                cell = ci(r["delta_gap"], r["delta_low"], r["delta_high"]) if r["method"] != "generic" else "-"
            else:
                cell = ci(r["gap"], r["gap_low"], r["gap_high"], signed=False)
                cell += f" ({r['worst_group']})"
            per.setdefault(r["method"], {})[attribute] = cell
    header = ["method"] + [SHORT.get(a, a) for a in ATTRIBUTES]
    return table(header, [[m] + [per[m].get(a, "-") for a in ATTRIBUTES] for m in order])


def context_block(tables: Path, stem: str) -> str:
    rows = rows_of(tables / f"{stem}-groups-context.csv")
    ba = [k for k in rows[0] if k.startswith("ba:")]
    header = ["method"] + [k[3:] for k in ba] + ["gap [95 % CI]", "Δgap vs generic [95 % CI]"]
    out = []
    for r in rows:
        delta = ci(r["delta_gap"], r["delta_low"], r["delta_high"]) if r["method"] != "generic" else "-"
        out.append(
            [r["method"]] + [f"{num(r[k]):.1f}" for k in ba] + [ci(r["gap"], r["gap_low"], r["gap_high"], False), delta]
        )
    return table(header, out)


def fill(page: str, name: str, text: str) -> str:
    pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n).*?(<!-- END {re.escape(name)} -->)", re.S)
    if not pattern.search(page):
        raise SystemExit(f"docs/FAIRNESS.md has no block {name}")
    return pattern.sub(lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), page)


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    out = Path(args["hapt"])
    tables = out / "fairness" / "tables"
    page = PAGE.read_text()
    for n in (1, 2):
        stem = f"hapt-session-{n}"
        page = fill(page, f"hapt-{n}-people", people_block(tables, stem))
        page = fill(page, f"hapt-{n}-gaps-unseen", gaps_block(tables, stem, "unseen", False))
        page = fill(page, f"hapt-{n}-delta-unseen", gaps_block(tables, stem, "unseen", True))
        page = fill(page, f"hapt-{n}-gaps-available", gaps_block(tables, stem, "available", False))
        page = fill(page, f"hapt-{n}-context", context_block(tables, stem))
        for kind in ("group-gains", "person-gains"):
            src = out / "fairness" / f"{kind}-{stem}.png"
            if src.is_file():
                shutil.copyfile(src, DOCS / "figures" / f"fairness-{kind}-{stem}.png")
    PAGE.write_text(page)


if __name__ == "__main__":
    main(sys.argv[1:])

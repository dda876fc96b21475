"""Write the generated parts of docs/RESULTS.md from bench directories (no number typed by hand).

Usage:
    .venv/bin/python benchmarks/results_page.py main=DIR [ablations=DIR] [nobn=DIR] [tune-population=DIR]
        [tune-available=DIR] [heldout=DIR] [wise-norecal=DIR]
        [contrastive=DIR]

Each name fills the block between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in
docs/RESULTS.md; every table of each directory also goes to docs/results/<name>.md and its Δ
chart to docs/figures/<name>-deltas.png. Directories are the outputs of the commands listed in
docs/RESULTS.md.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from crop.bench.runner import load_results
from crop.report.plots import delta_bars, harm_strips
from crop.report.stats import harm_rate, harm_summary, lost_class_count, per_user_means, summarize_gain
from crop.report.table import Table
from crop.report.tables import (
    gain_table,
    harm_table,
    per_context_table,
    performance,
    render_markdown,
    summary_table,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = DOCS / "RESULTS.md"


def command_of(out: Path) -> str:
    if (out / "command.txt").is_file():  # a directory split from a larger run: the command that ran
        return (out / "command.txt").read_text().strip()
    s = json.loads((out / "bench.json").read_text())
    records = load_results(out)
    families = sorted({r["scenario"].split(":")[0] for r in records})
    users = sorted({r["user"] for r in records})
    seeds = ",".join(str(x) for x in sorted({r["seed"] for r in records}))
    parts = [
        "crop bench",
        f"--users {'all' if len(users) == 30 else ','.join(map(str, users))}",
        f"--scenario {','.join(families)}",
        f"--seeds {seeds}",
        f"--methods {','.join(s['configs'])}",
    ]
    if s.get("tune"):
        parts.append("--tune" + (" --tune-on population" if s.get("tune_on") == "population" else ""))
    if s.get("norm", "batch") != "batch":
        parts.append(f"--norm {s['norm']}")
    if s.get("protocol", "test") != "test":
        parts.append(f"--protocol {s['protocol']}")
    if s.get("generic"):
        parts.append(f"--generic {s['generic']}")
    config = Path(__file__).parent / "configs" / f"{out.name}.toml"
    if config.is_file():
        parts.append(f"--config benchmarks/configs/{config.name}")
    parts.append(f"--out out/{out.name}")
    return " ".join(parts)


def md(table: Table) -> str:
    text = f"**{table.title}**\n\n{table.markdown()}\n"
    return text + (f"\n{table.note}\n" if table.note else "")


def targets(perf: dict, scenarios: list[str], title: str = "Targets for the default crop, measured") -> Table:
    """The issue's three targets for the default crop, measured."""
    methods = sorted({k[1] for k in perf} - {"generic", "finetune"})
    rows = []
    for s in scenarios:
        g = summarize_gain(perf, s, "crop", "finetune")
        means = {m: summarize_gain(perf, s, m, "finetune").mean for m in methods}
        means["finetune"] = 0.0
        ranked = sorted(means, key=lambda m: -means[m])
        best = ranked[0]
        crop_harm, ft_harm = harm_rate(perf, s, "crop"), harm_rate(perf, s, "finetune")
        rows.append(
            [
                s,
                g.interval(),
                "yes" if g.low > 0 else f"no (lower end {g.low:+.2f})",
                f"{1 + sum(v > means['crop'] for v in means.values())} of {len(ranked)}",
                "crop" if best == "crop" else f"{best} ({means[best]:+.2f})",
                f"{100 * crop_harm:.0f} % vs {100 * ft_harm:.0f} %",
                "yes" if crop_harm <= ft_harm + 1e-12 else "no",
            ]
        )
    header = [
        "scenario",
        "crop Δ_G [95 % CI]",
        "interval above 0",
        "crop's Δ_G rank",
        "highest Δ_G",
        "harm crop vs finetune",
        "harm <= finetune",
    ]
    return Table(
        title,
        header,
        rows,
        note="Rank among all personalized methods, finetune counted (its Δ_G is 0); generic has no Δ_G.",
    )


def harm_targets(perf: dict, records: list[dict], scenarios: list[str], title: str, method: str = "crop") -> Table:
    """The do-no-harm targets for ``method``: harm rate at most 10 % and no higher than
    finetune's, Δ_G and its interval, Ca within 1 pp of finetune's; lost classes and the worst
    decile beside them."""
    rows = []
    above = 0
    for s in scenarios:
        g = summarize_gain(perf, s, method, "finetune")
        above += g.low > 0
        h, hf = harm_summary(perf, s, method), harm_summary(perf, s, "finetune")
        ca = np.mean([v["available"] for v in per_user_means(perf, s, method).values()])
        ca_ft = np.mean([v["available"] for v in per_user_means(perf, s, "finetune").values()])
        lost, lost_ft = lost_class_count(records, s, method), lost_class_count(records, s, "finetune")
        rows.append(
            [
                s,
                f"{h.interval()} vs {hf.interval()}",
                "yes" if h.rate <= 0.10 + 1e-12 and h.rate <= hf.rate + 1e-12 else "no",
                g.interval(),
                "above 0" if g.low > 0 else "below 0" if g.high < 0 else "across 0",
                f"{ca:.2f} vs {ca_ft:.2f} ({ca - ca_ft:+.2f})",
                "yes" if ca >= ca_ft - 1.0 else "no",
                f"{h.worst_decile:+.2f} vs {hf.worst_decile:+.2f}",
                f"{lost[0] if lost else '-'} vs {lost_ft[0] if lost_ft else '-'}",
            ]
        )
    header = [
        "scenario",
        f"harm {method} vs finetune [95 % CI]",
        "harm <= 10 % and <= finetune",
        f"{method} Δ_G [95 % CI]",
        "Δ_G interval",
        "Ca vs finetune",
        "Ca within 1 pp",
        "worst 10 % ΔCu",
        "lost a class",
    ]
    note = (
        f"Δ_G interval above 0 in {above} of {len(scenarios)} scenarios. Harm: share of users whose unseen-context "
        "accuracy is more than 2 pp below the generic model's; worst 10 % ΔCu: mean unseen-context change against "
        "the generic model of the 10 % of users served worst; lost a class: users with some class's recall more than "
        "30 pp below the generic model's in some unseen context."
    )
    return Table(title, header, rows, note=note)


def compare_table(perf: dict, scenarios: list[str], methods: list[str], title: str) -> Table:
    rows = []
    for m in methods:
        row = [m]
        for s in scenarios:
            means = per_user_means(perf, s, m)
            if not means:
                row += ["-", "-"]
                continue
            cu = np.mean([v["unseen"] for v in means.values()])
            g = summarize_gain(perf, s, m, "finetune") if m != "finetune" else None
            row += [f"{cu:.2f}", g.interval() if g is not None else "0"]
        rows.append(row)
    header = ["method"] + [f"{s} {c}" for s in scenarios for c in ("Cu", "Δ_G [95 % CI]")]
    return Table(title, header, rows)


def write_block(name: str, text: str) -> None:
    page = PAGE.read_text()
    pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n).*?(<!-- END {re.escape(name)} -->)", re.S)
    if not pattern.search(page):
        raise SystemExit(f"docs/RESULTS.md has no block {name}")
    page = pattern.sub(lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), page)
    PAGE.write_text(page)


def archive(name: str, out: Path, records: list[dict]) -> None:
    (DOCS / "results").mkdir(exist_ok=True)
    body = render_markdown(records).split("\n", 1)[1]
    text = f"# {name}\n\nProduced by:\n\n```bash\n{command_of(out)}\n```\n\n![Δ](../figures/{name}-deltas.png)\n{body}"
    (DOCS / "results" / f"{name}.md").write_text(text)
    delta_bars(
        performance(records), DOCS / "figures" / f"{name}-deltas.png", f"{name}: Δ_P and Δ_G, 95 % intervals over users"
    )
    if (out / "timings.jsonl").is_file():
        shutil.copy(out / "timings.jsonl", DOCS / "results" / f"{name}-timings.jsonl")


def main() -> None:
    dirs = dict(arg.split("=", 1) for arg in sys.argv[1:])
    loaded = {name: (Path(d), load_results(Path(d))) for name, d in dirs.items()}
    for name, (out, records) in loaded.items():
        archive(name, out, records)
    if "donoharm" in loaded:
        out, records = loaded["donoharm"]
        p = performance(records)
        ds = sorted({k[0] for k in p})
        text = f"```bash\n{command_of(out)}\n```\n"
        text += md(harm_targets(p, records, ds, "The do-no-harm targets for the default crop, measured"))
        harm_strips(p, DOCS / "figures" / "donoharm-harm.png")
        text += "\n![do no harm](figures/donoharm-deltas.png)\n\n![who loses](figures/donoharm-harm.png)\n\n"
        text += "\n".join(md(gain_table(p, s, records)) for s in ds)
        text += "\n" + "\n".join(md(per_context_table(records, s)) for s in ds if "faults" in s)
        write_block("donoharm", text)
        write_block("donoharm-who", "\n".join(md(t) for s in ds if (t := harm_table(p, s)) is not None))
    for name in ("heldout", "donoharm-heldout"):
        if name in loaded:
            out, records = loaded[name]
            p = performance(records)
            hs = sorted({k[0] for k in p})
            text = f"```bash\n{command_of(out)}\n```\n"
            if "crop" in {k[1] for k in p} and "finetune" in {k[1] for k in p}:
                text += md(harm_targets(p, records, hs, "The do-no-harm targets on the held-out changes, measured"))
            text += "\n" + "\n".join(md(gain_table(p, s, records)) for s in hs)
            text += "\n" + "\n".join(md(per_context_table(records, s)) for s in hs)
            write_block(name, text)
    if "main" not in loaded:
        print("wrote docs/RESULTS.md blocks:", ", ".join(loaded))
        return
    main_records = loaded["main"][1]
    perf = performance(main_records)
    scenarios = sorted({k[0] for k in perf})
    parts = [f"```bash\n{command_of(loaded['main'][0])}\n```", md(summary_table(perf)), md(targets(perf, scenarios))]
    parts.append("![all users](figures/main-deltas.png)")
    parts += [md(gain_table(perf, s, main_records)) for s in scenarios]
    parts += [md(per_context_table(main_records, s)) for s in scenarios if "faults" in s]
    write_block("main", "\n".join(parts))
    if "ablations" in loaded:
        both = performance(main_records + loaded["ablations"][1])
        methods = ["finetune", "crop-paper", "crop-no-invariance", "crop-stale-bn", "crop", "finetune-invariant"]
        text = f"```bash\n{command_of(loaded['ablations'][0])}\n```\n" + md(
            compare_table(both, scenarios, methods, "Which step buys what: Cu (%) and Δ_G vs finetune (pp), all users")
        )
        kept = [r for r in main_records + loaded["ablations"][1] if r["method"] in {"generic", *methods}]
        text += "\n" + "\n".join(md(per_context_table(kept, s)) for s in scenarios if "faults" in s)
        write_block("ablations", text)
    if "nobn" in loaded:
        out, records = loaded["nobn"]
        p = performance(records)
        nobn_scenarios = sorted({k[0] for k in p})
        title = "The issue's targets on the network without BatchNorm (ranks among the methods of this run)"
        text = f"```bash\n{command_of(out)}\n```\n" + md(targets(p, nobn_scenarios, title))
        text += "\n" + "\n".join(md(gain_table(p, s)) for s in nobn_scenarios)
        write_block("nobn", text)
    if "tune-population" in loaded and "tune-available" in loaded:
        rows = []
        pop, avail = performance(loaded["tune-population"][1]), performance(loaded["tune-available"][1])
        base = {k: v for k, v in perf.items() if k[3] == 0}
        tuned_scen = sorted({k[0] for k in pop})
        for label, p in (("defaults", base), ("population-tuned", pop), ("available-tuned", avail)):
            for m in ("finetune", "crop"):
                row = [m, label]
                for s in tuned_scen:
                    means = per_user_means(p, s, m)
                    ca = np.mean([v["available"] for v in means.values()])
                    cu = np.mean([v["unseen"] for v in means.values()])
                    d = summarize_gain(p, s, m, "generic")
                    row += [f"{ca:.2f} / {cu:.2f}", d.interval()]
                rows.append(row)
        header = ["method", "settings"] + [f"{s} {c}" for s in tuned_scen for c in ("Ca / Cu", "Δ_P [95 % CI]")]
        t = Table("Defaults vs population tuning vs available-context tuning (seed 0, all users)", header, rows)
        cmds = "\n".join(command_of(loaded[n][0]) for n in ("tune-population", "tune-available"))
        chosen = {}
        for r in loaded["tune-population"][1]:
            if r.get("tuned") and r["metric"] == "balanced_accuracy" and r["context"] == "available":
                chosen.setdefault((r["method"], r["scenario"]), {}).setdefault(
                    json.dumps(r["tuned"], sort_keys=True), 0
                )
                chosen[(r["method"], r["scenario"])][json.dumps(r["tuned"], sort_keys=True)] += 1
        lines = [
            f"- {m} ({s}): " + "; ".join(f"{k} for {n} users" for k, n in sorted(v.items()))
            for (m, s), v in sorted(chosen.items())
        ]
        write_block(
            "tuning", f"```bash\n{cmds}\n```\n" + md(t) + "\nPopulation-chosen settings:\n\n" + "\n".join(lines) + "\n"
        )
    for name, suffix in (("wise-norecal", "no-recal"), ("contrastive", "contrastive")):
        if name in loaded:
            out, records = loaded[name]
            seeds = {r["seed"] for r in records}
            renamed = [{**r, "method": f"{r['method']}-{suffix}"} for r in records if r["method"] != "generic"]
            base = [r for r in main_records if r["seed"] in seeds]
            both = performance(base + renamed)
            shown = [m for m in ("finetune", "wise-ft", "crop") if any(k[1] == m for k in both)]
            shown = [m for m in shown if m == "finetune" or any(r["method"] == m for r in records)]
            methods = shown + sorted({r["method"] for r in renamed})
            title = f"Cu (%) and Δ_G vs finetune (pp), all users, seeds {','.join(map(str, sorted(seeds)))}"
            text = f"```bash\n{command_of(out)}\n```\n" + md(compare_table(both, scenarios, methods, title))
            write_block(name, text)
    print("wrote docs/RESULTS.md blocks:", ", ".join(loaded))


if __name__ == "__main__":
    main()

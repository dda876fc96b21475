"""Tables from benchmark records: the Table-3-style summary, the statistics over people, and
the per-user tables.

All accuracies are shown in percent; Delta_P / Delta_G in percentage points, as Section 6.2
defines them (a sum over the two contexts, averaged over users). Seeds are averaged per user
first; the intervals are 95 % paired bootstrap intervals over users (:mod:`crop.report.stats`).
The spread over seeds is kept in :func:`seed_table`. A scenario with several unseen contexts
uses, as ``A(M, Cu)``, the mean over those contexts; the per-context values are in
``per_context``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from crop.metrics import delta
from crop.report.table import Table, column_order

Perf = dict[tuple[str, str, int, int], dict[str, float]]  # (scenario, method, user, seed) -> {context: acc}


def performance(records: list[dict[str, Any]], metric: str = "balanced_accuracy") -> Perf:
    """``{(scenario, method, user, seed): {"available": A, "unseen": mean over unseen contexts}}``."""
    acc: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("status") != "ok" or r.get("metric") != metric:
            continue
        acc[(r["scenario"], r["method"], r["user"], r["seed"])][r["context"]].append(100.0 * r["value"])
    return {k: {c: float(np.mean(v)) for c, v in ctx.items()} for k, ctx in acc.items()}


def failures(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "failed"]


def _pm(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:+.2f}"
    return f"{mean:+.2f} ± {float(np.std(values, ddof=1)):.2f}"


def _ordered(items: set[str], preferred: Sequence[str]) -> list[str]:
    return column_order(sorted(items), preferred)


METHOD_ORDER = ("generic", "finetune", "crop")


def delta_values(perf: Perf, scenario: str, method: str, reference: str) -> list[float]:
    """Delta of ``method`` over ``reference`` in ``scenario``, one value per seed (users in common)."""
    seeds = sorted({k[3] for k in perf if k[0] == scenario})
    values = []
    for seed in seeds:
        users = sorted(
            {k[2] for k in perf if k[0] == scenario and k[1] == method and k[3] == seed}
            & {k[2] for k in perf if k[0] == scenario and k[1] == reference and k[3] == seed}
        )
        if not users:
            continue
        p = {u: perf[(scenario, method, u, seed)] for u in users}
        r = {u: perf[(scenario, reference, u, seed)] for u in users}
        values.append(delta(p, r))
    return values


def _interval(perf: Perf, scenario: str, method: str, reference: str) -> str:
    from crop.report.stats import summarize_gain

    g = summarize_gain(perf, scenario, method, reference)
    if g.n_users == 0:
        return "-"
    return f"{g.mean:+.2f}" if g.n_users == 1 else g.interval()


def summary_table(perf: Perf, dataset: str = "hapt") -> Table:
    """Table 3: Delta_P and Delta_G per method (rows) and scenario (column pairs), mean over
    users with a 95 % paired bootstrap interval over users."""
    scenarios = sorted({k[0] for k in perf})
    methods = _ordered({k[1] for k in perf} - {"generic"}, METHOD_ORDER)
    header = ["method"] + [f"{s} {d}" for s in scenarios for d in ("Δ_P", "Δ_G")]
    rows = []
    for m in methods:
        row = [m]
        for s in scenarios:
            row.append(_interval(perf, s, m, "generic"))
            row.append(_interval(perf, s, m, "finetune") if m != "finetune" else "0")
        rows.append(row)
    return Table(
        f"{dataset}: Δ_P (vs generic) and Δ_G (vs conventional finetuning), pp, mean over users [95 % bootstrap interval]",
        header,
        rows,
        kind="summary",
    )


def gain_table(perf: Perf, scenario: str, records: list[dict[str, Any]] | None = None) -> Table:
    """Statistics over people for one scenario: mean accuracies, Δ_P and Δ_G with intervals,
    the Wilcoxon signed-rank p-value and win/tie/loss counts of the per-user Δ_G, the harm rate
    (share of users whose unseen-context accuracy falls more than 2 pp below generic) with its
    interval, the worst decile's unseen-context change and, given ``records`` with per-class
    recalls, how many people lost a class (:mod:`crop.report.stats`)."""
    from crop.report.stats import (
        HARM_MARGIN,
        LOST_MARGIN,
        TIE,
        WORST_SHARE,
        format_p,
        harm_summary,
        lost_class_count,
        per_user_means,
        summarize_gain,
    )

    methods = _ordered({k[1] for k in perf if k[0] == scenario}, METHOD_ORDER)
    header = ["method", "users", "Ca", "Cu", "Δ_P [95 % CI]", "Δ_G [95 % CI]", "p (Δ_G)", "W/T/L vs finetune"]
    header += ["harm [95 % CI]", "worst 10 % ΔCu", "lost a class"]
    has_generic = any(k[0] == scenario and k[1] == "generic" for k in perf)
    rows = []
    for m in methods:
        means = per_user_means(perf, scenario, m)
        ca = [v["available"] for v in means.values() if "available" in v]
        cu = [v["unseen"] for v in means.values() if "unseen" in v]
        row = [m, str(len(means)), f"{np.mean(ca):.2f}" if ca else "-", f"{np.mean(cu):.2f}" if cu else "-"]
        p = summarize_gain(perf, scenario, m, "generic") if m != "generic" else None
        row.append(p.interval() if p is not None and p.n_users else "-")
        if m in ("finetune", "generic"):
            row += ["0" if m == "finetune" else "-", "-", "-"]
        else:
            g = summarize_gain(perf, scenario, m, "finetune")
            row += [g.interval(), format_p(g.p_value), f"{g.wins}/{g.ties}/{g.losses}" if g.n_users else "-"]
        if m == "generic" or not has_generic:
            row += ["-" if not has_generic else "0 %", "-", "-"]
        else:
            h = harm_summary(perf, scenario, m)
            row += [h.interval(), f"{h.worst_decile:+.2f}" if h.n_users else "-"]
            lost = lost_class_count(records, scenario, m) if records is not None else None
            row.append("-" if lost is None else f"{lost[0]} of {lost[1]}")
        rows.append(row)
    note = (
        f"Ca / Cu: mean accuracy (%) over users (seeds averaged per user). Intervals: 95 % paired bootstrap over "
        f"users. p: two-sided Wilcoxon signed-rank test of the per-user Δ_G. W/T/L: users whose Δ_G is above "
        f"+{TIE}, within ±{TIE}, below -{TIE} pp. harm: share of users whose Cu is more than {HARM_MARGIN:g} pp "
        f"below the generic model's [95 % bootstrap interval over users]. worst 10 % ΔCu: mean Cu change against "
        f"the generic model of the {100 * WORST_SHARE:.0f} % of users served worst (pp). lost a class: users for "
        f"whom some class's recall in some unseen context is more than {LOST_MARGIN:g} pp below the generic "
        f"model's (recalls averaged over seeds; - where the records hold no per-class recall)."
    )
    return Table(f"{scenario}: gains over people", header, rows, note=note, kind="gains")


def harm_table(perf: Perf, scenario: str) -> Table | None:
    """Who loses: per method, every person whose unseen-context accuracy falls more than the
    harm margin below the generic model's, with their change (pp, worst first)."""
    from crop.report.stats import HARM_MARGIN, harm_summary

    if not any(k[0] == scenario and k[1] == "generic" for k in perf):
        return None
    methods = _ordered({k[1] for k in perf if k[0] == scenario} - {"generic"}, METHOD_ORDER)
    rows = []
    for m in methods:
        h = harm_summary(perf, scenario, m)
        if not h.n_users:
            continue
        people = ", ".join(f"{u} ({v:+.1f})" for u, v in h.harmed) or "none"
        rows.append([m, f"{len(h.harmed)} of {h.n_users}", f"{h.worst:+.2f} (user {h.worst_user})", people])
    return Table(
        f"{scenario}: who loses against the generic model in the unseen context",
        ["method", "harmed", "worst change", "harmed users (Cu change, pp)"],
        rows,
        note=f"Harmed: unseen-context accuracy (mean over seeds) more than {HARM_MARGIN:g} pp below the generic model's.",
        kind="harm",
    )


def seed_table(perf: Perf, dataset: str = "hapt") -> Table:
    """Delta_P / Delta_G per method and scenario as mean ± sd over seeds (each seed's value is
    the Section 6.2 mean over users): the variability that comes from the seed alone."""
    scenarios = sorted({k[0] for k in perf})
    methods = _ordered({k[1] for k in perf} - {"generic"}, METHOD_ORDER)
    header = ["method"] + [f"{s} {d}" for s in scenarios for d in ("Δ_P", "Δ_G")]
    rows = []
    for m in methods:
        row = [m]
        for s in scenarios:
            row.append(_pm(delta_values(perf, s, m, "generic")))
            row.append(_pm(delta_values(perf, s, m, "finetune")) if m != "finetune" else "0")
        rows.append(row)
    return Table(f"{dataset}: Δ_P and Δ_G, pp, mean ± sd over seeds", header, rows, kind="seeds")


def per_user_table(perf: Perf, scenario: str, std: bool = False) -> Table:
    """Appendix B Tables 11-13 (``std=False``: mean over seeds) or Table 14 (``std=True``)."""
    keys = [k for k in perf if k[0] == scenario]
    methods = _ordered({k[1] for k in keys}, METHOD_ORDER)
    users = sorted({k[2] for k in keys})
    header = ["user"] + [f"{m} {c}" for m in methods for c in ("Ca", "Cu")]
    rows = []
    for u in users:
        row = [str(u)]
        for m in methods:
            for ctx in ("available", "unseen"):
                vals = [perf[k][ctx] for k in keys if k[1] == m and k[2] == u and ctx in perf[k]]
                if not vals:
                    row.append("-")
                elif std:
                    row.append(f"{np.std(vals, ddof=1):.2f}" if len(vals) > 1 else "0.00")
                else:
                    row.append(f"{np.mean(vals):.2f}")
        rows.append(row)
    kind = "standard deviation over seeds" if std else "mean over seeds"
    return Table(
        f"{scenario}: per-user accuracy (%), {kind}; Ca = available, Cu = unseen",
        header,
        rows,
        kind="per_user_std" if std else "per_user",
    )


def per_context_table(records: list[dict[str, Any]], scenario: str, metric: str = "balanced_accuracy") -> Table:
    """Mean accuracy per method and named context (useful when there are several unseen contexts)."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok" and r.get("metric") == metric and r["scenario"] == scenario:
            acc[(r["method"], f"{r['context']}: {r['context_name']}")].append(100.0 * r["value"])
    methods = _ordered({m for m, _ in acc}, METHOD_ORDER)
    contexts = sorted({c for _, c in acc})
    rows = [[c] + [f"{np.mean(acc[(m, c)]):.2f}" if acc.get((m, c)) else "-" for m in methods] for c in contexts]
    return Table(
        f"{scenario}: accuracy (%) per context, mean over users and seeds", ["context"] + methods, rows, kind="contexts"
    )


def robustness_table(records: list[dict[str, Any]], scenario: str) -> Table | None:
    """``crop bench --certify`` measures per method and context (%): mean over users per seed,
    then mean ± sd over seeds (several unseen contexts are averaged first, as in Δ_G)."""
    from crop.certify.robustness import robustness_metrics

    rows_in = [r for r in records if r.get("status") == "ok" and r.get("scenario") == scenario and "radius" in r]
    names = robustness_metrics(rows_in)
    if not names:
        return None
    clean: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok" and r.get("scenario") == scenario and r.get("metric") == "accuracy":
            clean[(r["method"], r["context"], r["seed"], r["user"], "accuracy")].append(r["value"])
    for r in rows_in:
        clean[(r["method"], r["context"], r["seed"], r["user"], r["metric"])].append(r["value"])
    methods = _ordered({r["method"] for r in rows_in}, METHOD_ORDER)
    header = ["method", "context", "accuracy"] + names
    rows = []
    for m in methods:
        for ctx in ("available", "unseen"):
            row: list[Any] = [m, ctx]
            for name in ["accuracy"] + names:
                per_seed = defaultdict(list)
                for (mm, cc, seed, _user, nn_), vals in clean.items():
                    if mm == m and cc == ctx and nn_ == name:
                        per_seed[seed].append(float(np.mean(vals)))
                vals = [100.0 * float(np.mean(v)) for _, v in sorted(per_seed.items())]
                if not vals:
                    row.append("-")
                elif len(vals) == 1:
                    row.append(f"{vals[0]:.1f}")
                else:
                    row.append(f"{np.mean(vals):.1f} ± {np.std(vals, ddof=1):.1f}")
            rows.append(row)
    note = (
        "verified_*: fraction of windows certified by IBP / CROWN / the better of both at that radius; "
        "pgd: fraction PGD does not break (>= verified); smoothed@l2:r: randomized-smoothing certified accuracy"
    )
    return Table(f"{scenario}: robustness (%), mean ± sd over seeds", header, rows, note=note, kind="robustness")


def all_tables(records: list[dict[str, Any]], metric: str = "balanced_accuracy", dataset: str = "hapt") -> list[Table]:
    perf = performance(records, metric)
    tables = [summary_table(perf, dataset)]
    scenarios = sorted({k[0] for k in perf})
    tables += [gain_table(perf, scenario, records) for scenario in scenarios]
    tables.append(seed_table(perf, dataset))
    for scenario in scenarios:
        tables.append(per_user_table(perf, scenario))
        tables.append(per_user_table(perf, scenario, std=True))
        tables.append(per_context_table(records, scenario, metric))
        harm = harm_table(perf, scenario)
        if harm is not None:
            tables.append(harm)
        robust = robustness_table(records, scenario)
        if robust is not None:
            tables.append(robust)
    return tables


def render_markdown(records: list[dict[str, Any]], metric: str = "balanced_accuracy", dataset: str = "hapt") -> str:
    """``table.md``: every table of :func:`all_tables` and the failed runs; every string from
    the records is escaped for Markdown (:func:`crop.report.escape.markdown_text`)."""
    from crop.report.escape import markdown_text as md

    parts = [f"# Benchmark results ({md(dataset)}, metric: {md(metric)})", ""]
    for t in all_tables(records, metric, dataset):
        parts += [t.markdown_section(2)]
    failed = failures(records)
    if failed:
        parts += ["## Failed runs", "", "| scenario | user | seed | method | error |", "|---|---|---|---|---|"]
        parts += [
            "| " + " | ".join(md(r.get(k, "")) for k in ("scenario", "user", "seed", "method", "error")) + " |"
            for r in failed
        ]
        parts.append("")
    return "\n".join(parts)

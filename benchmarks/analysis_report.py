"""Why CRoP works on HAPT: Section 7 analyses, Section 8 ablations and the Appendix A.3 search.

For hapt-session scenario 1 (available = session 1, unseen = session 2), the documented
personalization users and one seed (369284, the paper's Section 7 seed) it

1. personalizes each user with CRoP (default config) and runs :func:`crop.analysis.analyze_result`
   (full per-user output under ``--out`` (default ``out/analysis``));
2. runs every ablation (``crop-gp`` ... ``crop-prune-best``) and conventional finetuning;
3. tunes CRoP on the available context only (:func:`crop.analysis.tune`, default grid);
4. writes the aggregated tables into ``docs/ANALYSIS.md`` between the ``BEGIN GENERATED`` and
   ``END GENERATED`` markers (the hand-written reading around them is kept) and the figures
   into ``docs/figures/analysis/``.

Each fitted unit is cached as JSON under ``--out/records/<seed>-<generic model hash>`` (written atomically), so a killed run
resumes; ``--fresh`` recomputes everything. Same seed, same machine: the same numbers.

Usage: .venv/bin/python benchmarks/analysis_report.py [--users 2,8,14,20,26] [--seed 369284]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import crop
from crop.analysis import analyze_result, plot_user_lines, plot_user_means, tune
from crop.analysis._report import layer_label
from crop.data.hapt import ACTIVITIES
from crop.data.scenarios import PERSONALIZATION_USERS, build_user_scenario, parse_scenarios
from crop.generic import generic_for
from crop.report.files import write_text_atomic
from crop.report.table import Table, fmt_delta, fmt_pct, fmt_sci

SCENARIO = "hapt-session:1"
ABLATIONS = [
    "crop",
    "crop-gp",
    "crop-mpt",
    "crop-mpi",
    "crop-l0",
    "crop-l2",
    "crop-polar",
    "crop-partial",
    "crop-fixed-alpha",
    "crop-prune-best",
    "finetune",
]
BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"
CA, CU = "available (test)", "unseen: session 2"
RECORDS_TAG = (
    "default"  # set in main to the seed and generic model hash, so a retrained generic model is never mixed up
)


def cached(path: Path, fresh: bool, compute):
    if path.is_file() and not fresh:
        return json.loads(path.read_text())
    value = compute()
    write_text_atomic(path, json.dumps(value, indent=1))
    return value


def accuracies(model, us) -> dict[str, float]:
    res = crop.evaluate(model, {CA: us.available.test, **{f"unseen: {k}": v for k, v in us.unseen.items()}})
    return {k: v["balanced_accuracy"] for k, v in res.items()}


def run_analysis(user, us, generic, seed, out: Path, fresh: bool) -> dict:
    def compute():
        t0 = time.perf_counter()
        result = crop.personalize(generic, us.available, seed=seed)
        seconds = time.perf_counter() - t0
        report = analyze_result(
            result,
            us.available,
            us.unseen,
            out / f"user{user}",
            seed=seed,
            tau=crop.CRoPConfig().tau,
            class_names=ACTIVITIES,
            title=f"CRoP on HAPT user {user}, {SCENARIO}, seed {seed}",
        )
        d = report.to_dict()
        d["seconds"] = seconds
        d["final_epoch"] = result.info["final_epoch"]
        d["alpha_end_initial"] = result.info["alpha_initial_phase"][-1]
        return d

    return cached(out / "records" / RECORDS_TAG / f"analysis_{user}.json", fresh, compute)


def run_method(user, us, generic, seed, method, out: Path, fresh: bool) -> dict:
    def compute():
        t0 = time.perf_counter()
        r = crop.personalize(generic, us.available, method=method, seed=seed)
        d = {"acc": accuracies(r.model, us), "prune_amount": r.prune_amount, "seconds": time.perf_counter() - t0}
        if method == "crop-mpi":
            d["overlap_with_one_shot"] = r.info["overlap_with_one_shot"]
            d["cycles"] = r.info["cycles"]
        return d

    return cached(out / "records" / RECORDS_TAG / f"{method}_{user}.json", fresh, compute)


def run_tune(user, us, generic, seed, out: Path, fresh: bool) -> dict:
    def compute():
        t0 = time.perf_counter()
        res = tune(generic, us.available, "crop", seed=seed)  # available context only
        res.write(out / f"user{user}" / "tune")
        return {
            "chosen": res.chosen,
            "val": res.best.val_score,
            "val_loss": res.best.val_loss,
            "n_trials": len(res.trials),
            "ties_at_best_score": sum(t.val_score == res.best.val_score for t in res.trials),
            "acc": accuracies(res.best_result.model, us),
            "prune_amount": res.best_result.prune_amount,
            "seconds": time.perf_counter() - t0,
        }

    return cached(out / "records" / RECORDS_TAG / f"tune_{user}.json", fresh, compute)


# ------------------------------------------------------------------ tables


def table5(an: dict[int, dict]) -> Table:
    states = ["generic", "initial", "pruned", "mixed", "final"]
    header = ["user"] + [f"{s} {c}" for s in states for c in ("Ca", "Cu")]
    header += ["mixing Ca", "mixing Cu", "final-initial Ca", "final-initial Cu", "final-generic Ca", "final-generic Cu"]
    header += ["pruned %", "mixed model kept"]
    rows = []
    for user, d in an.items():
        a = d["accuracies"]
        row = [user] + [a[s][c] for s in states for c in (CA, CU)]
        row += [a["mixed"][c] - a["initial"][c] for c in (CA, CU)]
        row += [a["final"][c] - a["initial"][c] for c in (CA, CU)]
        row += [a["final"][c] - a["generic"][c] for c in (CA, CU)]
        row += [d["prune_amount"], "yes" if d["final_epoch"] == 0 else "no"]
        rows.append(row)
    mean = ["mean"] + [float(np.mean([r[i] for r in rows])) for i in range(1, len(header) - 1)] + [""]
    rows.append(mean)
    fmt = {h: fmt_pct for h in header[1:11]}
    fmt.update({h: fmt_delta for h in header[11:17]})
    fmt["pruned %"] = fmt_pct
    return Table(
        "Balanced accuracy (%) of each model state; Ca = session 1 test split, Cu = session 2 (Table 5)",
        header,
        rows,
        fmt,
    )


GIP_ROWS = [
    ("generic", "all"),
    ("initial", "all"),
    ("pruned", "all"),
    ("mixed", "all"),
    ("final", "all"),
    ("initial", "removed by pruning"),
    ("generic", "pruned positions"),
    ("mixed", "pruned positions"),
]


def _gip_label(state: str, subset: str) -> str:
    if subset == "all":
        return state
    return {
        "removed by pruning": "initial - pruned (removed weights)",
        "pruned positions": f"{state}, pruned positions only",
    }[subset]


def table4(an: dict[int, dict], key: str) -> Table:
    users = list(an)
    rows = []
    for state, subset in GIP_ROWS:
        row = [_gip_label(state, subset)]
        for u in users:
            match = [r for r in an[u]["gip"] if r["state"] == state and r["subset"] == subset]
            row.append(match[0][key] if match else None)
        rows.append(row)
    header = ["model state", *[f"user {u}" for u in users]]
    if key == "gip":
        return Table("GIP = 2 <G_a, G_u> of the mean cross-entropy gradients (Table 4)", header, rows)
    fmt = {h: (lambda v: "-" if v is None else f"{v:+.3f}") for h in header[1:]}
    return Table("Cosine of G_a and G_u (GIP / (2 ||G_a|| ||G_u||))", header, rows, fmt)


def table_norms(an: dict[int, dict]) -> Table:
    users = list(an)
    rows = []
    for state, subset in GIP_ROWS[:5]:
        row = [state]
        for u in users:
            r = next(r for r in an[u]["gip"] if r["state"] == state and r["subset"] == subset)
            row.append(f"{fmt_sci(r['norm_a'])} / {fmt_sci(r['norm_u'])}")
        rows.append(row)
    return Table("Gradient norms ||G_a|| / ||G_u||", ["model state", *[f"user {u}" for u in users]], rows)


def table6(an: dict[int, dict]) -> Table:
    users = list(an)
    pairs = [("generic", t) for t in ("initial", "pruned", "mixed", "final")]
    pairs += [("initial", t) for t in ("pruned", "mixed", "final")] + [
        ("pruned", "mixed"),
        ("pruned", "final"),
        ("mixed", "final"),
    ]
    rows = [[f"{a} - {b}", *[an[u]["distances"][a][b] for u in users]] for a, b in pairs]
    fmt = {f"user {u}": (lambda v: f"{v:.3f}") for u in users}
    return Table(
        "Euclidean distance between model states (Table 6)", ["states", *[f"user {u}" for u in users]], rows, fmt
    )


def table15(an: dict[int, dict], layer_names: dict[str, str]) -> Table:
    users = list(an)
    layers = [r["layer"] for r in an[users[0]]["layers"] if r["pruned"] is not None]
    header = ["layer", "parameters"] + [f"user {u}: initial / pruned" for u in users]
    rows = []
    for layer in layers:
        row = [
            layer_names.get(layer, layer),
            next(r["n_params"] for r in an[users[0]]["layers"] if r["layer"] == layer),
        ]
        for u in users:
            d = next(r for r in an[u]["layers"] if r["layer"] == layer)["dist_per_param"]
            row.append(f"{1e4 * d['initial']:.2f} / {1e4 * d['pruned']:.2f}")
        rows.append(row)
    note = "Distance per parameter = ||w_state - w_generic||_2 / n, in units of 1e-4 (the paper's measure)."
    return Table("Per-layer distance per parameter to the generic model (Table 15)", header, rows, note=note)


def table15_rms(an: dict[int, dict], layer_names: dict[str, str]) -> Table:
    users = list(an)
    layers = [r["layer"] for r in an[users[0]]["layers"] if r["pruned"] is not None]
    header = ["layer"] + [f"user {u}: RMS change, pruned %" for u in users]
    rows = []
    for layer in layers:
        row = [layer_names.get(layer, layer)]
        for u in users:
            r = next(r for r in an[u]["layers"] if r["layer"] == layer)
            row.append(f"{1e2 * r['rms']['initial']:.2f}, {100 * r['pruned']:.0f} %")
        rows.append(row)
    note = (
        "RMS change = ||w_initial - w_generic||_2 / sqrt(n) (x1e-2), a per-weight change comparable across layers of "
        "different sizes; pruned % = share of the layer's weights ToleratedPrune removed."
    )
    return Table(
        "Per-layer RMS change of initial finetuning and pruning amount (Table 15, size-independent)",
        header,
        rows,
        note=note,
    )


def confusion_focus_table(an: dict[int, dict], user: int) -> Table:
    states = ["generic", "initial", "pruned", "mixed", "final"]
    conf = an[user]["confusions"]
    header = ["true class (windows)", *[f"{st}: predicted as" for st in states]]
    rows = []
    for i, name in enumerate(ACTIVITIES):
        total = int(sum(conf["generic"][CU][i]))
        cells = []
        for st in states:
            counts = conf[st][CU][i]
            cells.append(", ".join(f"{ACTIVITIES[j]} {c}" for j, c in enumerate(counts) if c))
        rows.append([f"{name} ({total})", *cells])
    return Table(f"How user {user}'s session-2 windows are classified by each state", header, rows)


def ablation_table(ab: dict[str, dict[int, dict]]) -> Table:
    header = [
        "method",
        "Ca mean",
        "Cu mean",
        "Ca - crop",
        "Cu - crop",
        "Ca+Cu - crop",
        "pruned % (mean)",
        "users better on Cu than crop",
    ]
    base = ab["crop"]
    users = list(base)
    rows = []
    for m, per in ab.items():
        ca = [per[u]["acc"][CA] for u in users]
        cu = [per[u]["acc"][CU] for u in users]
        dca = float(np.mean(ca) - np.mean([base[u]["acc"][CA] for u in users]))
        dcu = float(np.mean(cu) - np.mean([base[u]["acc"][CU] for u in users]))
        pr = [per[u]["prune_amount"] for u in users if per[u]["prune_amount"] is not None]
        better = sum(per[u]["acc"][CU] > base[u]["acc"][CU] + 1e-12 for u in users)
        worse = sum(per[u]["acc"][CU] < base[u]["acc"][CU] - 1e-12 for u in users)
        rows.append(
            [
                m,
                float(np.mean(ca)),
                float(np.mean(cu)),
                dca,
                dcu,
                dca + dcu,
                float(np.mean(pr)) if pr else None,
                f"{better} (worse: {worse})",
            ]
        )
    fmt = {
        "Ca mean": fmt_pct,
        "Cu mean": fmt_pct,
        "Ca - crop": fmt_delta,
        "Cu - crop": fmt_delta,
        "Ca+Cu - crop": fmt_delta,
    }
    fmt["pruned % (mean)"] = fmt_pct
    return Table("Ablations (Section 8): balanced accuracy (%), mean over users", header, rows, fmt)


def ablation_user_table(ab: dict[str, dict[int, dict]]) -> Table:
    users = list(ab["crop"])
    header = ["method", *[f"user {u} Ca / Cu" for u in users]]
    rows = [
        [m, *[f"{100 * per[u]['acc'][CA]:.1f} / {100 * per[u]['acc'][CU]:.1f}" for u in users]] for m, per in ab.items()
    ]
    return Table("Ablations per user: balanced accuracy (%) Ca / Cu", header, rows)


def tune_table(tu: dict[int, dict], base: dict[int, dict]) -> Table:
    header = [
        "user",
        "lr",
        "alpha",
        "tau",
        "val bal. acc. %",
        "grid points tied on val score",
        "Ca default -> tuned",
        "Cu default -> tuned",
    ]
    rows = []
    for u, d in tu.items():
        c = d["chosen"]
        b = base[u]["acc"]
        rows.append(
            [
                u,
                c.get("initial.lr+final.lr"),
                c.get("alpha"),
                c.get("tau"),
                d["val"],
                f"{d['ties_at_best_score']} of {d['n_trials']}",
                f"{100 * b[CA]:.1f} -> {100 * d['acc'][CA]:.1f}",
                f"{100 * b[CU]:.1f} -> {100 * d['acc'][CU]:.1f}",
            ]
        )
    ca = np.mean([d["acc"][CA] for d in tu.values()]) - np.mean([base[u]["acc"][CA] for u in tu])
    cu = np.mean([d["acc"][CU] for d in tu.values()]) - np.mean([base[u]["acc"][CU] for u in tu])
    rows.append(["mean change", "", "", "", None, "", f"{100 * ca:+.1f}", f"{100 * cu:+.1f}"])
    return Table(
        "CRoP tuned on the available context (default grid, 8 configs)", header, rows, {"val bal. acc. %": fmt_pct}
    )


# ------------------------------------------------------------------ main


def _generic_identity(kind: str) -> tuple[str, str]:
    """The shipped weights file of a generic model kind and its sha256 (to tell which one the numbers are for)."""
    import hashlib
    from importlib import resources

    path = resources.files("crop.models") / "weights" / f"{kind}-generic.safetensors"
    return path.name, hashlib.sha256(path.read_bytes()).hexdigest()


def _ylim(values) -> tuple[float, float]:
    low = min(v for cat in values.values() for ctx in cat.values() for v in ctx.values())
    return (max(0.0, 10 * np.floor(10 * low) - 5), 104.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", default=",".join(map(str, PERSONALIZATION_USERS)))
    parser.add_argument("--seed", type=int, default=369284)
    parser.add_argument("--out", type=Path, default=Path("out/analysis"))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--fresh", action="store_true", help="recompute cached units")
    parser.add_argument("--focus", type=int, default=None, help="user whose heat map / t-SNE go into the document")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny model: one thread is fastest and makes timings stable
    global RECORDS_TAG
    RECORDS_TAG = f"seed{args.seed}-{_generic_identity(parse_scenarios(SCENARIO)[0].generic)[1][:12]}"
    users = [int(u) for u in args.users.split(",")]
    scenario = parse_scenarios(SCENARIO)[0]
    generic, _ = generic_for(scenario.generic, users)
    figures = args.docs / "figures" / "analysis"
    figures.mkdir(parents=True, exist_ok=True)

    an, ab, tu = {}, {m: {} for m in ABLATIONS}, {}
    t_start = time.perf_counter()
    for user in users:
        us = build_user_scenario(user, scenario, args.seed)
        an[user] = run_analysis(user, us, generic, args.seed, args.out, args.fresh)
        for m in ABLATIONS:
            ab[m][user] = run_method(user, us, generic, args.seed, m, args.out, args.fresh)
        tu[user] = run_tune(user, us, generic, args.seed, args.out, args.fresh)
        print(f"user {user} done ({time.perf_counter() - t_start:.0f} s)", flush=True)

    # figures for the document
    states = ["generic", "initial", "pruned", "mixed", "final"]
    acc_values = {s: {ctx: {u: an[u]["accuracies"][s][ctx] for u in users} for ctx in (CA, CU)} for s in states}
    plot_user_means(
        acc_values,
        figures / "state_accuracy.png",
        title=f"Balanced accuracy of each CRoP state (HAPT, {len(users)} users)",
        ylim=_ylim(acc_values),
    )
    cos = {
        u: {s: next(r["cosine"] for r in an[u]["gip"] if r["state"] == s and r["subset"] == "all") for s in states}
        for u in users
    }
    plot_user_lines(
        cos, figures / "gip_cosine.png", ylabel="cos(G_a, G_u)", title="Gradient alignment of session 1 and session 2"
    )
    gips = {
        u: {s: next(r["gip"] for r in an[u]["gip"] if r["state"] == s and r["subset"] == "all") for s in states}
        for u in users
    }
    plot_user_lines(gips, figures / "gip.png", ylabel="GIP = 2 <G_a, G_u>", title="GIP per model state", symlog=0.1)
    abl_values = {m: {ctx: {u: ab[m][u]["acc"][ctx] for u in users} for ctx in (CA, CU)} for m in ABLATIONS}
    plot_user_means(
        abl_values, figures / "ablations.png", title="Ablations (Section 8) on HAPT", ylim=_ylim(abl_values)
    )
    # per-user figures of the user whose unseen-context accuracy mixing changed most
    mixing = {u: abs(an[u]["accuracies"]["mixed"][CU] - an[u]["accuracies"]["initial"][CU]) for u in users}
    focus = args.focus if args.focus is not None else max(mixing, key=mixing.get)
    for stale in figures.glob("*_user*.png"):
        stale.unlink()
    for name in ("tsne", "heatmap", "prune_curve"):
        src = args.out / f"user{focus}" / f"{name}.png"
        if src.is_file():
            shutil.copyfile(src, figures / f"{name}_user{focus}.png")

    layer_names = {r["layer"]: layer_label(generic, r["layer"]) for r in an[users[0]]["layers"]}
    tables = [
        table5(an),
        table4(an, "gip"),
        table4(an, "cosine"),
        table_norms(an),
        table6(an),
        table15(an, layer_names),
        table15_rms(an, layer_names),
        confusion_focus_table(an, focus),
        ablation_table(ab),
        ablation_user_table(ab),
        tune_table(tu, ab["crop"]),
    ]
    for i, t in enumerate(tables):
        t.write(args.out / "tables", f"{i:02d}")
    rel = figures.relative_to(args.docs)
    generic_file, generic_hash = _generic_identity(scenario.generic)
    parts = [
        BEGIN,
        f"_Generated by `.venv/bin/python benchmarks/analysis_report.py` ({SCENARIO}, users "
        f"{', '.join(map(str, users))}, seed {args.seed}; generic model `{generic_file}` sha256 {generic_hash[:12]}; "
        f"balanced accuracy; Ca = available-context test split, Cu = all of session 2). "
        f"Do not edit between the markers._\n",
    ]
    captions = {
        0: f"![state accuracy]({rel}/state_accuracy.png)",
        3: f"![GIP]({rel}/gip.png)\n\n![GIP cosine]({rel}/gip_cosine.png)",
        7: f"![heat map user {focus}]({rel}/heatmap_user{focus}.png)\n\n![t-SNE user {focus}]({rel}/tsne_user{focus}.png)\n\n"
        f"![prune curve user {focus}]({rel}/prune_curve_user{focus}.png)",
        9: f"![ablations]({rel}/ablations.png)",
    }
    for i, t in enumerate(tables):
        parts.append(f"### {t.title}\n\n{t.markdown()}\n" + (f"\n{t.note}\n" if t.note else ""))
        if i in captions:
            parts.append(captions[i] + "\n")
    mpi = [ab["crop-mpi"][u]["overlap_with_one_shot"] for u in users]
    parts.append(
        f"MP-I: Jaccard overlap of its final pruned set with one-shot CRoP's: "
        f"{', '.join(f'user {u}: {v:.2f}' for u, v in zip(users, mpi, strict=True))}.\n"
    )
    secs = [an[u]["seconds"] for u in users]
    parts.append(
        f"Heat map, t-SNE and pruning curve: user {focus}, the user whose Cu accuracy mixing changed most. "
        f"CRoP fit time per user: {min(secs):.1f}-{max(secs):.1f} s (one CPU thread).\n"
    )
    parts.append(END)
    generated = "\n".join(parts)
    doc = args.docs / "ANALYSIS.md"
    text = doc.read_text() if doc.is_file() else f"# Why CRoP works: analyses on HAPT\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    write_text_atomic(doc, head + generated + tail)
    print(f"wrote {doc} and {figures} ({time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()

"""The report card of a personalized model: one page that says what the model is and what
evidence stands behind it (``crop card DIR``).

A card is built from files that other commands wrote; it runs no model training and invents no
number. Its inputs:

* a ``crop personalize --out`` directory: ``summary.json`` (who, which method, the generic model,
  accuracies of both models on this person's contexts) and ``model.safetensors`` (plus
  ``model.sparse.safetensors`` for a sparse method). ``DIR`` is such a directory, or a folder
  holding several of them (searched a few levels down): one card per model;
* optionally ``certify.json`` in that directory (``crop certify --model DIR/model.safetensors
  --user U --out DIR/certify.json``): certified and empirical robustness of this very file;
* optionally an all-user bench directory (``crop bench ... --out B``; ``results.jsonl`` and
  ``bench.json``), given as ``bench``: the population evidence for contexts this person never
  recorded (Δ_P / Δ_G with 95 % bootstrap intervals over people, win/tie/loss, harm rate; the
  definitions of :mod:`crop.report.stats`), and, where that bench ran ``--certify`` /
  ``--fairness``, the robustness and per-activity accuracy of the bench's own model of this
  person (same method and scenario; the card says whether its configuration equals this
  model's).

Sections (:data:`SECTIONS`, the same in the HTML page and its Markdown twin): who and what,
accuracy, population evidence, robustness, sparsity and size, fairness, do-no-harm verdict.
A section without data says so and names the command that adds it.

The page is rendered by :mod:`crop.report.card_render`; this module only gathers evidence.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crop.bench.checks import read_json_object
from crop.errors import CropError
from crop.models.directory import CERTIFY, MODEL, SPARSE, SUMMARY  # re-exported: the card's inputs
from crop.report.stats import HARM_MARGIN

CARD_HTML = "card.html"
CARD_MD = "card.md"
MAX_DEPTH = 3  # how deep ``crop card DIR`` looks for model directories below DIR

SECTIONS: tuple[tuple[str, str], ...] = (
    ("who", "Who and what"),
    ("accuracy", "Accuracy on this person's contexts"),
    ("population", "Population evidence for unseen contexts"),
    ("robustness", "Robustness"),
    ("size", "Sparsity and size"),
    ("fairness", "Fairness"),
    ("harm", "Do-no-harm verdict"),
)
ACCURACY_METRICS = ("balanced_accuracy", "accuracy", "f1")
CONFUSION = "confusion"  # the metric of crop bench --fairness records (crop.fairness._records)


@dataclass
class Figure:
    caption: str
    png: bytes


@dataclass
class TableBlock:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """One part of a card: text paragraphs (inline `code` allowed), tables, figures; ``missing``
    is the "not computed" line when there is no data."""

    key: str
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[TableBlock] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)  # (summary, preformatted text)
    missing: str | None = None


@dataclass
class Card:
    title: str
    verdict: str
    sections: list[Section]
    model_dir: Path


# ---------------------------------------------------------------------------------------- inputs


def find_models(root: str | Path) -> list[Path]:
    """Directories at or below ``root`` (up to :data:`MAX_DEPTH` levels, links not followed) that
    hold a ``crop personalize`` result: ``summary.json`` and ``model.safetensors``."""
    root = Path(root)
    if not root.is_dir():
        raise CropError(f"{root}: not a directory")
    found = []
    for here, dirs, files in os.walk(root):
        depth = len(Path(here).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < MAX_DEPTH else []
        if SUMMARY in files and MODEL in files:
            found.append(Path(here))
    return sorted(found)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _scores(summary: dict[str, Any], key: str, metric: str, where: Path) -> dict[str, float]:
    """``{context: accuracy in %}`` from ``summary[key]`` (``crop personalize`` stores fractions)."""
    raw = summary.get(key, {})
    if not isinstance(raw, dict):
        raise CropError(f"{where} is corrupt: {key!r} must be an object")
    out = {}
    for context, values in raw.items():
        value = _num(values.get(metric)) if isinstance(values, dict) else None
        if value is None:
            raise CropError(f"{where} is corrupt: {key}[{context!r}] has no number for {metric!r}")
        out[str(context)] = 100.0 * value
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB ({n:,} bytes)"


def _pp(v: float) -> str:
    return f"{v:+.2f}"


def _pct(v: float) -> str:
    return f"{v:.2f}"


@dataclass
class Bench:
    """An all-user bench directory, read once."""

    path: Path
    records: list[dict[str, Any]]
    settings: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> Bench:
        from crop.bench.checks import read_settings
        from crop.bench.store import ResultStore

        path = Path(path)
        if not (path / "results.jsonl").is_file():
            raise CropError(f"--bench {path}: no results.jsonl (a crop bench directory expected)")
        settings = read_settings(path) if (path / "bench.json").is_file() else {}
        return cls(path, ResultStore(path / "results.jsonl").load_required(), settings)


# ---------------------------------------------------------------------------------------- sections


@dataclass
class _Model:
    """What ``summary.json`` says, checked."""

    dir: Path
    summary: dict[str, Any]
    method: str
    scenario: str | None
    user: Any
    seed: Any
    metric: str
    dataset: str
    scores: dict[str, float]
    generic_scores: dict[str, float]
    files: dict[str, str]  # {model file name: sha256} of the files present
    bound: bool  # summary.json records those hashes (False: written by an older crop, not checkable)

    @classmethod
    def read(cls, model_dir: Path) -> _Model:
        """The summary, checked, and checked to describe the model files beside it
        (:func:`crop.models.directory.check_model_dir`: a file of another run is a one-line error)."""
        from crop.models.directory import check_model_dir, present_files

        where = model_dir / SUMMARY
        s = read_json_object(where, "crop personalize summary", advice="")
        method, metric = s.get("method"), s.get("metric")
        if not isinstance(method, str) or not isinstance(metric, str):
            raise CropError(f"{where} is corrupt: 'method' and 'metric' must be strings")
        scenario = s.get("scenario") if isinstance(s.get("scenario"), str) else None
        recorded = check_model_dir(model_dir, s)
        return cls(
            model_dir,
            s,
            method,
            scenario,
            s.get("user"),
            s.get("seed"),
            metric,
            str(s.get("dataset", "hapt" if "user" in s else "own data")),
            _scores(s, "scores", metric, where),
            _scores(s, "generic_scores", metric, where),
            recorded if recorded is not None else present_files(model_dir),
            recorded is not None,
        )

    def unseen(self, scores: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in scores.items() if k.startswith("unseen")}


def _who(m: _Model) -> Section:
    s = m.summary
    sec = Section("who", dict(SECTIONS)["who"])
    rows = []
    if m.user is not None:
        rows.append(["person", f"user {m.user} of {m.dataset}"])
    if "data" in s:
        rows.append(["person", f"own data file {s['data']}"])
    if m.scenario:
        rows.append(["scenario", m.scenario])
    if s.get("available_context") is not None:
        rows.append(["available context", str(s["available_context"])])
    rows += [["method", m.method], ["seed", str(m.seed)], ["accuracy measure", m.metric]]
    g = s.get("generic_model", {}) if isinstance(s.get("generic_model"), dict) else {}
    gpath = g.get("path") or g.get("source")
    rows.append(["generic model", ", ".join(f"{k}: {v}" for k, v in g.items()) or "not recorded"])
    if isinstance(gpath, str) and Path(gpath).is_file():
        rows.append(["generic model sha256", sha256_of(Path(gpath))])
    else:
        rows.append(["generic model sha256", "not available: the generic model file is not on this machine"])
    rows.append([f"{MODEL} sha256", m.files[MODEL]])
    rows.append(
        [
            f"{SUMMARY} belongs to it",
            "yes: it records this file's SHA-256"
            if m.bound
            else f"not checked: {SUMMARY} records no SHA-256 of the model (written by an older crop)",
        ]
    )
    if _num(s.get("seconds")) is not None:
        rows.append(["personalization time", f"{s['seconds']:.1f} s (whole command)"])
    if _num(s.get("prune_amount")) is not None:
        rows.append(["pruning amount", f"{s['prune_amount']:.2f}"])
    if "mixed_model_selected" in s:
        rows.append(["mixed model selected", str(s["mixed_model_selected"])])
    sec.tables.append(TableBlock("", ["", ""], rows))
    sec.text.append(f"Model directory: `{m.dir}`.")
    if isinstance(s.get("config"), dict):
        sec.details.append((f"{m.method} configuration", json.dumps(s["config"], indent=1, sort_keys=True)))
    return sec


def _accuracy(m: _Model) -> Section:
    sec = Section("accuracy", dict(SECTIONS)["accuracy"])
    if not m.scores:
        sec.missing = "not computed: summary.json holds no scores (the available context had no test split)"
        return sec
    rows = []
    for context, value in m.scores.items():
        g = m.generic_scores.get(context)
        rows.append([context, _pct(g) if g is not None else "-", _pct(value), _pp(value - g) if g is not None else "-"])
    sec.tables.append(TableBlock(f"{m.metric} (%)", ["context", "generic", m.method, "change (pp)"], rows))
    sec.text.append(
        "The available context's test split was held out of personalization; unseen contexts (if any) "
        "were never seen by it. Each is one person's data: a few hundred windows at most."
    )
    from crop.report.card_plots import accuracy_bars

    sec.figures.append(
        Figure(
            f"{m.metric} per context: generic model vs {m.method}",
            accuracy_bars(list(m.scores), m.generic_scores, m.scores, m.method, m.metric),
        )
    )
    return sec


def _bench_rerun(m: _Model) -> str:
    scen = f" --scenario {m.scenario}" if m.scenario else ""
    methods = ",".join(dict.fromkeys(["generic", "finetune", m.method]))
    return (
        f"`crop bench --users all{scen} --seeds 0,1,2 --methods {methods} --out B`, then `crop card {m.dir} --bench B`"
    )


def _bench_match(m: _Model, bench: Bench) -> str | None:
    """Why ``bench`` cannot speak for ``m`` (None when it can)."""
    dataset = str(bench.settings.get("dataset", "hapt"))
    if m.dataset != dataset:
        return f"the bench at `{bench.path}` is on dataset {dataset}, this model on {m.dataset}"
    if m.scenario is None:
        return "this model has no scenario (own data): a bench cannot match it"
    return None


def _population(m: _Model, bench: Bench | None, perf: Any) -> Section:
    from crop.report.stats import bootstrap_interval, format_p, harm_rate, per_user_gains, summarize_gain

    sec = Section("population", dict(SECTIONS)["population"])
    if bench is None:
        sec.missing = f"not computed: no all-user bench given; run {_bench_rerun(m)}"
        return sec
    why = _bench_match(m, bench)
    if why is None and not any(k[0] == m.scenario and k[1] == m.method for k in perf):
        why = f"the bench at `{bench.path}` has no {m.metric} results of {m.method} in {m.scenario}"
    if why is not None:
        sec.missing = f"not computed: {why}; run {_bench_rerun(m)}"
        return sec
    rows, strips = [], {}
    for ref, label in (("generic", "Δ_P (vs generic)"), ("finetune", "Δ_G (vs finetuning)")):
        if ref == m.method or not any(k[0] == m.scenario and k[1] == ref for k in perf):
            continue
        g = summarize_gain(perf, m.scenario, m.method, ref)
        unseen = per_user_gains(perf, m.scenario, m.method, ref, ("unseen",))
        values = [unseen[u] for u in sorted(unseen, key=str)]
        low, high = bootstrap_interval(values)
        mean = float(np.mean(values)) if values else float("nan")
        rows.append(
            [
                label,
                g.interval(),
                f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]" if values else "-",
                f"{g.wins}/{g.ties}/{g.losses}",
                format_p(g.p_value),
                str(g.n_users),
            ]
        )
        strips[f"vs {ref} (unseen context)"] = unseen
    if not rows:
        sec.missing = (
            f"not computed: the bench has no generic or finetune results in {m.scenario}; run {_bench_rerun(m)}"
        )
        return sec
    sec.tables.append(
        TableBlock(
            f"{m.method} in {m.scenario}, over people (pp of {m.metric}; mean [95 % bootstrap interval])",
            ["gain", "Ca + Cu (paper's Δ)", "unseen context only", "win/tie/loss", "Wilcoxon p", "people"],
            rows,
        )
    )
    rate = harm_rate(perf, m.scenario, m.method)
    seeds = sorted({k[3] for k in perf if k[0] == m.scenario and k[1] == m.method})
    sec.text.append(
        f"From the all-user bench `{bench.path}` (seeds {', '.join(map(str, seeds))}; each person's gain "
        f"averaged over seeds, intervals over people, `crop.report.stats`), {_same_config(m, bench)}. Harm rate: "
        + (
            f"{100 * rate:.0f} % of people lose more than {HARM_MARGIN:g} pp on the unseen context against the "
            "generic model."
            if math.isfinite(rate)
            else "not available (no generic results)."
        )
    )
    if any(k[0] == m.scenario and k[1] == m.method and str(k[2]) == str(m.user) for k in perf):
        sec.text.append(f"This person (user {m.user}) is among them and is marked in the figure.")
    from crop.report.card_plots import gain_strip

    sec.figures.append(
        Figure(
            "Per-person gain on the unseen context (one dot per person; this person marked)",
            gain_strip(strips, m.user, m.method),
        )
    )
    return sec


def _measure_kind(metric: str) -> str:
    name = metric.split("@", 1)[0]
    if name.startswith("pgd"):
        return "empirical (PGD attack: an upper bound)"
    if name.startswith("smoothed"):
        return "certified (randomized smoothing, probabilistic)"
    return "certified (bound propagation)" if name.startswith("verified") else "certified (Lipschitz margin)"


def _bench_unit(records: list[dict[str, Any]], m: _Model, method: str) -> list[dict[str, Any]]:
    """The bench's records of this person, scenario and ``method``: of this model's seed if the
    bench has it, else of every seed (the table says which)."""
    mine = [
        r
        for r in records
        if r.get("status", "ok") == "ok"
        and r["scenario"] == m.scenario
        and r["method"] == method
        and str(r["user"]) == str(m.user)
    ]
    same = [r for r in mine if r["seed"] == m.seed]
    return same or mine


def _same_config(m: _Model, bench: Bench) -> str:
    theirs = bench.settings.get("configs", {}).get(m.method)
    ours = m.summary.get("config")
    if theirs is None or ours is None:
        return "whether its configuration equals this model's is not recorded"
    return (
        "with the same configuration as this model"
        if json.dumps(theirs, sort_keys=True) == json.dumps(ours, sort_keys=True)
        else "with a different configuration from this model's (see bench.json): evidence about the method, "
        "not this file"
    )


def _robustness(m: _Model, bench: Bench | None) -> Section:
    sec = Section("robustness", dict(SECTIONS)["robustness"])
    s = m.summary
    if _num(s.get("verified_val")) is not None:
        sec.text.append(
            f"Certified training ({m.method}) reported verified accuracy {100 * s['verified_val']:.1f} % on the "
            "available context's validation split at its training radius."
        )
    cert = m.dir / CERTIFY
    foreign = None
    if cert.is_file():
        from crop.models.directory import certificate_problem

        c = read_json_object(cert, "crop certify output", advice="")
        results = c.get("results")
        if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
            raise CropError(f"{cert} is corrupt: 'results' must map contexts to measures")
        foreign = certificate_problem(c, m.files)  # the certificate of another file: marked, never shown
    if foreign is not None:
        sec.text.append(f"`{CERTIFY}` in this directory is not shown: {foreign}.")
    elif cert.is_file():
        contexts = list(results)
        measures = list(dict.fromkeys(k for v in results.values() for k in v))
        rows = [[k, _measure_kind(k)] + [_fmt_frac(results[c].get(k)) for c in contexts] for k in measures]
        sec.tables.append(
            TableBlock(
                f"this model file ({cert.name}: model {c.get('model')}), % of windows",
                ["measure", "kind", *contexts],
                rows,
            )
        )
    if bench is not None and m.scenario is not None and _bench_match(m, bench) is None:
        own = _robust_means(_bench_unit(bench.records, m, m.method))
        gen = _robust_means(_bench_unit(bench.records, m, "generic")) if m.method != "generic" else {}
        if own:
            contexts = sorted({c for c, _ in own})
            measures = list(dict.fromkeys(k for _, k in own))
            rows = []
            for k in measures:
                row = [k, _measure_kind(k)]
                for c in contexts:
                    v, g = own.get((c, k)), gen.get((c, k))
                    row.append(f"{v:.1f}" + (f" (generic {g:.1f})" if g is not None else "") if v is not None else "-")
                rows.append(row)
            sec.tables.append(
                TableBlock(
                    f"the bench's own {m.method} model of this person ({_same_config(m, bench)}), % of windows",
                    ["measure", "kind", *contexts],
                    rows,
                )
            )
    if not sec.tables and (not sec.text or foreign is not None):
        sec.missing = (
            f"not computed: run `crop certify --model {m.dir / MODEL} --user {m.user if m.user is not None else 'U'} "
            f"--certify eps=0.003,0.01,sigma=0.05 --out {m.dir / CERTIFY}` (or `crop bench --certify ...` for the "
            "population) to add it"
        )
    elif sec.tables:
        sec.text.append(
            "Radii are in input units (HAPT: g and rad/s). Certified measures are guarantees (smoothing: with "
            "probability 1 - alpha); PGD accuracy is what one attack did not break, an upper bound."
        )
    return sec


def _fmt_frac(value: Any) -> str:
    v = _num(value)
    return f"{100 * v:.1f}" if v is not None else "-"


def _robust_means(records: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        if r.get("metric") in ACCURACY_METRICS or r.get("metric") == CONFUSION:
            continue
        name = f"{r['context']}: {r.get('context_name', '')}".rstrip(": ")
        acc[(name, str(r["metric"]))].append(100.0 * float(r["value"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def _size(m: _Model) -> Section:
    sec = Section("size", dict(SECTIONS)["size"])
    total, nonzero, what = count_weights(m.dir / MODEL)
    rows = [
        [what, f"{total:,}"],
        ["non-zero", f"{nonzero:,} ({100 * nonzero / max(total, 1):.1f} %)"],
        [MODEL, _kib((m.dir / MODEL).stat().st_size)],
    ]
    if (m.dir / SPARSE).is_file():
        rows.append([f"{SPARSE} (compressed sparse rows)", _kib((m.dir / SPARSE).stat().st_size)])
    if _num(m.summary.get("density")) is not None:
        rows.append(["density of the pruned layers (reported by the method)", f"{m.summary['density']:.3f}"])
    g = m.summary.get("generic_model", {})
    gpath = g.get("path") or g.get("source") if isinstance(g, dict) else None
    if isinstance(gpath, str) and Path(gpath).is_file():
        rows.append(["generic model file", _kib(Path(gpath).stat().st_size)])
    sec.tables.append(TableBlock("", ["", ""], rows))
    return sec


def count_weights(path: Path) -> tuple[int, int, str]:
    """``(total, non-zero, what was counted)`` of a model file: the parameters of the rebuilt
    module for a built-in architecture, else every floating tensor in the file (buffers too)."""
    from crop.models.io import load_model, read_file

    try:
        tensors = [p.detach() for p in load_model(path).parameters()]
        what = "parameters"
    except CropError:  # not a built-in architecture: count what the file holds
        tensors = [t for t in read_file(path)[0].values() if t.is_floating_point()]
        what = "floating-point values in the file (buffers included)"
    total = sum(int(t.numel()) for t in tensors)
    nonzero = sum(int((t != 0).sum()) for t in tensors)
    return total, nonzero, what


def _per_class(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``{context name: summed confusion matrix}`` of ``confusion`` records."""
    out: dict[str, np.ndarray] = {}
    for r in records:
        if r.get("metric") != CONFUSION or not isinstance(r.get("confusion"), list):
            continue
        try:
            cm = np.asarray(r["confusion"], dtype=float)
        except (TypeError, ValueError):
            continue
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
            continue
        name = f"{r['context']}: {r.get('context_name', '')}".rstrip(": ")
        out[name] = out[name] + cm if name in out and out[name].shape == cm.shape else cm
    return out


def _recall(cm: np.ndarray) -> np.ndarray:
    """Accuracy within each true class (the diagonal over the row sums; NaN for an absent class):
    a class's accuracy is what fairness across activities compares."""
    rows = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / rows, np.nan)


def _class_names(dataset: str, n: int) -> list[str]:
    if dataset == "hapt":
        from crop.data.hapt import ACTIVITIES

        if len(ACTIVITIES) == n:
            return list(ACTIVITIES)
    return [f"class {i}" for i in range(n)]


def _fairness(m: _Model, bench: Bench | None) -> Section:
    sec = Section("fairness", dict(SECTIONS)["fairness"])
    how = (
        f"`crop bench --users all --scenario {m.scenario or 'S'} --fairness --methods generic,{m.method} --out B` and "
        f"`crop card {m.dir} --bench B`"
    )
    if bench is None or m.scenario is None or _bench_match(m, bench) is not None:
        sec.missing = f"not computed: run {how} to add it"
        return sec
    own = _per_class(_bench_unit(bench.records, m, m.method))
    gen = _per_class(_bench_unit(bench.records, m, "generic"))
    if not own:
        sec.missing = f"not computed: the bench at `{bench.path}` has no confusion records of this person; run {how}"
        return sec
    rows = []
    for context, cm in own.items():
        names = _class_names(m.dataset, cm.shape[0])
        r = _recall(cm)
        rg = _recall(gen[context]) if context in gen and gen[context].shape == cm.shape else None
        for i, name in enumerate(names):
            if not np.isfinite(r[i]):
                continue
            g = rg[i] if rg is not None and np.isfinite(rg[i]) else None
            rows.append(
                [
                    context,
                    name,
                    f"{int(cm[i].sum())}",
                    f"{100 * g:.1f}" if g is not None else "-",
                    f"{100 * r[i]:.1f}",
                    _pp(100 * (r[i] - g)) if g is not None else "-",
                ]
            )
        finite = r[np.isfinite(r)]
        if finite.size:
            worst = names[int(np.nanargmin(r))]
            sec.text.append(
                f"{context}: worst-served activity {worst} ({100 * finite.min():.1f} %), gap between best- and "
                f"worst-served activity {100 * (finite.max() - finite.min()):.1f} pp."
            )
    sec.tables.append(
        TableBlock(
            f"accuracy within each activity, the bench's own {m.method} model of this person "
            f"({_same_config(m, bench)}), %",
            ["context", "activity", "windows", "generic", m.method, "change (pp)"],
            rows,
        )
    )
    report = bench.path / "fairness" / "fairness.md"
    if report.is_file():
        sec.text.append(f"Fairness across people and groups for the whole bench: `{report}` (crop fairness).")
    return sec


def _harm(m: _Model, perf: Any, bench: Bench | None) -> tuple[Section, str]:
    sec = Section("harm", dict(SECTIONS)["harm"])
    own, gen = m.unseen(m.scores), m.unseen(m.generic_scores)
    common = [k for k in own if k in gen]
    if not common:
        verdict = "not decided: no unseen-context data for this person"
        sec.missing = (
            "not computed: this person recorded no context besides the available one, so the project's "
            f"definition (unseen-context accuracy more than {HARM_MARGIN:g} pp below the generic model's) "
            "cannot be applied; give --data with a context column holding more than one context"
        )
    else:
        a, g = float(np.mean([own[k] for k in common])), float(np.mean([gen[k] for k in common]))
        harmed = a < g - HARM_MARGIN
        verdict = (
            f"HARM: unseen-context {m.metric} {a:.2f} % is {g - a:.2f} pp below the generic model's {g:.2f} %"
            if harmed
            else f"no harm: unseen-context {m.metric} {a:.2f} % vs the generic model's {g:.2f} % ({_pp(a - g)} pp)"
        )
        sec.text.append(
            f"Verdict: **{verdict}**. The project's definition (`crop.report.stats.harm_rate`): a person is harmed "
            f"when their unseen-context accuracy falls more than {HARM_MARGIN:g} pp below the generic model's "
            f"(mean over the unseen contexts: {', '.join(common)})."
        )
    if bench is not None and m.scenario is not None and _bench_match(m, bench) is None:
        from crop.report.stats import harm_rate

        rate = harm_rate(perf, m.scenario, m.method)
        if math.isfinite(rate):
            sec.text.append(
                f"In the all-user bench, {m.method} harmed {100 * rate:.0f} % of people in {m.scenario} by this "
                "definition."
            )
    return sec, verdict


def build_card(model_dir: str | Path, bench: Bench | None = None) -> Card:
    """The :class:`Card` of the ``crop personalize`` result in ``model_dir``."""
    from crop.report.tables import performance

    model_dir = Path(model_dir)
    if not (model_dir / SUMMARY).is_file() or not (model_dir / MODEL).is_file():
        raise CropError(f"{model_dir}: no personalized model ({SUMMARY} and {MODEL} from crop personalize --out)")
    m = _Model.read(model_dir)
    perf = performance(bench.records, m.metric) if bench is not None else {}
    harm, verdict = _harm(m, perf, bench)
    sections = [
        _who(m),
        _accuracy(m),
        _population(m, bench, perf),
        _robustness(m, bench),
        _size(m),
        _fairness(m, bench),
        harm,
    ]
    who = f"user {m.user}" if m.user is not None else str(m.summary.get("data", model_dir.name))
    return Card(f"Report card: {m.method} for {who}", verdict, sections, model_dir)


def card_targets(model_dirs: Sequence[Path], root: Path, out: Path | None) -> list[tuple[Path, Path]]:
    """Where each model's (HTML, Markdown) card goes: inside the model directory, or with
    ``out`` as ``out/<path below root, '-'-joined>.html``, each directory name by the rule of
    :mod:`crop.safe_names` (``u2`` stays ``u2``; ``User 2`` becomes ``user-2--<hash>``). Two
    model directories that would share a card are refused."""
    from crop.safe_names import distinct, file_name, inside

    targets = []
    for d in model_dirs:
        if out is None:
            targets.append((d / CARD_HTML, d / CARD_MD))
        else:
            rel = d.relative_to(root).parts
            stem = file_name(*rel) if rel else file_name(d.resolve().name or "card")
            targets.append((inside(out, f"{stem}.html"), inside(out, f"{stem}.md")))
    distinct(((str(d), t[0]) for d, t in zip(model_dirs, targets, strict=True)), "the cards of model directories")
    return targets


def write_cards(root: str | Path, bench: str | Path | None = None, out: str | Path | None = None) -> list[Path]:
    """Write the card (HTML + Markdown) of every model found in ``root``; return the HTML paths.

    Every target is checked before any card is built, and each file is written atomically."""
    from crop.outputs import check_write_target
    from crop.report.card_render import render_html, render_markdown
    from crop.report.files import write_text_atomic

    root = Path(root)
    models = find_models(root)
    if not models:
        raise CropError(
            f"{root}: no personalized model found (a crop personalize --out directory with {SUMMARY} and {MODEL})"
        )
    targets = card_targets(models, root, Path(out) if out is not None else None)
    for html_path, md_path in targets:
        check_write_target(html_path)
        check_write_target(md_path)
    for d in models:  # every summary readable before the first card is written
        _Model.read(d)
    b = Bench.read(bench) if bench is not None else None
    written = []
    for d, (html_path, md_path) in zip(models, targets, strict=True):
        card = build_card(d, b)
        write_text_atomic(md_path, render_markdown(card))
        written.append(write_text_atomic(html_path, render_html(card)))
    return written

"""``crop analyze``: the Section 7 analyses for a bench or ``crop personalize`` output.

Personalization is a pure function of (generic model, data, config, seed), so the model states
an analysis needs (generic, initial, pruned, mixed, final) are recomputed from what the output
directory records (``bench.json`` / ``summary.json``) instead of being stored for every unit.
Each recomputed unit is checked against the recorded scores: the analysis says whether the
re-run reproduced them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crop.bench.runner import load_results
from crop.data.scenarios import build_user_scenario, parse_scenarios
from crop.errors import CropError
from crop.metrics import get_metric
from crop.models.utils import predict
from crop.personalization.registry import config_from_dict, get_method
from crop.report.escape import markdown_code, markdown_text
from crop.report.files import write_text_atomic
from crop.safe_names import distinct, file_name, inside, name_part


def _unit_dir(analysis: Path, scenario: Any, user: Any, seed: Any, method: Any) -> Path:
    """``analysis/<scenario>/user<u>-seed<s>-<method>``, every part by :mod:`crop.safe_names`."""
    return inside(inside(analysis, name_part(scenario)), file_name(f"user{user}", f"seed{seed}", method))


def _config(method: str, stored: dict[str, Any] | None, tuned: dict[str, Any] | None) -> Any:
    spec = get_method(method)
    config = config_from_dict(spec.config_class, stored or {}, f"{method} config") if stored else spec.config_class()
    if tuned:
        from crop.analysis import apply_overrides

        config = apply_overrides(config, tuned)
    return config


def _reproduced(model, us, recorded: dict[str, float], metric: str) -> bool:
    fn = get_metric(metric)
    now = {"available": fn(us.available.test.y, predict(model, us.available.test.X))}
    for name, data in us.unseen.items():
        now[name] = fn(data.y, predict(model, data.X))
    return all(abs(now[k] - v) < 1e-9 for k, v in recorded.items() if k in now)


def analyze_bench(
    out: Path,
    *,
    users: list[int] | None = None,
    seeds: list[int] | None = None,
    methods: list[str] | None = None,
    figures: bool = True,
    progress: bool = True,
) -> Path:
    """Write ``out/analysis/`` for a bench directory; returns the index page."""
    from crop.analysis import analyze_result
    from crop.bench.checks import read_settings
    from crop.generic import generic_for_user
    from crop.report.plots import delta_bars
    from crop.report.tables import performance, summary_table

    settings_path = out / "bench.json"
    if not settings_path.is_file():
        raise CropError(f"{out} has no bench.json: is it a `crop bench` output directory?")
    settings = read_settings(out)
    metric = settings.get("metric", "balanced_accuracy")
    get_metric(metric)
    records = [r for r in load_results(out) if r.get("status") == "ok"]
    pruning = sorted({r["method"] for r in records if r.get("prune_amount") is not None})
    methods = methods or pruning
    if not methods:
        raise CropError(f"{out}: no method with model states to analyse (run crop or an ablation)")
    seeds = seeds or [min(r["seed"] for r in records)]
    units = sorted(
        {
            (r["scenario"], r["user"], r["seed"], r["method"])
            for r in records
            if r["method"] in methods and r["seed"] in seeds and (users is None or r["user"] in users)
        }
    )
    if not units:
        raise CropError(f"{out}: no recorded unit matches the requested users / seeds / methods")
    from crop.data.hapt import USERS

    for scenario_name, user, _, method in units:  # every unit can be re-run: checked before any write
        parse_scenarios(scenario_name)
        get_method(method)
        if user not in USERS:
            raise CropError(f"{out}: user {user!r} of the records is not a HAPT user; crop analyze re-runs HAPT units")
    analysis = out / "analysis"
    targets = {u: _unit_dir(analysis, *u) for u in units}
    distinct(((u, p) for u, p in targets.items()), "the analyses of units")
    perf = performance(records, metric)
    lines = [f"# Analysis of {markdown_code(out)}", "", f"Metric: {markdown_text(metric)}.", ""]
    if figures:
        delta_bars(perf, analysis / "deltas.png", f"Δ_P and Δ_G ({metric})")
        lines += ["![Delta bars](deltas.png)", ""]
    summary = summary_table(perf, settings.get("dataset", "hapt"))
    lines += [summary.markdown_section(2), "## Per-unit analyses", ""]
    lines += ["| scenario | user | seed | method | prune amount | re-run reproduces recorded scores | analysis |"]
    lines += ["|---|---|---|---|---|---|---|"]

    from crop.report.console import data_progress

    with data_progress(disable=not progress) as bar:
        task = bar.add_task("analysing", total=len(units))
        for scenario_name, user, seed, method in units:
            bar.update(task, description=f"{scenario_name} user {user} seed {seed} {method}")
            scenario = parse_scenarios(scenario_name)[0]
            generic = generic_for_user(scenario.generic, user)[0]
            unit = [
                r
                for r in records
                if (r["scenario"], r["user"], r["seed"], r["method"]) == (scenario_name, user, seed, method)
                and r["metric"] == metric
            ]
            recorded = {("available" if r["context"] == "available" else r["context_name"]): r["value"] for r in unit}
            config = _config(method, settings.get("configs", {}).get(method), unit[0].get("tuned"))
            us = build_user_scenario(user, scenario, seed)
            result = get_method(method).fit(generic, us.available, config, seed=seed, metric=metric)
            same = _reproduced(result.model, us, recorded, metric)
            target = targets[(scenario_name, user, seed, method)]
            analyze_result(
                result,
                us.available,
                us.unseen,
                target,
                metric=metric,
                seed=seed,
                tau=getattr(config, "tau", None),
                figures=figures,
                title=f"{method} on HAPT user {user}, {scenario_name}, seed {seed}",
            )
            rel = target.relative_to(analysis)
            amount = "-" if result.prune_amount is None else f"{100 * result.prune_amount:.0f} %"
            cells = [markdown_text(v) for v in (scenario_name, user, seed, method)]
            cells += [amount, "yes" if same else "NO", f"[index]({rel.as_posix()}/index.md)"]
            lines.append("| " + " | ".join(cells) + " |")
            bar.advance(task)
    return write_text_atomic(analysis / "index.md", "\n".join(lines) + "\n")


# What re-analysing a personalization needs from its summary.json, and the type of each.
SUMMARY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "user": int,
    "scenario": str,
    "method": str,
    "seed": int,
    "metric": str,
    "scores": dict,
    "generic_model": dict,
    "config": (dict, type(None)),
}


def read_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` of ``crop personalize --user``, checked field by field (one-line errors)."""
    from crop.bench.checks import read_json_object
    from crop.data.hapt import USERS

    summary = read_json_object(path, "the summary of a personalization")
    if "user" not in summary and "data" in summary:
        raise CropError(
            f"{path.parent}: only `crop personalize --user` outputs can be re-analysed (own data files are not recorded)"
        )
    for key, kind in SUMMARY_FIELDS.items():
        value = summary.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CropError(f"{path} is corrupt: {key!r} is missing or not a {getattr(kind, '__name__', 'table')}")
    if summary["user"] not in USERS or summary["seed"] < 0:
        raise CropError(f"{path} is corrupt: user {summary['user']} / seed {summary['seed']} out of range")
    if not isinstance(summary["generic_model"].get("source"), str):
        raise CropError(f"{path} is corrupt: 'generic_model' must name its source")
    get_metric(summary["metric"])
    get_method(summary["method"])
    parse_scenarios(summary["scenario"])
    if any(
        not isinstance(v, dict) or not isinstance(v.get(summary["metric"]), int | float)
        for v in summary["scores"].values()
    ):
        raise CropError(f"{path} is corrupt: 'scores' must map contexts to numbers of {summary['metric']}")
    return summary


def analyze_personalization(out: Path, *, figures: bool = True) -> Path:
    """Write ``out/analysis/`` for a ``crop personalize --user`` output directory."""
    from crop.analysis import analyze_result
    from crop.generic import generic_for_user
    from crop.models.io import load_model

    summary = read_summary(out / "summary.json")
    if (out / "model.safetensors").exists():  # the summary must be the one of the model beside it
        from crop.models.directory import check_model_dir

        check_model_dir(out, summary)
    method, seed, metric = summary["method"], summary["seed"], summary["metric"]
    scenario = parse_scenarios(summary["scenario"])[0]
    source = summary["generic_model"]
    generic = (
        load_model(source["source"])
        if source.get("source") not in ("shipped", "cached", "trained")
        else (generic_for_user(scenario.generic, summary["user"])[0])
    )
    config = _config(method, summary.get("config"), None)
    us = build_user_scenario(summary["user"], scenario, seed)
    result = get_method(method).fit(generic, us.available, config, seed=seed, metric=metric)
    recorded = {"available": summary["scores"].get("available (test split)", {}).get(metric, np.nan)}
    recorded.update(
        {k.removeprefix("unseen: "): v[metric] for k, v in summary["scores"].items() if k.startswith("unseen: ")}
    )
    if not _reproduced(result.model, us, recorded, metric):
        raise CropError(
            f"{out}: re-running the personalization did not reproduce summary.json (different crop version?)"
        )
    report = analyze_result(
        result,
        us.available,
        us.unseen,
        out / "analysis",
        metric=metric,
        seed=seed,
        tau=getattr(config, "tau", None),
        figures=figures,
        title=f"{method} on HAPT user {summary['user']}, {scenario.name}, seed {seed}",
    )
    return report.files["index"]

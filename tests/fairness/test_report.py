"""The fairness report of a bench directory (crop fairness, crop bench --fairness)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crop.cli import run
from crop.fairness._attributes import PersonAttributes
from crop.fairness._report import build_report
from crop.metrics import balanced_accuracy
from crop.report.stats import per_user_means
from crop.report.tables import performance

USERS = [2, 8, 14, 20]
SKILL = {"generic": 0.7, "finetune": 0.85}


def synthetic_records(seed: int = 0, classes: int = 3, seeds=(0, 1)) -> list[dict]:
    """Records as ``crop bench --fairness`` writes them, from random predictions: for each unit
    and context a confusion matrix and the balanced accuracy it implies."""
    rng = np.random.default_rng(seed)
    records = []
    for method, skill in SKILL.items():
        for user in USERS:
            for s in seeds:
                block = []
                for context, name, n in (("available", "session 1", 30), ("unseen", "session 2", 150)):
                    y = np.arange(n) % classes
                    p_user = skill - 0.1 * (user in (14, 20)) * (context == "unseen")
                    pred = np.where(rng.random(n) < p_user, y, rng.integers(0, classes, n))
                    matrix = np.zeros((classes, classes), int)
                    np.add.at(matrix, (y, pred), 1)
                    base = {"dataset": "hapt", "scenario": "hapt-session:1", "user": user, "seed": s, "method": method}
                    base |= {"status": "ok", "context": context, "context_name": name}
                    block.append({**base, "metric": "balanced_accuracy", "value": balanced_accuracy(y, pred)})
                    block.append({**base, "metric": "confusion", "value": n, "confusion": matrix.tolist()})
                block[-1]["unit_complete"] = True
                records += block
    return records


def hand_attributes() -> PersonAttributes:
    groups = {"band": {2: "a", 8: "a", 14: "b", 20: "b"}}
    return PersonAttributes(groups, {"band": ["a", "b"]}, {"band": "test attribute"})


def test_group_values_are_the_mean_of_each_persons_balanced_accuracy():
    records = synthetic_records()
    report = build_report(records, {"hapt-session:1": hand_attributes()}, resamples=200)
    rows = {(r.method, r.context, r.attribute): r for r in report.group_rows["hapt-session:1"]}
    perf = performance(records)
    for method in SKILL:
        means = per_user_means(perf, "hapt-session:1", method)
        for context in ("available", "unseen"):
            row = rows[(method, context, "band")]
            for group, members in (("a", [2, 8]), ("b", [14, 20])):
                expected = np.mean([means[u][context] for u in members])  # % mean over people of mean over seeds
                assert row.balanced[group] == pytest.approx(expected, abs=1e-9)
                assert row.per_person[group] == pytest.approx({u: means[u][context] for u in members}, abs=1e-9)
            values = list(row.balanced.values())
            assert row.gap == pytest.approx(max(values) - min(values))
            assert row.gap_ci[0] <= row.gap_ci[1]
    ft, gen = rows[("finetune", "unseen", "band")], rows[("generic", "unseen", "band")]
    assert ft.delta_gap == pytest.approx(ft.gap - gen.gap)
    assert ft.gains == pytest.approx({g: ft.balanced[g] - gen.balanced[g] for g in ("a", "b")})
    assert ft.harmed_groups == 0.0
    # Per-window activity groups: each person's recall of the class, averaged over people.
    activity = rows[("finetune", "unseen", "activity")]
    assert activity.groups == ["class 0", "class 1", "class 2"]
    assert set(activity.per_person["class 0"]) == set(USERS)
    assert "## hapt-session:1" in report.markdown and "by band" in report.markdown and "by activity" in report.markdown
    assert "binary tasks" in report.markdown  # three classes: no demographic parity
    assert "largest gap between groups" in report.summary


def test_binary_tasks_get_demographic_parity_and_equalized_odds():
    report = build_report(synthetic_records(classes=2), {"hapt-session:1": hand_attributes()}, resamples=100)
    row = next(r for r in report.group_rows["hapt-session:1"] if r.attribute == "band")
    assert set(row.disparities) == {"demographic_parity_difference", "equalized_odds_difference"}
    assert "binary disparities by band" in report.markdown


def test_without_confusion_records_only_the_people_tables_are_written():
    records = [r for r in synthetic_records() if r["metric"] != "confusion"]
    report = build_report(records, {}, resamples=100)
    assert "run `crop bench --fairness`" in report.markdown and report.group_rows == {}
    people = report.tables["hapt-session-1-people"]
    row = next(r for r in people.rows if r[0] == "finetune" and r[1] == "unseen")
    assert row[2] == 4  # people
    means = per_user_means(performance(records), "hapt-session:1", "finetune")
    base = per_user_means(performance(records), "hapt-session:1", "generic")
    expected = np.mean([means[u]["unseen"] - base[u]["unseen"] for u in USERS])
    assert row[8] == pytest.approx(expected)  # mean gain over the generic model


def write_bench(root: Path, records: list[dict]) -> Path:
    out = root / "bench"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    settings = {"dataset": "hapt", "metric": "balanced_accuracy", "configs": {m: {} for m in SKILL}, "fairness": True}
    (out / "bench.json").write_text(json.dumps(settings))
    return out


def test_crop_fairness_writes_tables_figures_and_refuses_a_bad_table(tmp_path, capsys):
    out = write_bench(tmp_path, synthetic_records())
    table = tmp_path / "people.csv"
    table.write_text("user,band\n2,a\n8,a\n14,b\n20,b\n")
    assert run(["fairness", str(out), "--attributes", str(table), "--resamples", "200"]) == 0
    written = sorted(p.relative_to(out / "fairness").as_posix() for p in (out / "fairness").rglob("*") if p.is_file())
    assert "fairness.md" in written and "summary.md" in written and "traits.csv" in written
    assert "tables/hapt-session-1-groups-band.csv" in written and "tables/hapt-session-1-people.csv" in written
    assert "group-gains-hapt-session-1.png" in written and "person-gains-hapt-session-1.png" in written
    assert "by band" in (out / "fairness" / "fairness.md").read_text()
    before = {p: p.stat().st_mtime_ns for p in (out / "fairness").rglob("*")}
    capsys.readouterr()
    for text, message in [
        ("user,band\n2,a\n8,a\n14,b\n20,b\n31,b\n", "unknown user 31"),
        ("person,band\n2,a\n", "missing column 'user'"),
        ("user,band\n2,a\n8,a\n14,a\n20,b\n", "group 'b' has one person (user 20)"),
    ]:
        table.write_text(text)
        assert run(["fairness", str(out), "--attributes", str(table)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("crop: error: ") and message in err[0], err
    assert {p: p.stat().st_mtime_ns for p in (out / "fairness").rglob("*")} == before  # nothing rewritten


@pytest.fixture
def quick_config(tmp_path) -> Path:
    path = tmp_path / "quick.toml"
    path.write_text("[finetune.train]\nepochs = 2\n")
    return path


def test_bench_fairness_adds_confusion_records_and_the_report_and_leaves_plain_runs_alone(tmp_path, quick_config):
    common = ["bench", "--scenario", "hapt-session:1", "--users", "2", "--methods", "generic,finetune"]
    common += ["--config", str(quick_config), "--quiet"]
    plain, fair = tmp_path / "plain", tmp_path / "fair"
    assert run([*common, "--out", str(plain)]) == 0
    assert run([*common, "--out", str(fair), "--fairness"]) == 0
    plain_records = [json.loads(line) for line in (plain / "results.jsonl").read_text().splitlines()]
    fair_records = [json.loads(line) for line in (fair / "results.jsonl").read_text().splitlines()]
    assert not any(r["metric"] == "confusion" for r in plain_records)
    assert "fairness" not in json.loads((plain / "bench.json").read_text())
    confusion = [r for r in fair_records if r["metric"] == "confusion"]
    assert len(confusion) == 4  # 2 methods x (available, unseen)
    strip = [{k: v for k, v in r.items() if k != "unit_complete"} for r in fair_records if r["metric"] != "confusion"]
    assert strip == [{k: v for k, v in r.items() if k != "unit_complete"} for r in plain_records]
    for r in confusion:  # the matrix agrees with the balanced-accuracy record of the same context
        m = np.asarray(r["confusion"])
        same = next(
            x
            for x in fair_records
            if x["metric"] == "balanced_accuracy" and x["method"] == r["method"] and x["context"] == r["context"]
        )
        recall = np.diag(m)[m.sum(1) > 0] / m.sum(1)[m.sum(1) > 0]
        assert recall.mean() == pytest.approx(same["value"], abs=1e-9)
    assert (fair / "fairness" / "fairness.md").is_file()
    assert "## Fairness" in (fair / "table.md").read_text() and "## Fairness" not in (plain / "table.md").read_text()
    # A directory made without --fairness is not resumed with it (and the reverse).
    assert run([*common, "--out", str(plain), "--fairness"]) == 2
    assert run([*common, "--out", str(fair)]) == 2
    assert run([*common, "--out", str(tmp_path / "x"), "--attributes", str(quick_config)]) == 2


def test_an_interval_that_misses_its_gap_is_flagged():
    from crop.fairness._report import _ci

    assert _ci(0.5, 0.1, 0.3, signed=False) == "0.5 [0.1, 0.3]*"  # groups closer than the resampling noise
    assert _ci(2.0, 0.5, 4.0, signed=False) == "2.0 [0.5, 4.0]"
    assert _ci(-1.0, float("nan"), float("nan")) == "-1.0"

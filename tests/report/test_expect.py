"""What a person can expect from population evidence (crop.report.expect)."""

import numpy as np
import pytest

from crop.errors import CropError
from crop.report.expect import (
    evidence_rows,
    expect,
    expectation_from_file,
    load_evidence,
    wilson_interval,
    write_evidence,
)


def bench(changes, generic_available=None, gain=None, seeds=(0, 1)):
    """Records of an all-user bench: user u's unseen change is changes[u]."""
    records = []
    for u, change in changes.items():
        ga = 90.0 if generic_available is None else generic_available[u]
        g = 5.0 if gain is None else gain[u]
        for seed in seeds:
            for method, avail, unseen in (("generic", ga, 80.0), ("crop", ga + g, 80.0 + change)):
                for context, value in (("available", avail), ("unseen", unseen)):
                    records.append(
                        {
                            "dataset": "hapt",
                            "scenario": "s:1",
                            "user": u,
                            "seed": seed,
                            "method": method,
                            "status": "ok",
                            "metric": "balanced_accuracy",
                            "context": context,
                            "context_name": context,
                            "value": value / 100,
                        }
                    )
    return records


def test_wilson_interval_matches_the_formula_and_stays_in_the_unit_interval():
    low, high = wilson_interval(3, 10)
    assert low == pytest.approx(0.1078, abs=1e-3) and high == pytest.approx(0.6032, abs=1e-3)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert np.isnan(wilson_interval(0, 0)[0])


def test_the_expectation_comes_from_the_bench_records():
    changes = {u: (-5.0 if u % 4 == 0 else 1.0) for u in range(1, 21)}
    rows = evidence_rows(bench(changes), "s:1", "crop", "balanced_accuracy")
    e = expect(rows, scenario="s:1", method="crop")
    assert e.people == e.population == 20
    assert e.change == pytest.approx(np.mean(list(changes.values())))
    assert e.harm == pytest.approx(5 / 20) and e.harm_low < 0.25 < e.harm_high
    # other records, another expectation: the numbers are the bench's
    worse = {u: c - 4.0 for u, c in changes.items()}
    e2 = expect(evidence_rows(bench(worse), "s:1", "crop", "balanced_accuracy"), scenario="s:1", method="crop")
    assert e2.change == pytest.approx(e.change - 4.0) and e2.harm == 1.0


def test_the_persons_own_unseen_results_never_enter_their_expectation():
    changes = {u: 1.0 for u in range(1, 12)}
    rows = evidence_rows(bench(changes), "s:1", "crop", "balanced_accuracy")
    base = expect(rows, scenario="s:1", method="crop", person=7)
    changes[7] = -40.0  # the person's own unseen data, as a bench would have measured it
    rows2 = evidence_rows(bench(changes), "s:1", "crop", "balanced_accuracy")
    again = expect(rows2, scenario="s:1", method="crop", person=7)
    assert again == base and base.population == 10
    assert expect(rows2, scenario="s:1", method="crop").change < base.change  # not left out: it would count


def test_people_like_this_one_are_chosen_by_available_context_accuracy_only():
    # people with a low generic accuracy at enrollment are harmed; the others gain
    ga = {u: (70.0 if u <= 10 else 95.0) for u in range(1, 31)}
    changes = {u: (-6.0 if u <= 10 else 2.0) for u in range(1, 31)}
    rows = evidence_rows(bench(changes, generic_available=ga), "s:1", "crop", "balanced_accuracy")
    low = expect(rows, scenario="s:1", method="crop", generic_available=71.0, available=76.0)
    high = expect(rows, scenario="s:1", method="crop", generic_available=94.0, available=99.0)
    assert low.people == high.people == 10
    assert low.change == pytest.approx(-6.0) and low.harm == 1.0
    assert high.change == pytest.approx(2.0) and high.harm == 0.0
    assert low.population_harm == pytest.approx(1 / 3)


def test_evidence_files_round_trip_and_refuse_damage(tmp_path):
    changes = {u: float(u % 3) - 1 for u in range(1, 10)}
    path = write_evidence(bench(changes), tmp_path / "ev.json", dataset="hapt", metric="balanced_accuracy", source="b")
    e = expectation_from_file(path, scenario="s:1", method="crop", metric="balanced_accuracy", person=3)
    direct = expect(
        evidence_rows(bench(changes), "s:1", "crop", "balanced_accuracy"),
        scenario="s:1",
        method="crop",
        person=3,
        source="b",
    )
    assert e.change == pytest.approx(direct.change, abs=1e-3) and e.people == 8
    assert expectation_from_file(path, scenario="other:1", method="crop", metric="balanced_accuracy") is None
    (tmp_path / "bad.json").write_text('{"format": "crop-population-evidence-1", "evidence": {"s|m": [{"user": 1}]}}')
    with pytest.raises(CropError, match="damaged"):
        load_evidence(tmp_path / "bad.json")
    with pytest.raises(CropError, match="not enough"):
        expect(evidence_rows(bench({1: 0.0}), "s:1", "crop", "balanced_accuracy"), scenario="s:1", method="crop")
    assert load_evidence(path)["dataset"] == "hapt"


def test_crop_personalize_prints_and_records_the_expectation_from_the_bench(tmp_path):
    """The numbers come from the bench's records of other people: user 2's own bench records
    (their unseen-context results) are replaced by absurd ones and change nothing."""
    import json

    from typer.testing import CliRunner

    from crop.bench.store import ResultStore
    from crop.cli import app

    changes = {u: (-6.0 if u % 3 == 0 else 1.5) for u in range(1, 16)}
    records = [{**r, "scenario": "hapt-session:1"} for r in bench(changes)]
    for r in records:
        if r["user"] == 2 and r["context"] == "unseen" and r["method"] == "crop":
            r["value"] = 0.01  # user 2's own unseen result: must not count
    bench_dir = tmp_path / "bench"
    bench_dir.mkdir()
    store = ResultStore(bench_dir / "results.jsonl")
    units = {}
    for r in records:
        units.setdefault((r["user"], r["seed"], r["method"]), []).append(r)
    for block in units.values():
        store.append(block)
    cfg = tmp_path / "fast.toml"
    cfg.write_text("[crop]\ntau = 0.1\n[crop.initial]\nepochs = 2\n[crop.final]\nepochs = 1\n")
    out = tmp_path / "u2"
    result = CliRunner().invoke(
        app, ["personalize", "--user", "2", "--config", str(cfg), "--evidence", str(bench_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    e = summary["expectation"]
    assert e["population"] == 14 and e["people"] == 10  # the 14 others; the 10 most like user 2
    others = evidence_rows(records, "hapt-session:1", "crop", "balanced_accuracy")
    key = "available (test split)"
    direct = expect(
        others,
        scenario="hapt-session:1",
        method="crop",
        person=2,
        generic_available=100 * summary["generic_scores"][key]["balanced_accuracy"],
        available=100 * summary["scores"][key]["balanced_accuracy"],
    )
    assert e["change"] == pytest.approx(direct.change) and e["harm"] == pytest.approx(direct.harm)
    assert "expected unseen-context change" in " ".join(result.output.split())

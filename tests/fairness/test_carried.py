"""Attributes a dataset's own files carry (the stress readme demographics) in crop fairness and
crop bench --dataset stress --fairness, on the synthetic replica (made-up people)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crop.cli import run
from crop.data.datasets.replica import write_stress
from crop.fairness._carried import carried_attributes
from crop.metrics import balanced_accuracy

SUBJECTS = (1, 2, 3, 4, 5, 6)


def test_text_values_are_groups_and_numbers_are_rank_terciles_with_their_ranges():
    carried = {k: {"gender": "Female" if k % 2 else "male", "age": 20.0 + k} for k in SUBJECTS}
    attrs, skipped = carried_attributes(carried, SUBJECTS, "test files")
    assert skipped == []
    assert attrs.groups["gender"] == {k: "female" if k % 2 else "male" for k in SUBJECTS}
    assert attrs.order["gender"] == ["female", "male"]
    assert attrs.groups["age"] == {1: "low", 2: "low", 3: "mid", 4: "mid", 5: "high", 6: "high"}
    assert attrs.order["age"] == ["low", "mid", "high"]
    assert "low 21-22, mid 23-24, high 25-26" in attrs.notes["age"] and "years" in attrs.notes["age"]
    assert attrs.values["age"][6] == 26.0


@pytest.mark.parametrize(
    "carried, users, reason",
    [
        ({k: {"hand": "left" if k == 1 else "right"} for k in SUBJECTS}, SUBJECTS, "would hold one person"),
        ({k: {"hand": "right"} for k in SUBJECTS}, SUBJECTS, "every person is in one group"),
        ({k: {"hand": "right"} for k in SUBJECTS if k != 4}, SUBJECTS, "not given for user(s) [4]"),
        ({k: {"age": float(k)} for k in SUBJECTS}, SUBJECTS[:5], "at least 6 people"),
    ],
)
def test_an_attribute_that_cannot_be_grouped_is_left_out_with_a_note(carried, users, reason):
    attrs, skipped = carried_attributes(carried, users, "test files")
    assert attrs.groups == {}
    assert len(skipped) == 1 and reason in skipped[0]


def stress_records(users=SUBJECTS, seed: int = 0) -> list[dict]:
    """Records as ``crop bench --dataset stress --fairness`` writes them, from random predictions
    (binary task); the odd users are served worse by the generic model."""
    rng = np.random.default_rng(seed)
    records = []
    for method, skill in (("generic", 0.6), ("finetune", 0.8)):
        for user in users:
            block = []
            for context, name, n in (("available", "left/still", 20), ("unseen", "right/still", 40)):
                y = np.arange(n) % 2
                p = skill - (0.2 if user % 2 and method == "generic" else 0.0)
                pred = np.where(rng.random(n) < p, y, 1 - y)
                matrix = np.zeros((2, 2), int)
                np.add.at(matrix, (y, pred), 1)
                base = {"dataset": "stress", "scenario": "stress:1", "user": user, "seed": 0, "method": method}
                base |= {"status": "ok", "context": context, "context_name": name}
                block.append({**base, "metric": "balanced_accuracy", "value": balanced_accuracy(y, pred)})
                block.append({**base, "metric": "confusion", "value": n, "confusion": matrix.tolist()})
            block[-1]["unit_complete"] = True
            records += block
    return records


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    return write_stress(tmp_path_factory.mktemp("stress") / "replica", subjects=SUBJECTS)


def stress_bench(root: Path, replica: Path) -> Path:
    out = root / "bench"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stress_records()))
    settings = {"dataset": "stress", "metric": "f1", "root": str(replica), "fairness": True}
    (out / "bench.json").write_text(json.dumps(settings | {"configs": {"generic": {}, "finetune": {}}}))
    return out


def test_crop_fairness_groups_stress_people_by_their_readme_attributes(tmp_path, replica, capsys):
    out = stress_bench(tmp_path, replica)
    assert run(["fairness", str(out), "--resamples", "200"]) == 0
    report = (out / "fairness" / "fairness.md").read_text()
    # Gender (female: odd subjects in the replica) and age bands from S<k>_readme.txt; the
    # replica's dominant hand (left for 3 and 6) gives two groups of two and four.
    for attribute in ("gender", "age", "dominant_hand", "height_cm", "weight_kg"):
        assert f"balanced accuracy (%) by {attribute}" in report, attribute
    assert "binary disparities by gender" in report  # two classes: calm and stress
    assert "the bench selected models on f1" in report
    gender = (out / "fairness" / "tables" / "stress-1-groups-gender.csv").read_text()
    assert "ba:female" in gender and "ba:male" in gender
    traits = (out / "fairness" / "traits.csv").read_text()
    assert "stress:1,1,gender,,female" in traits and "stress:1,6,age,30.0,high" in traits
    # A table may add attributes, but not redefine one the files carry, nor name unknown users.
    table = tmp_path / "extra.csv"
    table.write_text("user,site\n1,a\n2,a\n3,a\n4,b\n5,b\n6,b\n")
    assert run(["fairness", str(out), "--attributes", str(table), "--resamples", "200"]) == 0
    assert "by site" in (out / "fairness" / "fairness.md").read_text()
    capsys.readouterr()
    for text, message in [
        ("user,gender\n1,a\n2,a\n3,a\n4,b\n5,b\n6,b\n", "'gender' is the name of a built-in attribute"),
        ("user,site\n1,a\n2,a\n3,a\n4,b\n5,b\n6,b\n7,b\n", "unknown user 7 (stress users are 1-6)"),
        ("user,site\n1,a\n2,a\n3,a\n4,a\n5,a\n6,b\n", "group 'b' has one person (user 6)"),
        ("subject,site\n1,a\n", "missing column 'user'"),
    ]:
        table.write_text(text)
        assert run(["fairness", str(out), "--attributes", str(table)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("crop: error: ") and message in err[0], err


def test_bench_stress_fairness_refuses_a_bad_table_before_running(tmp_path, replica, capsys):
    table = tmp_path / "people.csv"
    common = ["bench", "--dataset", "stress", "--root", str(replica), "--scenario", "stress:1", "--users", "all"]
    common += ["--methods", "generic", "--quiet", "--fairness", "--attributes", str(table)]
    for i, (text, message) in enumerate(
        [
            ("user,site\n1,a\n2,a\n3,a\n4,b\n5,b\n9,b\n", "unknown user 9"),
            ("user,site\n1,a\n2,a\n3,a\n4,b\n5,b\n", "no row for user(s) [6]"),
            ("user,site,band\n1,a,x\n2,a,x\n3,a,y\n4,b,y\n5,b,\n6,b,x\n", "user 5: missing column 'band'"),
            ("user,site\n1,a\n2,b\n3,b\n4,b\n5,b\n6,b\n", "group 'a' has one person (user 1)"),
        ]
    ):
        table.write_text(text)
        out = tmp_path / f"out{i}"
        capsys.readouterr()
        assert run([*common, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("crop: error: ") and message in err[0], err
        assert not out.exists()  # refused before anything was written
    capsys.readouterr()
    bare = ["bench", "--dataset", "stress", "--root", str(replica), "--attributes", str(table)]
    assert run([*bare, "--out", str(tmp_path / "bare")]) == 2
    assert "--attributes needs --fairness" in capsys.readouterr().err

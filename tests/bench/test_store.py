"""The results store never loses a valid record: damaged lines are skipped loudly, the crash
tail is repaired, and a resumed bench neither truncates nor recomputes finished units."""

import json

import pytest

from crop.bench.runner import BenchSpec, run_bench
from crop.bench.store import ResultStore, ResultsWarning
from crop.data.scenarios import parse_scenarios
from crop.errors import CropError


def unit(user, method, value=0.5):
    base = {"dataset": "hapt", "scenario": "hapt-session:1", "user": user, "seed": 0, "method": method}
    block = [
        {**base, "status": "ok", "context": c, "context_name": c, "metric": "accuracy", "value": value}
        for c in ("available", "unseen")
    ]
    block[-1]["unit_complete"] = True
    return "".join(json.dumps(r) + "\n" for r in block)


def write(path, *parts):
    path.write_text("".join(parts))
    return ResultStore(path)


def test_a_garbage_line_in_the_middle_loses_no_record(tmp_path):
    store = write(tmp_path / "results.jsonl", unit(2, "generic"), "garbage\n", *(unit(u, "crop") for u in (2, 8, 14)))
    with pytest.warns(ResultsWarning, match="line 3: not JSON"):
        records = store.load()
    assert len(records) == 8 and {r["user"] for r in records if r["method"] == "crop"} == {2, 8, 14}
    before = store.path.read_bytes()
    store.repair()
    assert store.path.read_bytes() == before  # nothing after the damaged line is truncated


@pytest.mark.parametrize(
    "bad",
    [
        '{"dataset": "hapt"}\n',
        '{"dataset": "hapt", "scenario": "s", "user": 2, "seed": 0, "method": "m", "metric": "accuracy", '
        '"context": "available", "value": "high"}\n',
        "[1, 2]\n",
        "\n",
    ],
)
def test_records_with_missing_fields_or_non_numeric_values_are_skipped_by_line(tmp_path, bad):
    store = write(tmp_path / "results.jsonl", unit(2, "generic"), bad, unit(8, "generic"))
    with pytest.warns(ResultsWarning, match="line 3"):
        assert len(store.load()) == 4


def test_torn_tail_is_ignored_and_repaired(tmp_path):
    store = write(tmp_path / "results.jsonl", unit(2, "generic"), unit(8, "generic")[:50])
    assert len(store.load()) == 2
    store.repair()
    assert store.path.read_text() == unit(2, "generic")


def test_unfinished_block_at_the_end_is_removed_loudly(tmp_path):
    half = unit(8, "generic").splitlines(keepends=True)[0]
    store = write(tmp_path / "results.jsonl", unit(2, "generic"), half, "torn")
    with pytest.warns(ResultsWarning, match="removed lines 3-3"):
        store.repair()
    assert store.path.read_text() == unit(2, "generic")


def test_a_unit_written_twice_counts_once(tmp_path):
    store = write(tmp_path / "results.jsonl", unit(2, "generic", 0.1), unit(2, "generic", 0.9))
    records = store.load()
    assert len(records) == 2 and {r["value"] for r in records} == {0.9}


def test_a_file_of_garbage_is_one_error_naming_the_lines(tmp_path):
    store = write(tmp_path / "results.jsonl", "garbage\n", "{}\n")
    with pytest.raises(CropError, match=r"no results .*line 1: not JSON; line 2: missing field"):
        store.load_required()


def test_report_and_resume_keep_every_record_after_a_garbage_line(tmp_path, capsys):
    from crop.cli import run

    out = tmp_path / "bench"
    spec = BenchSpec(parse_scenarios("hapt-session:1"), [2, 8, 14], [0], ["generic"], out)
    run_bench(spec, progress=False)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    per_unit = len(lines) // 3
    damaged = lines[:per_unit] + ["{garbage\n"] + lines[per_unit:]
    (out / "results.jsonl").write_text("".join(damaged))

    assert run(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"line {per_unit + 1}: not JSON" in err and err.count("crop: warning:") == 1
    table = (out / "table.md").read_text()
    assert all(f"| {u} | " in table for u in (2, 8, 14))  # every user after the damaged line is reported

    with pytest.warns(ResultsWarning):
        run_bench(spec, progress=False)  # resume: every unit is done, nothing truncated or recomputed
    assert (out / "results.jsonl").read_text() == "".join(damaged)
    with pytest.warns(ResultsWarning):
        assert len(ResultStore(out / "results.jsonl").load()) == len(lines)

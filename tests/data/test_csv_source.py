"""``--dataset csv``: raw sensor streams resampled and windowed (crop.data.streams), checked
against hand computations; gaps and label changes; label order; every malformed table refused
in one line naming file, line and column (exit 2, nothing written); and ``crop bench
--dataset csv`` giving the same results as ``--dataset npz`` on the same windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from crop.cli import app
from crop.data import streams
from crop.data.datasets import get_dataset
from crop.errors import CropError

runner = CliRunner()
HEADER = "user,context,label,time,a,b\n"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CROP_CACHE_DIR", str(tmp_path / "cache"))


def load(root, **options):
    return get_dataset("csv", root, **options).load()


def write(path, rows, header=HEADER):
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------- resampling and windows


def test_resampling_and_windows_match_a_hand_computation(tmp_path):
    # readings every 0.15 s; a rises 10 per second (a straight line), b zigzags 0, 1, 0, 1, 0
    rows = [
        f"u1,walk,1,{t},{a},{b}" for t, a, b in [(0, 0, 0), (0.15, 1.5, 1), (0.3, 3, 0), (0.45, 4.5, 1), (0.6, 6, 0)]
    ]
    data = load(write(tmp_path / "t.csv", rows), rate=10, window=3, stride=2)
    ud = data.users["u1"]
    # grid 0, 0.1, ..., 0.6 (7 samples); a on it: 0..6; b: linear between the neighbouring readings
    # (0.1 -> 1 * 0.1/0.15 = 2/3, 0.2 -> 1 - 0.05/0.15 = 2/3, 0.3 -> 0, ...)
    a = np.array([0, 1, 2, 3, 4, 5, 6], dtype=np.float32)
    b = np.array([0, 2 / 3, 2 / 3, 0, 2 / 3, 2 / 3, 0], dtype=np.float32)
    expected = np.stack([np.stack([a[s : s + 3], b[s : s + 3]]) for s in (0, 2, 4)])  # windows at 0, 2, 4
    assert ud.X.shape == (3, 2, 3) and ud.X.dtype == np.float32
    np.testing.assert_allclose(ud.X, expected, atol=1e-6)
    assert ud.y.tolist() == [0, 0, 0] and ud.context.tolist() == ["walk"] * 3
    assert data.classes == ("1",)


def test_a_gap_ends_a_segment_and_two_periods_is_not_a_gap(tmp_path):
    # 10 Hz: a gap is more than 0.2 s between readings. 0.5 -> 0.8 is one; the value jumps there,
    # so a window across it would show the jump
    times = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
    rows = [f"u,c,x,{t},{100 if t > 0.6 else 0},{i}" for i, t in enumerate(times)]
    ud = load(write(tmp_path / "gap.csv", rows), rate=10, window=3, stride=1).users["u"]
    assert len(ud.y) == 4 + 4  # 6 samples on each side: 4 windows each, none across
    first = ud.X[:, 0, :]
    assert all(set(w.tolist()) in ({0.0}, {100.0}) for w in first)  # never a window with both levels
    np.testing.assert_allclose(ud.X[:4, 1, 0], [0, 1, 2, 3])  # b counts readings (one per 0.1 s)
    np.testing.assert_allclose(ud.X[4:, 1, 0], [6, 7, 8, 9])
    # exactly two periods (0.2 -> 0.4) keeps one segment: grid 0..0.5, six samples, four windows
    rows = [f"u,c,x,{t},{t * 10},0" for t in (0, 0.1, 0.2, 0.4, 0.5)]
    ud = load(write(tmp_path / "two.csv", rows), rate=10, window=3, stride=1).users["u"]
    np.testing.assert_allclose(ud.X[:, 0, :], [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]], atol=1e-6)


def test_a_label_change_ends_a_segment(tmp_path):
    rows = [f"u,c,{'walk' if i >= 5 else 'sit'},{i / 10},{i},0" for i in range(10)]
    ud = load(write(tmp_path / "l.csv", rows), rate=10, window=3, stride=1).users["u"]
    # 0..0.4 sit (5 samples, 3 windows) and 0.5..0.9 walk (3 windows); the 2 windows that would
    # straddle the change (starting at samples 3 and 4) are dropped
    assert ud.y.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(ud.X[:, 0, 0], [0, 1, 2, 5, 6, 7])


def test_labels_map_to_classes_in_sorted_order(tmp_path):
    assert streams.class_order({"walk", "sit", "run"}) == ("run", "sit", "walk")
    assert streams.class_order({"10", "2", "1"}) == ("1", "2", "10")  # integers: numerically
    assert streams.class_order({"2", "a", "10"}) == ("10", "2", "a")  # mixed: as text
    rows = []
    for j, (user, label) in enumerate([("u", "walk"), ("u", "sit"), ("v", "run"), ("v", "walk")]):
        rows += [f"{user},c,{label},{j * 10 + i / 10},{i},0" for i in range(4)]
    data = load(write(tmp_path / "s.csv", rows), rate=10, window=3, stride=1)
    assert data.classes == ("run", "sit", "walk")
    assert data.users["u"].y.tolist() == [2, 2, 1, 1] and data.users["v"].y.tolist() == [0, 0, 2, 2]


def test_interleaved_rows_and_a_directory_of_files(tmp_path):
    root = tmp_path / "dir"
    root.mkdir()
    rows = []
    for i in range(4):  # two users' rows interleaved
        rows += [f"u,hand,0,{i / 10},{i},0", f"v,hand,0,{i / 10},{-i},0"]
    write(root / "one.csv", rows)
    write(root / "two.csv", [f"u,pocket,1,{i / 10},{i * 2},1" for i in range(3)])
    (root / "notes.txt").write_text("not a table")
    data = load(root, rate=10, window=3, stride=1)
    assert sorted(data.users) == ["u", "v"]
    assert data.users["u"].context.tolist() == ["hand", "hand", "pocket"]
    np.testing.assert_allclose(data.users["v"].X[:, 0, 0], [0, -1])
    ds = get_dataset("csv", root, rate=10, window=3, stride=1)
    assert [p.name for p in ds.files()] == ["one.csv", "two.csv"]
    assert ds.parse_scenarios("hand")[0].unseen == (("pocket", ("pocket",)),)


def test_options_are_checked_and_complete(tmp_path):
    path = write(tmp_path / "t.csv", [f"u,c,0,{i / 10},0,0" for i in range(3)])
    assert get_dataset("csv", path).options == {"rate": 50.0, "window": 128, "stride": 64}
    for options, message in [
        ({"rate": 0}, "--rate must lie in"),
        ({"rate": float("nan")}, "--rate must be a number"),
        ({"window": 1}, "--window must be at least 2"),
        ({"stride": 0}, "--stride must lie in"),
        ({"window": 2.5}, "--window must be a whole number"),
        ({"hop": 3}, "unknown option 'hop'"),
    ]:
        with pytest.raises(CropError, match=message):
            get_dataset("csv", path, **options)


# ---------------------------------------------------------------- malformed tables, through the CLI


def _model(tmp_path):
    from crop.models.hapt import HAPTNet
    from crop.models.io import save_model

    torch.manual_seed(0)
    return save_model(HAPTNet(channels=2, n_classes=2, length=32, width=4), tmp_path / "generic.safetensors")


def run_bench(root, out, model, *extra):
    base = ["bench", "--dataset", "csv", "--root", str(root), "--scenario", "hand", "--model", str(model)]
    return runner.invoke(app, [*base, "--rate", "10", "--window", "3", "--stride", "1", *extra, "--out", str(out)])


GOOD = [f"u,hand,sit,{i / 10},{i},0" for i in range(5)] + [f"u,pocket,sit,{i / 10},{i},0" for i in range(5)]

MALFORMED = {  # name: (header, rows, where (line, column), message)
    "no time column": ("user,context,label,a,b\n", ["u,hand,sit,1,2"], "line 1, column 'time'", "missing required"),
    "no channel": ("user,context,label,time\n", ["u,hand,sit,0"], "line 1", "no channel columns"),
    "twice": ("user,context,label,time,a,a\n", GOOD, "line 1, column 'a'", "given twice"),
    "text value": (HEADER, [*GOOD[:2], "u,hand,sit,0.2,1,x"], "line 4, column 'b'", "not a number: 'x'"),
    "text time": (HEADER, [*GOOD[:2], "u,hand,sit,soon,1,2"], "line 4, column 'time'", "not a number: 'soon'"),
    "empty value": (HEADER, [*GOOD[:2], "u,hand,sit,0.2,,2"], "line 4, column 'a'", "not a number: ''"),
    "nan": (HEADER, [*GOOD[:3], "u,hand,sit,0.3,NaN,2"], "line 5, column 'a'", "is not a finite number"),
    "inf time": (HEADER, [*GOOD[:1], "u,hand,sit,inf,1,2"], "line 3, column 'time'", "is not a finite number"),
    "huge": (HEADER, [*GOOD[:1], "u,hand,sit,0.1,1e9,2"], "line 3, column 'a'", "exceeds the sane magnitude"),
    "backwards": (
        HEADER,
        ["u,hand,sit,0,1,1", "v,hand,sit,0,1,1", "u,hand,sit,0.1,1,1", "u,hand,sit,0.05,1,1"],
        "line 5, column 'time'",
        "0.05 does not come after 0.1 (line 4) for user 'u', context 'hand'",
    ),
    "repeated time": (HEADER, ["u,hand,sit,0,1,1", "u,hand,sit,0,1,1"], "line 3, column 'time'", "does not come after"),
    "empty user": (HEADER, [*GOOD[:2], " ,hand,sit,0.2,1,2"], "line 4, column 'user'", "empty"),
    "empty fields": (HEADER, [*GOOD[:2], "", ",,,,,"], "line 5, column 'user'", "empty"),  # blank line 4 skipped
    "long name": (HEADER, [*GOOD[:2], "u,hand," + "s" * 300 + ",0.2,1,2"], "line 4, column 'label'", "300 characters"),
    "fields": (HEADER, [*GOOD[:2], "u,hand,sit,0.2,1"], "line 4", "5 fields, the header has 6"),
    "empty file": ("", [], "t.csv", "empty file"),
    "header only": (HEADER, [], "t.csv", "no data rows after the header"),
    "no window": (
        HEADER,
        [*GOOD, "shorty,hand,sit,0,1,1", "shorty,hand,sit,0.1,1,1"],
        "t.csv",
        "user 'shorty' has no complete window",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_table_is_one_line_naming_file_line_and_column(tmp_path, case):
    header, rows, where, message = MALFORMED[case]
    path = write(tmp_path / "t.csv", rows, header)
    with pytest.raises(CropError) as exc:
        load(path, rate=10, window=3, stride=1)
    text = one_line(exc)
    assert str(path) in text and where in text and message in text, text
    r = run_bench(path, tmp_path / "out", _model(tmp_path))
    assert r.exit_code == 2, r.output
    out = r.output.strip()
    assert len(out.splitlines()) == 1 and out.startswith("crop: error:") and message in out, out
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").rglob("csv-*"))  # no half-built array cache either


def test_bad_bytes_and_a_non_csv_root(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(HEADER.encode() + b"u,hand,sit,0,\xff,1\n")
    with pytest.raises(CropError, match="t.csv, line 2: not UTF-8 text"):
        load(path)
    other = tmp_path / "t.txt"
    other.write_text(HEADER)
    with pytest.raises(CropError, match="give a .csv file or a directory"):
        load(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CropError, match="no .csv files"):
        load(tmp_path / "empty")


def test_channels_must_agree_across_files(tmp_path):
    root = tmp_path / "dir"
    root.mkdir()
    write(root / "a.csv", GOOD)
    write(root / "b.csv", ["u,hand,sit,0,1,2,3"], "user,context,label,time,a,b,c\n")
    with pytest.raises(CropError) as exc:
        load(root, rate=10, window=3, stride=1)
    text = one_line(exc)
    assert "b.csv, line 1, column 'c': channel columns a, b, c differ from a.csv's a, b" in text
    write(root / "b.csv", ["u,hand,sit,0,1,2"], "user,context,label,time,b,a\n")
    with pytest.raises(CropError, match="b.csv, line 1, column 'b': channel columns b, a differ"):
        load(root, rate=10, window=3, stride=1)


def test_size_limits_are_checked_before_reading(tmp_path, monkeypatch):
    path = write(tmp_path / "t.csv", GOOD)
    monkeypatch.setattr(streams, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(streams, "read_table", None)  # never reached: the size alone refuses it
    with pytest.raises(
        CropError, match=r"t.csv: 0.0 MiB; at most 0.0 MiB per file \(crop.data.streams.MAX_FILE_BYTES\)"
    ):
        load(path, rate=10, window=3, stride=1)
    r = run_bench(path, tmp_path / "out", _model(tmp_path))
    assert r.exit_code == 2 and "MAX_FILE_BYTES" in r.output and not (tmp_path / "out").exists()
    monkeypatch.undo()
    monkeypatch.setenv("CROP_CACHE_DIR", str(tmp_path / "cache2"))
    monkeypatch.setattr(streams, "MAX_VALUES", 20)  # 2 segments x 5 samples x 2 channels fit; 12 windows x 3 x 2 do not
    with pytest.raises(CropError, match=r"make 36 values; at most 20 \(crop.data.streams.MAX_VALUES\)"):
        load(path, rate=10, window=3, stride=1)
    monkeypatch.setattr(streams, "MAX_LINE", 10)
    with pytest.raises(CropError, match="t.csv, line 1: 27 bytes; at most 10 per line"):
        load(path, rate=10, window=3, stride=1)


def test_stream_options_only_with_csv(tmp_path):
    model = _model(tmp_path)
    for args, message in [
        (
            ["--dataset", "npz", "--root", str(tmp_path), "--rate", "10"],
            "--rate, --window and --stride apply to --dataset csv only",
        ),
        (
            ["--scenario", "hapt-session:1", "--window", "32"],
            "--rate, --window and --stride apply to --dataset csv only",
        ),
        (["--dataset", "csv", "--root", str(tmp_path), "--scenario", "hand", "--rate", "-1"], "--rate must lie in"),
        (["--dataset", "csv", "--root", str(tmp_path), "--scenario", "hand"], "--dataset csv needs --model"),
    ]:
        extra = ["--model", str(model)] if "--dataset" in args and "needs --model" not in message else []
        r = runner.invoke(app, ["bench", *args, *extra, "--out", str(tmp_path / "out")])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and message in r.output, r.output
        assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- end to end


TINY = """
[finetune]
train = { epochs = 2, lr = 0.001 }
"""


def stream_table(path):
    """Two users, two contexts, two activities, 8 s each at ~12.5 Hz with jitter, two channels."""
    rng = np.random.default_rng(0)
    lines = []
    for u, user in enumerate(("ann", "ben")):
        for context in ("hand", "pocket"):
            for k, label in enumerate(("sit", "walk")):
                t = k * 10 + np.arange(100) * 0.08 + rng.uniform(-0.005, 0.005, 100)
                a = np.sin(2 * np.pi * (0.5 + k) * t) * (1 + k) + (context == "pocket") + 0.1 * u
                b = rng.normal(0, 0.1, 100) + k
                lines += [
                    f"{user},{context},{label},{ti:.4f},{ai:.4f},{bi:.4f}" for ti, ai, bi in zip(t, a, b, strict=True)
                ]
    return write(path, lines)


def test_bench_csv_runs_and_matches_npz_on_the_same_windows(tmp_path):
    table = stream_table(tmp_path / "stream.csv")
    model = _model(tmp_path)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    args = ["--rate", "10", "--window", "32", "--stride", "8", "--scenario", "hand", "--model", str(model)]
    common = ["--methods", "generic,finetune", "--config", str(config), "--quiet"]
    r = runner.invoke(
        app, ["bench", "--dataset", "csv", "--root", str(table), *args, *common, "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert {x["user"] for x in recs} == {"ann", "ben"} and {x["method"] for x in recs} == {"generic", "finetune"}
    assert {x["context_name"] for x in recs} == {"hand", "pocket"}
    settings = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert settings["classes"] == ["sit", "walk"]
    assert settings["dataset_options"] == {"rate": 10.0, "window": 32, "stride": 8}

    # the same windows as <user>.npz files give the same numbers through --dataset npz
    data = get_dataset("csv", table, rate=10, window=32, stride=8).load()
    npz = tmp_path / "npz"
    npz.mkdir()
    for user, ud in data.users.items():
        assert ud.X.shape == (2 * 2 * 7, 2, 32)  # 80 grid samples per 7.9 s bout: (80 - 32) // 8 + 1 = 7 windows
        np.savez(npz / f"{user}.npz", X=ud.X, y=ud.y, context=ud.context)
    npz_args = ["--dataset", "npz", "--root", str(npz), "--scenario", "hand", "--model", str(model)]
    r = runner.invoke(app, ["bench", *npz_args, *common, "--out", str(tmp_path / "n")])
    assert r.exit_code == 0, r.output
    other = [json.loads(x) for x in (tmp_path / "n" / "results.jsonl").read_text().splitlines()]

    def key(x):
        return (x["user"], x["method"], x["context_name"], x["metric"])

    assert len(other) == len(recs)
    assert {key(x): x["value"] for x in recs} == {key(x): x["value"] for x in other}

    # resuming with other windows is refused (the options key the data fingerprint)
    r = runner.invoke(
        app,
        [
            "bench",
            "--dataset",
            "csv",
            "--root",
            str(table),
            *args[:4],
            "--stride",
            "16",
            *args[6:],
            *common,
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 2 and "holds results made with another data files" in r.output, r.output


def test_personalize_takes_the_same_stream_options(tmp_path):
    table = stream_table(tmp_path / "stream.csv")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    base = ["personalize", "--dataset", "csv", "--root", str(table), "--user", "ben", "--scenario", "hand"]
    base += ["--model", str(_model(tmp_path)), "--method", "finetune", "--config", str(config)]
    r = runner.invoke(app, [*base, "--rate", "10", "--window", "32", "--stride", "8", "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["dataset_options"] == {"rate": 10.0, "window": 32, "stride": 8} and summary["user"] == "ben"
    r = runner.invoke(app, [*base, "--window", "500", "--out", str(tmp_path / "q")])  # 500 samples: 50 s at 50 Hz
    assert r.exit_code == 2 and "user 'ann' has no complete window" in r.output, r.output
    assert not (tmp_path / "q").exists()


def test_bom_crlf_and_quoted_fields_read_the_same(tmp_path):
    plain = write(tmp_path / "plain.csv", [f"u,hand,sit,{i / 10},{i},0" for i in range(5)])
    text = HEADER + "".join(f'"u",hand,"sit",{i / 10},{i},0\r\n' for i in range(5))
    fancy = tmp_path / "fancy.csv"
    fancy.write_bytes(b"\xef\xbb\xbf" + text.encode())
    a, b = load(plain, rate=10, window=3, stride=1), load(fancy, rate=10, window=3, stride=1)
    np.testing.assert_array_equal(a.users["u"].X, b.users["u"].X)
    assert a.users["u"].context.tolist() == b.users["u"].context.tolist() == ["hand"] * 3


def test_fairness_report_reads_the_table_with_the_run_options(tmp_path):
    # readings every 0.08 s are all gaps at the default 50 Hz: the report must use --rate 10 too
    table = stream_table(tmp_path / "stream.csv")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    args = ["bench", "--dataset", "csv", "--root", str(table), "--rate", "10", "--window", "32", "--stride", "8"]
    args += ["--scenario", "hand", "--model", str(_model(tmp_path)), "--methods", "generic,finetune"]
    r = runner.invoke(app, [*args, "--config", str(config), "--fairness", "--quiet", "--out", str(tmp_path / "f")])
    assert r.exit_code == 0, r.output
    report = (tmp_path / "f" / "fairness" / "fairness.md").read_text()
    assert "walk" in report and "sit" in report  # the label names, from bench.json's classes

"""Output for scripts (issue 22): results on stdout, progress and notes on stderr; tables whole
off a terminal; one progress line per bench unit in a log; --json; --quiet and --verbose.

Commands run in this process through ``crop.cli.run`` with both streams captured by pytest, so
neither is a terminal, as in a pipe or a log file."""

import json

import pytest

from crop.cli import run

FAST = "[crop]\ntau = 0.1\n[crop.initial]\nepochs = 2\n[crop.final]\nepochs = 1\n[finetune.train]\nepochs = 2\n"
BENCH = ["--scenario", "hapt-session:1", "--users", "2", "--methods", "generic,finetune", "--seeds", "0"]


@pytest.fixture
def fast(tmp_path):
    path = tmp_path / "fast.toml"
    path.write_text(FAST)
    return path


def crop(capsys, *argv):
    capsys.readouterr()  # whatever came before
    code = run([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_personalize_json_is_all_of_stdout(tmp_path, fast, capsys):
    out = tmp_path / "p"
    code, stdout, stderr = crop(capsys, "personalize", "--user", 2, "--config", fast, "--json", "--out", out)
    assert code == 0, stderr
    doc = json.loads(stdout)  # nothing but the document
    for key in ("command", "out", "files", "user", "method", "scores", "generic_scores", "prune_amount"):
        assert key in doc, key
    assert "expectation" in doc and "expectation_note" in doc
    assert doc["command"] == "personalize" and doc["user"] == 2 and doc["method"] == "crop"
    assert doc["files"]["model"] == str(out / "model.safetensors") and (out / "model.safetensors").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert doc["scores"] == summary["scores"] and doc["prune_amount"] == summary["prune_amount"]
    assert set(doc["scores"]) == {"available (test split)", "unseen: session 2"}
    for measures in doc["scores"].values():
        assert isinstance(measures["balanced_accuracy"], float) and 0 <= measures["balanced_accuracy"] <= 1
    assert "wrote" not in stdout and "personalization" not in stdout


def test_personalize_without_json_prints_the_table_whole_and_verbose_timings(tmp_path, fast, capsys):
    code, stdout, stderr = crop(capsys, "--verbose", "personalize", "--user", 2, "--config", fast, "--out", tmp_path)
    assert code == 0, stderr
    assert "| context | generic | crop |" in stdout and "| unseen: session 2 |" in stdout
    assert "┃" not in stdout and "…" not in stdout  # no box table, no cut cell off a terminal
    assert "personalization in" in stderr and "s" in stderr  # --verbose: the phases' times, on stderr
    assert "personalization in" not in stdout


def test_bench_off_a_terminal_progress_lines_on_stderr_whole_tables_on_stdout(tmp_path, fast, capsys):
    out = tmp_path / "b"
    code, stdout, stderr = crop(capsys, "bench", *BENCH, "--config", fast, "--out", out)
    assert code == 0, stderr
    lines = stderr.splitlines()
    assert "[1/2] hapt-session:1 user 2 seed 0 generic: done in" in stderr, stderr
    assert "[2/2] hapt-session:1 user 2 seed 0 finetune: done in" in stderr, stderr
    assert all(line.endswith(" s") for line in lines if line.startswith("[")), stderr
    assert "hapt-session:1 user 2" not in stdout  # progress is not a result
    # the tables: plain Markdown text, every cell whole, whatever the 80 columns rich assumes
    from crop.bench.runner import load_results
    from crop.report.stats import summarize_gain
    from crop.report.tables import performance

    gain = summarize_gain(performance(load_results(out), "balanced_accuracy"), "hapt-session:1", "finetune", "generic")
    interval = gain.interval()
    assert "[" in interval and len(interval) > 15
    assert interval in stdout, stdout
    assert "…" not in stdout and "┃" not in stdout
    assert any(len(line) > 80 for line in stdout.splitlines())  # a table row wider than 80 columns, uncut
    assert stdout.rstrip().splitlines()[-1].startswith("wrote ")

    # resumed: no unit runs again, so no unit line; --json: one document, counts and gains as numbers
    code, stdout, stderr = crop(capsys, "bench", *BENCH, "--config", fast, "--out", out, "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["command"] == "bench" and doc["out"] == str(out)
    assert doc["units"] == {"total": 2, "run": 0, "reused": 2, "failed": 0}
    assert doc["scenarios"] == ["hapt-session:1"] and doc["methods"] == ["generic", "finetune"]
    dp = doc["gains_pp"]["hapt-session:1"]["finetune"]["delta_p"]
    assert dp["mean"] == pytest.approx(gain.mean) and dp["low"] <= dp["mean"] <= dp["high"]
    assert dp["n_users"] == 1 and "generic" not in doc["gains_pp"]["hapt-session:1"]
    assert "done in" not in stderr

    # --quiet (the root option and bench's own): nothing on stderr; the results still on stdout
    for argv in (["--quiet", "bench", *BENCH], ["bench", *BENCH, "--quiet"]):
        code, stdout, stderr = crop(capsys, *argv, "--config", fast, "--out", out)
        assert code == 0 and stderr == "", stderr
        assert interval in stdout and "wrote" in stdout

    # crop fairness --json on the same directory: the report's path, its tables and the gains
    code, stdout, stderr = crop(capsys, "fairness", out, "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["command"] == "fairness" and doc["path"].startswith(str(out))
    assert doc["tables"] and all({"title", "header", "rows"} <= set(t) for t in doc["tables"])
    from crop.report.stats import unseen_changes

    change = unseen_changes(performance(load_results(out), "balanced_accuracy"), "hapt-session:1", "finetune")
    assert isinstance(doc["person_gains_pp"]["hapt-session:1"]["finetune"]["2"], float)
    assert doc["person_gains_pp"]["hapt-session:1"]["finetune"]["2"] == pytest.approx(change[2])


def test_bench_json_counts_units_run(tmp_path, fast, capsys):
    out = tmp_path / "b"
    argv = ["bench", "--scenario", "hapt-session:1", "--users", "2", "--methods", "generic", "--seeds", "0"]
    code, stdout, stderr = crop(capsys, *argv, "--config", fast, "--out", out, "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["units"] == {"total": 1, "run": 1, "reused": 0, "failed": 0}
    assert doc["gains_pp"] == {"hapt-session:1": {}}  # the generic model gains nothing over itself
    assert "[1/1] hapt-session:1 user 2 seed 0 generic: done in" in stderr


def test_quiet_still_prints_errors(tmp_path, capsys):
    code, stdout, stderr = crop(capsys, "--quiet", "personalize", "--user", 99, "--out", tmp_path / "x")
    assert code == 2 and stdout == ""
    assert stderr.startswith("crop: error:") and len(stderr.strip().splitlines()) == 1


def test_faults_table_whole_off_a_terminal(capsys):
    code, stdout, _ = crop(capsys, "faults")
    assert code == 0
    assert "| fault | severity | sweep | sensor |" in stdout and "…" not in stdout


def test_text_table_on_a_terminal_is_a_box_table_and_off_one_is_markdown():
    import io

    from crop.report.console import DataConsole, TextTable

    cell = "+12.34 [+1.23, +23.45] " * 6
    table = TextTable("title", ["a", "b|c"], [["x", cell]])
    off = DataConsole(file=io.StringIO(), width=80)
    off.print(table)
    text = off.file.getvalue()
    assert cell.replace("|", "\\|") in text and "| a | b\\|c |" in text
    on = DataConsole(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    on.print(table)
    drawn = on.file.getvalue()
    assert "┏" in drawn and "| a |" not in drawn  # a terminal gets the box table, fitted to its width
    assert max(len(line) for line in drawn.splitlines()) < 100


def test_certify_and_export_json(tmp_path, capsys):
    import numpy as np
    import torch

    from crop.models import HAPTNet, save_model

    torch.manual_seed(0)
    model = save_model(HAPTNet(), tmp_path / "generic.safetensors")
    rng = np.random.default_rng(0)
    data = tmp_path / "me.npz"
    np.savez(data, X=rng.normal(size=(12, 6, 128)).astype(np.float32), y=np.arange(12) % 6, context=["a"] * 12)
    cert = tmp_path / "cert.json"
    argv = ["certify", "--model", model, "--data", data, "--certify", "eps=0,0.01", "--out", cert, "--json"]
    code, stdout, stderr = crop(capsys, *argv)
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["command"] == "certify" and doc["out"] == str(cert) and doc["windows"] == {"a": 12}
    assert doc["results"] == json.loads(cert.read_text())["results"]
    assert isinstance(doc["results"]["a"]["verified@linf:0"], float)

    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "m.onnx"
    code, stdout, stderr = crop(capsys, "export", model, "--out", onnx, "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["path"] == str(onnx) and doc["bytes"] == onnx.stat().st_size
    assert isinstance(doc["max_abs_diff"], float) and doc["max_abs_diff"] < 1e-3
    assert isinstance(doc["metadata"], dict) and "input_shape" in doc["metadata"]

"""The command line: outputs, and one-line errors with exit code 2 for bad input."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from crop.cli import app
from crop.models import HAPTNet, save_model

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, pattern):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    assert text.startswith("crop: error:")
    assert pattern in text, text


@pytest.fixture
def generic_file(tmp_path):
    import torch

    torch.manual_seed(0)
    return save_model(HAPTNet(), tmp_path / "generic.safetensors")


def user_npz(path, n=60, nan=False, classes=6, shape=(6, 128), contexts=("left",)):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, *shape)).astype(np.float32)
    if nan:
        X[0, 0, 0] = np.nan
    y = np.arange(n) % classes
    context = np.array([contexts[(i * len(contexts)) // max(n, 1)] for i in range(n)])
    np.savez(path, X=X, y=y, context=context)
    return path


def test_personalize_own_data_writes_model_and_summary(tmp_path, generic_file, monkeypatch):
    data = user_npz(tmp_path / "me.npz", n=120, contexts=("left", "right"))
    cfg = tmp_path / "fast.toml"
    cfg.write_text("[crop]\ntau = 0.1\n[crop.initial]\nepochs = 2\n[crop.final]\nepochs = 1\n")
    out = tmp_path / "out"
    r = run(
        "personalize", "--data", data, "--model", generic_file, "--available", "left", "--config", cfg, "--out", out
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "crop" and "unseen: right" in summary["scores"]
    import torch

    assert summary["environment"]["torch"] == torch.__version__
    assert summary["environment"]["torch_threads"] == torch.get_num_threads()
    from crop.models import load_model

    load_model(out / "model.safetensors")


def test_bad_inputs_exit_2_with_one_line(tmp_path, generic_file):
    out = tmp_path / "out"
    cases = [
        (("--user", 99), "unknown HAPT user 99"),
        (("--data", user_npz(tmp_path / "nan.npz", nan=True), "--model", generic_file), "NaN or inf"),
        (("--data", user_npz(tmp_path / "shape.npz", shape=(6, 100)), "--model", generic_file), "shape"),
        (("--data", user_npz(tmp_path / "cls.npz", classes=5), "--model", generic_file), "absent"),
        (("--data", user_npz(tmp_path / "empty.npz", n=0), "--model", generic_file), "no samples"),
        (("--data", user_npz(tmp_path / "two.npz", contexts=("a", "b")), "--model", generic_file), "--available"),
        (
            ("--data", user_npz(tmp_path / "ok.npz"), "--model", tmp_path / "missing.safetensors"),
            "model file not found",
        ),
    ]
    (tmp_path / "corrupt.safetensors").write_bytes(b"garbage!" * 4)
    cases.append(
        (("--data", tmp_path / "ok.npz", "--model", tmp_path / "corrupt.safetensors"), "not a valid safetensors")
    )
    for args, pattern in cases:
        assert_one_line_error(run("personalize", *args, "--out", out), pattern)
        assert not out.exists(), f"partial output after {args}"


def test_bench_bad_arguments(tmp_path):
    assert_one_line_error(run("bench", "--scenario", "hapt-nope", "--out", tmp_path / "b"), "unknown scenario")
    assert_one_line_error(
        run("bench", "--scenario", "hapt-session", "--methods", "crop,magic", "--out", tmp_path / "b"),
        "unknown method 'magic'",
    )
    assert_one_line_error(
        run("bench", "--scenario", "hapt-session", "--users", "2,x", "--out", tmp_path / "b"), "integers"
    )
    assert_one_line_error(
        run("bench", "--scenario", "hapt-session", "--users", "0", "--out", tmp_path / "b"), "unknown HAPT user"
    )
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[crop]\ntua = 1\n")
    assert_one_line_error(
        run("bench", "--scenario", "hapt-session", "--config", cfg, "--out", tmp_path / "b"), "unknown option 'tua'"
    )
    assert not (tmp_path / "b" / "results.jsonl").exists()


def test_bench_writes_results_and_table(tmp_path):
    cfg = tmp_path / "fast.toml"
    cfg.write_text("[crop.initial]\nepochs = 2\n[crop.final]\nepochs = 1\n[finetune.train]\nepochs = 2\n")
    out = tmp_path / "bench"
    r = run(
        "bench",
        "--scenario",
        "hapt-placement:1",
        "--users",
        "2",
        "--seeds",
        "0",
        "--config",
        cfg,
        "--out",
        out,
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    table = (out / "table.md").read_text()
    assert "Δ_P" in table and "hapt-placement:1" in table
    assert (out / "results.jsonl").read_text().count("\n") == 3 * 2 * 3  # methods x contexts x metrics


def test_methods_lists_crop():
    r = run("methods")
    assert r.exit_code == 0 and "crop" in r.output and "finetune" in r.output


def test_analyze_bench_reproduces_and_writes_index(tmp_path):
    cfg = tmp_path / "fast.toml"
    cfg.write_text("[crop.initial]\nepochs = 2\n[crop.final]\nepochs = 1\n")
    out = tmp_path / "bench"
    r = run(
        "bench",
        "--scenario",
        "hapt-session:1",
        "--users",
        "2",
        "--methods",
        "generic,crop",
        "--config",
        cfg,
        "--out",
        out,
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    r = run("analyze", out, "--no-figures")
    assert r.exit_code == 0, r.output
    index = (out / "analysis" / "index.md").read_text()
    assert "| hapt-session:1 | 2 | 0 | crop |" in index and "| yes |" in index
    assert (out / "analysis" / "hapt-session-1" / "user2-seed0-crop" / "gip.md").is_file()
    assert_one_line_error(run("analyze", tmp_path), "neither results.jsonl")


def test_certify_own_data_and_bad_input(tmp_path, generic_file):
    data = user_npz(tmp_path / "me.npz", n=12, contexts=("left", "right"))
    out = tmp_path / "cert.json"
    r = run("certify", "--model", generic_file, "--data", data, "--certify", "eps=0,0.01,n=50,sigma=0.1", "--out", out)
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())["results"]
    assert set(result) == {"left", "right"}
    for measures in result.values():
        assert measures["verified@linf:0.01"] <= measures["verified@linf:0"] <= 1.0
        assert measures["verified@linf:0.01"] <= measures["pgd@linf:0.01"]
    assert_one_line_error(
        run("certify", "--model", generic_file, "--data", data, "--certify", "eps=abc"), "not a number"
    )
    assert_one_line_error(run("certify", "--model", tmp_path / "none.safetensors", "--user", "2"), "not found")
    assert_one_line_error(run("certify", "--model", generic_file), "either --data")


def test_tune_own_data_writes_trials_and_chosen_model(tmp_path, generic_file):
    data = user_npz(tmp_path / "me.npz", n=60, contexts=("left", "right"))
    cfg = tmp_path / "fast.toml"
    cfg.write_text("[finetune.train]\nepochs = 2\n")
    out = tmp_path / "tune"
    r = run(
        "tune",
        "--data",
        data,
        "--model",
        generic_file,
        "--available",
        "left",
        "--method",
        "finetune",
        "--grid",
        "train.lr=1e-3,3e-3",
        "--config",
        cfg,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    chosen = json.loads((out / "chosen.json").read_text())
    assert len(chosen["trials"]) == 2 and chosen["chosen"]["train.lr"] in (1e-3, 3e-3)
    assert (out / "model.safetensors").is_file() and "unseen: right" in r.output
    assert_one_line_error(run("tune", "--user", "2", "--grid", "tau", "--out", tmp_path / "x"), "must look like")
    assert not (tmp_path / "x").exists()


def test_faults_lists_the_library():
    r = run("faults")
    assert r.exit_code == 0 and "dead-acc" in r.output and "quantization" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scenario", "hapt-session:1", "--faults", "noise=0.1"], "hapt-faults"),
        (["--scenario", "hapt-faults:1", "--faults", "noise=-1"], "severity of noise"),
        (["--scenario", "hapt-faults:1", "--faults", "melted=1"], "unknown fault"),
        (["--scenario", "hapt-faults:1", "--methods", "coteach", "--norm", "none"], "norm"),
    ],
)
def test_bench_refuses_bad_fault_options_before_writing(tmp_path, args, message):
    out = tmp_path / "b"
    r = run("bench", *args, "--users", "2", "--out", str(out))
    assert r.exit_code != 0 and message in r.output and not (out / "results.jsonl").exists()

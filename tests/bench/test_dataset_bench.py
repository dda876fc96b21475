"""``crop bench --dataset NAME --root DIR`` end to end on synthetic replicas of the paper's
datasets (generic, finetune, crop; --certify with crop-certified), presets, determinism and
resume, ``crop personalize --dataset``, ``--dataset npz`` with your own model, and bad input
refused with one line before anything is written."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from crop.cli import app
from crop.data.datasets.replica import ES_UNUSABLE_USER, ES_USERS, write_replica

runner = CliRunner()

TINY = """
[generic-training]
epochs = 2
base_lr = 0.001
max_lr = 0.003
half_cycle_epochs = 1

[crop]
initial = { epochs = 2, lr = 0.001 }
final = { epochs = 2, lr = 0.001 }

[finetune]
train = { epochs = 2, lr = 0.001 }

[crop-certified]
eps = 0.0001
robust = { epochs = 1, lr = 0.001 }
final = { epochs = 1, lr = 0.001 }
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Replicas of every format, a tiny-epoch config, and a cache directory for this module."""
    root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CROP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        config = root / "tiny.toml"
        config.write_text(TINY)
        names = ("extrasensory", "stress", "widar", "perceptr", "npz")
        replicas = {name: write_replica(name, root / name) for name in names}
        replicas["extrasensory-raw"] = write_replica("extrasensory-raw", root / "raw", per_cell=3)
        yield {"config": config, **replicas}


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def records(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def assert_one_line_error(result, pattern):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert len(text.splitlines()) == 1 and text.startswith("crop: error:"), text
    assert pattern in text, text


CASES = {  # dataset: (scenario, user as typed, user as recorded, metric)
    "extrasensory": ("extrasensory:2", "9d", ES_USERS[1], "balanced_accuracy"),
    "extrasensory-raw": ("extrasensory:1", "80", ES_USERS[0], "balanced_accuracy"),
    "stress": ("stress:1", "S2", 2, "f1"),
    "widar": ("widar:1", "1", 1, "accuracy"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bench_generic_finetune_crop_end_to_end(env, tmp_path, name):
    scenario, user, recorded, metric = CASES[name]
    out = tmp_path / "out"
    r = run(
        *("bench", "--dataset", name, "--root", env[name], "--scenario", scenario, "--users", user),
        *("--config", env["config"], "--out", out, "--quiet"),
    )
    assert r.exit_code == 0, r.output
    recs = records(out)
    assert {x["method"] for x in recs} == {"generic", "finetune", "crop"}
    assert {x["status"] for x in recs} == {"ok"} and {x["dataset"] for x in recs} == {name}
    assert {x["user"] for x in recs} == {recorded} and {x["scenario"] for x in recs} == {scenario}
    assert all(0 <= x["value"] <= 1 for x in recs)
    settings = json.loads((out / "bench.json").read_text())
    assert settings["metric"] == metric and settings["dataset"] == name and settings["data"]
    assert settings["generic_training"]["epochs"] == 2  # [generic-training] over the Table 9 preset
    (generic,) = [json.loads(line) for line in (out / "generics.jsonl").read_text().splitlines()]
    assert recorded not in generic["train_users"] + generic["val_users"]
    assert f"Benchmark results ({name}, metric: {metric})" in (out / "table.md").read_text()


def test_defaults_are_the_papers_users_scenarios_and_presets(env, tmp_path):
    out = tmp_path / "out"
    r = run(
        "bench", "--dataset", "perceptr", "--root", env["perceptr"], "--config", env["config"], "--out", out, "--quiet"
    )
    assert r.exit_code == 0, r.output
    recs = records(out)
    assert {x["user"] for x in recs} == {17, 25} and {x["scenario"] for x in recs} == {"perceptr:1"}
    assert {x["context_name"] for x in recs} == {"pre-treatment", "treatment"}
    crop = json.loads((out / "bench.json").read_text())["configs"]["crop"]
    # Table 10 (PERCEPT-R) where the TOML is silent, the TOML where it speaks
    assert (crop["alpha"], crop["tau"], crop["k"], crop["k_step"]) == (0.01, 0.05, 0.05, 0.05)
    assert (crop["initial"]["epochs"], crop["initial"]["lr"], crop["final"]["include_initial"]) == (2, 0.001, True)


def test_presets_follow_table_10_and_a3():
    from crop.bench.datasets import generic_config, method_config

    crop = method_config("stress", "crop")
    assert (crop.alpha, crop.tau, crop.k, crop.k_step) == (1e-4, 0.01, 0.05, 0.01)
    assert (crop.initial.lr, crop.initial.epochs, crop.final.epochs) == (1e-5, 1000, 1000)
    assert crop.final.include_initial and crop.recalibrate_bn  # the method's own defaults stay
    widar = method_config("widar", "crop-paper")
    assert (widar.alpha, widar.tau, widar.initial.lr, widar.final.epochs) == (1e-4, 0.2, 1e-6, 600)
    es = method_config("extrasensory-raw", "finetune")
    assert (es.train.lr, es.train.epochs) == (1e-6, 1600)
    assert method_config("stress", "crop", {"tau": 0.3}).tau == 0.3
    g = generic_config("extrasensory")
    assert (g.epochs, g.base_lr, g.max_lr) == (150, 1.2e-8, 7.5e-7)
    assert method_config("npz", "crop") == method_config("npz", "crop")  # no preset: the method's defaults


def test_same_command_same_results_and_resume(env, tmp_path):
    args = ("bench", "--dataset", "stress", "--root", env["stress"], "--scenario", "stress-movement:1")
    args += ("--users", "1", "--config", env["config"], "--quiet")
    assert run(*args, "--out", tmp_path / "a").exit_code == 0
    assert run(*args, "--out", tmp_path / "b").exit_code == 0
    a = (tmp_path / "a" / "results.jsonl").read_text()
    assert a == (tmp_path / "b" / "results.jsonl").read_text()
    assert run(*args, "--out", tmp_path / "a").exit_code == 0  # resumed: nothing to do
    assert (tmp_path / "a" / "results.jsonl").read_text() == a
    other = write_replica("stress", tmp_path / "other", subjects=(1, 2, 3, 4, 5), seed=1)
    r = run(*[other if a_ == env["stress"] else a_ for a_ in args], "--out", tmp_path / "a")
    assert_one_line_error(r, "holds results made with another root")


def test_personalize_one_user_of_a_dataset(env, tmp_path):
    out = tmp_path / "p"
    r = run(
        "personalize",
        "--dataset",
        "widar",
        "--root",
        env["widar"],
        "--user",
        "0",
        "--config",
        env["config"],
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["dataset"], summary["user"], summary["scenario"], summary["metric"]) == (
        "widar",
        0,
        "widar:1",
        "accuracy",
    )
    assert set(summary["scores"]) == {"available (test split)", "unseen: room2 o4-5"}
    assert 0 not in summary["generic_model"]["train_users"]


FACTORY = """
from torch import nn

def make():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
"""


def test_npz_with_your_own_model(env, tmp_path, monkeypatch):
    from crop.models.io import save_model

    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_models", None)
    import my_models

    torch.manual_seed(0)
    model_file = save_model(my_models.make(), tmp_path / "mine.safetensors")
    base = ("bench", "--dataset", "npz", "--root", env["npz"], "--scenario", "left", "--model", model_file)
    r = run(*base, "--out", tmp_path / "o", "--quiet", "--config", env["config"])
    assert_one_line_error(r, "[generic-training] does not apply to --dataset npz")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[crop]\ninitial = { epochs = 2 }\nfinal = { epochs = 1 }\n[finetune]\ntrain = { epochs = 2 }\n")
    r = run(*base, "--out", tmp_path / "o", "--quiet", "--config", cfg)
    assert_one_line_error(r, "no built-in architecture recorded; give --arch")
    assert not (tmp_path / "o").exists()
    r = run(*base, "--arch", "my_models:make", "--out", tmp_path / "o", "--quiet", "--config", cfg)
    assert r.exit_code == 0, r.output
    recs = records(tmp_path / "o")
    assert {x["user"] for x in recs} == {"alice", "bob"} and {x["context_name"] for x in recs} == {"left", "right"}
    r = run(*base, "--arch", "my_models:nothing", "--out", tmp_path / "o2")
    assert_one_line_error(r, "has no callable 'nothing'")


@pytest.mark.parametrize(
    "args, pattern",
    [
        (("--dataset", "stress"), "--dataset stress needs --root"),
        (("--dataset", "stress", "--root", "%nope"), "no such directory"),
        (("--dataset", "stress", "--root", "@stress", "--users", "9"), "unknown stress user '9'"),
        (("--dataset", "stress", "--root", "@stress", "--scenario", "stress:3"), "unknown scenario number"),
        (("--dataset", "stress", "--root", "@stress", "--scenario", "hapt-session"), "unknown stress scenario"),
        (("--dataset", "widar", "--root", "@widar", "--norm", "none"), "--norm none applies to --dataset hapt only"),
        (("--dataset", "widar", "--root", "@widar", "--model", "@config"), "--model and --arch apply to --dataset npz"),
        (("--dataset", "npz", "--root", "@npz", "--scenario", "left"), "--dataset npz needs --model"),
        (("--dataset", "extrasensory", "--root", "@extrasensory", "--users", "FF"), "no UUID under"),
        (("--root", "@stress", "--scenario", "hapt-session:1"), "not hapt"),
        (("--dataset", "bogus", "--root", "@stress"), "unknown dataset 'bogus'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(env, tmp_path, args, pattern):
    args = [str(env[a[1:]]) if a.startswith("@") else str(tmp_path / a[1:]) if a.startswith("%") else a for a in args]
    r = run("bench", *args, "--config", env["config"], "--out", tmp_path / "out", "--quiet")
    assert_one_line_error(r, pattern)
    assert not (tmp_path / "out").exists()


def test_malformed_file_is_refused_before_anything_runs(env, tmp_path):
    import pickle

    import numpy as np

    root = write_replica("stress", tmp_path / "s", subjects=(1, 2, 3))
    data = pickle.loads((root / "S3" / "S3.pkl").read_bytes())
    data["signal"]["wrist"]["BVP"] = np.zeros((10, 2))
    (root / "S3" / "S3.pkl").write_bytes(pickle.dumps(data))
    r = run("bench", "--dataset", "stress", "--root", root, "--out", tmp_path / "out")
    assert_one_line_error(r, "S3.pkl: signal -> wrist -> BVP must be a numeric array (n, 1)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["stress", "perceptr", "extrasensory"])
def test_certify_and_crop_certified(env, tmp_path, name):
    user = {"stress": "1", "perceptr": "17", "extrasensory": "80"}[name]
    out = tmp_path / "out"
    r = run(
        *("bench", "--dataset", name, "--root", env[name], "--scenario", f"{name}:1", "--users", user),
        *("--methods", "crop,crop-certified", "--certify", "eps=0.0001,steps=2", "--config", env["config"]),
        *("--out", out, "--quiet"),
    )
    assert r.exit_code == 0, r.output
    recs = records(out)
    assert {x["status"] for x in recs} == {"ok"}
    measured = {x["metric"] for x in recs}
    assert {"verified_ibp@linf:0.0001", "verified_crown@linf:0.0001", "pgd@linf:0.0001"} <= measured
    assert {x["method"] for x in recs if x["metric"].startswith("verified")} == {"crop", "crop-certified"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["widar", "extrasensory-raw"])
def test_certify_the_large_inputs(env, tmp_path, name):
    """CROWN through 2-D convolutions (WIDAR) and 800-sample 1-D convolutions takes minutes."""
    root = env[name]
    user = "0" if name == "widar" else "80"
    scenario = "widar:1" if name == "widar" else "extrasensory:1"
    out = tmp_path / "out"
    r = run(
        *("bench", "--dataset", name, "--root", root, "--scenario", scenario, "--users", user),
        *("--methods", "crop,crop-certified", "--certify", "eps=0.0001,steps=2", "--config", env["config"]),
        *("--out", out, "--quiet"),
    )
    assert r.exit_code == 0, r.output
    assert {x["status"] for x in records(out)} == {"ok"}


# ---------------------------------------------------------------- issue 23: the loaders on the real files


def run_main(*args, cache=None, monkeypatch=None):
    """``crop ARGS`` as the console script runs it (warnings as ``crop: warning:`` lines):
    exit code, stdout, stderr lines."""
    import contextlib
    import io

    from crop.cli import run as crop_main

    if cache is not None:
        monkeypatch.setenv("CROP_CACHE_DIR", str(cache))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = crop_main([str(a) for a in args])
    torch.set_num_threads(1)
    return code, out.getvalue(), err.getvalue().splitlines()


def test_unreadable_widar_files_are_one_warning_and_the_run_goes_on(env, tmp_path):
    """A 0-byte .mat ended the run with 'crop: internal error: MatReadError ...' (exit 1)."""
    root = write_replica("widar", tmp_path / "w", file_users=(1, 2, 3), damaged=("empty", "empty-array"))
    out = tmp_path / "out"
    code, _, err = run_main(
        *("bench", "--dataset", "widar", "--root", root, "--users", "0", "--scenario", "widar:1"),
        *("--methods", "generic", "--config", env["config"], "--out", out, "--quiet"),
    )
    assert code == 0, err
    (line,) = err
    assert line.startswith(f"crop: warning: widar: skipped 2 unreadable files under {root}")
    assert ", first: " in line and "internal error" not in line
    assert {x["status"] for x in records(out)} == {"ok"}


def test_user_without_usable_rows_is_refused_by_name(env, tmp_path):
    root = write_replica("extrasensory", tmp_path / "es", per_cell=3, unusable_user=True)
    code, _, err = run_main(
        *("bench", "--dataset", "extrasensory", "--root", root, "--users", "4444"),
        *("--config", env["config"], "--out", tmp_path / "out", "--quiet"),
    )
    assert code == 2 and len(err) == 2, err
    assert err[0].startswith("crop: warning: extrasensory: 1 of 6 users under") and ES_UNUSABLE_USER in err[0]
    assert err[1].startswith(f"crop: error: extrasensory user '4444' ({ES_UNUSABLE_USER}) exists under {root}")
    assert "but has no usable rows: no row labelled walking or sitting" in err[1] and "no UUID" not in err[1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["bench", "personalize"])
def test_empty_context_is_refused_before_any_training_or_write(env, tmp_path, monkeypatch, command):
    """It was found after the generic model was trained, leaving bench.json and generics.jsonl."""
    root = write_replica("extrasensory", tmp_path / "es", per_cell=3, without={ES_USERS[1]: ("hand",)})
    cache, out = tmp_path / "cache", tmp_path / "out"
    who = ("--users", "9d") if command == "bench" else ("--user", "9d")
    code, _, err = run_main(
        *(command, "--dataset", "extrasensory", "--root", root, *who, "--scenario", "extrasensory:2"),
        *("--config", env["config"], "--out", out),
        cache=cache,
        monkeypatch=monkeypatch,
    )
    assert code == 2 and len(err) == 1, err
    assert not out.exists() and not (cache / "generic").exists()  # nothing written, no generic model trained
    assert err[0] == (
        f"crop: error: extrasensory user {ES_USERS[1]}, scenario extrasensory:2: no samples in the unseen context "
        "hand (empty context; this user has: bag, pocket)"
    )


def test_cpu_preset_and_the_paper_presets_cost_note(env, tmp_path):
    from crop.bench.datasets import generic_config, method_config
    from crop.data.datasets.presets import CPU_GENERIC, CPU_PERSONALIZATION, GENERIC, PERSONALIZATION, cost_note

    assert set(CPU_GENERIC) == set(GENERIC) and set(CPU_PERSONALIZATION) == set(PERSONALIZATION)
    cpu = method_config("extrasensory", "crop", preset="cpu")
    paper = method_config("extrasensory", "crop")
    assert (cpu.initial.epochs, cpu.final.epochs) == (20, 20) and (paper.initial.epochs, paper.final.epochs) == (
        600,
        1000,
    )
    assert (cpu.alpha, cpu.tau, cpu.k, cpu.k_step) == (paper.alpha, paper.tau, paper.k, paper.k_step)
    assert (
        generic_config("widar", preset="cpu").epochs == 20
        and method_config("stress", "crop", preset="cpu").k_step == 0.01
    )
    # --preset cpu reaches bench.json (every method and the generic training), --config still overrides it
    out = tmp_path / "cpu"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[generic-training]\nepochs = 2\n[crop]\ninitial = { epochs = 3 }\n")
    r = run(
        *("bench", "--dataset", "stress", "--root", env["stress"], "--users", "1", "--scenario", "stress:1"),
        *("--methods", "generic", "--preset", "cpu", "--config", cfg, "--out", out),
    )
    assert r.exit_code == 0, r.output
    assert "note: the paper's" not in r.output
    settings = json.loads((out / "bench.json").read_text())
    assert settings["generic_training"]["epochs"] == 2 and settings["generic_training"]["max_lr"] == 1e-3
    # the paper's preset: one note line up front, with the epochs it trains
    r = run(
        *("bench", "--dataset", "stress", "--root", env["stress"], "--users", "1", "--scenario", "stress:1"),
        *("--methods", "generic", "--config", env["config"], "--out", tmp_path / "paper"),
    )
    assert r.exit_code == 0, r.output
    note = "note: the paper's stress preset trains 1000 epochs per generic model and 2000 per method, user and"
    assert note in r.output.splitlines()[0]
    es = cost_note("extrasensory-raw")
    assert "\n" not in es and "measured about 14 min per generic model" in es and cost_note("npz") is None
    for args, pattern in [
        (("--dataset", "hapt", "--scenario", "hapt-session:1"), "--preset cpu applies to the paper's datasets"),
        (("--dataset", "stress", "--root", env["stress"], "--preset", "gpu"), "--preset must be one of paper, cpu"),
    ]:
        r = run("bench", *args, *([] if "--preset" in args else ["--preset", "cpu"]), "--out", tmp_path / "x")
        assert_one_line_error(r, pattern)
    assert not (tmp_path / "x").exists()

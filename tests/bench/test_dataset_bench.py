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
from crop.data.datasets.replica import ES_USERS, write_replica

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

"""The benchmark runner: records, resume after a crash, determinism, tables."""

import json

import pytest

from crop.bench.runner import BenchSpec, run_bench
from crop.bench.store import ResultStore
from crop.data.scenarios import parse_scenarios
from crop.personalization.crop import CRoPConfig
from crop.personalization.finetune import FinetuneConfig
from crop.personalization.loop import TrainConfig
from crop.report.tables import performance, render_markdown, summary_table

FAST = {
    "crop": CRoPConfig(initial=TrainConfig(epochs=3, select="last"), final=TrainConfig(epochs=2, include_initial=True)),
    "finetune": FinetuneConfig(TrainConfig(epochs=3)),
}


def spec(out, methods=("generic", "finetune", "crop"), scenario="hapt-session:1", hook=None):
    return BenchSpec(parse_scenarios(scenario), [2], [0], list(methods), out, configs=FAST, unit_hook=hook)


def lines(path):
    return sorted(path.read_text().splitlines())


def test_records_have_the_documented_fields(tmp_path):
    run_bench(spec(tmp_path), progress=False)
    records = ResultStore(tmp_path / "results.jsonl").load()
    assert {r["method"] for r in records} == {"generic", "finetune", "crop"}
    for r in records:
        assert {"dataset", "scenario", "user", "seed", "method", "context", "context_name", "metric", "value"} <= set(r)
        assert r["context"] in ("available", "unseen")
    crop_records = [r for r in records if r["method"] == "crop"]
    assert all(0 <= r["prune_amount"] < 1 for r in crop_records)
    assert {r["metric"] for r in records} == {"balanced_accuracy", "accuracy", "f1"}


def test_interrupted_bench_resumes_to_the_same_results(tmp_path):
    full = tmp_path / "full"
    run_bench(spec(full), progress=False)

    crashed = tmp_path / "crashed"
    calls = []

    def die_on_third(base, model, us):
        calls.append(base["method"])
        if len(calls) == 3:
            raise KeyboardInterrupt  # like a kill in the middle of the third unit
        return []

    with pytest.raises(KeyboardInterrupt):
        run_bench(spec(crashed, hook=die_on_third), progress=False)
    # a torn line as left by a crash during a write
    with (crashed / "results.jsonl").open("a") as f:
        f.write('{"dataset": "hapt", "scenario": "hapt-ses')
    assert {r["method"] for r in ResultStore(crashed / "results.jsonl").load()} == {"generic", "finetune"}

    run_bench(spec(crashed), progress=False)
    assert lines(crashed / "results.jsonl") == lines(full / "results.jsonl")

    # a second run on a finished directory does nothing
    before = (crashed / "results.jsonl").read_bytes()
    run_bench(spec(crashed), progress=False)
    assert (crashed / "results.jsonl").read_bytes() == before


def test_same_command_same_seed_identical_results(tmp_path):
    run_bench(spec(tmp_path / "a"), progress=False)
    run_bench(spec(tmp_path / "b"), progress=False)
    assert (tmp_path / "a" / "results.jsonl").read_bytes() == (tmp_path / "b" / "results.jsonl").read_bytes()


def test_failed_method_is_recorded_with_reason(tmp_path):
    def broken(base, model, us):
        raise RuntimeError("the method broke: nope")

    run_bench(spec(tmp_path, methods=("generic",), hook=broken), progress=False)
    (record,) = ResultStore(tmp_path / "results.jsonl").load()
    assert record["status"] == "failed" and "nope" in record["error"]
    assert "Failed runs" in render_markdown([record])


@pytest.mark.parametrize(
    "change",
    [
        {"configs": {"crop": CRoPConfig(penalty="nope")}},
        {"configs": {"finetune": FinetuneConfig(TrainConfig(epochs=0))}},
        {"configs": {"finetune": FinetuneConfig(TrainConfig(lr=1e9))}},
        {"seeds": [0, -3]},
        {"users": [2, 2]},
        {"users": []},
        {"methods": ["generic", "generic"]},
        {"scenarios": parse_scenarios("hapt-session:1") * 2},
        {"workers": 0},
        {"tune_budget": 3},
        {"metric": "bogus"},
    ],
)
def test_invalid_spec_is_refused_before_anything_is_written(tmp_path, change):
    from crop.errors import CropError

    bad = spec(tmp_path / "out", methods=("generic", "finetune"))
    for key, value in change.items():
        setattr(bad, key, value)
    with pytest.raises(CropError):
        run_bench(bad, progress=False)
    assert not (tmp_path / "out").exists()


def test_scenario_family_runs_both_scenarios_and_tables(tmp_path):
    run_bench(spec(tmp_path, scenario="hapt-faults"), progress=False)
    records = ResultStore(tmp_path / "results.jsonl").load()
    assert {r["scenario"] for r in records} == {"hapt-faults:1", "hapt-faults:2"}
    unseen = {r["context_name"] for r in records if r["context"] == "unseen"}
    assert unseen == {"noise", "bias-drift", "dead-gyro", "saturation"}
    perf = performance(records)
    # A(M, Cu) is the mean over the unseen contexts
    vals = [
        100 * r["value"]
        for r in records
        if r["method"] == "crop"
        and r["scenario"] == "hapt-faults:1"
        and r["context"] == "unseen"
        and r["metric"] == "balanced_accuracy"
    ]
    assert perf[("hapt-faults:1", "crop", 2, 0)]["unseen"] == pytest.approx(sum(vals) / 4)
    table = summary_table(perf)
    assert table.header[1:] == ["hapt-faults:1 Δ_P", "hapt-faults:1 Δ_G", "hapt-faults:2 Δ_P", "hapt-faults:2 Δ_G"]
    # Delta_P of crop recomputed by hand
    p, g = perf[("hapt-faults:1", "crop", 2, 0)], perf[("hapt-faults:1", "generic", 2, 0)]
    expected = (p["available"] - g["available"]) + (p["unseen"] - g["unseen"])
    row = next(r for r in table.rows if r[0] == "crop")
    assert float(row[1]) == pytest.approx(expected, abs=0.006)
    json.dumps(records)


def test_resuming_with_another_config_is_refused(tmp_path):
    from crop.errors import CropError

    run_bench(spec(tmp_path, methods=("generic",)), progress=False)
    settings = json.loads((tmp_path / "bench.json").read_text())
    assert settings["configs"]["generic"] == {}
    other = BenchSpec(
        parse_scenarios("hapt-session:1"),
        [2],
        [0],
        ["crop"],
        tmp_path,
        configs={"crop": CRoPConfig(tau=0.2, initial=TrainConfig(epochs=1))},
    )
    run_bench(other, progress=False)  # a new method is fine
    changed = BenchSpec(
        parse_scenarios("hapt-session:1"),
        [2],
        [0],
        ["crop"],
        tmp_path,
        configs={"crop": CRoPConfig(tau=0.1, initial=TrainConfig(epochs=1))},
    )
    with pytest.raises(CropError, match="another config"):
        run_bench(changed, progress=False)


def test_tuned_bench_records_the_chosen_values(tmp_path):
    s = spec(tmp_path, methods=("generic", "crop"))
    s.tune, s.tune_budget = True, 2
    run_bench(s, progress=False)
    records = ResultStore(tmp_path / "results.jsonl").load()
    crop_records = [r for r in records if r["method"] == "crop"]
    assert crop_records and all(
        set(r["tuned"]) <= {"initial.lr+final.lr", "alpha", "tau"} and r["tuned"] for r in crop_records
    )
    assert all("tuned" not in r for r in records if r["method"] == "generic")


def test_settings_guard_treats_options_an_old_directory_lacks_as_their_defaults(tmp_path):
    from crop.bench.runner import _record_settings
    from crop.certify.robustness import parse_robustness_spec
    from crop.errors import CropError

    def old_directory(certify=None):
        (tmp_path / "bench.json").unlink(missing_ok=True)
        base = BenchSpec(parse_scenarios("hapt-session:1"), [2], [0], ["finetune"], tmp_path, certify=certify)
        _record_settings(base)
        settings = json.loads((tmp_path / "bench.json").read_text())
        del settings["configs"]["finetune"]["train"]["noise_sigma"]  # written before the option existed
        if certify is not None:
            del settings["certify"]["lipschitz"]
        (tmp_path / "bench.json").write_text(json.dumps(settings))

    old_directory()
    _record_settings(BenchSpec(parse_scenarios("hapt-session:1"), [2], [0], ["finetune"], tmp_path))  # default: resumes
    old_directory()
    noisy = FinetuneConfig(TrainConfig(noise_sigma=0.1))
    with pytest.raises(CropError, match="another config"):
        _record_settings(
            BenchSpec(parse_scenarios("hapt-session:1"), [2], [0], ["finetune"], tmp_path, configs={"finetune": noisy})
        )
    old_directory(parse_robustness_spec("eps=0.01"))
    same = BenchSpec(
        parse_scenarios("hapt-session:1"), [2], [0], ["finetune"], tmp_path, certify=parse_robustness_spec("eps=0.01")
    )
    _record_settings(same)
    old_directory(parse_robustness_spec("eps=0.01"))
    with pytest.raises(CropError, match="another certify"):
        _record_settings(
            BenchSpec(
                parse_scenarios("hapt-session:1"),
                [2],
                [0],
                ["finetune"],
                tmp_path,
                certify=parse_robustness_spec("eps=0.01,lipschitz=1"),
            )
        )


def test_scenarios_that_share_a_personalization_give_the_records_of_separate_runs(tmp_path):
    """hapt-session:1 and hapt-faults:1 share generic model, user, available context and seed:
    personalized once, evaluated twice, with the records two separate runs give."""
    from crop.bench.runner import group_units, plan_units

    both = BenchSpec(
        parse_scenarios("hapt-session:1,hapt-faults:1"), [2], [0], ["finetune"], tmp_path / "both", configs=FAST
    )
    groups = group_units(plan_units(both))
    assert len(groups) == 1 and [s.name for s in groups[0].scenarios] == ["hapt-session:1", "hapt-faults:1"]
    run_bench(both, progress=False)
    for name in ("hapt-session:1", "hapt-faults:1"):
        alone = BenchSpec(parse_scenarios(name), [2], [0], ["finetune"], tmp_path / name, configs=FAST)
        run_bench(alone, progress=False)
        mine = [r for r in ResultStore(tmp_path / "both" / "results.jsonl").load() if r["scenario"] == name]
        assert mine == ResultStore(tmp_path / name / "results.jsonl").load()
    timing = [json.loads(line) for line in (tmp_path / "both" / "timings.jsonl").read_text().splitlines()]
    assert len(timing) == 1 and timing[0]["scenarios"] == ["hapt-session:1", "hapt-faults:1"]


def test_worker_processes_write_the_same_results_file(tmp_path):
    one = spec(tmp_path / "one", methods=("generic", "finetune"))
    run_bench(one, progress=False)
    two = spec(tmp_path / "two", methods=("generic", "finetune"))
    two.seeds = [0]
    two.workers = 2
    run_bench(two, progress=False)
    assert (tmp_path / "one" / "results.jsonl").read_bytes() == (tmp_path / "two" / "results.jsonl").read_bytes()


def test_development_protocol_serves_each_user_with_the_model_that_validated_them():
    from crop.bench.runner import serving_fold
    from crop.errors import CropError
    from crop.generic import fold_of, fold_users, validation_fold

    for user in range(1, 31):
        assert serving_fold(user) == fold_of(user)
        dev = serving_fold(user, "development")
        assert dev != fold_of(user) and user in fold_users(validation_fold(dev))
    with pytest.raises(CropError, match="protocol"):
        serving_fold(2, "holdout")

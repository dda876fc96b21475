"""Sensor-fault methods: co-teaching and modality dropout train, route around a flagged sensor,
and never see faulted data unless they mask it themselves."""

import numpy as np
import pytest
import torch

from crop.bench.runner import BenchSpec, run_bench
from crop.bench.store import ResultStore
from crop.data import hapt
from crop.data.faults import apply_fault, fault_rng
from crop.data.scenarios import parse_scenarios
from crop.data.sensing import ContextSplit, SensingData, stratified_split
from crop.errors import CropError
from crop.generic import kind_for_method
from crop.models.hapt import HAPTNet
from crop.models.io import load_model, save_model
from crop.models.modality import CoTeachNet, MaskedHAPTNet
from crop.models.utils import predict, predict_logits
from crop.personalization.coteach import CoTeachConfig, ModalityDropoutConfig
from crop.personalization.finetune import FinetuneConfig
from crop.personalization.loop import TrainConfig
from crop.personalization.registry import get_method, register_method

FAST = TrainConfig(epochs=2)


@pytest.fixture(scope="module")
def split() -> ContextSplit:
    return stratified_split(hapt.load_session(2, 1), seed=0)


def _standardized(model, stats_from: np.ndarray):
    module = model.standardize if isinstance(model, CoTeachNet) else model.net[0]
    flat = stats_from.transpose(1, 0, 2).reshape(6, -1)
    module.mean.copy_(torch.as_tensor(flat.mean(1)).reshape(6, 1))
    module.std.copy_(torch.as_tensor(flat.std(1)).reshape(6, 1))
    return model


def _dead(split: ContextSplit, name: str) -> ContextSplit:
    def kill(d: SensingData) -> SensingData:
        return SensingData(apply_fault(name, d.X, 1.0, fault_rng(0, name, 1.0)), d.y, d.name)

    return ContextSplit(kill(split.train), kill(split.val), kill(split.test))


def test_coteach_trains_and_routes_a_flagged_sensor_to_its_emulation(split):
    torch.manual_seed(0)
    generic = _standardized(CoTeachNet(), split.train.X)
    result = get_method("coteach").fit(generic, split, CoTeachConfig(FAST), seed=0)
    model = result.model
    assert not torch.equal(model.acc_from_gyro[0].weight, generic.acc_from_gyro[0].weight)  # the emulators learned
    X = apply_fault("dead-gyro", split.test.X, 1.0, fault_rng(0, "dead-gyro", 1.0))
    logits = predict_logits(model, X)
    with torch.no_grad():
        acc, _ = model.embed_sensors(torch.as_tensor(X))
        expected = model.classify(acc, model.gyro_from_acc(acc))
    assert torch.allclose(logits, expected, atol=1e-5)
    clean = predict_logits(model, split.test.X)
    with torch.no_grad():
        assert torch.allclose(clean, model.classify(*model.embed_sensors(torch.as_tensor(split.test.X))), atol=1e-5)


@pytest.mark.parametrize("dead", ["dead-gyro", "dead-acc"])
def test_coteach_with_one_sensor_masked_in_the_persons_data_still_trains_and_predicts(split, dead):
    torch.manual_seed(0)
    generic = _standardized(CoTeachNet(), split.train.X)
    masked = _dead(split, dead)
    result = get_method("coteach").fit(generic, masked, CoTeachConfig(FAST), seed=0)
    assert all(np.isfinite(h["train_loss"]) for h in result.info["history"])
    pred = predict(result.model, masked.test.X)
    assert pred.shape == masked.test.y.shape and set(pred.tolist()) <= set(range(6))


def test_modality_dropout_wraps_a_plain_hapt_model_and_masks_the_flagged_sensor(split):
    generic = HAPTNet().eval()
    result = get_method("modality-dropout").fit(generic, split, ModalityDropoutConfig(FAST), seed=0)
    model = result.model
    assert isinstance(model, MaskedHAPTNet)
    X = apply_fault("dead-acc", split.test.X, 1.0, fault_rng(0, "dead-acc", 1.0))
    filled = X.copy()
    filled[:, 0:3] = model.mean[0:3].numpy()
    assert torch.allclose(predict_logits(model, X), predict_logits(model.net, filled), atol=1e-5)


def test_the_networks_round_trip_through_model_files(tmp_path):
    for model in (CoTeachNet(width=8), MaskedHAPTNet(width=8)):
        path = save_model(model.eval(), tmp_path / f"{type(model).__name__}.safetensors")
        back = load_model(path)
        x = torch.randn(3, 6, 128)
        assert type(back) is type(model) and torch.equal(back(x), model(x))


def test_coteach_refuses_a_plain_generic_model(split):
    with pytest.raises(CropError, match="hapt-coteach"):
        get_method("coteach").fit(HAPTNet(), split, CoTeachConfig(FAST), seed=0)


def test_each_method_gets_its_generic_kind():
    assert kind_for_method("hapt", "coteach") == "hapt-coteach"
    assert kind_for_method("hapt-rot", "modality-dropout") == "hapt-rot-dropout"
    assert kind_for_method("hapt", "crop") == "hapt"
    with pytest.raises(CropError, match="norm"):
        kind_for_method("hapt-nobn", "coteach")


@register_method("spy-available", FinetuneConfig, "test only: records what personalization receives")
def _spy(generic, available, config, *, seed=0, metric="balanced_accuracy"):
    _spy.seen.append(available)
    return get_method("generic").fit(generic, available, config, seed=seed, metric=metric)


_spy.seen = []


def test_faulted_data_never_reaches_personalization(tmp_path):
    _spy.seen.clear()
    spec = BenchSpec(
        parse_scenarios("hapt-faults:1"),
        [2],
        [0],
        ["spy-available"],
        tmp_path,
        faults=[("dead-gyro", 1.0), ("noise", 0.4), ("spikes", 0.05)],
        workers=1,
    )
    run_bench(spec, progress=False)
    expected = stratified_split(hapt.load_session(2, 1), seed=0)
    (seen,) = _spy.seen
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(seen, part).X, getattr(expected, part).X)
    records = ResultStore(tmp_path / "results.jsonl").load()
    assert {r["context_name"] for r in records if r["context"] == "unseen"} == {
        "dead-gyro=1",
        "noise=0.4",
        "spikes=0.05",
    }
    with pytest.raises(CropError, match="other --faults"):
        run_bench(
            BenchSpec(parse_scenarios("hapt-faults:1"), [2], [0], ["spy-available"], tmp_path, faults=[("noise", 0.1)]),
            progress=False,
        )


def test_faults_need_a_faults_scenario(tmp_path):
    with pytest.raises(CropError, match="hapt-faults"):
        run_bench(
            BenchSpec(parse_scenarios("hapt-session:1"), [2], [0], ["generic"], tmp_path, faults=[("noise", 0.1)]),
            progress=False,
        )

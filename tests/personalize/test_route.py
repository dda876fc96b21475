"""Per-window routing between the personalized and the generic model (crop.personalization.route)."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import crop
from crop.data.sensing import stratified_split
from crop.models.hapt import HAPTNet
from crop.models.io import load_model, save_model
from crop.models.routed import RoutedModel, input_moments, knn_distance
from crop.models.utils import clone_model, predict_logits
from crop.personalization.registry import config_from_dict, get_method
from crop.personalization.route import RouteConfig, route
from tests.conftest import make_data

QUICK = {"initial": {"epochs": 2, "lr": 1e-2, "batch_size": 16}, "final": {"epochs": 2, "lr": 1e-2, "batch_size": 16}}


def hapt_like(seed=0, n=120):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 6
    X = rng.normal(0.0, 0.2, size=(n, 6, 128)).astype(np.float32)
    X[np.arange(n), y, :] += 1.0
    return crop.SensingData(X, y, "hapt-like")


def routed_pair(seed=0):
    torch.manual_seed(seed)
    generic = HAPTNet(width=8).eval()
    personal = clone_model(generic)
    with torch.no_grad():
        personal[-1].weight.mul_(-1.0)  # disagrees with the generic model everywhere
    split = stratified_split(hapt_like(seed), seed)
    model = RoutedModel.build(generic, personal, split.train.X, split.val.X, RouteConfig())
    return model, generic, personal, split


def test_knn_distance_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    q, r = torch.tensor(rng.normal(size=(7, 5))), torch.tensor(rng.normal(size=(11, 5)))
    direct = torch.cdist(q, r).sort(1).values[:, :3].mean(1)
    assert torch.allclose(knn_distance(q, r, 3), direct, atol=1e-6)


def test_input_moments_are_per_channel_mean_and_log_spread():
    x = torch.randn(4, 3, 50)
    m = input_moments(x, torch.full((3,), 1e-3))
    assert m.shape == (4, 6)
    assert torch.allclose(m[:, :3], x.mean(-1), atol=1e-6)
    assert torch.allclose(m[:, 3:], torch.log(x.std(-1, unbiased=False) + 1e-3), atol=1e-5)
    assert input_moments(torch.randn(4, 7), torch.ones(1)).shape == (4, 7)  # feature vectors: themselves


def test_enrollment_windows_go_to_the_personalized_model_and_far_windows_to_the_generic_one():
    model, generic, personal, split = routed_pair()
    w_train = model.personal_weight(split.train.X)
    assert w_train.mean() > 0.85 and (w_train <= 1).all()
    far = split.test.X * 3.0 + 2.0  # a rescaled, shifted sensor: unlike anything enrolled
    w_far = model.personal_weight(far)
    assert w_far.max() < 1e-3
    out = predict_logits(model, far)
    assert torch.allclose(out, F.log_softmax(predict_logits(generic, far), 1), atol=1e-3)
    near = split.train.X[w_train == 1]
    assert torch.allclose(predict_logits(model, near), F.log_softmax(predict_logits(personal, near), 1), atol=1e-5)


def test_the_blend_is_a_probability_mixture_with_the_documented_weight():
    model, generic, personal, split = routed_pair()
    X = np.concatenate([split.test.X, split.test.X * 1.3])
    w = torch.tensor(model.personal_weight(X)).unsqueeze(1)
    pg, pp = F.softmax(predict_logits(generic, X), 1), F.softmax(predict_logits(personal, X), 1)
    assert torch.allclose(predict_logits(model, X).exp(), w * pp + (1 - w) * pg, atol=1e-5)
    assert ((w > 0.01) & (w < 0.99)).any()  # some windows are blended, not switched


def test_floor_and_sharpness_shape_the_weight():
    _, generic, personal, split = routed_pair()
    far = split.test.X * 3.0 + 2.0
    floored = RoutedModel.build(generic, personal, split.train.X, split.val.X, RouteConfig(floor=0.3))
    assert floored.personal_weight(far).min() == pytest.approx(0.3, abs=1e-4)
    soft = RoutedModel.build(generic, personal, split.train.X, split.val.X, RouteConfig(sharpness=0.0))
    assert np.allclose(soft.personal_weight(far), 1.0)  # sharpness 0: never leaves the personalized model


def test_a_routed_model_saves_loads_and_reproduces_bytes(tmp_path):
    model, *_, split = routed_pair()
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_model(model, a)
    save_model(routed_pair()[0], b)  # built again from the same inputs
    assert a.read_bytes() == b.read_bytes()
    loaded = load_model(a)
    assert isinstance(loaded, RoutedModel) and loaded.spaces == model.spaces
    assert torch.equal(predict_logits(loaded, split.test.X), predict_logits(model, split.test.X))


def test_crop_routes_by_default_and_crop_paper_and_the_ablation_do_not(tiny_model, tiny_split):
    routed = crop.personalize(tiny_model, tiny_split, QUICK, seed=0)
    assert isinstance(routed.model, RoutedModel)
    assert 0.5 < routed.info["route"]["weight_val"] <= 1.0
    for k, v in routed.states["final"].items():  # the routed model serves the final CRoP network
        assert torch.equal(routed.model.personal.state_dict()[k], v)
    for method in ("crop-paper", "crop-unrouted"):
        plain = crop.personalize(tiny_model, tiny_split, QUICK, method=method, seed=0)
        assert not isinstance(plain.model, RoutedModel) and "route" not in plain.info
    unrouted = crop.personalize(tiny_model, tiny_split, QUICK, method="crop-unrouted", seed=0)
    for k, v in unrouted.model.state_dict().items():  # routing changes nothing before it
        assert torch.equal(routed.states["final"][k], v)


def test_finetune_routed_routes_the_finetuned_model(tiny_model, tiny_split):
    r = crop.personalize(tiny_model, tiny_split, {"train": {"epochs": 2}}, method="finetune-routed", seed=0)
    plain = crop.personalize(tiny_model, tiny_split, {"train": {"epochs": 2}}, method="finetune", seed=0)
    assert isinstance(r.model, RoutedModel) and not isinstance(plain.model, RoutedModel)
    for k, v in plain.model.state_dict().items():
        assert torch.equal(r.model.personal.state_dict()[k], v)


def test_routing_is_a_pure_function_of_its_inputs(tiny_model, tiny_split):
    a = crop.personalize(tiny_model, tiny_split, QUICK, seed=1).model.state_dict()
    b = crop.personalize(tiny_model, tiny_split, QUICK, seed=1).model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"route": {"spaces": ["generic", "magic"]}}, "spaces"),
        ({"route": {"spaces": []}}, "spaces"),
        ({"route": {"spaces": ["input", "input"]}}, "repeat"),
        ({"route": {"quantile": 0.0}}, "quantile"),
        ({"route": {"neighbours": 0}}, "neighbours"),
        ({"route": {"floor": 1.5}}, "floor"),
        ({"route": {"sharpness": -1.0}}, "sharpness"),
    ],
)
def test_bad_routing_options_are_refused_before_training(tiny_model, tiny_split, values, match):
    with pytest.raises(crop.CropError, match=match):
        crop.personalize(tiny_model, tiny_split, {**QUICK, **values}, seed=0)


def test_route_config_fields_are_validated_like_every_config():
    cfg = config_from_dict(get_method("crop").config_class, {"route": {"neighbours": 3, "spaces": ["input"]}})
    assert cfg.route.neighbours == 3 and tuple(cfg.route.spaces) == ("input",)
    assert dataclasses.asdict(cfg.route)["enabled"] is True


def test_route_returns_the_model_itself_when_disabled():
    data = make_data()
    split = stratified_split(data, 0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    same, info = route(net, net, split.train.X, split.val.X, RouteConfig(enabled=False))
    assert same is net and info == {}


def test_onnx_export_of_a_routed_model_matches_pytorch(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from crop.deploy.export import export_model

    model, *_ = routed_pair()
    result = export_model(model, tmp_path / "routed.onnx")
    assert result.max_abs_diff < 1e-4 and result.metadata["architecture"] == "RoutedModel"


def test_sample_sharing_finds_overlapping_sliding_windows_only():
    from crop.models.routed import sample_sharing

    rng = np.random.default_rng(0)
    signal = rng.normal(size=(3, 400)).astype(np.float32)
    windows = np.stack([signal[:, s : s + 64] for s in range(0, 400 - 64, 32)])  # 50 % overlap
    shared = sample_sharing(windows)
    n = len(windows)
    expected = np.zeros((n, n), dtype=bool)
    for i in range(n - 1):
        expected[i, i + 1] = expected[i + 1, i] = True
    assert np.array_equal(shared, expected)
    assert not sample_sharing(rng.normal(size=(5, 12)).astype(np.float32)).any()  # feature vectors
    flat = np.zeros((12, 3, 16), dtype=np.float32)  # a constant slice in every window is no overlap
    flat[:, 0] = rng.normal(size=(12, 16))
    assert not sample_sharing(flat).any()


def test_reference_calibration_leaves_out_overlapping_neighbours():
    from crop.models.routed import leave_out_knn_distance

    ref = torch.tensor([[0.0], [0.1], [5.0], [5.2]])
    excluded = np.zeros((4, 4), dtype=bool)
    assert torch.allclose(leave_out_knn_distance(ref, excluded, 1), torch.tensor([0.1, 0.1, 0.2, 0.2]), atol=1e-3)
    excluded[0, 1] = excluded[1, 0] = True  # 0 and 1 share samples: each must look further
    d = leave_out_knn_distance(ref, excluded, 1)
    assert torch.allclose(d, torch.tensor([5.0, 4.9, 0.2, 0.2]), atol=1e-3)


def test_a_model_routing_cannot_read_is_refused_before_training(tiny_split):
    class NoLinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(3, 8, 3)
            self.out = torch.nn.Conv1d(8, 3, 14)

        def forward(self, x):
            return self.out(torch.relu(self.conv(x))).flatten(1)

    calls = []
    net = NoLinear()
    net.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(crop.CropError, match="nn.Linear"):
        crop.personalize(net, tiny_split, QUICK, seed=0)
    assert len(calls) <= 1  # refused after the shape probe, before any training step
    r = crop.personalize(net, tiny_split, {**QUICK, "route": {"spaces": ["input"]}}, seed=0)  # input moments only
    assert r.model.spaces == ("input",)


def test_a_routed_model_is_verified_only_where_both_networks_are():
    from crop.certify.margin import verify

    model, generic, personal, split = routed_pair()
    X, y = torch.tensor(split.test.X[:12]), torch.tensor(split.test.y[:12])
    both = verify(model, X, y, 0.001, method="ibp")
    g, p = verify(generic, X, y, 0.001, method="ibp"), verify(personal, X, y, 0.001, method="ibp")
    assert np.array_equal(both["ibp"], g["ibp"] & p["ibp"])
    assert np.allclose(both["margin"], np.minimum(g["margin"], p["margin"]))

"""Sparse certified personalization: gradual pruning, the crop-certified method, sparse files,
robustness records of ``crop bench --certify`` and Gaussian-noise training."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import crop
from crop.certify.gradual_prune import FixedMask, GradualMagnitudePrune, density_of, gmp_density
from crop.certify.method import CertifiedConfig
from crop.certify.robustness import RobustnessSpec, parse_robustness_spec, robustness_measures
from crop.certify.sparse import load_sparse_model, save_sparse, to_sparse_inference
from crop.data.sensing import stratified_split
from crop.errors import CropError
from crop.models import HAPTNet, save_model
from crop.personalization.loop import TrainConfig, train
from crop.personalization.prune import prunable_names
from tests.conftest import make_data


def seq_net(seed: int = 0, channels: int = 3, length: int = 16, n_classes: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(channels, 6, 3, padding=1),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * length, 24),
        nn.ReLU(),
        nn.Linear(24, n_classes),
    )


def test_gmp_schedule_is_cubic_and_monotone():
    assert gmp_density(0, 10, 20, 0.1) == 1.0
    assert gmp_density(20, 10, 20, 0.1) == pytest.approx(0.1)
    assert gmp_density(15, 10, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5**3)
    values = [gmp_density(t, 10, 20, 0.1) for t in range(30)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_gradual_pruning_masks_only_shrink_and_pruned_weights_stay_zero():
    model = seq_net()
    split = stratified_split(make_data(), seed=0)
    names = prunable_names(model, exclude_last=True)
    pruner = GradualMagnitudePrune(model, names, 0.2, start=2, end=8)
    seen = []

    class Watch(FixedMask):  # records masks after every step
        def __init__(self):
            pass

        def after_backward(self, model):
            pass

        def after_step(self, model):
            seen.append({n: m.clone() for n, m in pruner.masks.items()})

    train(
        model,
        split.train,
        split.val,
        TrainConfig(epochs=4, lr=1e-2, batch_size=16, select="last"),
        hooks=[pruner, Watch()],
    )
    assert density_of(pruner.masks) == pytest.approx(0.2, abs=0.01)
    for before, after in zip(seen, seen[1:], strict=False):
        for n in names:
            assert not (after[n] & ~before[n]).any()  # nothing revived
    params = dict(model.named_parameters())
    for n in names:
        assert (params[n][~pruner.masks[n]] == 0).all()
    assert (params["6.weight"] != 0).all()  # the decision layer is never pruned


def test_crop_certified_is_sparse_and_reports_verified_accuracy():
    model = seq_net()
    generic_state = {k: v.clone() for k, v in model.state_dict().items()}
    split = stratified_split(make_data(), seed=0)
    config = CertifiedConfig(
        eps=0.05,
        density=0.25,
        robust=TrainConfig(epochs=4, lr=1e-2, batch_size=16, select="last"),
        final=TrainConfig(epochs=2, lr=1e-3, batch_size=16, include_initial=True),
    )
    result = crop.personalize(model, split, config, method="crop-certified", seed=0)
    info = result.info
    assert info["density"] == pytest.approx(0.25, abs=0.01)
    assert result.prune_amount == pytest.approx(1 - info["density"])
    params = dict(result.model.named_parameters())
    masks = info["masks"]
    for name, keep in masks.items():
        assert (params[name][~keep] == 0).all()  # no mixing: pruned positions are zero, not generic
        assert not torch.equal(params[name], generic_state[name])
    assert 0.0 <= info["verified_val"] <= info["clean_val"] <= 1.0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in generic_state.items())  # input untouched
    again = crop.personalize(model, split, config, method="crop-certified", seed=0)
    assert all(
        torch.equal(a, b)
        for a, b in zip(result.model.state_dict().values(), again.model.state_dict().values(), strict=True)
    )


def test_crop_certified_rejects_bad_config(tiny_split):
    with pytest.raises(CropError, match="density"):
        crop.personalize(seq_net(), tiny_split, {"density": 0.0}, method="crop-certified")
    with pytest.raises(CropError, match="bound"):
        crop.personalize(seq_net(), tiny_split, {"bound": "magic"}, method="crop-certified")


def _sparsify(model: nn.Module, density: float, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_((torch.rand(p.shape, generator=gen) < density).to(p.dtype))
    return model.eval()


def test_sparse_file_round_trip_is_exact_and_smaller(tmp_path):
    model = _sparsify(HAPTNet(), 0.1)
    dense = save_model(model, tmp_path / "dense.safetensors")
    sparse = save_sparse(model, tmp_path / "sparse.safetensors")
    assert sparse.stat().st_size < 0.5 * dense.stat().st_size
    loaded = load_sparse_model(sparse)  # architecture rebuilt from the file's metadata
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    with pytest.raises(CropError, match="do not fit"):
        load_sparse_model(sparse, seq_net())
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CropError, match="not a valid safetensors"):
        load_sparse_model(tmp_path / "bad.safetensors")


def test_sparse_inference_matches_dense():
    model = _sparsify(HAPTNet(), 0.2)
    fast = to_sparse_inference(model)
    assert any(type(m).__name__.startswith("Sparse") for m in fast.modules())
    x = torch.randn(5, 6, 128)
    torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)


def test_parse_robustness_spec():
    spec = parse_robustness_spec("eps=0.003,0.01,sigma=0.1,radius=0,0.05,n=200,steps=5")
    assert spec.eps == (0.003, 0.01) and spec.sigma == 0.1 and spec.radii == (0.0, 0.05)
    assert spec.n == 200 and spec.pgd_steps == 5
    assert parse_robustness_spec("sigma=0.2").smoothing_radii() == (0.0, 0.05, 0.1, 0.2)
    assert parse_robustness_spec("eps=0.1,lipschitz=1").lipschitz
    assert parse_robustness_spec("eps=0.1,lipschitz=fft").lipschitz == "fft"
    for text in ("eps=0.003,0.01,sigma=0.05,radius=0,0.1,n=200,lipschitz=fft", "eps=0.01,steps=0", "eps=0.2,norm=l2"):
        assert parse_robustness_spec(parse_robustness_spec(text).to_option()) == parse_robustness_spec(text)
    for bad, msg in [
        ("lipschitz=maybe", "not power, fft"),
        ("sigma=inf", "finite"),
        ("sigma=0.1,radius=nan", "finite"),
        ("eps=0.1,radius=0.1", "give sigma too"),
        ("eps=0.1,n=100", "give sigma too"),
    ]:
        with pytest.raises(CropError, match=msg):
            parse_robustness_spec(bad)
    for bad, msg in [
        ("eps=x", "not a number"),
        ("foo=1", "unknown --certify key"),
        ("0.1", "no key"),
        ("sigma=0", "sigma = 0.0 is not allowed"),
        ("norm=l3", "norm"),
        ("eps=0.1,eps=0.2", "twice"),
    ]:
        with pytest.raises(CropError, match=msg):
            parse_robustness_spec(bad)


def test_robustness_measures_are_ordered_and_consistent():
    model = seq_net()
    split = stratified_split(make_data(), seed=0)
    train(model, split.train, split.val, TrainConfig(epochs=5, lr=1e-2, batch_size=16))
    data = split.test
    spec = RobustnessSpec(eps=(0.0, 0.05, 0.5), sigma=0.5, n0=20, n=200, pgd_steps=10, lipschitz="power")
    out = {m["metric"]: m["value"] for m in robustness_measures(model, data.X, data.y, spec, seed=0)}
    clean = float((model.eval()(torch.as_tensor(data.X)).argmax(1).numpy() == data.y).mean())
    assert out["pgd@linf:0"] == pytest.approx(clean)
    for eps in ("0", "0.05", "0.5"):
        both = out[f"verified@linf:{eps}"]
        assert both >= max(out[f"verified_ibp@linf:{eps}"], out[f"verified_crown@linf:{eps}"]) - 1e-12
        assert both <= out[f"pgd@linf:{eps}"] + 1e-12  # sound: no attack breaks a verified window
    assert out["verified@linf:0.5"] <= out["verified@linf:0.05"] <= out["verified@linf:0"]
    assert out["lipschitz@linf:0"] == pytest.approx(clean)
    assert out["lipschitz@linf:0.5"] <= out["lipschitz@linf:0.05"] <= out["lipschitz@linf:0"]
    for eps in ("0.05", "0.5"):
        assert out[f"lipschitz@linf:{eps}"] <= out[f"pgd@linf:{eps}"] + 1e-12  # sound as well
    smoothed = [out[f"smoothed@l2:{r}"] for r in ("0", "0.125", "0.25", "0.5")]
    assert smoothed == sorted(smoothed, reverse=True)
    again = {m["metric"]: m["value"] for m in robustness_measures(model, data.X, data.y, spec, seed=0)}
    assert again == out
    fft = RobustnessSpec(eps=(0.05,), pgd_steps=0, lipschitz="fft")
    guaranteed = {m["metric"]: m["value"] for m in robustness_measures(model, data.X, data.y, fft)}
    assert guaranteed["lipschitz@linf:0.05"] <= out["lipschitz@linf:0.05"] + 1e-12  # a larger L certifies less
    with pytest.raises(CropError, match="labels must lie in 0..2"):
        robustness_measures(model, data.X, data.y + 5, fft)


def test_noise_augmentation_is_seeded_and_changes_training():
    split = stratified_split(make_data(), seed=0)

    def fit(sigma):
        model = seq_net()
        train(model, split.train, split.val, TrainConfig(epochs=2, lr=1e-2, batch_size=16, noise_sigma=sigma), seed=3)
        return torch.cat([p.flatten() for p in model.parameters()])

    assert torch.equal(fit(0.3), fit(0.3))
    assert not torch.equal(fit(0.3), fit(0.0))
    with pytest.raises(CropError, match="noise_sigma"):
        fit(-1.0)


def test_bench_certify_adds_records_and_table(tmp_path):
    from typer.testing import CliRunner

    from crop.cli import app

    cfg = tmp_path / "fast.toml"
    cfg.write_text("[crop-certified.robust]\nepochs = 2\n[crop-certified.final]\nepochs = 1\n")
    out = tmp_path / "bench"
    args = [
        "bench",
        "--scenario",
        "hapt-session:1",
        "--users",
        "2",
        "--methods",
        "generic,crop-certified",
        "--config",
        str(cfg),
        "--certify",
        "eps=0.01,sigma=0.1,n=100,steps=3",
        "--out",
        str(out),
        "--quiet",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    metrics = {r["metric"] for r in records}
    assert {"verified@linf:0.01", "verified_ibp@linf:0.01", "pgd@linf:0.01", "smoothed@l2:0.1"} <= metrics
    certified = [r for r in records if r["method"] == "crop-certified" and r["metric"] == "verified@linf:0.01"]
    assert {r["context"] for r in certified} == {"available", "unseen"}
    assert "robustness" in (out / "table.md").read_text()
    assert (out / "robustness-hapt-session-1.png").stat().st_size > 10_000  # the verified/PGD figure
    other = CliRunner().invoke(app, args[:-5] + ["--certify", "eps=0.02", "--out", str(out), "--quiet"])
    assert other.exit_code == 2 and "another certify" in other.output
    assert np.isfinite([r["value"] for r in records]).all()

"""ONNX export: onnxruntime matches PyTorch within 1e-5, metadata travels, failures are one line."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from crop.errors import CropError
from crop.models import paper
from crop.models.hapt import HAPTNet
from crop.models.io import save_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from crop.deploy.export import (  # noqa: E402
    example_inputs,
    export_file,
    export_model,
    onnx_session,
    read_metadata,
    run_session,
)

PARITY = 1e-5


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random but not default weights and BatchNorm statistics, so parity is not trivial."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _parity(model: nn.Module, path, shape) -> float:
    x = example_inputs(model, shape, n=32, seed=5)
    with torch.no_grad():
        want = model.eval()(x).numpy()
    got = run_session(onnx_session(path), x)
    assert got.shape == want.shape
    return float(np.max(np.abs(got - want)))


def test_hapt_model_parity_and_metadata(tmp_path):
    from crop.generic import shipped_path

    generic = shipped_path("hapt")
    model_file = tmp_path / "model.safetensors"
    from crop.models.io import load_model

    model = load_model(generic)
    save_model(model, model_file, {"method": "crop", "seed": 3})
    result = export_file(model_file, tmp_path / "model.onnx", generic=generic)
    assert result.max_abs_diff <= PARITY
    assert _parity(model, result.path, (6, 128)) <= PARITY
    meta = read_metadata(result.path)
    assert json.loads(meta["classes"])[0] == "walking" and len(json.loads(meta["classes"])) == 6
    assert json.loads(meta["input_shape"]) == ["batch", 6, 128]
    assert meta["method"] == "crop" and meta["seed"] == "3"
    assert len(meta["generic_sha256"]) == 64 and meta["generic_sha256"] != meta["source_sha256"]
    assert meta["crop_version"]
    import onnx

    onnx.checker.check_model(onnx.load(str(result.path)))


def test_sparse_model_parity(tmp_path):
    from crop.models.io import save_sparse

    model = _trained_like(HAPTNet(), seed=1)
    with torch.no_grad():  # 80 % of every weight matrix pruned
        for p in model.parameters():
            if p.dim() >= 2:
                p[torch.rand_like(p) < 0.8] = 0
    sparse_file = save_sparse(model, tmp_path / "model.sparse.safetensors", metadata={"method": "crop-certified"})
    result = export_file(sparse_file, tmp_path / "sparse.onnx")
    meta = read_metadata(result.path)
    assert meta["source_format"] == "sparse" and meta["method"] == "crop-certified"
    assert int(meta["nonzero_parameters"]) < 0.4 * int(meta["parameters"])
    assert _parity(model, result.path, (6, 128)) <= PARITY


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: paper.StressMLP(standardize=True), (34,)),
        (lambda: paper.WidarLeNet(), (22, 20, 20)),
        (lambda: paper.ExtraSensoryCNNGRU(), (6, 800)),
        (lambda: paper.ExtraSensoryCNNGRU(channels=2, length=26, stride=1), (2, 26)),
        (lambda: paper.PerceptBiLSTM(), (13, 100)),
        (lambda: HAPTNet(norm="none"), (6, 128)),
    ],
)
def test_paper_architectures_parity(tmp_path, make, shape):
    model = _trained_like(make())
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    result = export_file(path, tmp_path / "m.onnx")
    assert json.loads(read_metadata(result.path)["input_shape"]) == ["batch", *shape]
    assert _parity(model, result.path, shape) <= PARITY


class SVDFeatures(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(x.unsqueeze(-1) * x.unsqueeze(-2))


def test_unexportable_layer_is_named_in_one_line(tmp_path):
    model = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.ReLU(), SVDFeatures()), nn.Flatten(), nn.Linear(64, 3))
    out = tmp_path / "bad.onnx"
    with pytest.raises(CropError) as err:
        export_model(model, out, input_shape=(8, 8))
    message = str(err.value)
    assert "\n" not in message
    assert "'1.1'" in message and "SVDFeatures" in message and "svdvals" in message
    assert not out.exists() and not list(tmp_path.iterdir())


class BatchBaked(nn.Module):
    """Reshapes with the batch size read at trace time: the traced graph fixes it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(int(x.shape[0]), -1)[:, :3]


def test_graph_that_fails_in_onnxruntime_is_one_line(tmp_path):
    with pytest.raises(CropError) as err:
        export_model(nn.Sequential(nn.Linear(4, 4), BatchBaked()), tmp_path / "m.onnx", input_shape=(2, 4))
    assert "\n" not in str(err.value) and "onnxruntime" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_unknown_input_shape_and_missing_file(tmp_path):
    with pytest.raises(CropError, match="input shape"):
        export_model(nn.Linear(3, 2), tmp_path / "x.onnx")
    with pytest.raises(CropError, match="not found"):
        export_file(tmp_path / "nope.safetensors", tmp_path / "x.onnx")


def test_existing_file_replaced_whole_and_symlink_refused(tmp_path):
    model = _trained_like(paper.StressMLP())
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    export_model(model, out)
    assert out.read_bytes() != b"old" and read_metadata(out)["architecture"] == "StressMLP"
    link = tmp_path / "link.onnx"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CropError, match="symbolic link"):
        export_model(model, link)
    assert not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.onnx", "m.onnx"]


def test_missing_package_is_one_line(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(CropError, match=r"pip install 'crop\[onnx\]'"):
        export_model(paper.StressMLP(), tmp_path / "m.onnx")


@pytest.mark.parametrize("kind", ["coteach", "modality-dropout"])
def test_fault_routing_networks_export_every_path(tmp_path, kind):
    """The exported graph routes a faulty sensor as PyTorch does (the detector, the repair of
    spikes, the emulation of a dead sensor), not only the path of the clean trace input."""
    from crop.data import hapt
    from crop.data.faults import apply_fault
    from crop.models.modality import CoTeachNet, MaskedHAPTNet

    X = hapt.load_session(2, 1).X[:24].astype(np.float32)
    model = _trained_like(CoTeachNet() if kind == "coteach" else MaskedHAPTNet(), seed=2)
    with torch.no_grad():  # the data's statistics (a dead sensor is masked with this mean)
        for m in model.modules():
            if type(m).__name__ == "Standardize":
                m.mean.copy_(torch.as_tensor(X.mean(axis=(0, 2))).reshape(m.mean.shape))
                m.std.copy_(torch.as_tensor(X.std(axis=(0, 2))).reshape(m.std.shape))
    result = export_model(model, tmp_path / "m.onnx", input_shape=(6, 128))
    assert result.max_abs_diff <= PARITY
    plain = copy.deepcopy(model)
    plain.route = False  # the same weights reading every window as it is
    rng = np.random.default_rng(0)
    for fault, severity in (("dead-gyro", 1.0), ("dead-acc", 1.0), ("spikes", 0.05), ("stuck", 0.5)):
        x = torch.as_tensor(apply_fault(fault, X, severity, rng))
        with torch.no_grad():
            want = model(x).numpy()
            unrouted = plain(x).numpy()
        got = run_session(onnx_session(result.path), x)
        assert np.max(np.abs(got - want)) <= PARITY, fault
        if fault.startswith("dead"):  # routing changed the output, and the graph has that change
            assert np.max(np.abs(want - unrouted)) > 1e-3

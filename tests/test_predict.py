"""crop.predict and `crop predict`: the model's own decisions, from a module, a model file and an
ONNX file, written as CSV / JSON; bad input ends in one line and writes nothing."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import numpy as np
import pytest
import torch

import crop
from crop.cli import run
from crop.errors import CropError
from crop.models import HAPTNet
from crop.models.io import save_model
from tests.personalize.test_route import hapt_like, routed_pair


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    model = HAPTNet(width=8).eval()
    save_model(model, root / "model.safetensors")
    data = hapt_like(seed=3, n=30)
    np.savez(root / "windows.npz", X=data.X, y=data.y)
    np.savez(root / "unlabelled.npz", X=data.X[:7])
    return root, model, data


def cli(argv, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(argv)
    torch.set_num_threads(1)
    return code, out.getvalue(), err.getvalue()


def test_predictions_are_the_models_decisions_with_probabilities(files):
    _, model, data = files
    got = crop.predict(model, data.X)
    with torch.no_grad():
        logits = model(torch.from_numpy(data.X))
    assert np.array_equal(got.classes, logits.argmax(1).numpy())
    assert np.allclose(got.probabilities, torch.softmax(logits.double(), 1).numpy(), atol=1e-6)
    assert np.allclose(got.probabilities.sum(1), 1.0)
    assert got.names == ["walking", "walking upstairs", "walking downstairs", "sitting", "standing", "lying"]
    assert got.class_names == [got.names[c] for c in got.classes]
    assert sum(got.counts().values()) == len(got) == len(data.X)


def test_a_model_file_predicts_as_the_module_does(files):
    root, model, data = files
    from_file = crop.predict(root / "model.safetensors", data.X)
    direct = crop.predict(model, data.X)
    assert np.array_equal(from_file.classes, direct.classes)
    assert np.allclose(from_file.probabilities, direct.probabilities, atol=1e-7)


def test_an_onnx_file_predicts_as_the_model_does(files, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from crop.deploy.export import export_file

    root, model, data = files
    export_file(root / "model.safetensors", tmp_path / "model.onnx")
    got = crop.predict(tmp_path / "model.onnx", data.X)
    direct = crop.predict(model, data.X)
    assert got.names == direct.names
    assert np.array_equal(got.classes, direct.classes)
    assert np.allclose(got.probabilities, direct.probabilities, atol=1e-4)


def test_a_routed_model_predicts_its_mixture():
    """A routed model returns log-probabilities: the predicted probabilities are their exp."""
    model, _, _, split = routed_pair()
    got = crop.predict(model, split.test.X)
    with torch.no_grad():
        mixture = model(torch.from_numpy(split.test.X)).double().exp().numpy()
    assert np.allclose(got.probabilities, mixture / mixture.sum(1, keepdims=True), atol=1e-6)
    assert np.array_equal(got.classes, mixture.argmax(1))


def test_csv_and_json_hold_one_row_per_window(files):
    _, model, data = files
    got = crop.predict(model, data.X, class_names=["a", "=b", "c", "d", "e", "f"])
    rows = list(csv.DictReader(io.StringIO(got.to_csv())))
    assert len(rows) == len(data.X)
    assert list(rows[0]) == ["window", "class", "class_name", "p_a", "p_=b", "p_c", "p_d", "p_e", "p_f"]
    assert [int(r["class"]) for r in rows] == got.classes.tolist()
    assert all(not r["class_name"].startswith("=") for r in rows)  # a formula is not a class name
    doc = json.loads(got.to_json(model="m"))
    assert doc["model"] == "m" and doc["classes"][1] == "=b"
    assert [w["class"] for w in doc["windows"]] == got.classes.tolist()
    assert np.allclose([w["probabilities"] for w in doc["windows"]], got.probabilities)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.zeros((3, 6, 64), np.float32), "the model takes \\[6, 128\\]"),
        (np.zeros((0, 6, 128), np.float32), "n_windows >= 1"),
        (np.array(["a", "b"]), "real numbers"),
        (np.full((2, 6, 128), np.nan, np.float32), "window 0 holds a value that is not a finite number"),
    ],
)
def test_bad_windows_are_one_line_errors(files, X, match):
    _, model, _ = files
    with pytest.raises(CropError, match=match) as info:
        crop.predict(model, X)
    assert "\n" not in str(info.value)


def test_the_command_writes_csv_json_and_stdout(files, tmp_path, monkeypatch):
    root, model, data = files
    code, _, err = cli(
        ["predict", str(root / "model.safetensors"), "--data", str(root / "windows.npz"), "--out", "p.csv"],
        tmp_path,
        monkeypatch,
    )
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    expected = crop.predict(model, data.X)
    assert [int(r["class"]) for r in rows] == expected.classes.tolist()
    accuracy = float(np.mean(expected.classes == data.y))
    assert f"accuracy {100 * accuracy:.2f} %" in err  # the labels y were scored
    code, _, err = cli(
        ["predict", str(root / "model.safetensors"), "--data", str(root / "unlabelled.npz"), "--out", "p.json"],
        tmp_path,
        monkeypatch,
    )
    assert code == 0 and "accuracy" not in err
    assert len(json.loads((tmp_path / "p.json").read_text())["windows"]) == 7
    code, out, err = cli(
        ["predict", str(root / "model.safetensors"), "--data", str(root / "unlabelled.npz"), "--out", "-"],
        tmp_path,
        monkeypatch,
    )
    assert code == 0 and len(out.splitlines()) == 8 and out.startswith("window,class,class_name,")
    assert "predicted 7 windows" in err


@pytest.mark.parametrize(
    "args, match",
    [
        (["{m}", "--data", "{d}", "--out", "p.txt"], "give a .csv or .json file"),
        (["missing.safetensors", "--data", "{d}", "--out", "p.csv"], "no such model file"),
        (["{m}", "--data", "missing.npz", "--out", "p.csv"], "no such file"),
        (["{m}", "--data", "{m}", "--out", "p.csv"], "expected a .npz file"),
        (["{m}", "--data", "{noX}", "--out", "p.csv"], "no array 'X'"),
        (["{m}", "--data", "{short}", "--out", "p.csv"], "the model takes [6, 128]"),
        (["{m}", "--data", "{badlabel}", "--out", "p.csv"], "the model has 6 classes"),
        (["{d}", "--data", "{d}", "--out", "p.csv"], "safetensors"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(files, tmp_path, monkeypatch, args, match):
    root, _, data = files
    np.savez(tmp_path / "noX.npz", windows=data.X)
    np.savez(tmp_path / "short.npz", X=data.X[:, :, :64])
    np.savez(tmp_path / "badlabel.npz", X=data.X, y=np.full(len(data.X), 9))
    names = {
        "m": root / "model.safetensors",
        "d": root / "windows.npz",
        "noX": tmp_path / "noX.npz",
        "short": tmp_path / "short.npz",
        "badlabel": tmp_path / "badlabel.npz",
    }
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out, err = cli(["predict", *(a.format(**names) for a in args)], cwd, monkeypatch)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("crop: error: "), err
    assert match in lines[0]
    assert "Traceback" not in err and not out and not list(cwd.iterdir())


def test_version():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run(["--version"])
    assert code == 0 and out.getvalue().startswith(f"crop {crop.__version__} (torch ")

"""`crop export` and `crop resources` from the command line."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
from typer.testing import CliRunner

from crop.cli import app

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, pattern):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert len(text.splitlines()) == 1 and text.startswith("crop: error:") and pattern in text, text


def test_personalize_then_export_carries_generic_hash(tmp_path):
    from crop.deploy.export import read_metadata
    from crop.generic import shipped_path

    out = tmp_path / "u2"
    r = run("personalize", "--user", 2, "--method", "generic", "--out", out)
    assert r.exit_code == 0, r.output
    shipped = hashlib.sha256(shipped_path("hapt").read_bytes()).hexdigest()
    assert json.loads((out / "summary.json").read_text())["generic_model"]["sha256"] == shipped
    r = run("export", out / "model.safetensors", "--out", tmp_path / "model.onnx")
    assert r.exit_code == 0, r.output
    assert "max |diff|" in r.output
    meta = read_metadata(tmp_path / "model.onnx")
    assert meta["generic_sha256"] == shipped and meta["method"] == "generic"
    assert json.loads(meta["input_shape"]) == ["batch", 6, 128]


def test_export_errors_are_one_line(tmp_path):
    assert_one_line_error(run("export", tmp_path / "none.safetensors", "--out", tmp_path / "m.onnx"), "not found")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert_one_line_error(run("export", bad, "--out", tmp_path / "m.onnx"), "not a valid safetensors")
    assert_one_line_error(run("export", bad, "--out", tmp_path / "m.onnx", "--input-shape", "6,x"), "--input-shape")
    assert_one_line_error(run("export", bad, "--out", tmp_path), "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors"]


def test_resources_one_method(tmp_path):
    out = tmp_path / "res"
    r = run("resources", "--methods", "generic", "--repeats", 1, "--out", out)
    assert r.exit_code == 0, r.output
    md = (out / "resources.md").read_text()
    assert "Table 7" in md and "| generic |" in md and "torch" in md
    (row,) = list(csv.DictReader((out / "resources.csv").open()))
    assert row["method"] == "generic" and row["error"] == "" and row["repeats"] == "1"
    assert int(row["parameters"]) == int(row["nonzero_parameters"]) == 17238  # the HAPT network, unpruned
    assert 0 <= float(row["personalize_s"]) < 60
    assert float(row["peak_rss_mb"]) >= float(row["rss_before_mb"]) > 50  # torch alone is more
    for key in ("latency_ms_torch", "latency_ms_onnx", "throughput_torch", "throughput_onnx"):
        assert float(row[key]) > 0
    assert int(row["file_bytes"]) > 4 * 17238 and int(row["onnx_file_bytes"]) > 4 * 17238
    assert row["sparse_file_bytes"] == ""
    runs = json.loads((out / "machine.json").read_text())["runs"]["generic"]
    assert len(runs) == 1 and runs[0]["peak_rss_mb"] > 0
    assert_one_line_error(run("resources", "--methods", "nope", "--out", out), "nope")

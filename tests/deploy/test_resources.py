"""crop.deploy.resources: one fresh process per method, medians, Markdown + CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest

from crop.deploy.resources import (
    COLUMNS,
    MethodCost,
    machine,
    measure_one,
    measure_resources,
    summarize,
    to_csv,
    to_markdown,
)
from crop.errors import CropError


def test_unknown_method_is_reported_not_raised():
    (cost,) = measure_resources(["no-such-method"], repeats=1)
    assert cost.repeats == 0 and "no-such-method" in cost.error


def test_summarize_takes_medians_and_skips_failed_runs():
    runs = [
        {"personalize_s": 3.0, "parameters": 10, "nonzero_parameters": 4},
        {"error": "boom"},
        {"personalize_s": 1.0, "parameters": 10, "nonzero_parameters": 4},
        {"personalize_s": 2.0, "parameters": 10, "nonzero_parameters": 4, "onnx_error": "no onnx"},
    ]
    cost = summarize("m", runs)
    assert cost.repeats == 3 and cost.personalize_s == 2.0 and cost.parameters == 10
    assert cost.error == "no onnx"
    with pytest.raises(CropError):
        measure_resources(["generic"], repeats=0)


def test_tables_and_csv():
    costs = [
        MethodCost("a", personalize_s=1.5, peak_rss_mb=300.0, rss_before_mb=250.0, parameters=10, repeats=2),
        MethodCost("b", error="does not run", repeats=0),
    ]
    info = machine()
    assert info["torch"] and info["logical_cores"] >= 1
    md = to_markdown(costs, info, {"user": 2, "scenario": "hapt-session:1", "seed": 0, "repeats": 2})
    assert "Table 7" in md and "Table 8" in md and "| a | 1.50 | 300 | 250 |" in md and "not run: does not run" in md
    assert info["cpu"] in md
    rows = list(csv.DictReader(io.StringIO(to_csv(costs))))
    assert list(rows[0]) == COLUMNS and rows[0]["personalize_s"] == "1.5" and rows[1]["error"] == "does not run"
    json.dumps(info)


def test_each_method_gets_the_generic_model_crop_bench_gives_it(monkeypatch, tmp_path):
    """The sensor-fault methods personalize their own networks (hapt-coteach, hapt-dropout)."""
    import crop.generic

    asked = []

    def stop(kind, user):
        asked.append(kind)
        raise CropError("stop here")

    monkeypatch.setattr(crop.generic, "generic_for_user", stop)
    for method in ("coteach", "modality-dropout", "crop"):
        with pytest.raises(CropError, match="stop here"):
            measure_one(method, 2, "hapt-session:1", 0, tmp_path)
    assert asked == ["hapt-coteach", "hapt-dropout", "hapt"]

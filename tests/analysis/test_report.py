"""analyze_result writes every table and figure, consistent with the pure functions."""

import csv
import json
import re

import pytest

import crop
from crop.analysis import analyze_result, distance_matrix, state_accuracies
from crop.errors import CropError


def test_analyze_result_writes_tables_figures_and_index(crop_run, tmp_path):
    model, split, unseen, result = crop_run
    report = analyze_result(
        result, split, unseen, tmp_path, tau=0.2, seed=0, tsne_states=("generic", "final"), class_names=["a", "b", "c"]
    )
    for stem in ("accuracies", "effects", "gip", "distances", "layers"):
        assert (tmp_path / f"{stem}.md").is_file() and (tmp_path / f"{stem}.csv").is_file()
    for fig in ("deltas", "gip", "heatmap", "prune_curve", "tsne"):
        path = tmp_path / f"{fig}.png"
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = (tmp_path / "index.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", index):  # every link and image in the index exists
        assert (tmp_path / target).is_file(), target
    assert "![tsne](tsne.png)" in index and "![heatmap](heatmap.png)" in index

    # the CSV holds the same numbers as the pure functions
    contexts = {"available (test)": split.test, "unseen: shifted": unseen["shifted"]}
    acc = state_accuracies(result.model, result.states, contexts)
    with open(tmp_path / "accuracies.csv") as f:
        rows = {r["state"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["generic", "initial", "pruned", "mixed", "final", "served (routed)"]
    for s in list(rows)[:-1]:
        assert float(rows[s]["unseen: shifted"]) == pytest.approx(acc[s]["unseen: shifted"])
    served = crop.evaluate(result.model, unseen["shifted"])["balanced_accuracy"]
    assert float(rows["served (routed)"]["unseen: shifted"]) == pytest.approx(served)
    names = [n for n, _ in result.network.named_parameters()]
    assert report.distances == distance_matrix(result.states, names)
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert saved["prune_amount"] == result.prune_amount
    layers = {r["layer"]: r for r in saved["layers"]}
    assert layers["fc1"]["pruned"] > 0 and layers["head"]["pruned"] is None  # the decision layer is never pruned


def test_analyze_result_needs_an_unseen_context(crop_run, tmp_path):
    _, split, _, result = crop_run
    with pytest.raises(CropError, match="unseen"):
        analyze_result(result, split, {}, tmp_path, figures=False)


def test_tables_only_for_a_result_without_masks(crop_run, tmp_path):
    """Methods without pruning (e.g. finetune: generic + final) are analysed too."""
    _, split, unseen, result = crop_run
    from crop.personalization.registry import PersonalizationResult

    plain = PersonalizationResult("finetune", result.network, {k: result.states[k] for k in ("generic", "final")})
    report = analyze_result(plain, split, unseen, tmp_path, figures=False)
    assert {r["subset"] for r in report.gip} == {"all"}
    assert set(report.accuracies) == {"generic", "final"}


def test_several_unseen_contexts_each_get_gip_rows_and_accuracy_columns(crop_run, tmp_path):
    """hapt-faults has four unseen contexts: every analysis covers each of them."""
    from tests.conftest import make_data

    _, split, unseen, result = crop_run
    contexts = {**unseen, "noisy": make_data(30, seed=7, shift=0.5)}
    report = analyze_result(result, split, contexts, tmp_path, figures=False)
    assert {r["context"] for r in report.gip} == {"shifted", "noisy"}
    assert len(report.gip) == 2 * (5 + 3)
    assert set(report.accuracies["final"]) == {"available (test)", "unseen: shifted", "unseen: noisy"}

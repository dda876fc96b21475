"""Hyperparameter search: grids, selection on the available validation split, and a guard
proving that no unseen-context window reaches the search."""

import dataclasses

import numpy as np
import pytest
import torch

import crop
import crop.models.utils as model_utils
from crop.analysis import _tune as tune_module
from crop.analysis import apply_overrides, default_grid, expand_grid, parse_grid_option, tune
from crop.data.sensing import SensingData
from crop.errors import CropError
from crop.personalization import loop
from crop.personalization.crop import CRoPConfig
from crop.personalization.registry import get_method
from tests.conftest import TinyNet, make_data

QUICK = {"initial": {"epochs": 2, "lr": 1e-2, "batch_size": 16}, "final": {"epochs": 1, "lr": 1e-2, "batch_size": 16}}


from crop.personalization.invariance import InvarianceConfig  # noqa: E402


def _quick_crop():
    from crop.personalization.registry import config_from_dict

    return config_from_dict(CRoPConfig, QUICK)


def test_grid_paths_ties_and_parsing():
    cfg = apply_overrides(CRoPConfig(), {"initial.lr+final.lr": 0.01, "tau": 0.1, "final.epochs": 7})
    assert (cfg.initial.lr, cfg.final.lr, cfg.tau, cfg.final.epochs) == (0.01, 0.01, 0.1, 7)
    assert CRoPConfig().initial.lr == 1e-3  # defaults untouched (copies)
    with pytest.raises(CropError, match="unknown config field 'initial.lrr'"):
        apply_overrides(CRoPConfig(), {"initial.lrr": 1})
    assert expand_grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert parse_grid_option("initial.lr+final.lr=1e-3,3e-3; alpha=0.001 ;prune_from=best") == {
        "initial.lr+final.lr": [1e-3, 3e-3],
        "alpha": [0.001],
        "prune_from": ["best"],
    }
    with pytest.raises(CropError):
        parse_grid_option("alpha")


@pytest.mark.parametrize("method", crop.available_methods())
def test_default_grid_is_small_valid_and_inside_table10(method):
    grid = default_grid(method)
    points = expand_grid(grid) if grid else [{}]
    assert 1 <= len(points) <= 8
    base = get_method(method).config_class()
    for p in points:
        apply_overrides(base, p)  # every key is a real config field
    for key, values in grid.items():
        name = key.split("+")[0].rsplit(".", 1)[-1]
        lo, hi = tune_module.TABLE10_RANGES[name]
        assert all(lo <= v <= hi for v in values)


def test_crop_default_grid_searches_lr_alpha_tau():
    assert default_grid("crop") == {"initial.lr+final.lr": [1e-3, 3e-3], "alpha": [1e-3, 1e-2], "tau": [0.05, 0.1]}


class _Poisoned(SensingData):
    """Unseen-context data that fails loudly if anything reads it."""

    def arm(self):
        object.__setattr__(self, "_armed", True)
        return self

    def __getattribute__(self, name):
        if name in ("X", "y") and object.__getattribute__(self, "__dict__").get("_armed"):
            raise AssertionError("unseen-context data was touched by the search")
        return super().__getattribute__(name)


def test_tune_never_sees_unseen_context_data(tiny_split, monkeypatch):
    unseen_raw = make_data(40, seed=9, shift=-1.0)
    unseen = _Poisoned(unseen_raw.X, unseen_raw.y, "unseen").arm()  # lives beside the search, must stay untouched
    allowed = {row.tobytes() for part in (tiny_split.train, tiny_split.val) for row in part.X}
    test_rows = {row.tobytes() for row in tiny_split.test.X}
    seen_batches = []

    def guard(_module, inputs):
        x = inputs[0].detach().numpy()
        for row in x:
            key = np.ascontiguousarray(row).tobytes()
            assert key not in test_rows, "the available test split reached the search"
            assert key in allowed, "a window that is not available-context train/val data reached a model"
        seen_batches.append(len(x))

    evaluated = []
    real_predict = model_utils.predict_logits

    def recording_predict(model, X, *a, **k):
        evaluated.append(np.asarray(X))
        return real_predict(model, X, *a, **k)

    monkeypatch.setattr(model_utils, "predict_logits", recording_predict)
    monkeypatch.setattr(loop, "predict_logits", recording_predict)
    monkeypatch.setattr(tune_module, "predict_logits", recording_predict)

    torch.manual_seed(0)
    generic = TinyNet()
    handle = generic.register_forward_pre_hook(guard)  # deep copies made by every fit keep the hook
    try:
        # byte-exact check of every window: without the invariance term, whose transformed copies of
        # training windows are new bytes (that term only ever transforms the batch the loop hands it)
        plain = dataclasses.replace(_quick_crop(), invariance=InvarianceConfig(weight=0.0))
        result = tune(generic, tiny_split, "crop", {"tau": [0.1, 0.3]}, seed=0, base_config=plain)
    finally:
        handle.remove()
    assert seen_batches and evaluated
    for X in evaluated:  # every evaluated array is the available train or validation split
        assert (
            X is tiny_split.train.X
            or X is tiny_split.val.X
            or np.shares_memory(X, tiny_split.train.X)
            or np.shares_memory(X, tiny_split.val.X)
        )
    assert isinstance(unseen, _Poisoned) and result.chosen["tau"] in (0.1, 0.3)
    with pytest.raises(CropError, match="available-context ContextSplit only"):
        tune(generic, {"available": tiny_split, "unseen": unseen}, "crop")


def test_tune_selects_best_validation_score_and_records_choices(tiny_split, tiny_model, tmp_path):
    grid = {"initial.lr+final.lr": [1e-4, 1e-2], "tau": [0.1]}
    result = tune(tiny_model, tiny_split, "crop", grid, seed=0, base_config=_quick_crop())
    assert len(result.trials) == 2
    best = max(result.trials, key=lambda t: (t.val_score, -t.val_loss))
    assert result.best is best and result.chosen == best.overrides
    assert result.best_config.initial.lr == result.best_config.final.lr == best.overrides["initial.lr+final.lr"]
    # the returned model is the one fitted with the chosen config, scored independently
    assert model_utils.score(result.best_result.model, tiny_split.val) == pytest.approx(best.val_score)
    again = crop.personalize(tiny_model, tiny_split, result.best_config, seed=0)
    for k, v in again.states["final"].items():
        assert torch.equal(v, result.best_result.states["final"][k])
    files = result.write(tmp_path)
    assert "chosen" in files and '"initial.lr+final.lr"' in files["chosen"].read_text()
    assert files["table"].read_text().count("yes") == 1


def test_budget_subsamples_with_the_seed(tiny_split, tiny_model):
    grid = {"tau": [0.05, 0.1, 0.2, 0.3]}
    calls = []
    a = tune(tiny_model, tiny_split, "crop", grid, seed=1, budget=2, base_config=_quick_crop(), on_trial=calls.append)
    b = tune(tiny_model, tiny_split, "crop", grid, seed=1, budget=2, base_config=_quick_crop())
    assert len(a.trials) == 2 == len(calls)
    assert [t.index for t in a.trials] == [t.index for t in b.trials]


@pytest.mark.parametrize(
    "method",
    [
        "finetune",
        "crop-mpi",
        pytest.param(
            "packnet",
            marks=pytest.mark.skipif("packnet" not in crop.available_methods(), reason="baselines not installed"),
        ),
    ],
)
def test_tune_runs_other_registered_methods(method, tiny_split, tiny_model):
    base = get_method(method).config_class()
    # shrink every phase to one epoch so the test stays fast
    for f in dataclasses.fields(base):
        value = getattr(base, f.name)
        if dataclasses.is_dataclass(value) and hasattr(value, "epochs"):
            base = dataclasses.replace(base, **{f.name: dataclasses.replace(value, epochs=1)})
    grid = {k: v[:1] for k, v in default_grid(method).items()}
    result = tune(tiny_model, tiny_split, method, grid, seed=0, base_config=base)
    assert result.best.error is None and result.best_result.method == method

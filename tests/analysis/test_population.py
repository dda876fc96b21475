"""Population tuning: settings chosen on other people's real session change, never the target's data."""

import json

import pytest

import crop.data.hapt as hapt
from crop.analysis import population_tune, population_users
from crop.errors import CropError
from crop.generic import fold_users
from crop.personalization.finetune import FinetuneConfig
from crop.personalization.loop import TrainConfig

FAST = FinetuneConfig(TrainConfig(epochs=2, batch_size=32))
GRID = {"train.lr": [1e-3, 1e-2]}


@pytest.fixture
def loads(monkeypatch):
    seen = []
    original = hapt.load_session

    def spy(user, session):
        seen.append((user, session))
        return original(user, session)

    monkeypatch.setattr(hapt, "load_session", spy)
    return seen


def test_only_the_generic_models_validation_users_are_read(tmp_path, loads):
    result = population_tune("finetune", "hapt", 2, GRID, users=[5], base_config=FAST, cache=tmp_path)
    assert sorted(set(loads)) == [(5, 1), (5, 2)]
    assert not {u for u, _ in loads} & set(fold_users(2))  # the users this model serves: never read
    assert population_users(2) == [5, 11, 17, 23, 29]
    assert result.users == [5] and len(result.trials) == 2
    best = max(result.trials, key=lambda t: t.score)
    assert result.best is best and result.chosen == best.overrides
    for t in result.trials:  # Ca + Cu over both directions: 2 values per trial
        assert len(t.per_person) == 2
        assert t.score == pytest.approx(t.ca + t.cu)
        assert t.score == pytest.approx(sum(t.per_person.values()) / 2)


def test_a_finished_search_is_read_back_without_fitting(tmp_path, loads, monkeypatch):
    first = population_tune("finetune", "hapt", 2, GRID, users=[5], base_config=FAST, cache=tmp_path)
    loads.clear()
    import dataclasses

    from crop.personalization.registry import METHODS

    def refuse(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setitem(METHODS, "finetune", dataclasses.replace(METHODS["finetune"], fit=refuse))
    again = population_tune("finetune", "hapt", 2, GRID, users=[5], base_config=FAST, cache=tmp_path)
    assert again.chosen == first.chosen and loads == []
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["users"] == [5] and saved["chosen"] == first.chosen


def test_users_outside_the_validation_fold_are_refused(tmp_path):
    with pytest.raises(CropError, match="not validation users"):
        population_tune("finetune", "hapt", 2, GRID, users=[8], base_config=FAST, cache=tmp_path)


def test_worker_processes_give_the_same_search(tmp_path):
    here = population_tune("finetune", "hapt", 2, GRID, users=[5], base_config=FAST, cache=tmp_path / "a")
    spread = population_tune("finetune", "hapt", 2, GRID, users=[5], base_config=FAST, cache=tmp_path / "b", workers=2)
    assert [t.per_person for t in spread.trials] == [t.per_person for t in here.trials]
    assert [t.index for t in spread.trials] == [0, 1] and spread.chosen == here.chosen
    with pytest.raises(CropError, match="workers"):
        population_tune("finetune", "hapt", 2, GRID, users=[5], base_config=FAST, cache=tmp_path, workers=0)

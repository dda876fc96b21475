"""PersonalizedClassifier follows scikit-learn's conventions: its estimator checks, run on the
estimator with a small network built for each check's data (a factory), all pass except the
ones listed in NOT_APPLICABLE, each with the reason; and on HAPT windows it is crop.personalize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator
from torch import nn

import crop
from crop.estimator import PersonalizedClassifier

QUICK = {"initial": {"epochs": 3, "batch_size": 16}, "final": {"epochs": 3, "batch_size": 16}}

NOT_APPLICABLE = {
    "check_classifiers_train": (
        "asserts more than 83 % training accuracy of a classifier that learns from scratch; "
        "personalization starts from a trained generic model, and CRoP puts the generic model's "
        "weights back where it prunes, so from the untrained network a check's data gets (and "
        "3 epochs here) it stays below that bar by design"
    ),
}


def mlp(shape, n_classes):
    """An untrained network for any tabular check data (a generic model stands in for it)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), 16), nn.ReLU(), nn.Linear(16, n_classes))


def test_scikit_learn_estimator_checks():
    est = PersonalizedClassifier(mlp, method="crop", config=QUICK)
    results = check_estimator(est, expected_failed_checks=NOT_APPLICABLE, on_fail=None, on_skip=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed, failed
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert {
        "check_estimators_unfitted",
        "check_fit_idempotent",
        "check_estimators_nan_inf",
        "check_fit2d_1sample",
    } <= passed
    assert len(passed) >= 45


@pytest.fixture(scope="module")
def user2():
    from crop.data.scenarios import build_user_scenario, parse_scenarios

    return build_user_scenario(2, parse_scenarios("hapt-session:1")[0], seed=0)


def test_fit_is_crop_personalize_on_the_windows(user2):
    train = user2.available.train
    config = {"train": {"epochs": 2}}
    clf = PersonalizedClassifier("hapt", method="finetune", config=config, seed=3).fit(train.X, train.y)
    generic = crop.load_generic("hapt")
    direct = crop.personalize(generic, crop.SensingData(train.X, train.y, "fit"), config, method="finetune", seed=3)
    for a, b in zip(clf.model_.state_dict().values(), direct.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    test = user2.available.test
    assert list(clf.classes_) == list(range(6))
    expected = crop.predict(direct.model, test.X)
    assert np.array_equal(clf.predict(test.X), expected.classes)
    assert np.allclose(clf.predict_proba(test.X), expected.probabilities)
    assert clf.score(test.X, test.y) == pytest.approx(float(np.mean(expected.classes == test.y)))
    again = clone(clf)
    assert again.get_params() == clf.get_params() and not hasattr(again, "model_")


def test_labels_must_be_the_generic_models_classes(user2):
    train = user2.available.train
    with pytest.raises(ValueError, match="the generic model has 6 classes"):
        PersonalizedClassifier("hapt", method="finetune").fit(train.X, train.y + 6)
    with pytest.raises(ValueError, match="class indices"):
        PersonalizedClassifier("hapt", method="finetune").fit(train.X, np.resize(np.array(["a", "b"]), len(train.y)))

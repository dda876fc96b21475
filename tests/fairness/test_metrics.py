"""crop.fairness metrics against fairlearn and plain NumPy on random data, and the documented edge cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from crop.errors import CropError
from crop.fairness import binary_disparities, group_metrics, harmed_share, person_spread

SKLEARN = {
    "accuracy": accuracy_score,
    "balanced_accuracy": balanced_accuracy_score,
    "f1": lambda t, p, sample_weight=None: f1_score(
        t, p, average="macro", sample_weight=sample_weight, zero_division=0
    ),
}


def random_task(seed: int, n: int = 600, classes: int = 4, groups: int = 3, weighted: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    skill = rng.uniform(0.4, 0.95, groups)
    g = rng.integers(0, groups, n)
    pred = np.where(rng.random(n) < skill[g], y, rng.integers(0, classes, n))
    names = np.asarray([f"g{k}" for k in g])
    w = rng.uniform(0.1, 3.0, n) if weighted else None
    return y, pred, names, w


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weighted", [False, True])
def test_group_metrics_match_metricframe_and_numpy(seed, weighted):
    y, pred, g, w = random_task(seed, classes=2 + seed % 4, groups=2 + seed % 3, weighted=weighted)
    r = group_metrics(y, pred, sensitive_features=g, sample_weight=w)
    params = {m: {"sample_weight": w} for m in SKLEARN} if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = MetricFrame(metrics=SKLEARN, y_true=y, y_pred=pred, sensitive_features=g, sample_params=params)
    for m in SKLEARN:
        expected = frame.by_group[m]
        assert r.by_group[m] == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-12)
        assert r.gap[m] == pytest.approx(float(frame.difference()[m]), abs=1e-12)
        assert r.ratio[m] == pytest.approx(float(frame.ratio()[m]), abs=1e-12)
        assert r.worst[m][1] == pytest.approx(float(frame.group_min()[m]), abs=1e-12)
        assert r.overall[m] == pytest.approx(float(frame.overall[m]), abs=1e-12)
    # An independent reference for accuracy: NumPy, group by group.
    for name in np.unique(g):
        sel = g == name
        weights = w[sel] if weighted else np.ones(sel.sum())
        acc = float(np.sum(weights * (y[sel] == pred[sel])) / np.sum(weights))
        assert r.by_group["accuracy"][name] == pytest.approx(acc, abs=1e-12)
    values = r.by_group["accuracy"]
    assert r.worst["accuracy"] == (min(values, key=values.get), min(values.values()))
    assert r.gap["accuracy"] == pytest.approx(max(values.values()) - min(values.values()))
    assert r.ratio["accuracy"] == pytest.approx(min(values.values()) / max(values.values()))
    assert r.sizes == {name: int((g == name).sum()) for name in np.unique(g)}


@pytest.mark.parametrize("seed", range(6))
def test_binary_disparities_match_fairlearn(seed):
    y, pred, g, w = random_task(seed, classes=2, groups=2 + seed % 3, weighted=seed % 2 == 1)
    r = binary_disparities(y, pred, sensitive_features=g, sample_weight=w)
    assert r["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, pred, sensitive_features=g, sample_weight=w), abs=1e-12
    )
    assert r["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, pred, sensitive_features=g, sample_weight=w), abs=1e-12
    )
    # By hand: the gap in positive-prediction rates (unweighted case).
    if w is None:
        rates = [pred[g == k].mean() for k in np.unique(g)]
        assert r["demographic_parity_difference"] == pytest.approx(max(rates) - min(rates))


@pytest.mark.parametrize("seed", range(5))
def test_person_spread_and_harmed_share_match_numpy(seed):
    rng = np.random.default_rng(seed)
    values = {u: float(v) for u, v in zip(range(1, 31), rng.normal(2, 5, 30), strict=True)}
    s = person_spread(values)
    v = np.asarray(list(values.values()))
    assert (s.n, s.mean, s.std) == (30, pytest.approx(v.mean()), pytest.approx(v.std(ddof=1)))
    assert s.worst == v.min() and values[s.worst_person] == v.min()
    assert s.p10 == pytest.approx(np.percentile(v, 10))
    assert harmed_share(values) == pytest.approx((v < 0).mean())
    assert harmed_share([0.0, 0.0, -0.1, 1.0]) == 0.25  # a gain of exactly 0 is no harm


# ---------------------------------------------------------------- edge cases


def test_one_group_is_an_error():
    with pytest.raises(CropError, match="only one group"):
        group_metrics([0, 1, 1], [0, 1, 0], sensitive_features=["a", "a", "a"])
    with pytest.raises(CropError, match="only one group"):
        binary_disparities([0, 1, 1], [0, 1, 0], sensitive_features=["a", "a", "a"])


def test_an_empty_group_is_reported_as_nan_and_left_out():
    r = group_metrics([0, 1, 1, 0], [0, 1, 0, 0], sensitive_features=["a", "a", "b", "b"], groups=["a", "b", "c"])
    assert r.empty_groups == ["c"] and r.sizes["c"] == 0
    assert all(math.isnan(r.by_group[m]["c"]) for m in r.by_group)
    assert r.gap["accuracy"] == 0.5 and r.worst["accuracy"] == ("b", 0.5)
    with pytest.raises(CropError, match="not among the groups"):
        group_metrics([0, 1], [0, 1], sensitive_features=["a", "d"], groups=["a", "b"])


def test_a_group_with_one_class_has_recall_as_balanced_accuracy_and_no_f1():
    y = [0, 0, 0, 0, 1, 0, 1]
    pred = [0, 1, 0, 0, 1, 1, 1]
    g = ["a", "a", "a", "a", "b", "b", "b"]
    r = group_metrics(y, pred, sensitive_features=g)
    assert r.single_class_groups == ["a"]
    assert r.by_group["balanced_accuracy"]["a"] == 0.75  # the recall of class 0
    assert math.isnan(r.by_group["f1"]["a"]) and not math.isnan(r.by_group["f1"]["b"])
    assert math.isnan(r.gap["f1"]) and math.isnan(r.ratio["f1"])  # fewer than two groups with an F1
    assert r.worst["f1"][0] == "b"


def test_bad_input_is_refused_in_one_line():
    with pytest.raises(CropError, match="same length"):
        group_metrics([0, 1], [0], sensitive_features=["a", "b"])
    with pytest.raises(CropError, match="no windows"):
        group_metrics([], [], sensitive_features=[])
    with pytest.raises(CropError, match="sample_weight"):
        group_metrics([0, 1], [0, 1], sensitive_features=["a", "b"], sample_weight=[1.0, -1.0])
    with pytest.raises(CropError, match="unknown fairness metric"):
        group_metrics([0, 1], [0, 1], sensitive_features=["a", "b"], metrics=["auc"])
    with pytest.raises(CropError, match="binary task"):
        binary_disparities([0, 1, 2], [0, 1, 2], sensitive_features=["a", "b", "b"])
    with pytest.raises(CropError, match="no people"):
        person_spread({})
    with pytest.raises(CropError, match="NaN"):
        person_spread({1: math.nan})
    assert person_spread({7: 3.0}).std == 0.0


def test_a_zero_best_group_has_no_ratio():
    r = group_metrics([0, 1, 0, 1], [1, 0, 1, 0], sensitive_features=["a", "a", "b", "b"])
    assert r.gap["accuracy"] == 0.0 and math.isnan(r.ratio["accuracy"])


def test_group_metrics_hand_back_fairlearns_metricframe():
    """From Python the audit returns fairlearn's own object, with the same numbers."""
    from fairlearn.metrics import MetricFrame

    from crop.fairness import group_metrics

    rng = np.random.default_rng(4)
    y_true, y_pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    groups = rng.choice(["left", "right", "both"], 200)
    result = group_metrics(y_true, y_pred, sensitive_features=groups)
    assert isinstance(result.frame, MetricFrame)
    for metric, values in result.by_group.items():
        for group, value in values.items():
            assert result.frame.by_group.loc[group, metric] == pytest.approx(value)
    assert float(result.frame.difference()["accuracy"]) == pytest.approx(result.gap["accuracy"])

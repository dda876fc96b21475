"""Randomized smoothing: confidence bounds, radii, abstention, determinism, a linear reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import beta, norm
from torch import nn

from crop.certify.smoothing import (
    ABSTAIN,
    certified_accuracy,
    certified_radius,
    certify,
    lower_confidence_bound,
    predict,
    sample_counts,
)
from crop.certify.training import GaussianNoiseObjective
from crop.personalization.loop import TrainConfig, train


class Constant(nn.Module):
    def __init__(self, cls: int, n_classes: int = 3) -> None:
        super().__init__()
        self.cls, self.n_classes = cls, n_classes

    def forward(self, x):
        out = torch.zeros(len(x), self.n_classes, dtype=x.dtype)
        out[:, self.cls] = 1.0
        return out


class FirstCoordinateSign(nn.Module):
    """Class 1 where the first input coordinate is positive, else 0: a fair coin at x = 0."""

    def forward(self, x):
        s = x.flatten(1)[:, :1]
        return torch.cat([-s, s], 1)


def test_radius_is_zero_when_the_lower_bound_is_at_most_one_half():
    p = np.array([0.0, 0.3, 0.5, 0.5000001, 0.9, 0.999])
    r = certified_radius(p, sigma=0.25)
    assert (r[:3] == 0).all() and (r[3:] > 0).all()
    assert r[4] == pytest.approx(0.25 * norm.ppf(0.9))
    assert np.all(np.diff(r) >= 0)


def test_clopper_pearson_lower_bound():
    assert lower_confidence_bound(0, 100, 0.001) == 0.0
    assert lower_confidence_bound(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100))
    assert lower_confidence_bound(70, 100, 0.05) == pytest.approx(beta.ppf(0.05, 70, 31))
    assert lower_confidence_bound(70, 100, 0.05) < 0.7


def test_constant_classifier_gets_the_largest_radius_n_allows():
    pred, radius = certify(Constant(1), torch.randn(5, 2, 3), sigma=0.5, n0=10, n=200, alpha=0.01)
    assert (pred == 1).all()
    assert np.allclose(radius, 0.5 * norm.ppf(0.01 ** (1 / 200)))


def test_coin_flip_abstains_in_predict_and_certify():
    x = torch.zeros(4, 3)
    pred, radius = certify(FirstCoordinateSign(), x, sigma=1.0, n0=50, n=2000, alpha=0.001)
    assert (pred == ABSTAIN).all() and (radius == 0).all()
    assert (predict(FirstCoordinateSign(), x, sigma=1.0, n=2000, alpha=0.001) == ABSTAIN).all()
    # far from the boundary it answers
    assert (predict(FirstCoordinateSign(), x + 5.0, sigma=1.0, n=200, alpha=0.001) == 1).all()


def test_linear_classifier_radius_never_exceeds_the_distance_to_its_boundary():
    torch.manual_seed(0)
    w = torch.randn(6)
    model = nn.Linear(6, 1)
    with torch.no_grad():
        model.weight.copy_(w[None])
        model.bias.fill_(0.3)
    two = nn.Sequential(model, _TwoClass())
    X = torch.randn(60, 6) * 0.5
    pred, radius = certify(two, X, sigma=0.4, n0=50, n=2000, alpha=0.001, seed=3)
    distance = ((X @ w + 0.3).abs() / w.norm()).numpy()
    side = (X @ w + 0.3 > 0).long().numpy()
    answered = pred != ABSTAIN
    assert answered.sum() > 30
    assert (pred[answered] == side[answered]).all()
    assert (radius[answered] <= distance[answered] + 1e-9).all()


class _TwoClass(nn.Module):
    def forward(self, s):
        return torch.cat([-s, s], 1)


def test_certify_is_deterministic_and_shape_agnostic():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(24, 3))
    X = torch.randn(7, 2, 3, 4)
    a = certify(model, X, 0.3, 20, 300, 0.01, seed=5, batch_size=100)
    b = certify(model, X, 0.3, 20, 300, 0.01, seed=5, batch_size=100)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    counts = sample_counts(model, X, 0.3, 333, batch_size=50, generator=torch.Generator().manual_seed(0))
    assert counts.shape == (7, 3) and (counts.sum(1) == 333).all()


def test_certified_accuracy_counts_only_correct_non_abstained_predictions():
    pred = np.array([0, 1, ABSTAIN, 2, 1])
    radius = np.array([0.5, 0.1, 0.0, 0.3, 0.2])
    y = np.array([0, 1, 1, 0, 1])
    acc = certified_accuracy(pred, radius, y, [0.0, 0.15, 0.4, 1.0])
    assert np.allclose(acc, [3 / 5, 2 / 5, 1 / 5, 0.0])


def test_gaussian_noise_objective_trains_deterministically(tiny_split):
    def run():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 3))
        train(
            model,
            tiny_split.train,
            tiny_split.val,
            TrainConfig(epochs=2, lr=1e-2),
            objective=GaussianNoiseObjective(0.5),
        )
        return model[1].weight.detach().clone()

    assert torch.equal(run(), run())


def test_fast_forward_matches_the_model_on_hapt(hapt_model, hapt_windows):
    from crop.certify.fast_forward import fast_forward

    X, _ = hapt_windows
    forward = fast_forward(hapt_model, X[:8])
    assert forward is not None  # HAPTNet takes the channels-last path
    noisy = X + 0.05 * torch.randn(X.shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = hapt_model(noisy)
        got = forward(noisy[:, :, None, :].contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert fast_forward(nn.Sequential(nn.Flatten(), nn.Linear(768, 6)), X[:8]) is None  # no convolution: plain path


def test_fast_sampling_is_seeded_and_has_the_plain_paths_distribution(hapt_model, hapt_windows):
    X, _ = hapt_windows
    x = X[:3]
    sigma, num = 0.3, 4000  # noise large enough that the counts spread over several classes

    def counts(fast, seed):
        gen = torch.Generator().manual_seed(seed)
        return sample_counts(hapt_model, x, sigma, num, batch_size=1500, generator=gen, fast=fast)

    fast = counts(True, 0)
    assert np.array_equal(fast, counts(True, 0))  # reproducible
    assert not np.array_equal(fast, counts(True, 1))
    plain = counts(False, 0)
    assert fast.sum(1).tolist() == plain.sum(1).tolist() == [num] * 3
    assert (fast.max(1) < num).any()  # a real test: not every copy gives one class
    # same class probabilities: each count within 5 binomial standard deviations of the other path's
    p = (fast + plain) / (2 * num)
    sd = np.sqrt(num * p * (1 - p)) + 1
    assert (np.abs(fast - plain) <= 5 * sd).all()


def test_models_without_the_fast_path_give_the_previous_counts():
    model = nn.Sequential(nn.Linear(4, 3))
    X = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    a = sample_counts(model, X, 0.5, 300, batch_size=200, generator=torch.Generator().manual_seed(2))
    b = sample_counts(model, X, 0.5, 300, batch_size=200, generator=torch.Generator().manual_seed(2), fast=False)
    assert np.array_equal(a, b)

"""Held-out context changes (hapt-heldout): each does what it says and nothing else."""

import numpy as np
import pytest

from crop.data.scenarios import build_user_scenario, parse_scenarios
from crop.data.transforms import HELDOUT_SHIFTS, flip, gain, tempo, tilt


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(5, 6, 128)).astype(np.float32)


def norms(X):
    return np.linalg.norm(X.reshape(5, 2, 3, 128), axis=2)


def test_tilt_and_flip_turn_both_sensors_and_keep_their_norms(X):
    for turned in (tilt(X, np.random.default_rng(1)), flip(X)):
        assert np.allclose(norms(turned), norms(X), atol=1e-5) and not np.allclose(turned, X)
    assert np.allclose(flip(flip(X)), X)
    assert np.allclose(tilt(X, np.random.default_rng(1), degrees=0.0), X, atol=1e-6)


def test_gain_scales_channels_and_tempo_resamples(X):
    assert np.allclose(gain(X, np.random.default_rng(0), spread=0.0), X)
    scaled = gain(X, np.random.default_rng(0))
    ratio = scaled / X
    assert np.allclose(ratio, ratio[:, :, :1]) and np.all(np.abs(ratio - 1) <= 0.15 + 1e-6)
    assert np.allclose(tempo(X, rate=1.0), X)
    fast = tempo(X, rate=2.0)
    assert np.allclose(fast[:, :, :64], X[:, :, ::2][:, :, :64])


def test_heldout_scenario_has_the_four_changes_of_the_other_session():
    us = build_user_scenario(2, parse_scenarios("hapt-heldout:1")[0], 0)
    assert list(us.unseen) == list(HELDOUT_SHIFTS)
    session2 = build_user_scenario(2, parse_scenarios("hapt-session:1")[0], 0).unseen["session 2"]
    assert all(np.array_equal(d.y, session2.y) and not np.array_equal(d.X, session2.X) for d in us.unseen.values())

"""The fault library: severity 0 is the identity, each fault changes only what it says, specs parse strictly."""

import numpy as np
import pytest

from crop.data import hapt
from crop.data.faults import (
    FAULTS,
    apply_fault,
    context_name,
    fault_rng,
    faulted_contexts,
    parse_context,
    parse_faults,
)
from crop.errors import CropError


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return hapt.load_session(2, 2).X[:60]


@pytest.mark.parametrize("name", list(FAULTS))
def test_severity_zero_is_the_identity(windows, name):
    out = apply_fault(name, windows, 0.0, fault_rng(2, name, 0.0))
    assert out is not windows and np.array_equal(out, windows)


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_changes_the_data_at_its_sweep_maximum(windows, name):
    severity = FAULTS[name].sweep[-1]
    out = apply_fault(name, windows, severity, fault_rng(2, name, severity))
    assert out.shape == windows.shape and out.dtype == np.float32
    assert not np.array_equal(out, windows)


@pytest.mark.parametrize("name", [n for n, f in FAULTS.items() if f.touches != "both"])
def test_a_sensor_fault_leaves_the_other_sensor_untouched(windows, name):
    out = apply_fault(name, windows, 1.0, fault_rng(2, name, 1.0))
    dead, other = (slice(3, 6), slice(0, 3)) if FAULTS[name].touches == "gyro" else (slice(0, 3), slice(3, 6))
    assert np.array_equal(out[:, other], windows[:, other])
    assert np.all(out[:, dead] == 0)


def test_partial_dead_sensor_hits_the_share_of_windows_asked(windows):
    X = np.repeat(windows, 20, axis=0)
    out = apply_fault("dead-gyro", X, 0.25, np.random.default_rng(0))
    hit = np.all(out[:, 3:6] == 0, axis=(1, 2))
    assert 0.18 < hit.mean() < 0.32
    assert np.array_equal(out[~hit], X[~hit])


def test_stuck_freezes_one_sensor_at_its_last_value(windows):
    out = apply_fault("stuck", windows, 0.5, np.random.default_rng(0))
    T = windows.shape[2]
    for i in range(len(windows)):
        changed = [s for s in (slice(0, 3), slice(3, 6)) if not np.array_equal(out[i, s], windows[i, s])]
        assert len(changed) == 1
        s = changed[0]
        assert np.array_equal(out[i, s, : T // 2], windows[i, s, : T // 2])
        assert np.all(out[i, s, T // 2 :] == windows[i, s, T // 2 - 1][:, None])


def test_saturation_severity_one_clips_at_the_hapt_faults_range(windows):
    out = apply_fault("saturation", windows, 1.0, np.random.default_rng(0))
    assert np.abs(out[:, :3]).max() <= 1.2 + 1e-6 and np.abs(out[:, 3:]).max() <= 1.0 + 1e-6


def test_time_faults_keep_the_first_sample_and_stretch_the_rest(windows):
    for name in ("clock-drift", "sample-rate"):
        out = apply_fault(name, windows, 0.3, np.random.default_rng(0))
        assert np.allclose(out[:, :, 0], windows[:, :, 0])


def test_faulted_context_is_fixed_by_user_fault_and_severity(windows):
    a = faulted_contexts(windows, 2, [("noise", 0.1), ("spikes", 0.01)])
    b = faulted_contexts(windows, 2, [("spikes", 0.01), ("noise", 0.1), ("dead-acc", 0.0)])
    assert np.array_equal(a["noise=0.1"], b["noise=0.1"]) and np.array_equal(a["spikes=0.01"], b["spikes=0.01"])
    assert np.array_equal(b["clean"], windows)
    c = faulted_contexts(windows, 8, [("noise", 0.1)])
    assert not np.array_equal(a["noise=0.1"], c["noise=0.1"])


def test_parse_faults():
    assert parse_faults("dead-gyro=1, noise=0.1") == [("dead-gyro", 1.0), ("noise", 0.1)]
    assert parse_faults("dead-acc") == [("dead-acc", s) for s in FAULTS["dead-acc"].sweep]
    assert len(parse_faults("all")) == sum(len(f.sweep) for f in FAULTS.values())
    for bad in ("", "x=1", "noise=-1", "noise=", "dead-gyro=2", "noise=0.1,noise=0.1", "noise=0.1,", "noise=abc"):
        with pytest.raises(CropError):
            parse_faults(bad)


def test_context_names_round_trip():
    for name, severity in [("dead-gyro", 1.0), ("noise", 0.05), ("clock-drift", 0.3)]:
        assert parse_context("session 2 " + context_name(name, severity)) == (name, severity)
    assert context_name("spikes", 0.0) == "clean" and parse_context("clean") == ("clean", 0.0)
    assert parse_context("session 2") is None and parse_context("dead-gyro") is None


def test_faults_refuse_windows_that_are_not_inertial():
    with pytest.raises(CropError, match="6-channel"):
        apply_fault("noise", np.zeros((2, 3, 10), dtype=np.float32), 0.1, np.random.default_rng(0))

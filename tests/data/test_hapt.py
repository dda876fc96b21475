import gzip
import pickle

import numpy as np
import pytest

from crop.data import hapt
from crop.data.scenarios import PERSONALIZATION_USERS, build_user_scenario, parse_scenarios
from crop.data.unpickle import UnsafePickleError, restricted_load
from crop.errors import CropError


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/crop-pwned",))


def test_restricted_unpickler_refuses_code_execution():
    blob = pickle.dumps({1: [Evil()]}, protocol=2)
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        restricted_load(blob)


def test_restricted_unpickler_refuses_builtin_eval():
    blob = b"c__builtin__\neval\n(S'1+1'\ntR."
    with pytest.raises(UnsafePickleError, match="eval"):
        restricted_load(blob)


def test_a_refused_pickle_is_a_one_line_error_with_exit_code_2(tmp_path, monkeypatch, capsys):
    evil = tmp_path / "HAPT.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps({1: [Evil()]}, protocol=2)))
    with pytest.raises(CropError, match="refused, the pickle is not plain HAPT data"):
        hapt.read_hapt_pickle(evil)
    from crop.cli import run

    monkeypatch.setenv("CROP_HAPT_FILE", str(evil))
    monkeypatch.setenv("CROP_CACHE_DIR", str(tmp_path / "cache"))
    assert run(["personalize", "--user", "2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("crop: error:") and "posix.system" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["HAPT.pkl.gz"]


def test_restricted_unpickler_reads_plain_containers():
    assert restricted_load(pickle.dumps({1: [2, 3.5, "x"]}, protocol=2)) == {1: [2, 3.5, "x"]}


def test_hapt_file_is_gzip_pickle():
    path = hapt.locate_hapt_file()
    with gzip.open(path) as f:
        assert f.read(1) == b"}"  # a binary (protocol-1) pickle of a dict


def _count_windows_by_loop(signal_len: int, labels: np.ndarray) -> int:
    count = 0
    start = 0
    while start + 128 <= signal_len:
        w = labels[start : start + 128]
        if (w == w[0]).all() and 1 <= w[0] <= 6:
            count += 1
        start += 64
    return count


@pytest.mark.parametrize("user", [1, 2, 10, 30])
def test_window_counts_match_a_plain_loop(user):
    recs = hapt.load_recordings()
    for session in (1, 2):
        expected = 0
        for e in hapt.session_experiments(user, session):
            lab = recs[f"u{user}_e{e}_label"]
            expected += _count_windows_by_loop(len(lab), lab)
        data = hapt.load_session(user, session)
        assert len(data) == expected
        assert data.X.shape == (expected, 6, 128)
        assert set(np.unique(data.y)) <= set(range(6))


def test_known_window_counts_of_real_file():
    # Counted once from the real recordings; a change in windowing or parsing breaks this.
    assert [len(hapt.load_session(1, s)) for s in (1, 2)] == [170, 166]
    assert [len(hapt.load_session(2, s)) for s in (1, 2)] == [154, 137]


def test_user_10_has_three_experiments_and_session_2_joins_two():
    assert hapt.experiments_of(10) == [1, 2, 3]
    assert hapt.session_experiments(10, 2) == [2, 3]
    y = hapt.load_session(10, 2).y
    assert set(np.unique(y)) == set(range(6))  # exp 2 static + exp 3 walking = all six
    for u in (1, 2, 30):
        assert len(hapt.experiments_of(u)) == 2


def test_window_values_come_from_the_signal():
    recs = hapt.load_recordings()
    sig, lab = recs["u2_e1_signal"], recs["u2_e1_label"]
    X, y = hapt.window_experiment(sig, lab)
    starts = [s for s in range(0, sig.shape[1] - 127, 64) if (lab[s : s + 128] == lab[s]).all() and 1 <= lab[s] <= 6]
    np.testing.assert_array_equal(X[0], sig[:, starts[0] : starts[0] + 128])
    assert y[0] == lab[starts[0]] - 1


def test_unknown_user_and_session():
    with pytest.raises(CropError, match="unknown HAPT user 31"):
        hapt.load_session(31, 1)
    with pytest.raises(CropError, match="session"):
        hapt.load_session(1, 3)


def test_scenarios_parse_and_keep_unseen_out_of_available():
    assert [s.name for s in parse_scenarios("hapt-session")] == ["hapt-session:1", "hapt-session:2"]
    assert [s.name for s in parse_scenarios("hapt-faults:2")] == ["hapt-faults:2"]
    with pytest.raises(CropError, match="unknown scenario"):
        parse_scenarios("hapt-nope")
    us = build_user_scenario(PERSONALIZATION_USERS[0], parse_scenarios("hapt-session:1")[0], seed=0)
    s1, s2 = hapt.load_session(us.user, 1), hapt.load_session(us.user, 2)
    assert len(us.available.train) + len(us.available.val) + len(us.available.test) == len(s1)
    np.testing.assert_array_equal(us.unseen["session 2"].X, s2.X)


def test_placement_and_fault_contexts():
    user = PERSONALIZATION_USERS[0]
    s2 = hapt.load_session(user, 2)
    rot = build_user_scenario(user, parse_scenarios("hapt-placement:1")[0], seed=0).unseen["rotated"]
    # a rotation keeps the norm of each sensor triad
    np.testing.assert_allclose(
        np.linalg.norm(rot.X[:, :3], axis=1), np.linalg.norm(s2.X[:, :3], axis=1), rtol=1e-4, atol=1e-5
    )
    assert not np.allclose(rot.X, s2.X)
    faults = build_user_scenario(user, parse_scenarios("hapt-faults:1")[0], seed=0).unseen
    assert set(faults) == {"noise", "bias-drift", "dead-gyro", "saturation"}
    assert (faults["dead-gyro"].X[:, 3:] == 0).all()
    assert np.abs(faults["saturation"].X[:, :3]).max() <= 1.2 + 1e-6
    # the unseen context does not depend on the training seed
    again = build_user_scenario(user, parse_scenarios("hapt-faults:1")[0], seed=5).unseen
    np.testing.assert_array_equal(again["noise"].X, faults["noise"].X)

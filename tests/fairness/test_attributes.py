"""Attribute tables (CSV / JSON) and the traits measured on the HAPT recordings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crop.errors import CropError
from crop.fairness import load_attributes, movement_intensity, rank_terciles, walking_cadence
from crop.fairness._traits import hapt_trait_values, trait_attributes

USERS = [2, 8, 14, 20]
KNOWN = tuple(range(1, 31))


def load(tmp_path, name: str, text: str, users=USERS):
    path = tmp_path / name
    path.write_text(text)
    return load_attributes(path, users=users, known_users=KNOWN, reserved=("walking_cadence",))


def test_csv_and_json_tables_give_the_same_groups(tmp_path):
    csv_table = load(
        tmp_path, "a.csv", "user,hand,age band\n2,left,20-29\n8,left,30-39\n14,right,20-29\n20,right,30-39\n"
    )
    rows = {"2": {"hand": "left", "age band": "20-29"}, "8": {"hand": "left", "age band": "30-39"}}
    rows |= {"14": {"hand": "right", "age band": "20-29"}, "20": {"hand": "right", "age band": "30-39"}}
    as_object = load(tmp_path, "b.json", json.dumps(rows))
    as_list = load(tmp_path, "c.json", json.dumps([{"user": int(u), **v} for u, v in rows.items()]))
    assert csv_table.groups == as_object.groups == as_list.groups
    assert csv_table.groups["hand"] == {2: "left", 8: "left", 14: "right", 20: "right"}
    assert csv_table.order["age band"] == ["20-29", "30-39"]
    # Rows of users outside the benchmark are fine; numbers are read as group labels.
    extra = load(tmp_path, "d.csv", "user,height\n2,1\n8,1\n14,2\n20,2\n30,3\n")
    assert extra.groups["height"] == {2: "1", 8: "1", 14: "2", 20: "2"}


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("a.csv", "user,hand\n2,l\n8,l\n14,r\n20,r\n99,r\n", "unknown user 99 (hapt users are 1-30)"),
        (
            "a.json",
            '{"2": {"hand": "l"}, "8": {"hand": "l"}, "14": {"hand": "r"}, "20": {"hand": "r"}, "0": {"hand": "r"}}',
            "unknown user 0",
        ),
        ("a.csv", "id,hand\n2,l\n", "missing column 'user'"),
        ("a.json", '[{"id": 2, "hand": "l"}]', "missing column 'user'"),
        ("a.csv", "user,hand,age\n2,l,1\n8,l,1\n14,r,\n20,r,2\n", "user 14: missing column 'age'"),
        ("a.json", '[{"user": 2, "hand": "l"}, {"user": 8}]', "user 8: missing column 'hand'"),
        ("a.csv", "user,hand\n2,l\n8,l\n14,l\n20,r\n", "group 'r' has one person (user 20)"),
        ("a.csv", "user,hand\n2,l\n8,l\n14,l\n20,l\n", "a single group"),
        ("a.csv", "user,hand\n2,l\n2,r\n", "user 2 has two rows"),
        ("a.csv", "user,hand\nsam,l\n", "'sam' is not an integer user id"),
        ("a.csv", "user,hand\n2,l\n8,l\n", "no row for user(s) [14, 20]"),
        ("a.csv", "user,activity\n2,l\n8,l\n14,r\n20,r\n", "built-in attribute"),
        ("a.csv", "user,walking_cadence\n2,l\n8,l\n14,r\n20,r\n", "built-in attribute"),
        ("a.csv", "user\n2\n", "no attribute column"),
        ("a.csv", "", "empty attribute table"),
        ("a.csv", "user,hand,hand\n2,l,l\n", "repeated column"),
        ("a.txt", "user,hand\n2,l\n", "must be a .csv or .json file"),
        ("a.json", "{not json", "not valid JSON"),
        ("a.json", "[1, 2]", "list of objects"),
        ("a.json", '{"2": {"hand": true}}', "must be a non-empty text or number"),
        ("a.json", '{"2": {"hand": ""}}', "must be a non-empty text or number"),
    ],
)
def test_bad_tables_are_one_line_errors(tmp_path, name, text, message):
    with pytest.raises(CropError) as info:
        load(tmp_path, name, text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_or_special_files_are_refused(tmp_path):
    with pytest.raises(CropError, match="not found"):
        load_attributes(tmp_path / "none.csv", users=USERS, known_users=KNOWN)
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(CropError, match="not a regular file"):
        load_attributes(tmp_path / "d.csv", users=USERS, known_users=KNOWN)
    (tmp_path / "b.csv").write_bytes(b"user,hand\n2,\xff\n")
    with pytest.raises(CropError, match="UTF-8"):
        load_attributes(tmp_path / "b.csv", users=USERS, known_users=KNOWN)


# ---------------------------------------------------------------- traits


def walking_windows(freq_hz: float, amplitude: float, n: int = 12, rate: float = 50.0) -> np.ndarray:
    t = np.arange(128) / rate
    X = np.zeros((n, 6, 128), np.float32)
    for i in range(n):
        X[i, 0] = 1.0 + amplitude * np.sin(2 * np.pi * freq_hz * t + i)  # gravity on x plus the steps
    return X


@pytest.mark.parametrize("freq", [1.55, 1.8, 2.05])
def test_cadence_finds_the_step_frequency_and_intensity_the_spread(freq):
    X = walking_windows(freq, 0.3)
    y = np.zeros(len(X), np.int64)
    assert walking_cadence(X, y) == pytest.approx(60 * freq, abs=1.5)  # steps per minute
    assert movement_intensity(X, y) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)  # std of a sine
    assert movement_intensity(walking_windows(freq, 0.6), y) > movement_intensity(X, y)
    other = np.full(len(X), 3)
    with pytest.raises(CropError, match="walking windows"):
        walking_cadence(X, other)
    # Only walking windows count: sitting windows with wild values change nothing.
    mixed = np.concatenate([X, 5 * walking_windows(0.7, 2.0)])
    labels = np.concatenate([y, np.full(len(X), 3)])
    assert walking_cadence(mixed, labels) == walking_cadence(X, y)


def test_terciles_by_rank_have_equal_sizes_and_split_ties_by_user():
    values = {u: float(u % 7) for u in range(1, 31)}
    groups = rank_terciles(values, ("low", "mid", "high"))
    assert [list(groups.values()).count(b) for b in ("low", "mid", "high")] == [10, 10, 10]
    assert max(values[u] for u in groups if groups[u] == "low") <= min(values[u] for u in groups if groups[u] == "mid")
    assert rank_terciles({1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0}, "abc") == {
        1: "a",
        2: "a",
        3: "b",
        4: "b",
        5: "c",
        6: "c",
    }
    with pytest.raises(CropError, match="at least 6 people"):
        rank_terciles({1: 0.0, 2: 1.0}, "abc")
    few = trait_attributes({"movement_intensity": {1: 0.1, 2: 0.2}})
    assert few.groups == {}


def test_hapt_traits_are_plausible_and_read_only_the_available_session():
    users = [2, 8, 14, 20, 26, 5]
    session1 = hapt_trait_values(users, 1)
    assert set(session1) == {"movement_intensity", "walking_cadence"}  # no generic models given
    assert all(0.05 < v < 0.6 for v in session1["movement_intensity"].values())
    assert all(80 < v < 140 for v in session1["walking_cadence"].values())
    session2 = hapt_trait_values(users, 2)
    assert session1["movement_intensity"] != session2["movement_intensity"]  # measured per available session
    attrs = trait_attributes(session1)
    assert sorted(attrs.groups) == ["movement_intensity", "walking_cadence"]
    assert sorted(attrs.groups["walking_cadence"].values()) == ["fast", "fast", "mid", "mid", "slow", "slow"]

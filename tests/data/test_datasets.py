"""Loaders of the paper's datasets on synthetic replicas of their on-disk formats: what they
read, the contexts and scenarios of Table 2, users, splits, attributes; and malformed files
refused with one line."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from crop.data.datasets import dataset_names, get_dataset
from crop.data.datasets.replica import ES_UNUSABLE_USER, ES_USERS, WIDAR_DAMAGED, write_replica
from crop.errors import CropError


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    root = tmp_path_factory.mktemp("replicas")
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CROP_CACHE_DIR", str(cache))
        yield {
            name: write_replica(name, root / name) for name in ("extrasensory", "stress", "widar", "perceptr", "npz")
        }


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CROP_CACHE_DIR", str(tmp_path / "cache"))


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_every_dataset_is_registered():
    assert dataset_names() == ["hapt", "csv", "extrasensory", "extrasensory-raw", "npz", "perceptr", "stress", "widar"]


def test_extrasensory_reads_walking_sitting_by_phone_place(replicas):
    ds = get_dataset("extrasensory", replicas["extrasensory"])
    data = ds.load()
    assert sorted(data.users) == sorted(ES_USERS) and data.input_shape == (2, 26)
    ud = data.users[ES_USERS[0]]
    assert len(ud.y) == 3 * 2 * 8  # the four rows without one clear label, place or feature are dropped
    assert set(ud.context.tolist()) == {"hand", "pocket", "bag"} and set(ud.y.tolist()) == {0, 1}
    assert ds.default_users() == list(ES_USERS[:2])  # prefixes 80 and 9D
    assert ds.parse_user("9d") == ES_USERS[1]
    with pytest.raises(CropError, match="no UUID"):
        ds.parse_user("FF")
    s1, s2 = ds.parse_scenarios(None)
    assert (s1.available, dict(s1.unseen)) == (("hand", "pocket"), {"bag": ("bag",)})
    assert (s2.available, dict(s2.unseen)) == (("bag", "pocket"), {"hand": ("hand",)})
    us = ds.user_scenario(ES_USERS[0], s1, seed=0)
    assert len(us.available.train) + len(us.available.val) + len(us.available.test) == 32
    assert len(us.unseen["bag"]) == 16 and us.available_name == "hand+pocket"
    train, val = ds.generic_split("paper", 0)
    assert not set(train + val) & set(ES_USERS[:2]) and not set(train) & set(val) and len(val) == 1


def test_extrasensory_ambiguous_prefix(tmp_path):
    root = write_replica("extrasensory", tmp_path / "es", per_cell=2)
    twin = "80FFFFFF-0000-4000-8000-00000000000F"
    (root / f"{twin}.features_labels.csv.gz").write_bytes((root / f"{ES_USERS[0]}.features_labels.csv.gz").read_bytes())
    ds = get_dataset("extrasensory", root)
    with pytest.raises(CropError, match="'80' is ambiguous: 2 UUIDs start with it"):
        ds.parse_user("80")
    assert ds.parse_user("80f") == twin
    with pytest.raises(CropError, match="several UUIDs start with the paper's prefix 80"):
        ds.default_users()
    train, val = ds.generic_split("paper", 0)
    assert twin not in train + val and ES_USERS[0] not in train + val


def test_extrasensory_raw_bursts(tmp_path):
    root = write_replica("extrasensory-raw", tmp_path / "es", per_cell=3)
    data = get_dataset("extrasensory-raw", root).load()
    assert data.input_shape == (6, 800)
    assert len(data.users[ES_USERS[0]].y) == 3 * 2 * 3


def test_stress_windows_features_contexts_and_demographics(replicas):
    ds = get_dataset("stress", replicas["stress"])
    data = ds.load()
    assert sorted(data.users) == [1, 2, 3, 4, 5, 6] and data.input_shape == (34,)
    contexts = set(data.users[1].context.tolist())
    assert contexts == {"left/still", "left/moving", "right/still", "right/moving"}
    assert data.attributes[2] == {
        "age": 26.0,
        "height_cm": 166.0,
        "weight_kg": 59.0,
        "gender": "male",
        "dominant_hand": "right",
    }
    assert ds.default_users() == [1, 2, 3] and ds.parse_user("S2") == 2 and ds.metric == "f1"
    names = [s.name for s in ds.parse_scenarios("stress,stress-movement:1")]
    assert names == ["stress:1", "stress:2", "stress-movement:1"]
    us = ds.user_scenario(1, ds.parse_scenarios("stress:1")[0], seed=0)
    assert set(us.unseen) == {"right/still", "right/moving"}
    assert set(us.available.train.y.tolist()) == {0, 1}
    # Stress windows are faster (heart rate) and sweatier (EDA) than calm ones.
    X, y = data.users[1].X, data.users[1].y
    from crop.data.datasets.stress import FEATURE_NAMES

    hr, eda = FEATURE_NAMES.index("hr_mean"), FEATURE_NAMES.index("eda_mean")
    assert X[y == 1, hr].mean() > X[y == 0, hr].mean() + 15 and X[y == 1, eda].mean() > X[y == 0, eda].mean() + 2


def test_stress_without_annotation_derives_wrist_and_movement(tmp_path):
    root = write_replica("stress", tmp_path / "s", subjects=(2, 3), annotate=False)
    data = get_dataset("stress", root).load()
    # dominant hand right -> the E4 on the left wrist; movement from the ACC magnitude rule
    assert set(data.users[2].context.tolist()) == {"left/still", "left/moving"}
    assert set(data.users[3].context.tolist()) == {"right/still", "right/moving"}


def test_widar_gestures_rooms_orientations(replicas):
    ds = get_dataset("widar", replicas["widar"])
    data = ds.load()
    assert sorted(data.users) == [0, 1, 2, 3, 4] and data.input_shape == (22, 20, 20)
    ud = data.users[0]
    assert len(ud.y) == 6 * (3 + 2 * 2)  # Draw-N, not one of the six, is left out
    assert np.bincount(ud.y).tolist() == [7] * 6
    assert set(ud.context.tolist()) == {"room1/o1", "room1/o2", "room1/o3", "room2/o4", "room2/o5"}
    train, val = ds.generic_split(ds.generic_key(0), 0)
    assert 0 not in train + val and {1, 2} <= set(train + val) and len(val) == 1  # other personalization users train
    us = ds.user_scenario(0, ds.parse_scenarios("widar:2")[0], seed=0)
    assert us.available_name == "room2/o4+room2/o5" and len(us.unseen["room1 o1-3"]) == 18
    assert len(us.available.train) + len(us.available.val) + len(us.available.test) == 24


def test_perceptr_phases_and_ratings(replicas):
    ds = get_dataset("perceptr", replicas["perceptr"])
    data = ds.load()
    assert data.input_shape == (13, 20) and ds.default_users() == [17, 25]
    assert set(data.users[25].y.tolist()) == {0, 1}  # ratings 0.2 / 0.8 made binary at 0.5
    assert set(data.users[17].context.tolist()) == {"pre-treatment", "treatment"}
    (scenario,) = ds.parse_scenarios(None)
    assert scenario.name == "perceptr:1" and dict(scenario.unseen) == {"treatment": ("treatment",)}


def test_npz_scenarios_from_contexts_and_attributes(replicas):
    ds = get_dataset("npz", replicas["npz"])
    assert ds.users() == ["alice", "bob"] and ds.load().attributes["bob"] == {"age": "31", "gender": "f"}
    (scenario,) = ds.parse_scenarios("left")
    assert dict(scenario.unseen) == {"right": ("right",)}
    for bad in ("", "up", "left+left", "left+right"):
        with pytest.raises(CropError):
            ds.parse_scenarios(bad)


def test_loaded_arrays_are_cached_and_identical(replicas, tmp_path):
    first = get_dataset("widar", replicas["widar"]).load()
    assert list((tmp_path / "cache" / "datasets").glob("widar-*.npz"))
    from crop.data.datasets import base

    base._load_cached.cache_clear()
    again = get_dataset("widar", replicas["widar"]).load()  # from the .npz cache
    for u in first.users:
        assert np.array_equal(first.users[u].X, again.users[u].X)
        assert np.array_equal(first.users[u].context, again.users[u].context)


# ---------------------------------------------------------------- malformed input


def test_bad_roots(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "empty").mkdir()
    for root, message in [(tmp_path / "nope", "no such directory"), (tmp_path / "f", "not a directory")]:
        with pytest.raises(CropError, match=message):
            get_dataset("stress", root)
    for name in ("extrasensory", "stress", "widar", "perceptr", "npz"):
        with pytest.raises(CropError) as exc:
            get_dataset(name, tmp_path / "empty").load()
        assert str(tmp_path / "empty") in one_line(exc)
    with pytest.raises(CropError, match="needs --root"):
        get_dataset("widar", None)
    with pytest.raises(CropError, match="unknown dataset 'uci'"):
        get_dataset("uci", tmp_path)


def _rewrite_csv(path, edit):
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    with gzip.open(path, "wt") as f:
        f.write("\n".join(edit(lines)) + "\n")


def test_extrasensory_malformed_files(tmp_path):
    root = write_replica("extrasensory", tmp_path / "es", per_cell=2)
    path = root / f"{ES_USERS[0]}.features_labels.csv.gz"
    original = path.read_bytes()

    def drop_column(lines, name="label:PHONE_IN_BAG"):
        i = lines[0].split(",").index(name)
        return [",".join(c for j, c in enumerate(line.split(",")) if j != i) for line in lines]

    def set_cell(column, value):
        def edit(lines):
            cells = lines[1].split(",")
            cells[lines[0].split(",").index(column)] = value
            return [lines[0], ",".join(cells)]

        return edit

    cases = [
        (drop_column, "missing column 'label:PHONE_IN_BAG'"),
        (lambda lines: [lines[0], lines[1] + ",extra"], "row 2 has"),
        (set_cell("raw_acc:3d:mean_x", "abc"), "non-numeric value in the feature columns"),
        (set_cell("label:PHONE_IN_HAND", "0.5"), "label cells must be 1, 0 or missing"),
    ]
    for edit, message in cases:
        path.write_bytes(original)
        _rewrite_csv(path, edit)
        from crop.data.datasets import base

        base._load_cached.cache_clear()
        with pytest.raises(CropError) as exc:
            get_dataset("extrasensory", root).load()
        assert message in one_line(exc), one_line(exc)
    path.write_bytes(b"not gzip")
    with pytest.raises(CropError, match="not a readable gzip CSV"):
        get_dataset("extrasensory", root).load()


def test_extrasensory_label_values(tmp_path):
    root = write_replica("extrasensory", tmp_path / "es", per_cell=2)
    path = root / f"{ES_USERS[0]}.features_labels.csv.gz"
    header = None

    def bad_label(lines):
        nonlocal header
        header = lines[0].split(",")
        cells = lines[1].split(",")
        cells[header.index("label:SITTING")] = "2"
        return [lines[0], ",".join(cells)]

    _rewrite_csv(path, bad_label)
    with pytest.raises(CropError, match="label cells must be 1, 0 or missing"):
        get_dataset("extrasensory", root).load()


class Payload:
    """Any object: a pickle that reconstructs it must be refused."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_stress_pickle_holding_an_object_is_refused(tmp_path, capsys):
    root = write_replica("stress", tmp_path / "s", subjects=(1, 2, 3))
    path = root / "S1" / "S1.pkl"
    data = pickle.loads(path.read_bytes())
    data["extra"] = Payload()
    path.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(CropError) as exc:
        get_dataset("stress", root).load()
    assert "refused, the pickle holds more than plain data" in one_line(exc) and ".print" in one_line(exc)
    assert "never run" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["signal"]["wrist"].pop("EDA"), "missing signal -> wrist -> EDA"),
        (lambda d: d["signal"]["wrist"].update(ACC=np.zeros((100, 2))), "ACC must be a numeric array (n, 3)"),
        (lambda d: d.update(label=np.zeros((3, 3))), "missing label, or not a 1-D numeric array"),
        (lambda d: d["signal"].pop("wrist"), "missing signal -> wrist"),
        (lambda d: d["signal"]["wrist"]["TEMP"].__setitem__((5, 0), np.nan), "TEMP holds NaN"),
    ],
)
def test_stress_malformed_pickles(tmp_path, edit, message):
    root = write_replica("stress", tmp_path / "s", subjects=(1, 2, 3))
    path = root / "S2" / "S2.pkl"
    data = pickle.loads(path.read_bytes())
    edit(data)
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(CropError) as exc:
        get_dataset("stress", root).load()
    assert message in one_line(exc) and "S2.pkl" in one_line(exc)


def test_stress_bad_annotation(tmp_path):
    root = write_replica("stress", tmp_path / "s", subjects=(1, 2, 3))
    (root / "contexts.csv").write_text("subject,start_s,end_s,wrist,movement\nS1,0,10,middle,still\n")
    with pytest.raises(CropError, match="row 2: wrist must be left or right"):
        get_dataset("stress", root).load()
    (root / "contexts.csv").write_text("who,when\n")
    with pytest.raises(CropError, match="need a header with columns"):
        get_dataset("stress", root).load()


def test_widar_malformed_files(tmp_path):
    from scipy.io import savemat

    root = write_replica("widar", tmp_path / "w", file_users=(1, 2, 3))
    path = next(root.rglob("user1-1-*.mat"))
    savemat(path, {"velocity_spectrum_ro": np.zeros((20, 18, 5))})
    with pytest.raises(CropError) as exc:
        get_dataset("widar", root).load()
    assert "must be a numeric 20 x 20 x T array, got shape (20, 18, 5)" in one_line(exc)
    savemat(path, {"something_else": np.zeros(3)})
    with pytest.raises(CropError, match="no variable 'velocity_spectrum_ro'"):
        get_dataset("widar", root).load()
    path.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x02IM" + b"\0" * 64)  # a v7.3 header
    with pytest.raises(CropError) as exc:
        get_dataset("widar", root).load()
    assert "HDF5" in one_line(exc)
    path.unlink()
    (root / "BVP" / "user1-1-1-1-1.mat").write_bytes(b"")  # no date directory above it
    with pytest.raises(CropError, match="cannot tell its date"):
        get_dataset("widar", root).load()


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X": np.zeros((4, 13)), "y": np.zeros(4), "phase": np.array(["baseline"] * 4)}, "(n, features, frames)"),
        ({"X": np.zeros((4, 13, 5)), "y": np.zeros(4)}, "missing array(s) phase"),
        ({"X": np.zeros((4, 13, 5)), "y": np.zeros(4), "phase": np.array(["later"] * 4)}, "unknown phase 'later'"),
        ({"X": np.zeros((4, 13, 5)), "y": np.full(4, 2.0), "phase": np.array(["baseline"] * 4)}, "ratings in [0, 1]"),
        ({"X": np.zeros((4, 13, 5)), "y": np.zeros(4), "phase": np.array([object()] * 4)}, "plain arrays"),
    ],
)
def test_perceptr_malformed_files(tmp_path, arrays, message):
    root = write_replica("perceptr", tmp_path / "p")
    np.savez(root / "17.npz", **arrays)
    with pytest.raises(CropError) as exc:
        get_dataset("perceptr", root).load()
    assert message in one_line(exc) and "17.npz" in one_line(exc)


def test_npz_missing_context_and_shapes(tmp_path):
    root = write_replica("npz", tmp_path / "n")
    np.savez(root / "carol.npz", X=np.zeros((6, 8)), y=np.zeros(6, dtype=int))
    with pytest.raises(CropError, match="carol.npz: missing array context"):
        get_dataset("npz", root).load()
    np.savez(root / "carol.npz", X=np.zeros((6, 9)), y=np.zeros(6, dtype=int), context=np.array(["left"] * 6))
    with pytest.raises(CropError, match="different shapes"):
        get_dataset("npz", root).load()


# ---------------------------------------------------------------- issue 23: the loaders on the real files


def data_warnings(record) -> list[str]:
    from crop.errors import DataWarning

    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


@pytest.mark.parametrize("kinds", [("empty",), ("truncated",), ("empty-array",), ("not-matlab",), WIDAR_DAMAGED])
def test_widar_unreadable_or_empty_files_are_skipped_with_one_counted_warning(tmp_path, kinds):
    """A 0-byte, truncated or foreign .mat ended the load with scipy's MatReadError; an empty
    velocity_spectrum_ro became an all-zero sample. Both are skipped, counted, the first named."""
    clean = get_dataset("widar", write_replica("widar", tmp_path / "clean", file_users=(1, 2))).load()
    root = write_replica("widar", tmp_path / "w", file_users=(1, 2), damaged=kinds)
    for _ in range(2):  # parsed, then from the array cache: the same warning both times
        with pytest.warns(UserWarning) as record:
            data = get_dataset("widar", root).load()
        (message,) = data_warnings(record)
        n = len(kinds)
        assert f"widar: skipped {n} unreadable file{'s' if n > 1 else ''} under {root}" in message
        assert "\n" not in message and f", first: {root}" in message and ".mat: " in message
        assert {u: len(d.y) for u, d in data.users.items()} == {u: len(d.y) for u, d in clean.users.items()}
        assert (np.abs(data.users[0].X).reshape(len(data.users[0].y), -1).max(axis=1) > 0).all()  # no all-zero sample


def test_widar_only_unreadable_files_is_one_line_error(tmp_path):
    root = write_replica("widar", tmp_path / "w", file_users=(1,), damaged=("empty",))
    for path in root.rglob("*.mat"):
        path.write_bytes(b"")
    with pytest.raises(CropError) as exc:  # the skipped files are said in the error itself
        get_dataset("widar", root).load()
    assert "no usable widar samples found" in one_line(exc) and "; widar: skipped 43 unreadable files" in one_line(exc)


def test_extrasensory_user_without_usable_rows_is_reported_and_refused_by_name(tmp_path):
    """Such users were dropped without a word; asking for one said 'no UUID ... starts with it'."""
    root = write_replica("extrasensory", tmp_path / "es", per_cell=3, unusable_user=True)
    for _ in range(2):  # parsed, then from the array cache
        with pytest.warns(UserWarning) as record:
            ds = get_dataset("extrasensory", root)
            users = ds.users()
        (message,) = data_warnings(record)
        assert message.startswith(f"extrasensory: 1 of 6 users under {root} has no usable rows and is left out: ")
        assert f"{ES_UNUSABLE_USER} (no row labelled walking or sitting has the phone in exactly one" in message
    assert users == sorted(ES_USERS) and ES_UNUSABLE_USER not in ds.load().users
    for typed in ("4444", ES_UNUSABLE_USER[:13]):
        with pytest.raises(CropError) as exc:
            ds.parse_user(typed)
        text = one_line(exc)
        assert f"extrasensory user {typed!r} ({ES_UNUSABLE_USER}) exists under {root} but has no usable rows" in text
        assert "PHONE_IN_HAND" in text and "no UUID" not in text
    with pytest.raises(CropError, match="exists under .* but has no usable rows"):
        ds.user_scenario(ES_UNUSABLE_USER, ds.parse_scenarios("extrasensory:1")[0], 0)
    with pytest.raises(CropError, match="no UUID under"):
        ds.parse_user("FF")  # a user that is not there at all is still unknown


def test_extrasensory_reason_when_every_row_misses_a_feature(tmp_path):
    root = write_replica("extrasensory", tmp_path / "es", per_cell=2)
    path = root / f"{ES_USERS[2]}.features_labels.csv.gz"
    _rewrite_csv(
        path, lambda lines: lines[:1] + [",".join([*r.split(",")[:1], "nan", *r.split(",")[2:]]) for r in lines[1:]]
    )
    ds = get_dataset("extrasensory", root)
    with pytest.warns(UserWarning, match="misses a phone accelerometer or gyroscope feature"):
        ds.load()
    with pytest.raises(CropError, match="11111111-.*has no usable rows: every labelled row .* misses"):
        ds.parse_user("1111")


def test_empty_context_is_named_with_the_users_contexts(tmp_path):
    root = write_replica("extrasensory", tmp_path / "es", per_cell=3, without={ES_USERS[0]: ("bag", "pocket")})
    ds = get_dataset("extrasensory", root)
    s1, s2 = ds.parse_scenarios(None)
    with pytest.raises(CropError) as exc:
        ds.user_scenario(ES_USERS[0], s1, 0)
    assert one_line(exc) == (
        f"extrasensory user {ES_USERS[0]}, scenario extrasensory:1: no samples in the unseen context bag "
        "(empty context; this user has: hand)"
    )
    with pytest.raises(CropError, match="no samples in the available context bag\\+pocket"):
        ds.user_scenario(ES_USERS[0], s2, 0)


def test_widar_user_without_a_room_is_an_empty_context(tmp_path):
    root = write_replica("widar", tmp_path / "w", file_users=(1, 2, 3), without_room={1: 2})
    ds = get_dataset("widar", root)
    with pytest.raises(CropError) as exc:
        ds.user_scenario(0, ds.parse_scenarios("widar:2")[0], 0)
    assert one_line(exc) == (
        "widar user 0, scenario widar:2: no samples in the available context room2/o4+room2/o5 "
        "(empty context; this user has: room1/o1, room1/o2, room1/o3)"
    )

"""Leave-users-out folds: every HAPT user is served by a generic model that never saw them."""

import pytest

from crop.data import hapt
from crop.data.scenarios import GENERIC_VAL_USERS, PERSONALIZATION_USERS
from crop.errors import CropError
from crop.generic import N_FOLDS, SHIPPED_FOLD, fold_of, fold_users, generic_for_user, validation_fold
from crop.models.io import metadata_of


def test_folds_partition_the_users_and_validation_is_another_fold():
    seen = [u for f in range(N_FOLDS) for u in fold_users(f)]
    assert sorted(seen) == list(hapt.USERS)
    for f in range(N_FOLDS):
        assert validation_fold(f) != f
        assert all(fold_of(u) == f for u in fold_users(f))
    assert fold_users(SHIPPED_FOLD) == PERSONALIZATION_USERS
    assert fold_users(validation_fold(SHIPPED_FOLD)) == GENERIC_VAL_USERS
    with pytest.raises(CropError, match="unknown HAPT user"):
        fold_of(31)


@pytest.mark.parametrize("kind", ["hapt", "hapt-rot"])
def test_documented_users_get_the_shipped_model_which_never_saw_them(kind):
    model, info = generic_for_user(kind, 8)
    assert info["source"] == "shipped" and info["fold"] == SHIPPED_FOLD
    meta = metadata_of(info["path"])
    import json

    trained_on = set(json.loads(meta["train_users"])) | set(json.loads(meta["val_users"]))
    assert not trained_on & set(PERSONALIZATION_USERS)
    assert trained_on | set(PERSONALIZATION_USERS) == set(hapt.USERS)


@pytest.mark.slow
def test_a_fold_model_never_saw_its_users(tmp_path):
    _, info = generic_for_user("hapt", 9, cache=tmp_path)
    assert info["source"] == "trained" and info["fold"] == 3 and info["train_seconds"] > 0
    meta = metadata_of(info["path"])
    import json

    assert not set(json.loads(meta["train_users"])) & set(fold_users(3))
    assert set(json.loads(meta["val_users"])) == set(fold_users(validation_fold(3)))
    again, info2 = generic_for_user("hapt", 15, cache=tmp_path)  # same fold: the cached file
    assert info2["source"] == "cached" and info2["path"] == info["path"]

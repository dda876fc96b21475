import pytest
import torch

from crop.data.sensing import stratified_split
from tests.conftest import TinyNet, make_data


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and the suite shares two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def crop_run():
    """One CRoP result on the tiny synthetic task, its split and an unseen (shifted) context."""
    import crop

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyNet()
    split = stratified_split(make_data(), seed=0)
    unseen = {"shifted": make_data(60, seed=5, shift=-1.0)}
    cfg = {
        "tau": 0.2,
        "initial": {"epochs": 4, "lr": 1e-2, "batch_size": 16},
        "final": {"epochs": 2, "lr": 1e-2, "batch_size": 16},
    }
    result = crop.personalize(model, split, cfg, seed=1)
    torch.set_num_threads(before)
    assert result.prune_amount > 0
    return model, split, unseen, result

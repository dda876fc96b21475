import numpy as np
import pytest
import torch

import crop
from crop.data.scenarios import build_user_scenario, parse_scenarios

GENERIC = "src/crop/models/weights/hapt-generic.safetensors"


@pytest.fixture(scope="session")
def hapt_model():
    from pathlib import Path

    return crop.load_model(Path(crop.__file__).parent / "models" / "weights" / "hapt-generic.safetensors")


@pytest.fixture(scope="session")
def hapt_user():
    return build_user_scenario(2, parse_scenarios("hapt-session:1")[0], 0)


@pytest.fixture(scope="session")
def hapt_windows(hapt_user):
    data = hapt_user.available.test
    return torch.as_tensor(data.X[:24]), torch.as_tensor(np.asarray(data.y[:24]))

"""The public API on a model the library does not know, and every bad-input case."""

import numpy as np
import pytest
import torch
from torch import nn

import crop
from crop.data.sensing import ContextSplit, SensingData, load_npz
from crop.errors import CropError
from tests.conftest import make_data


class ODEStyleNet(nn.Module):
    """A model with its own forward logic and no nn.Sequential."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(48, 12)
        self.gate = nn.Parameter(torch.ones(12))
        self.out = nn.Linear(12, 3)

    def forward(self, x):
        h = torch.tanh(self.a(x.flatten(1))) * self.gate
        return self.out(h)


def test_any_module_can_be_personalized_and_evaluated():
    torch.manual_seed(0)
    net = ODEStyleNet()
    r = crop.personalize(net, make_data(), {"initial": {"epochs": 3}, "final": {"epochs": 2}}, seed=0)
    assert isinstance(r.model, crop.models.routed.RoutedModel) and isinstance(r.model.personal, ODEStyleNet)
    assert isinstance(r.model.generic, ODEStyleNet) and r.model.generic is not net  # a copy, served beside it
    assert 0.0 <= r.prune_amount < 1.0
    scores = crop.evaluate(r.model, {"a": make_data(seed=1), "u": make_data(seed=2, shift=1.0)})
    assert set(scores) == {"a", "u"} and set(scores["a"]) == {"balanced_accuracy", "accuracy", "f1"}
    assert "a.weight" in r.info["masks"] and "out.weight" not in r.info["masks"]


def test_metrics_match_sklearn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    from crop.metrics import accuracy, balanced_accuracy, f1

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))
    assert accuracy(y, p) == pytest.approx(accuracy_score(y, p))
    assert f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))
    yb, pb = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    assert f1(yb, pb) == pytest.approx(f1_score(yb, pb))


def test_delta_matches_section_6_2():
    from crop.metrics import delta

    p = {1: {"available": 90, "unseen": 70}, 2: {"available": 80, "unseen": 60}}
    g = {1: {"available": 85, "unseen": 75}, 2: {"available": 70, "unseen": 50}}
    # user 1: (90-85)+(70-75)=0 ; user 2: 10+10=20 ; mean 10
    assert delta(p, g) == pytest.approx(10.0)


@pytest.fixture
def net():
    from tests.conftest import TinyNet

    torch.manual_seed(0)
    return TinyNet()


def _split(data):
    return crop.stratified_split(data, 0)


def test_wrong_shape(net):
    d = make_data()
    bad = SensingData(d.X[:, :, :10], d.y, "short windows")
    with pytest.raises(CropError, match="short windows"):
        crop.personalize(net, _split(bad))


def test_nan_and_inf(net):
    d = make_data()
    X = d.X.copy()
    X[3, 0, 0] = np.nan
    X[5, 1, 2] = np.inf
    with pytest.raises(CropError, match="2 window\\(s\\) contain NaN or inf"):
        crop.personalize(net, SensingData(X, d.y, "user data"))


def test_empty_context(net):
    d = make_data()
    with pytest.raises(CropError, match="no samples"):
        crop.personalize(net, SensingData(d.X[:0], d.y[:0], "empty"))


def test_class_absent_from_available_data(net):
    d = make_data()
    keep = d.y != 2
    with pytest.raises(CropError, match=r"class\(es\) \[2\] absent"):
        crop.personalize(net, SensingData(d.X[keep], d.y[keep], "two classes"))


def test_label_out_of_range(net):
    d = make_data()
    y = d.y.copy()
    y[0] = 7
    with pytest.raises(CropError, match="labels must lie in 0..2"):
        crop.personalize(net, ContextSplit(SensingData(d.X, y, "tr"), d, d))


def test_mismatched_lengths():
    d = make_data()
    with pytest.raises(CropError, match="y must have shape"):
        SensingData(d.X, d.y[:-1], "bad").validate()


def test_unknown_method_and_metric(net):
    with pytest.raises(CropError, match="unknown method 'nope'"):
        crop.personalize(net, make_data(), method="nope")
    with pytest.raises(CropError, match="unknown metric"):
        crop.personalize(net, make_data(), metric="auc")


def test_npz_reader_errors(tmp_path):
    with pytest.raises(CropError, match="not found"):
        load_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CropError, match="not a readable .npz"):
        load_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "nox.npz", y=np.zeros(3))
    with pytest.raises(CropError, match="missing array\\(s\\) X"):
        load_npz(tmp_path / "nox.npz")
    np.savez(tmp_path / "obj.npz", X=np.zeros((3, 2)), y=np.array([object(), 1, 2], dtype=object))
    with pytest.raises(CropError):
        load_npz(tmp_path / "obj.npz")


def test_model_file_errors(tmp_path, net):
    from crop.models.io import load_model, load_state, save_model

    with pytest.raises(CropError, match="model file not found"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage")
    with pytest.raises(CropError, match="not a valid safetensors"):
        load_model(tmp_path / "corrupt.safetensors")
    save_model(net, tmp_path / "tiny.safetensors")
    with pytest.raises(CropError, match="no built-in architecture"):
        load_model(tmp_path / "tiny.safetensors")
    from tests.conftest import TinyNet

    loaded = load_state(TinyNet(), tmp_path / "tiny.safetensors")
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with pytest.raises(CropError, match="do not fit"):
        load_state(TinyNet(length=8), tmp_path / "tiny.safetensors")


def test_builtin_model_roundtrip(tmp_path):
    from crop.models import HAPTNet, load_model, save_model

    m = HAPTNet()
    save_model(m, tmp_path / "m.safetensors", {"note": "x"})
    m2 = load_model(tmp_path / "m.safetensors")
    x = torch.randn(2, 6, 128)
    m.eval()
    assert torch.equal(m(x), m2(x))
    assert not list(tmp_path.glob(".*tmp*"))


def test_load_generic_gives_the_shipped_model_from_the_package():
    import torch

    from crop.generic import shipped_path
    from crop.models.io import load_model

    model = crop.load_generic("hapt")
    shipped = load_model(shipped_path("hapt"))
    assert not model.training
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), shipped.state_dict().values(), strict=True)
    )
    # the documented users' fold is served by the shipped model
    fold = crop.load_generic("hapt", user=2)
    assert all(
        torch.equal(a, b) for a, b in zip(fold.state_dict().values(), shipped.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "hapt-nobn"}, "no shipped generic model"),
        ({"kind": "nope"}, "unknown generic model kind"),
        ({"user": "2"}, "user must be"),
    ],
)
def test_load_generic_refuses_what_it_cannot_give(kwargs, match):
    with pytest.raises(crop.CropError, match=match):
        crop.load_generic(**kwargs)

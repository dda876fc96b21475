"""Distances (Tables 6, 15), state accuracies (Table 5) and embeddings against direct computations."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from crop.analysis import (
    distance_matrix,
    embeddings,
    euclidean_distance,
    last_linear_name,
    layer_distances,
    state_accuracies,
    step_effects,
    tsne_2d,
)
from tests.conftest import TinyNet, make_data


def test_euclidean_distance_and_matrix_against_numpy():
    g = torch.Generator().manual_seed(0)
    states = {s: {"w": torch.randn(4, 3, generator=g), "b": torch.randn(2, generator=g)} for s in ("x", "y", "z")}
    flat = {
        s: np.concatenate([v["w"].numpy().ravel(), v["b"].numpy().ravel()]).astype(np.float64)
        for s, v in states.items()
    }
    m = distance_matrix(states)
    for s in states:
        assert m[s][s] == 0.0
        for t in states:
            assert m[s][t] == pytest.approx(np.linalg.norm(flat[s] - flat[t]))
            assert m[s][t] == m[t][s]
    assert euclidean_distance(states["x"], states["y"], ["b"]) == pytest.approx(
        np.linalg.norm(states["x"]["b"].numpy() - states["y"]["b"].numpy())
    )


def test_layer_distances_and_pruning_amount_per_layer():
    generic = {"fc.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2), "head.weight": torch.zeros(1, 2)}
    initial = {
        "fc.weight": torch.ones(2, 3),
        "fc.bias": torch.tensor([3.0, 4.0]),
        "head.weight": torch.tensor([[0.0, 2.0]]),
    }
    masks = {"fc.weight": torch.tensor([[True, False, False], [True, True, False]])}
    rows = layer_distances({"generic": generic, "initial": initial}, list(generic), masks)
    fc, head = rows
    assert fc["layer"] == "fc" and fc["n_params"] == 8
    d = math.sqrt(6 * 1 + 9 + 16)
    assert fc["dist_per_param"]["initial"] == pytest.approx(d / 8)
    assert fc["rms"]["initial"] == pytest.approx(d / math.sqrt(8))
    assert fc["pruned"] == pytest.approx(3 / 6)
    assert head["pruned"] is None and head["dist_per_param"]["initial"] == pytest.approx(2 / 2)


def test_state_accuracies_and_step_effects_against_sklearn():
    torch.manual_seed(0)
    model = TinyNet()
    other = TinyNet()
    states = {"generic": {k: v.clone() for k, v in model.state_dict().items()}, "final": other.state_dict()}
    data = {"a": make_data(30, seed=1), "u": make_data(24, seed=2, shift=-1.0)}
    acc = state_accuracies(model, states, data)
    for s, st in states.items():
        probe = TinyNet()
        probe.load_state_dict(st)
        probe.eval()
        for c, d in data.items():
            with torch.no_grad():
                pred = probe(torch.as_tensor(d.X)).argmax(1).numpy()
            assert acc[s][c] == pytest.approx(balanced_accuracy_score(d.y, pred))
    for k, v in states["generic"].items():  # the model keeps its own weights
        assert torch.equal(model.state_dict()[k], v)
    (effect,) = step_effects(acc)
    assert effect["effect"] == "final vs generic"
    assert effect["u"] == pytest.approx(acc["final"]["u"] - acc["generic"]["u"])


def test_embeddings_are_the_input_of_the_last_linear_layer():
    torch.manual_seed(0)
    model = TinyNet()
    model.train()
    X = make_data(10, seed=1).X
    assert last_linear_name(model) == "head"
    emb = embeddings(model, X, batch_size=4)
    model.eval()
    with torch.no_grad():
        x = torch.as_tensor(X)
        expected = torch.relu(model.fc1(torch.relu(model.bn(model.conv(x))).flatten(1)))
    np.testing.assert_allclose(emb, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert emb.shape == (10, 16)
    assert not model._forward_hooks and not model.head._forward_hooks  # hook removed


def test_tsne_is_seeded_and_two_dimensional():
    feats = np.random.default_rng(0).normal(size=(20, 5))
    a, b = tsne_2d(feats, seed=3), tsne_2d(feats, seed=3)
    assert a.shape == (20, 2)
    np.testing.assert_allclose(a, b)


def test_state_confusions_against_sklearn():
    from sklearn.metrics import confusion_matrix

    from crop.analysis._states import state_confusions

    torch.manual_seed(1)
    model = TinyNet()
    data = make_data(30, seed=4)
    cm = state_confusions(model, {"s": model.state_dict()}, {"c": data}, n_classes=3)["s"]["c"]
    model.eval()
    with torch.no_grad():
        pred = model(torch.as_tensor(data.X)).argmax(1).numpy()
    np.testing.assert_array_equal(cm, confusion_matrix(data.y, pred, labels=[0, 1, 2]))

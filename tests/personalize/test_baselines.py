"""The five baselines: one matrix over (method, tiny model), then each method's own invariants."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import crop
from crop.errors import CropError
from crop.models.utils import predict, state_copy
from crop.personalization.baselines import (
    NearestReferenceClassifier,
    augment_windows,
    shot_pseudo_labels,
    triplet_loss,
)
from crop.personalization.baselines._common import head_name
from crop.personalization.baselines.cotta import CoTTAConfig, build_cotta, ema_update_
from crop.personalization.baselines.piggyback import binarize
from crop.personalization.loop import Hook, TrainConfig, train
from crop.personalization.prune import prunable_names
from crop.personalization.registry import PersonalizationResult, available_methods, config_from_dict, get_method
from tests.conftest import TinyNet, make_data

BASELINES = ["shot", "packnet", "piggyback", "cotta", "ptn"]
QUICK = {"epochs": 3, "lr": 1e-2, "batch_size": 16}
CONFIGS = {
    "shot": {"train": QUICK},
    "packnet": {"train": QUICK, "retrain": {**QUICK, "epochs": 2}},
    "piggyback": {"train": QUICK},
    "cotta": {"train": QUICK, "n_augmentations": 4, "confidence": 0.99},
    "ptn": {"train": QUICK},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight over shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sequential_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(3, 4, 3, padding=1),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 16, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


class TinyRNN(nn.Module):
    def __init__(self, cell: type[nn.Module] = nn.GRU) -> None:
        super().__init__()
        self.rnn = cell(3, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.transpose(1, 2))
        return self.head(out[:, -1])


def tinynet() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


def gru() -> nn.Module:
    torch.manual_seed(0)
    return TinyRNN(nn.GRU)


def lstm() -> nn.Module:
    torch.manual_seed(0)
    return TinyRNN(nn.LSTM)


MODELS = {"sequential": sequential_net, "tinynet": tinynet, "gru": gru}


@pytest.fixture(scope="module")
def split():
    return crop.stratified_split(make_data(n=90, seed=1), seed=0)


def config(method: str, **overrides):
    values = {**CONFIGS[method], **overrides}
    return config_from_dict(get_method(method).config_class, values)


def fit(method: str, model: nn.Module, split, seed: int = 0, **overrides) -> PersonalizationResult:
    return crop.personalize(model, split, config(method, **overrides), method=method, seed=seed)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------- the matrix


def test_every_baseline_is_registered():
    assert set(BASELINES) <= set(available_methods())
    for name in BASELINES:
        spec = get_method(name)
        assert dataclasses.is_dataclass(spec.config_class) and spec.description


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("method", BASELINES)
def test_baseline_returns_working_model_and_leaves_generic_unchanged(method, model_name, split):
    generic = MODELS[model_name]()
    before = state_copy(generic)
    result = fit(method, generic, split)
    assert isinstance(result, PersonalizationResult) and result.method == method
    assert_same_state(state_copy(generic), before)
    assert not result.model.training
    logits = result.model(torch.as_tensor(split.test.X))
    assert logits.shape == (len(split.test), 3) and torch.isfinite(logits).all()
    scores = crop.evaluate(result.model, {"test": split.test})["test"]
    assert 0.0 <= scores["balanced_accuracy"] <= 1.0
    assert "generic" in result.states and "final" in result.states
    assert_same_state(result.states["final"], state_copy(result.model))


@pytest.mark.parametrize("method", BASELINES)
def test_same_seed_gives_identical_weights(method, split):
    a = fit(method, tinynet(), split, seed=3)
    b = fit(method, tinynet(), split, seed=3)
    assert_same_state(state_copy(a.model), state_copy(b.model))


@pytest.mark.parametrize("method", ["shot", "cotta"])
def test_unsupervised_baselines_never_read_training_labels(method, split):
    shuffled = dataclasses.replace(
        split, train=crop.SensingData(split.train.X, np.random.default_rng(0).permutation(split.train.y), "shuffled")
    )
    a = fit(method, tinynet(), split, seed=1)
    b = fit(method, tinynet(), shuffled, seed=1)
    assert_same_state(state_copy(a.model), state_copy(b.model))


# ---------------------------------------------------------------- PackNet


@pytest.mark.parametrize("make", [sequential_net, tinynet, gru, lstm], ids=["sequential", "tinynet", "gru", "lstm"])
def test_packnet_never_changes_generic_positions(make, split):
    generic = make()
    g = state_copy(generic)
    result = fit("packnet", generic, split, freed_init="zero")
    final = state_copy(result.model)
    owners = result.info["owners"]
    names = prunable_names(generic)
    assert set(owners) == set(names) and names
    if isinstance(generic, TinyRNN):
        assert {"rnn.weight_ih_l0", "rnn.weight_hh_l0"} <= set(names)
    changed = 0
    for name in names:
        own = owners[name]
        assert torch.equal(final[name][own == 1], g[name][own == 1]), name
        assert (final[name][own == 0] == 0).all(), name
        changed += int((final[name][own == 2] != g[name][own == 2]).sum())
        # per layer: half of the weights stay generic, half of the freed half stays the person's
        assert int((own == 1).sum()) == round(0.5 * own.numel())
        n_user = own.numel() - round(0.5 * own.numel())
        assert int((own == 2).sum()) == n_user - round(0.5 * n_user)
    assert changed > 0  # the person's positions were trained
    # biases, BatchNorm parameters and running statistics stay generic; the person's head trains
    head = head_name(generic)
    for key in g:
        if key not in names and not key.startswith(f"{head}."):
            assert torch.equal(final[key], g[key]), key
    assert not torch.equal(final[f"{head}.weight"], g[f"{head}.weight"])
    assert result.prune_amount == pytest.approx(result.info["fraction_free"])


def test_packnet_rejects_bad_fraction(split):
    with pytest.raises(CropError, match="generic_prune"):
        fit("packnet", tinynet(), split, generic_prune=1.5)


# ---------------------------------------------------------------- Piggyback


def test_binarize_is_hard_forward_and_straight_through_backward():
    m = torch.tensor([0.001, 0.005, 0.006, 0.02], requires_grad=True)
    out = binarize(m, 0.005)
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0]
    (out * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert m.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("make", [sequential_net, gru], ids=["sequential", "gru"])
def test_piggyback_never_changes_backbone_weights(make, split):
    generic = make()
    g = state_copy(generic)
    result = fit("piggyback", generic, split, train={**QUICK, "lr": 0.05, "epochs": 4})
    final = state_copy(result.model)
    names = prunable_names(generic)
    head = head_name(generic)
    masked = 0
    for key in g:
        if key in names:  # each weight is the generic one or masked to zero
            keep = result.info["masks"][key]
            assert torch.equal(final[key], g[key] * keep), key
            masked += int((~keep).sum())
        elif not key.startswith(f"{head}."):
            assert torch.equal(final[key], g[key]), key
    assert masked > 0  # some masks crossed the threshold
    assert result.prune_amount == pytest.approx(masked / sum(g[n].numel() for n in names))


# ---------------------------------------------------------------- CoTTA


class RecordStudent(Hook):
    def __init__(self, pair):
        self.pair = pair
        self.states = []

    def after_step(self, model):
        self.states.append(state_copy(self.pair.student))


def test_cotta_teacher_is_exact_ema_of_student_without_restore(split):
    generic = tinynet()
    cfg = CoTTAConfig(momentum=0.9, restore_prob=0.0, n_augmentations=2, confidence=0.99)
    pair, update, objective = build_cotta(generic, cfg, seed=0)
    recorder = RecordStudent(pair)  # runs after the CoTTA update, which then has not changed the student
    from crop.personalization.baselines._common import without_labels

    train(
        pair,
        without_labels(split.train),
        split.val,
        TrainConfig(epochs=2, lr=1e-2, batch_size=16, select="last"),
        hooks=[update, recorder],
        objective=objective,
        trainable=list(pair.student.parameters()),
    )
    assert len(recorder.states) == update.steps > 3
    expected = state_copy(generic)
    for student in recorder.states:  # independent EMA over the recorded student trajectory
        for key, value in expected.items():
            if value.is_floating_point():
                expected[key] = 0.9 * value + 0.1 * student[key]
            else:
                expected[key] = student[key].clone()
    teacher = state_copy(pair.teacher)
    for key in expected:
        torch.testing.assert_close(teacher[key], expected[key], rtol=1e-6, atol=1e-7)
    assert not torch.equal(teacher["fc1.weight"], generic.fc1.weight.detach())
    assert update.restored == 0


def test_cotta_restore_probability_one_keeps_student_at_source(split):
    generic = tinynet()
    result = fit("cotta", generic, split, restore_prob=1.0)
    student = result.states["student"]
    for name, p in generic.named_parameters():
        assert torch.equal(student[name], p.detach()), name
    assert result.info["restored_elements"] == result.info["steps"] * sum(p.numel() for p in generic.parameters())


def test_ema_update_formula():
    t, s = nn.Linear(2, 2), nn.Linear(2, 2)
    before = t.weight.detach().clone()
    ema_update_(t, s, 0.75)
    torch.testing.assert_close(t.weight.detach(), 0.75 * before + 0.25 * s.weight.detach())


def test_augment_windows_rotates_triads_and_is_reproducible():
    x = torch.randn(5, 6, 20)
    rotated = augment_windows(x, torch.Generator().manual_seed(0), jitter=0, scaling=0, max_shift=0, rotation_deg=30)
    for triad in (slice(0, 3), slice(3, 6)):  # a rotation keeps each tri-axial vector's norm
        torch.testing.assert_close(rotated[:, triad].norm(dim=1), x[:, triad].norm(dim=1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(rotated, x)
    shifted = augment_windows(x, torch.Generator().manual_seed(0), jitter=0, scaling=0, rotation_deg=0, max_shift=0.2)
    for i in range(5):  # a circular shift of every channel by the same amount
        assert any(torch.equal(shifted[i], torch.roll(x[i], s, dims=1)) for s in range(-4, 5))
    a = augment_windows(x, torch.Generator().manual_seed(1))
    b = augment_windows(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert augment_windows(torch.randn(4, 7), torch.Generator().manual_seed(0)).shape == (4, 7)


# ---------------------------------------------------------------- SHOT


def test_shot_leaves_classifier_head_unchanged(split):
    generic = sequential_net()
    result = fit("shot", generic, split)
    final = state_copy(result.model)
    assert torch.equal(final["6.weight"], generic[6].weight.detach())
    assert torch.equal(final["6.bias"], generic[6].bias.detach())
    assert not torch.equal(final["4.weight"], generic[4].weight.detach())  # the feature extractor adapted
    assert len(result.info["pseudo_label_changes"]) == 3  # refreshed after every epoch


def test_shot_pseudo_labels_follow_feature_clusters():
    # two tight clusters; the classifier's predictions are only weakly informative (and wrong for one window)
    features = torch.tensor([[5.0, 0.1], [5.1, 0.0], [4.9, 0.2], [0.1, 5.0], [0.0, 5.2], [0.2, 4.8]])
    probs = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.4, 0.6], [0.4, 0.6], [0.4, 0.6], [0.4, 0.6]])
    assert probs.argmax(1).tolist() == [0, 0, 1, 1, 1, 1]
    assert shot_pseudo_labels(features, probs).tolist() == [0, 0, 0, 1, 1, 1]
    assert shot_pseudo_labels(features, probs, distance="euclidean").tolist() == [0, 0, 0, 1, 1, 1]


# ---------------------------------------------------------------- PTN


def test_nearest_reference_classifier_on_constructed_case():
    refs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [3.2, 3.0]])
    labels = torch.tensor([0, 1, 2, 1, 1])
    clf = NearestReferenceClassifier(nn.Flatten(), n_classes=3, embedding_dim=2, k=1, normalize=False)
    clf.set_references(refs, labels)
    queries = torch.tensor([[0.1, 0.1], [0.9, 0.2], [0.2, 0.8], [2.0, 2.0], [-1.0, 0.4]])
    brute = labels[torch.cdist(queries, refs).argmin(1)]
    assert clf(queries).argmax(1).tolist() == brute.tolist() == [0, 1, 2, 1, 0]
    # k = 3: the query at (0.1, 0.1) has neighbours labelled 0, 1, 2 -> tie broken by the nearest (0)
    clf3 = NearestReferenceClassifier(nn.Flatten(), n_classes=3, embedding_dim=2, k=3, normalize=False)
    clf3.set_references(refs, labels)
    assert clf3(queries).argmax(1).tolist() == [0, 1, 2, 1, 0]
    assert clf3(torch.tensor([[2.0, 1.5]])).argmax(1).tolist() == [1]  # votes: (1,0) (3,3) (3.2,3) -> class 1


@pytest.mark.parametrize("select", ["best", "last"])
def test_ptn_predicts_label_of_nearest_reference(select, split):
    result = fit("ptn", tinynet(), split, train={**QUICK, "select": select})
    model = result.model
    assert torch.equal(model.reference_labels, torch.as_tensor(split.train.y))
    with torch.no_grad():
        model.eval()
        refs = model.embedding(torch.as_tensor(split.train.X))
        queries = model.embedding(torch.as_tensor(split.test.X))
    torch.testing.assert_close(model.references, refs)
    nearest = torch.as_tensor(split.train.y)[torch.cdist(queries, refs).argmin(1)]
    assert predict(model, split.test.X).tolist() == nearest.tolist()


def test_triplet_loss_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    e = torch.randn(7, 3, generator=gen)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    d = torch.cdist(e, e)
    terms, hard = [], []
    for a in range(7):
        pos = [p for p in range(7) if p != a and y[p] == y[a]]
        neg = [n for n in range(7) if y[n] != y[a]]
        terms += [float(d[a, p] - d[a, n] + 1.0) for p in pos for n in neg]
        if pos:
            hard.append(max(0.0, max(float(d[a, p]) for p in pos) - min(float(d[a, n]) for n in neg) + 1.0))
    positive = [t for t in terms if t > 0]
    assert triplet_loss(e, y, 1.0, "batch_all").item() == pytest.approx(sum(positive) / len(positive), rel=1e-5)
    assert triplet_loss(e, y, 1.0, "batch_hard").item() == pytest.approx(sum(hard) / len(hard), rel=1e-5)


def test_ptn_rejects_model_whose_output_is_not_its_last_layer(split):
    class Calibrated(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(48, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return 2.0 * self.head(torch.relu(self.body(x.flatten(1)))) + 1.0

    with pytest.raises(CropError, match="last layer"):
        fit("ptn", Calibrated(), split)

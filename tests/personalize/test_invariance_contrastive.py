"""Invariance preservation and prototype-contrastive adaptation: what each term computes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import crop
from crop.data.augment import rotate_triads, uniform_rotations
from crop.personalization.contrastive import ContrastiveConfig, PrototypeContrast, class_prototypes
from crop.personalization.invariance import (
    InvarianceConfig,
    InvarianceObjective,
    invariance_objective,
    probe_invariances,
)
from tests.conftest import TinyNet, make_data


class NormNet(nn.Module):
    """Classifies by the norm of each 3-axis triad: invariant to any rotation of the triads."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        norms = x.reshape(b, c // 3, 3, t).norm(dim=2).mean(dim=2)
        return self.head(norms)


class AxisNet(nn.Module):
    """Classifies by the mean of each channel: not invariant to rotations."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=2) * 5)


def windows(n=60, seed=0):
    return make_data(n=n, seed=seed, channels=6, length=16)


def test_rotation_of_triads_keeps_each_sensors_norm():
    x = torch.randn(5, 6, 16)
    turned = rotate_triads(x, uniform_rotations(5, torch.Generator().manual_seed(0)))
    assert torch.allclose(turned.reshape(5, 2, 3, 16).norm(dim=2), x.reshape(5, 2, 3, 16).norm(dim=2), atol=1e-5)
    assert not torch.allclose(turned, x)


def test_probe_finds_the_invariance_a_model_has_without_labels():
    data = windows()
    invariant = probe_invariances(NormNet(), data.X, ["orientation"], draws=3)
    sensitive = probe_invariances(AxisNet(), data.X, ["orientation"], draws=3)
    assert invariant["orientation"] == pytest.approx(1.0)
    assert sensitive["orientation"] < 0.8
    # same seed: same probe
    assert probe_invariances(AxisNet(), data.X, draws=2) == probe_invariances(AxisNet(), data.X, draws=2)
    # inputs that have no sensor triads are not probed for orientation
    assert "orientation" not in probe_invariances(nn.Linear(4, 2), np.zeros((8, 4), np.float32))


def test_only_kept_families_are_imposed_and_weight_zero_is_plain_cross_entropy():
    data = windows()
    objective, info = invariance_objective(NormNet(), data.X, InvarianceConfig(weight=1.0, threshold=0.5), seed=0)
    assert "orientation" in info["invariance_kept"] and objective.families == info["invariance_kept"]
    objective, info = invariance_objective(AxisNet(), data.X, InvarianceConfig(weight=1.0, threshold=0.99), seed=0)
    assert objective is None or "orientation" not in objective.families
    assert invariance_objective(AxisNet(), data.X, InvarianceConfig(weight=0.0), seed=0) == (None, {})
    model, x, y = AxisNet(), torch.as_tensor(data.X[:8]), torch.as_tensor(data.y[:8])
    assert torch.equal(InvarianceObjective([], 1.0, 0)(model, x, y), F.cross_entropy(model(x), y))


def test_invariance_objective_adds_the_transformed_copies_with_their_labels():
    model, data = NormNet(), windows()
    x, y = torch.as_tensor(data.X[:8]), torch.as_tensor(data.y[:8])
    objective = InvarianceObjective(["orientation"], 0.5, seed=3)
    # NormNet is exactly invariant: the turned copy has the clean loss, so the total is 1.5 x CE
    assert objective(model, x, y).item() == pytest.approx(1.5 * F.cross_entropy(model(x), y).item(), rel=1e-5)


def test_finetune_and_crop_with_invariance_run_and_report_the_probe(quick):
    torch.manual_seed(0)
    net = TinyNet(channels=6)
    data = crop.stratified_split(windows(90), 0)
    cfg = {"train": quick.__dict__, "invariance": {"weight": 1.0}}
    result = crop.personalize(net, data, cfg, method="finetune", seed=0)
    assert set(result.info["invariance_agreement"]) == {"orientation", "perturbation"}
    crop_cfg = {"initial": {**quick.__dict__, "select": "last"}, "final": quick.__dict__, "invariance": {"weight": 1.0}}
    again = crop.personalize(net, data, crop_cfg, method="crop", seed=0)
    assert again.info["invariance_agreement"] == result.info["invariance_agreement"]


def test_crop_with_invariance_contrastive_and_bn_reestimation_together(quick):
    """The contrastive term wraps the invariance objective; re-estimation still sees the
    invariance views (a regression: it once looked for them on the wrapper)."""
    net = TinyNet(channels=6)
    data = crop.stratified_split(windows(90), 0)
    crop_cfg = {
        "initial": {**quick.__dict__, "select": "last"},
        "final": quick.__dict__,
        "invariance": {"weight": 1.0},
        "contrastive": {"weight": 1.0},
        "recalibrate_bn": True,
    }
    result = crop.personalize(net, data, crop_cfg, method="crop", seed=0)
    assert set(result.info["invariance_agreement"]) == {"orientation", "perturbation"}
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_prototypes_are_normalized_class_means_of_generic_embeddings():
    net = TinyNet()
    data = make_data(n=30)
    protos = class_prototypes(net, data.X, data.y, n_classes=4)
    assert protos.shape == (4, 16)
    assert torch.allclose(protos[:3].norm(dim=1), torch.ones(3), atol=1e-5) and torch.all(protos[3] == 0)


def test_contrastive_term_is_cross_entropy_over_prototype_similarities():
    net = TinyNet().eval()
    data = make_data(n=30)
    protos = class_prototypes(net, data.X, data.y, n_classes=3)
    term = PrototypeContrast(protos, ContrastiveConfig(weight=0.7, temperature=0.2))
    x, y = torch.as_tensor(data.X[:10]), torch.as_tensor(data.y[:10])
    h = torch.relu(net.fc1(torch.relu(net.bn(net.conv(x))).flatten(1)))
    expected = F.cross_entropy(net(x), y) + 0.7 * F.cross_entropy(F.normalize(h, dim=1) @ protos.T / 0.2, y)
    assert term(net, x, y).item() == pytest.approx(expected.item(), rel=1e-5)

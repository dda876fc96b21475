"""PGD: finds easy counterexamples, and never one inside a certified region."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crop.certify import margin_bounds
from crop.certify.attacks import pgd_attack, pgd_robust_accuracy
from tests.certify.nets import mlp


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_finds_the_counterexample_of_a_linear_classifier(norm):
    model = nn.Linear(2, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        model.bias.zero_()
    x = torch.tensor([[0.1, 0.0], [0.5, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    x_adv, broken = pgd_attack(model, x, y, 0.2, norm, steps=10)
    assert broken.tolist() == [True, False]
    assert model(x_adv[:1]).argmax(1).item() == 1
    assert (x_adv - x).abs().max() <= 0.2 + 1e-12 if norm == "linf" else (x_adv - x).norm(dim=1).max() <= 0.2 + 1e-12


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_never_breaks_a_certified_point(norm):
    verified_total = 0
    for seed in range(3):
        model = mlp(seed, [10, 32, 32, 3])
        gen = torch.Generator().manual_seed(seed)
        X = torch.randn(800, 10, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            y = model(X).argmax(1)
        eps = 0.15 if norm == "linf" else 0.4
        with torch.no_grad():
            verified = margin_bounds(model, X, y, eps, norm).verified
        _, broken = pgd_attack(model, X, y, eps, norm, steps=40, restarts=2, loss="margin", seed=seed)
        assert not (broken & verified).any()
        assert broken.any()  # the attack does work on the points that are not certified
        verified_total += int(verified.sum())
    assert verified_total >= 1000


def test_pgd_robust_accuracy_lies_between_verified_and_clean(hapt_model, hapt_windows):
    X, y = hapt_windows
    with torch.no_grad():
        clean = float((hapt_model(X).argmax(1) == y).float().mean())
        verified = float(margin_bounds(hapt_model, X, y, 0.02).verified.float().mean())
    robust = pgd_robust_accuracy(hapt_model, X, y, 0.02, steps=10)
    assert verified <= robust <= clean

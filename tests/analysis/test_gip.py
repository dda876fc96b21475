"""GIP (Section 7.1) against independent computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crop.analysis import gip, gip_table, gradient_alignment, removed_positions, state_gradients
from crop.personalization.prune import loss_gradients
from tests.conftest import TinyNet, make_data


def _random_grads(seed):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g)}


def test_gip_is_twice_the_dot_product():
    ga, gu = _random_grads(0), _random_grads(1)
    dot = sum(float((ga[k].double() * gu[k].double()).sum()) for k in ga)
    assert gip(ga, gu) == pytest.approx(2 * dot, rel=1e-9, abs=1e-12)
    flat_a = np.concatenate([v.numpy().ravel() for v in ga.values()]).astype(np.float64)
    flat_u = np.concatenate([v.numpy().ravel() for v in gu.values()]).astype(np.float64)
    al = gradient_alignment(ga, gu)
    assert al.norm_a == pytest.approx(np.linalg.norm(flat_a))
    assert al.norm_u == pytest.approx(np.linalg.norm(flat_u))
    assert al.cosine == pytest.approx(flat_a @ flat_u / np.linalg.norm(flat_a) / np.linalg.norm(flat_u))


def test_gip_sign_follows_gradient_directions():
    g = {"w": torch.tensor([1.0, 2.0])}
    assert gip(g, {"w": torch.tensor([2.0, 1.0])}) > 0
    assert gip(g, {"w": torch.tensor([-2.0, -1.0])}) < 0
    assert gip(g, {"w": torch.tensor([2.0, -1.0])}) == pytest.approx(0.0)


def test_gip_restricted_to_selected_positions():
    ga, gu = _random_grads(2), _random_grads(3)
    select = {"a": torch.rand(3, 4, generator=torch.Generator().manual_seed(4)) > 0.5}  # "b" left out entirely
    expected = 2 * float((ga["a"][select["a"]].double() * gu["a"][select["a"]].double()).sum())
    assert gip(ga, gu, select) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    masks = {"a": torch.tensor([[True, False], [False, False]])}
    assert removed_positions(masks)["a"].tolist() == [[False, True], [True, True]]


def test_loss_gradients_match_per_sample_backward_average():
    torch.manual_seed(0)
    model = TinyNet()
    model.train()
    data = make_data(12, seed=3)
    grads = loss_gradients(model, data, batch_size=5)  # batching must not change the mean
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # no .grad side effects
    # independent: one backward per window in eval mode, averaged
    model.eval()
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(data)):
        model.zero_grad()
        x = torch.as_tensor(data.X[i : i + 1])
        F.cross_entropy(model(x), torch.as_tensor(data.y[i : i + 1])).backward()
        for n, p in model.named_parameters():
            total[n] += p.grad
    for n in total:
        torch.testing.assert_close(grads[n], total[n] / len(data), rtol=1e-4, atol=1e-6)


def test_gip_table_rows_against_direct_dot_products(crop_run):
    model, split, unseen, result = crop_run
    rows = gip_table(result.model, result.states, split.test, unseen, result.info["masks"])
    by = {(r["state"], r["subset"]): r for r in rows}
    assert [r["state"] for r in rows if r["subset"] == "all"] == ["generic", "initial", "pruned", "mixed", "final"]
    assert {k for k in by if k[1] != "all"} == {
        ("initial", "removed by pruning"),
        ("generic", "pruned positions"),
        ("mixed", "pruned positions"),
    }
    ctx = unseen["shifted"]
    for state in ("generic", "mixed"):
        ga = state_gradients(model, result.states[state], split.test)
        gu = state_gradients(model, result.states[state], ctx)
        dot = sum(float((ga[n].double() * gu[n].double()).sum()) for n in ga)
        assert by[(state, "all")]["gip"] == pytest.approx(2 * dot, rel=1e-6, abs=1e-9)
    # the removed-weights row: initial model's gradients, only where pruning removed a weight
    ga = state_gradients(model, result.states["initial"], split.test)
    gu = state_gradients(model, result.states["initial"], ctx)
    dot = 0.0
    for n, keep in result.info["masks"].items():
        dot += float((ga[n][~keep].double() * gu[n][~keep].double()).sum())
    assert by[("initial", "removed by pruning")]["gip"] == pytest.approx(2 * dot, rel=1e-6, abs=1e-9)

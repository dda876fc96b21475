"""Start-up: what `import crop` and the personalize path load, and the NumPy F1 that replaced
scikit-learn's on that path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

HEAVY = ("sklearn", "matplotlib", "scipy", "fairlearn", "pandas", "sympy")


@pytest.mark.parametrize("seed", range(6))
def test_f1_matches_sklearn_including_absent_classes(seed):
    from sklearn.metrics import f1_score

    from crop.metrics import f1

    rng = np.random.default_rng(seed)
    n_classes = [2, 3, 6, 2, 5, 4][seed]
    y = rng.integers(0, n_classes, 40)
    p = rng.integers(0, n_classes, 40)
    if seed % 2:  # classes never predicted, or predicted but never true
        p[p == n_classes - 1] = 0
        y[y == 1] = 0
    average = "binary" if set(np.union1d(y, p).tolist()) <= {0, 1} else "macro"
    assert f1(y, p) == pytest.approx(f1_score(y, p, average=average, zero_division=0), abs=1e-12)
    assert f1(np.zeros(5, int), np.zeros(5, int)) == f1_score(np.zeros(5, int), np.zeros(5, int), zero_division=0)
    assert f1(np.array([3, 4, 4]), np.array([4, 4, 3])) == pytest.approx(
        f1_score([3, 4, 4], [4, 4, 3], average="macro", zero_division=0)
    )


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code + "\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {name.split(".")[0] for name in out.stdout.split()}


def test_import_crop_loads_no_heavy_library():
    loaded = _modules_after("import crop, crop.cli")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_personalize_path_loads_no_heavy_library():
    """The work of `crop personalize --user U` (personalize + evaluate on a small split)."""
    code = """
import numpy as np, torch
import crop
from crop.data.sensing import SensingData, stratified_split
rng = np.random.default_rng(0)
y = np.arange(120) % 6
X = rng.normal(size=(120, 6, 128)).astype(np.float32); X[np.arange(120), y, :] += 2
split = stratified_split(SensingData(X, y, "synthetic"), 0)
from crop.models.hapt import HAPTNet
result = crop.personalize(HAPTNet(), split, {"initial": {"epochs": 1}, "final": {"epochs": 1}}, seed=0)
crop.evaluate(result.model, {"test": split.test})
"""
    loaded = _modules_after(code + "\nprint('torch._dynamo' in sys.modules and 'torch_dynamo')")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "torch_dynamo" not in loaded  # torch.optim's compile guards are not on this path


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_eager_adam_is_bit_identical_to_torch_adam(weight_decay):
    import torch
    from torch import nn

    from crop.optim import EagerAdam, adam

    def run(make):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(24, 3))
        model[3].bias.requires_grad_(False)  # a parameter without gradient is skipped by both
        params = [p for p in model.parameters() if p.requires_grad]
        opt = make(params)
        gen = torch.Generator().manual_seed(1)
        for step in range(25):
            x = torch.randn(8, 3, 8, generator=gen)
            loss = nn.functional.cross_entropy(model(x), torch.arange(8) % 3)
            opt.zero_grad(set_to_none=step % 2 == 0)
            loss.backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    ours = run(lambda ps: EagerAdam(ps, lr=1e-2, weight_decay=weight_decay))
    theirs = run(lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=weight_decay))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert isinstance(adam(nn.Linear(2, 2).parameters(), lr=0.1), EagerAdam)
    with pytest.raises(ValueError):
        EagerAdam([], lr=0.1)


@pytest.mark.parametrize("enabled", [True, False])
def test_paused_collector_restores_the_collector_state(enabled):
    import gc

    from crop._heap import paused_collector

    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with paused_collector():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), paused_collector():
            raise RuntimeError("an import failed")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_import_leaves_the_collector_on_and_the_command_freezes_the_imports():
    code = """
import gc, sys
import crop, crop.cli
print(gc.isenabled(), gc.get_freeze_count())
sys.argv = ["crop", "methods"]
try:
    crop.cli.main()
except SystemExit as exc:
    print(exc.code, gc.isenabled(), gc.get_freeze_count() > 100_000, file=sys.stderr)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0].split() == ["True", "0"]  # importing the library changes nothing for its user
    assert out.stderr.split()[-3:] == ["0", "True", "True"]  # the command moved the imports out of reach


def test_frozen_heap_gives_bit_identical_personalization():
    import gc

    import torch

    import crop
    from crop.data.sensing import SensingData, stratified_split
    from crop.models.hapt import HAPTNet

    rng = np.random.default_rng(0)
    y = np.arange(96) % 6
    X = rng.normal(size=(96, 6, 128)).astype(np.float32)
    X[np.arange(96), y, :] += 1
    split = stratified_split(SensingData(X, y, "synthetic"), 0)
    config = {"initial": {"epochs": 2}, "final": {"epochs": 2}}

    def weights():
        torch.manual_seed(0)
        result = crop.personalize(HAPTNet(), split, config, seed=3)
        return [t.clone() for t in result.model.state_dict().values()]

    plain = weights()
    gc.freeze()
    try:
        frozen = weights()
    finally:
        gc.unfreeze()
    assert all(torch.equal(a, b) for a, b in zip(plain, frozen, strict=True))

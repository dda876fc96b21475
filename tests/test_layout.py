"""Package layout: names that do not clash and import directions that do not circle."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import crop


def test_personalization_subpackage_does_not_shadow_the_function():
    # ``crop.personalize`` is the API function; the methods live in ``crop.personalization``.
    # A fresh interpreter, so no earlier import in this session hides a clash. Before the rename the
    # dotted path ``crop.personalization.crop`` resolved to an attribute of the function and failed.
    code = (
        "import crop; import crop.personalization.crop; "
        "assert callable(crop.personalize); assert callable(crop.personalization.crop.fit_crop); print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(crop.__file__).parents[1]), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at the top or inside a function (``from a import b``
    counts as both ``a`` and ``a.b``, since ``b`` may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_model_files_do_not_depend_on_the_certifier():
    # crop.certify builds on crop.models (sparse files, bound propagation over its layers); the
    # other way round would be an import circle, and a model file format needs no certifier.
    models = Path(crop.__file__).parent / "models"
    offenders = {
        str(path.relative_to(models.parent)): sorted(
            n for n in _imported_modules(path) if n == "crop.certify" or n.startswith("crop.certify.")
        )
        for path in sorted(models.rglob("*.py"))
    }
    assert len(offenders) >= 5  # the walk found the package's modules
    assert {k: v for k, v in offenders.items() if v} == {}


def test_sparse_files_round_trip_through_the_model_package(tmp_path):
    import torch
    from torch import nn

    from crop.models.io import load_sparse_state, load_state, read_file, save_sparse

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 3))
    with torch.no_grad():
        net[0].weight[torch.rand_like(net[0].weight) < 0.8] = 0  # sparse enough to be stored as CSR
    path = save_sparse(net, tmp_path / "net.safetensors")
    assert "0.weight::crow" in read_file(path)[0]  # really stored in CSR form
    state, meta = load_sparse_state(path)
    assert "0.weight" in meta["crop_sparse"]
    for name, t in net.state_dict().items():
        assert torch.equal(state[name], t)
    other = load_state(nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 3)), path)
    assert torch.equal(other[0].weight, net[0].weight)

"""The wheel, built from the repository and installed in a fresh virtual environment, works on its
own: the command, the shipped documentation, a personalization, a prediction and the README's
Python example, all run from a directory outside the repository (issue 22).

Slow (``make test-wheel``, also part of ``make test-slow``). It needs no network beyond the
package registries pip is configured with, and installs exactly the versions this environment
was tested with: the wheel's dependencies are resolved under a constraints file written from
``pip freeze`` of the running interpreter, so torch is the same CPU build (``2.13.0+cpu`` here,
taken from the registry or pip's find-links, never a CUDA build from PyPI).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import crop
from tests.test_readme import python_example

REPO = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*out")


def _sh(args: list[str | Path], *, timeout: int = 900, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, args))} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def _source_tree(dest: Path) -> Path:
    """The files of the repository a build may use (tracked and new, not ignored), links kept as
    links, copied to ``dest``: the build writes nothing into the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:  # not a git checkout: everything but the usual build and cache folders
        shutil.copytree(REPO, dest, symlinks=True, ignore=IGNORED)
        return dest
    for name in filter(None, listed.stdout.decode().split("\0")):
        src = REPO / name
        if not src.is_symlink() and not src.exists():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    return dest


def _constraints(path: Path) -> Path:
    """``pip freeze`` of this environment (the tested versions), crop itself left out."""
    frozen = _sh([sys.executable, "-m", "pip", "freeze", "--exclude-editable"]).stdout.splitlines()
    pins = [line for line in frozen if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==\S+$", line)]
    pins = [line for line in pins if not line.lower().startswith("crop==")]
    assert any(line.startswith("torch==") for line in pins), frozen
    path.write_text("\n".join(pins) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_wheel_installs_with_the_tested_torch_and_runs_outside_the_repository(tmp_path):
    # build the wheel from a copy of the source tree (setuptools of this environment: no download)
    source = _source_tree(tmp_path / "src")
    dist = tmp_path / "dist"
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, source])
    (wheel,) = dist.glob("crop-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"crop-{crop.__version__}.dist-info/METADATA").decode()
    shipped = {n.removeprefix("crop/docs/") for n in names if n.startswith("crop/docs/")}
    assert shipped == {p.name for p in (REPO / "docs").glob("*.md")}  # the docs, and nothing else of docs/
    assert "crop/models/weights/hapt-generic.safetensors" in names and "crop/evidence/hapt.json" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    assert "Provides-Extra: onnx" in metadata and "Provides-Extra: ray" in metadata

    # a fresh environment: the wheel, its dependencies at the tested versions
    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", venv])
    py, bin_dir = venv / "bin" / "python", venv / "bin"
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    _sh([*pip, "-c", _constraints(tmp_path / "constraints.txt"), wheel])

    work = tmp_path / "work"  # outside the repository, no path into it
    work.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "CROP_CACHE_DIR": str(tmp_path / "cache"),
        "LANG": "C.UTF-8",
    }

    def crop_cmd(*args: str | Path, exe: str | Path = "crop") -> str:
        return _sh([bin_dir / exe if exe == "crop" else exe, *args], cwd=work, env=env, timeout=600).stdout

    where = crop_cmd("-c", "import crop, torch; print(crop.__file__); print(torch.__version__)", exe=py).split()
    assert Path(where[0]).is_relative_to(venv) and where[1] == torch.__version__  # the wheel, the tested torch
    assert "+cu" not in where[1]

    version = crop_cmd("--version")
    assert version.startswith(f"crop {crop.__version__} (torch {torch.__version__}")
    assert "Usage: crop" in crop_cmd("-m", "crop", "--help", exe=py)
    assert "crop[ray]" in crop_cmd("bench", "--help")
    listing = crop_cmd("docs")
    assert all(re.search(rf"^{p.stem}\s", listing, re.M) for p in (REPO / "docs").glob("*.md")), listing
    assert crop_cmd("docs", "datasets") == (REPO / "docs" / "DATASETS.md").read_text(encoding="utf-8")

    demo = crop_cmd("demo", "--out", "demo")  # the main job, from the package's own data and weights
    assert "Δ_G" in demo and (work / "demo" / "results.jsonl").is_file() and (work / "demo" / "index.html").is_file()
    crop_cmd("personalize", "--user", "2", "--out", "d")
    assert (work / "d" / "model.safetensors").is_file() and (work / "d" / "summary.json").is_file()
    n = 37
    X = np.random.default_rng(0).normal(size=(n, 6, 128)).astype(np.float32)
    np.savez(work / "W.npz", X=X)
    crop_cmd("predict", "d/model.safetensors", "--data", "W.npz", "--out", "p.csv")
    with (work / "p.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and [int(r["window"]) for r in rows] == list(range(n)), rows[:2]
    assert all(
        r["class_name"] and abs(sum(float(v) for k, v in r.items() if k.startswith("p_")) - 1) < 1e-4 for r in rows
    )

    lines = crop_cmd("-c", python_example(), exe=py).strip().splitlines()
    assert len(lines) == 2 and "final" in lines[0] and "available" in lines[1], lines

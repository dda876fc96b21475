"""Issue 25 (hardening II), class 9: reproducibility through the cache of generic models.

A fold generic model is trained by the first process that needs it and cached; every later
bench uses that file. Its bytes must not depend on the torch thread count of that process, and
a cached file is used only when its recorded provenance is the one asked for
(:mod:`crop.models.cache`). Every test uses its own cache directory (the shared cache is never
touched); the HAPT recordings are linked into it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import crop.generic
from crop.cli import run
from crop.data import hapt
from crop.errors import CacheWarning
from crop.generic import GenericTrainConfig, generic_for_fold
from crop.models import HAPTNet
from crop.models import cache as model_cache
from crop.models.io import metadata_of, read_file, write_tensors

FOLD, USERS = 3, "3,9"  # fold 3: trained on first use (fold 2 is shipped)


def cache_with_recordings(path: Path) -> Path:
    """A fresh cache directory holding (a link to) the HAPT recordings of the default cache."""
    hapt.load_recordings()  # the default cache has them (built on first use)
    path.mkdir(parents=True)
    source = hapt.cache_dir() / hapt._CACHE_NAME
    os.symlink(source, path / hapt._CACHE_NAME)
    return path


def fold_file(cache: Path, kind: str = "hapt") -> Path:
    (found,) = (cache / "generic").glob(f"{kind}-fold{FOLD}-*.safetensors")
    return found


def content(path: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """The tensors (as bytes) and the metadata of a model file, but its training time (which
    differs from run to run): what a bench reads of it."""
    tensors, meta = read_file(path)
    return {k: v.numpy().tobytes() for k, v in tensors.items()}, {k: v for k, v in meta.items() if k != "train_seconds"}


def bench(cache: Path, out: Path, monkeypatch, threads: int = 1, methods: str = "generic") -> tuple[bytes, str]:
    """``crop --threads N bench`` of the fold's users with ``cache`` as CROP_CACHE_DIR: results and stderr."""
    monkeypatch.setenv("CROP_CACHE_DIR", str(cache))
    err = io.StringIO()
    argv = ["--threads", str(threads), "bench", "--scenario", "hapt-session:1", "--users", USERS, "--seeds", "0"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = run([*argv, "--methods", methods, "--quiet", "--out", str(out)])
    torch.set_num_threads(1)
    assert code == 0, err.getvalue()
    return (out / "results.jsonl").read_bytes(), err.getvalue()


@pytest.fixture
def tiny_generic(monkeypatch):
    """Generic training of 1 epoch (a different config: its own cache key), to keep this fast."""
    monkeypatch.setattr(crop.generic, "GenericTrainConfig", functools.partial(GenericTrainConfig, epochs=1))


def test_a_fold_model_is_the_same_from_the_api_on_two_threads_and_the_command_on_one(
    tiny_generic, tmp_path, monkeypatch
):
    """Trained through the Python API in a caller on 2 torch threads, and by ``crop bench`` on 1:
    the same tensors and provenance under the same name; later benches give the same records. A file whose
    provenance is missing is trained again, with a warning, to the same bytes."""
    api, command = cache_with_recordings(tmp_path / "api"), cache_with_recordings(tmp_path / "command")
    torch.set_num_threads(2)
    try:
        _, info = generic_for_fold("hapt", FOLD, api)
        assert info["source"] == "trained" and torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(1)
    by_command, _ = bench(command, tmp_path / "b-command", monkeypatch)
    assert fold_file(api).name == fold_file(command).name
    assert content(fold_file(api)) == content(fold_file(command))
    recorded = json.loads(metadata_of(fold_file(api))["provenance"])
    assert recorded["torch_threads"] == 1 and recorded["fold"] == FOLD and recorded["torch"] == torch.__version__

    by_api, err = bench(api, tmp_path / "b-api", monkeypatch, threads=2)
    assert by_api == by_command and err == ""  # the cached file, used as it is

    # an older file without a recorded provenance: trained again (one warning line), same bytes
    tensors, meta = read_file(fold_file(api))
    before = content(fold_file(api))
    write_tensors(tensors, fold_file(api), {k: v for k, v in meta.items() if k != "provenance"})
    again, err = bench(api, tmp_path / "b-again", monkeypatch)
    assert err.startswith("crop: warning: cached model") and "no recorded provenance" in err
    assert len(err.splitlines()) == 1 and again == by_command
    assert content(fold_file(api)) == before


def _tiny_train(calls: list[int]):
    def train() -> tuple[HAPTNet, dict]:
        calls.append(torch.get_num_threads())
        torch.manual_seed(0)
        return HAPTNet(width=2), {"kind": "tiny"}

    return train


def test_a_cached_model_is_used_only_with_its_recorded_provenance(tmp_path, monkeypatch):
    prov = model_cache.provenance({"kind": "tiny", "fold": 0})
    target = tmp_path / f"tiny-{model_cache.cache_key(prov)}.safetensors"
    calls: list[int] = []
    torch.set_num_threads(2)
    try:
        _, source, seconds = model_cache.load_or_train(target, prov, _tiny_train(calls))
        assert source == "trained" and calls == [model_cache.TRAIN_THREADS] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert json.loads(metadata_of(target)["provenance"]) == json.loads(json.dumps(prov))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, source, _ = model_cache.load_or_train(target, prov, _tiny_train(calls))
    assert source == "cached" and len(calls) == 1
    tensors, meta = read_file(target)
    tampered = {
        "no recorded provenance": {k: v for k, v in meta.items() if k != "provenance"},
        "differs in torch_threads": {**meta, "provenance": json.dumps({**prov, "torch_threads": 2})},
        "differs in torch": {**meta, "provenance": json.dumps({**prov, "torch": "0.1"})},
        "differs in fold": {**meta, "provenance": json.dumps({**prov, "fold": 1})},
        "damaged provenance": {**meta, "provenance": "{not json"},
    }
    for why, changed in tampered.items():
        write_tensors(tensors, target, changed)
        with pytest.warns(CacheWarning, match=why):
            _, source, _ = model_cache.load_or_train(target, prov, _tiny_train(calls))
        assert source == "trained" and json.loads(metadata_of(target)["provenance"]) == json.loads(json.dumps(prov))
    target.write_bytes(b"garbage")
    with pytest.warns(CacheWarning, match="unreadable"):
        _, source, _ = model_cache.load_or_train(target, prov, _tiny_train(calls))
    assert source == "trained"


def test_the_cache_key_changes_with_everything_the_bytes_depend_on():
    base = model_cache.provenance({"kind": "hapt", "fold": 3, "config": dataclasses.asdict(GenericTrainConfig())})
    keys = {model_cache.cache_key(base)}
    for change in ({"fold": 4}, {"torch": "x"}, {"torch_threads": 2}, {"format": 1}, {"config": {}}):
        keys.add(model_cache.cache_key({**base, **change}))
    assert len(keys) == 6


@pytest.mark.slow
def test_without_the_fixed_thread_count_two_threads_give_other_bytes(tiny_generic, tmp_path, monkeypatch):
    """The control: the defect the fix removes is real (training on 2 threads changes the bytes)."""
    one = cache_with_recordings(tmp_path / "one")
    two = cache_with_recordings(tmp_path / "two")
    generic_for_fold("hapt", FOLD, one)
    monkeypatch.setattr(model_cache, "TRAIN_THREADS", 2)
    generic_for_fold("hapt", FOLD, two)
    a, _ = read_file(fold_file(one))
    b, _ = read_file(fold_file(two))
    assert any(not torch.equal(a[k], b[k]) for k in a)


API = r"""
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from pathlib import Path
from crop.generic import generic_for_fold
_, info = generic_for_fold("hapt", int(sys.argv[2]), Path(sys.argv[3]))
assert info["source"] == "trained" and torch.get_num_threads() == int(sys.argv[1])
print(info["path"])
"""


@pytest.mark.slow
def test_fold_models_trained_by_any_process_give_every_later_bench_the_same_records(tmp_path):
    """The full version, real configuration, separate processes: the fold-3 model trained through
    the Python API in processes on 1 and 2 torch threads and by ``crop bench`` with ``--threads``
    1 and 2 has the same tensors (bit for bit) and metadata, and later benches (generic and finetune, users 3 and 9) give
    byte-identical results.jsonl with each cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROP_")}
    caches, results = {}, {}
    for way in ("api-1", "api-2", "command-1", "command-2"):
        cache = caches[way] = cache_with_recordings(tmp_path / way)
        how, threads = way.split("-")
        if how == "api":
            subprocess.run([sys.executable, "-c", API, threads, str(FOLD), str(cache)], check=True, env=env)
        else:
            argv = [
                "--threads",
                threads,
                "bench",
                "--scenario",
                "hapt-session:1",
                "--users",
                "3",
                "--methods",
                "generic",
                "--quiet",
                "--out",
                str(tmp_path / f"first-{way}"),
            ]
            subprocess.run(
                [sys.executable, "-m", "crop.cli", *argv], check=True, env=env | {"CROP_CACHE_DIR": str(cache)}
            )
    contents = [content(fold_file(cache)) for cache in caches.values()]
    assert all(c == contents[0] for c in contents), "the fold model depends on the thread count of its first process"
    assert len({fold_file(c).name for c in caches.values()}) == 1
    for way, cache in caches.items():
        out = tmp_path / f"later-{way}"
        argv = [
            "bench",
            "--scenario",
            "hapt-session:1",
            "--users",
            USERS,
            "--methods",
            "generic,finetune",
            "--quiet",
            "--out",
            str(out),
        ]
        subprocess.run([sys.executable, "-m", "crop.cli", *argv], check=True, env=env | {"CROP_CACHE_DIR": str(cache)})
        results[way] = (out / "results.jsonl").read_bytes()
    assert len(set(results.values())) == 1

"""CLI robustness: every bad input ends with exit code 2, exactly one line ``crop: error: ...`` on
stderr, no traceback, and no new or changed file under the working directory (nor in the shared
fixture files).

The cases are generated and listed in :mod:`tests.robustness_cases`. Each runs in-process
(:func:`crop.cli.run`) in a fresh working directory that is snapshotted before and after. An
evenly spread subset runs with ``make test``; the full list is ``@pytest.mark.slow``
(``make test-slow``).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import pickle
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from crop.cli import run
from crop.models import HAPTNet
from crop.models.io import model_metadata
from tests.robustness_cases import BASE, Case, all_cases

FULL = all_cases(full=False)


def _spread(cases: list[Case], n: int) -> list[Case]:
    return [cases[int(i * len(cases) / n)] for i in range(min(n, len(cases)))]


def _fast_subset(cases: list[Case], share: int = 50, least: int = 4) -> list[Case]:
    """About 60 cases: evenly spread within each kind of bad input, at least ``least`` of each."""
    kinds: dict[str, list[Case]] = {}
    for c in cases:
        kinds.setdefault(c.group.split(":")[0], []).append(c)
    return [c for group in kinds.values() for c in _spread(group, max(least, round(share * len(group) / len(cases))))]


FAST = _fast_subset(FULL)


# ---------------------------------------------------------------- shared fixture files


def _npz(path: Path, X, y, context=None, **extra) -> None:
    arrays = {"X": X, "y": y, **({"context": context} if context is not None else {}), **extra}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with path.open("wb") as f:
        np.savez(f, **arrays)


def _data_files(root: Path) -> None:
    rng = np.random.default_rng(0)
    n = 60
    X = rng.normal(size=(n, 6, 128)).astype(np.float32)
    y = np.arange(n) % 6
    _npz(root / "ok_npz", X, y, np.array(["left"] * 30 + ["right"] * 30))
    bad = {
        "nan_npz": (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y),
        "inf_npz": (np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X), y),
        "huge_npz": (X * 1e9, y),
        "neg_huge_npz": (X - 1e8, y),
        "complex_npz": (X + 1j, y),
        "string_npz": (np.full((n, 6), "a"), y),
        "bool_npz": (X > 0, y),
        "no_y_npz": (X, None),
        "no_x_npz": (None, y),
        "float_y_npz": (X, y + 0.5),
        "neg_y_npz": (X, y - 1),
        "nan_y_npz": (X, np.where(y == 0, np.nan, y)),
        "flat_npz": (X[:, 0, 0], y),
        "empty_npz": (X[:0], y[:0]),
        "short_npz": (X[:, :, :64], y),
        "channels_npz": (X[:, :3], y),
        "big_label_npz": (X, y + 4),
        "classes_npz": (X, y % 5),
    }
    for name, (bx, by) in bad.items():
        _npz(root / name, bx, by)
    _npz(root / "ctx_shape_npz", X, y, np.array(["left"] * 7))
    with (root / "object_npz").open("wb") as f:
        np.savez(f, X=np.array([{"a": 1}] * n, dtype=object), y=y)
    (root / "text_npz").write_text("this is not a zip file\n")


def _model_files(root: Path) -> None:
    torch.manual_seed(0)
    model = HAPTNet()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    meta = model_metadata(model)
    save_file(state, str(root / "ok_model"), metadata=meta)
    first = "1.weight"

    def variant(name: str, tensors=None, metadata=None, **changes) -> None:
        t = {k: v.clone() for k, v in (tensors or state).items()}
        for key, value in changes.items():
            t[key.replace("__", ".")] = value
        save_file(t, str(root / name), metadata=metadata or meta)

    nan = state[first].clone()
    nan[0, 0, 0] = float("nan")
    variant("nan_model", **{"1__weight": nan})
    variant("inf_model", **{"1__weight": torch.full_like(state[first], float("inf"))})
    variant("zero_std_model", **{"0__std": torch.zeros_like(state["0.std"])})
    variant("neg_std_model", **{"0__std": -torch.ones_like(state["0.std"])})
    variant("neg_var_model", **{"2__running_var": -torch.ones_like(state["2.running_var"])})
    variant("int_model", **{"1__weight": torch.ones_like(state[first], dtype=torch.int64)})
    variant("missing_tensor_model", tensors={k: v for k, v in state.items() if k != first})
    variant("extra_tensor_model", extra=torch.ones(3))
    variant("shape_model", **{"1__weight": torch.ones(3, 3)})
    variant("no_arch_model", metadata={"crop_format": "1"})
    variant("unknown_arch_model", metadata={**meta, "crop_arch": "resnet"})
    variant("bad_config_model", metadata={**meta, "crop_config": "{"})
    variant("list_config_model", metadata={**meta, "crop_config": "[1, 2]"})
    variant("huge_config_model", metadata={**meta, "crop_config": json.dumps({"width": 10**7})})
    blob = (root / "ok_model").read_bytes()
    (root / "corrupt_model").write_bytes(b"garbage!" * 16)
    (root / "empty_model").write_bytes(b"")
    (root / "truncated_model").write_bytes(blob[: len(blob) // 2])
    (root / "text_model").write_text("not a model\n")
    sparse_meta = {**meta, "crop_sparse": "{bad"}
    variant("bad_sparse_model", metadata=sparse_meta)
    variant("huge_sparse_model", metadata={**meta, "crop_sparse": json.dumps({"x": [100000, 100000]})})
    from crop.certify.sparse import save_sparse

    with torch.no_grad():
        model[12].weight[:, 1:] = 0  # mostly zero: stored as CSR
    save_sparse(model, root / "ok_sparse")
    from safetensors.torch import load_file

    sparse = load_file(str(root / "ok_sparse"))
    val = next(k for k in sparse if k.endswith("::val") and sparse[k].numel())
    sparse[val] = torch.full_like(sparse[val], float("nan"))
    from safetensors import safe_open

    with safe_open(str(root / "ok_sparse"), framework="pt") as f:
        save_file(sparse, str(root / "nan_sparse_model"), metadata=f.metadata())


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/crop-robustness-pwned",))


def _hapt_files(root: Path) -> None:
    def gz(name: str, payload: bytes) -> None:
        (root / name).write_bytes(gzip.compress(payload))

    gz("evil_gz", pickle.dumps({1: [Evil()]}, protocol=2))
    gz("eval_gz", b"c__builtin__\neval\n(S'1+1'\ntR.")
    gz("garbage_gz", b"not a pickle at all")
    gz("empty_gz", b"")
    gz("list_gz", pickle.dumps([1, 2], protocol=2))
    gz("badframe_gz", pickle.dumps({1: [5]}, protocol=2))
    (root / "truncated_gz").write_bytes(gzip.compress(pickle.dumps({1: list(range(1000))}))[:40])
    (root / "fresh_cache").mkdir()


def _bench_dir(root: Path) -> None:
    """A small, valid bench directory (synthetic records) for report / analyze."""
    out = root / "bench_dir"
    out.mkdir()
    records = []
    for method in ("generic", "finetune"):
        block = []
        for context, name in (("available", "session 1"), ("unseen", "session 2")):
            for metric in ("balanced_accuracy", "accuracy", "f1"):
                base = {"dataset": "hapt", "scenario": "hapt-session:1", "user": 2, "seed": 0, "method": method}
                block.append({**base, "status": "ok", "context": context, "context_name": name})
                block[-1] |= {"metric": metric, "value": 0.5}
        block[-1]["unit_complete"] = True
        records += block
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    settings = {"dataset": "hapt", "metric": "balanced_accuracy", "configs": {"generic": {}, "finetune": {}}}
    (out / "bench.json").write_text(json.dumps(settings))


def _model_dir(root: Path) -> None:
    """A valid crop personalize directory (the generic model's weights, a consistent summary) for card."""
    out = root / "model_dir"
    out.mkdir()
    shutil.copyfile(root / "ok_model", out / "model.safetensors")
    scores = {"available (test split)": {"balanced_accuracy": 0.5}, "unseen: session 2": {"balanced_accuracy": 0.5}}
    summary = {"dataset": "hapt", "user": 2, "scenario": "hapt-session:1", "method": "finetune", "seed": 0}
    summary |= {"metric": "balanced_accuracy", "scores": scores, "generic_scores": scores}
    (out / "summary.json").write_text(json.dumps(summary | {"generic_model": {"source": "shipped"}}))


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("robustness-fixtures")
    _data_files(root)
    _model_files(root)
    _hapt_files(root)
    _bench_dir(root)
    _model_dir(root)
    return root


# ---------------------------------------------------------------- running one case


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): kind, size, mtime, mode, link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_mode, target)
    return out


def _resolve(text: str, fixtures: Path, cwd: Path) -> str:
    if text.startswith("@"):
        return str(fixtures / text[1:])
    if text.startswith("%"):
        return str(cwd / text[1:])
    return text


def _setup(case: Case, fixtures: Path, cwd: Path) -> None:
    for op, rel, *rest in case.setup:
        path = cwd / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if op == "file":
            path.write_text(rest[0])
        elif op == "dir":
            path.mkdir(exist_ok=True)
        elif op == "fifo":
            os.mkfifo(path)
        elif op == "link":
            os.symlink(rest[0], path)
        elif op == "copy":
            shutil.copytree(_resolve(rest[0], fixtures, cwd), path)
        else:
            raise ValueError(op)


def run_case(case: Case, fixtures: Path, cwd: Path, monkeypatch) -> tuple[int, str]:
    for key in [k for k in os.environ if k.startswith("CROP_")]:
        monkeypatch.delenv(key)
    for key, value in case.env:
        monkeypatch.setenv(key, _resolve(value, fixtures, cwd))
    monkeypatch.chdir(cwd)
    argv = [_resolve(a, fixtures, cwd) for a in case.argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(argv)
    torch.set_num_threads(1)
    return code, err.getvalue()


def check_case(case: Case, fixtures: Path, tmp_path: Path, monkeypatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _setup(case, fixtures, cwd)
    before, shared = snapshot(cwd), snapshot(fixtures)
    code, err = run_case(case, fixtures, cwd, monkeypatch)
    lines = err.splitlines()
    assert code == 2, f"exit {code}, stderr {err!r}"
    assert len(lines) == 1 and lines[0].startswith("crop: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    assert case.expect in lines[0], f"{case.expect!r} not named in {lines[0]!r}"
    assert snapshot(cwd) == before, "a file under the working directory was created or changed"
    assert snapshot(fixtures) == shared, "a shared fixture file was changed"


# ---------------------------------------------------------------- the suites


@pytest.mark.parametrize("case", FAST, ids=[c.id for c in FAST])
def test_bad_input_fast_subset(case, fixtures, tmp_path, monkeypatch):
    check_case(case, fixtures, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("case", FULL, ids=[c.id for c in FULL])
def test_bad_input_full_list(case, fixtures, tmp_path, monkeypatch):
    check_case(case, fixtures, tmp_path, monkeypatch)


def test_the_list_is_large_and_covers_every_option_of_every_command():
    import typer.main

    from crop.cli import app

    assert len(FULL) >= 300 and len({(c.argv, c.env, c.setup) for c in FULL}) == len(FULL)  # distinct inputs
    assert 40 <= len(FAST) <= 80
    root = typer.main.get_command(app)
    named = {a for c in FULL for a in c.argv if a.startswith("--")}
    groups = {c.group for c in FULL}
    for name, cmd in root.commands.items():
        assert name in BASE, f"no cases for command {name}"
        for param in cmd.params:
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert any(g.startswith(f"option:{name} {opt}") for g in groups), f"{name} {opt} untested"
            if not param.opts[0].startswith("-"):
                assert f"option:{name} DIR" in groups
    for param in root.params:
        assert any(opt in named for opt in param.opts if opt != "--help")
    kinds = {g.split(":")[0] for g in groups}
    assert kinds == {"option", "toml", "data", "model", "env", "target", "store"}

"""Operator faults and crash consistency (issue 25, classes 2, 3, 4 and 10).

One generator per class; each case must end as exit 2 with one ``crop: error:`` line, or as a
documented success (130 for Ctrl-C, 143 for SIGTERM), with no traceback, no internal error,
nothing written outside the named output and no existing file changed.

* class 2, the one-writer lock bound to the directory (:mod:`crop.dirlock`): the results
  directory is renamed, deleted, replaced or re-pointed while a bench writes it;
* class 3, a model directory is one unit (:mod:`crop.models.directory`): ``crop personalize``
  dies at every step of its publication, then ``crop card`` must not describe another model;
* class 4, worker processes die with their parent (:mod:`crop.workers`): SIGKILL and SIGTERM of
  ``crop bench --workers 2`` and of other parents;
* class 10, I/O faults and interrupts: every write of every command fails (a file-size limit,
  ENOSPC), Ctrl-C at many moments of start-up.

The slow cases (subprocesses that import torch, real personalizations) are marked ``slow``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crop.bench.runner import BenchSpec, run_bench
from crop.bench.store import ResultStore
from crop.cli import run
from crop.data.scenarios import parse_scenarios
from crop.errors import CropError

PROGRESS_LINE = re.compile(r"\[\d+/\d+\] ")  # crop bench: one line per finished unit off a terminal


def cli(argv: list[str]) -> tuple[int, str, str]:
    """``crop ARGV`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not PROGRESS_LINE.match(line)]  # crop bench off a terminal
    assert len(lines) == 1 and lines[0].startswith("crop: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): kind, size, mtime, link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, target)
    return out


# =============================================================================================
# class 2: the results directory's lock is bound to the directory, re-checked before every write
# =============================================================================================


def bench_spec(out: Path, hook=None, users=(2, 8)) -> BenchSpec:
    return BenchSpec(parse_scenarios("hapt-session:1"), list(users), [0], ["generic"], out, unit_hook=hook)


def _rename(out: Path, tmp: Path) -> dict:
    out.rename(tmp / "moved")
    return {"moved": tmp / "moved"}


def _delete(out: Path, tmp: Path) -> dict:
    shutil.rmtree(out)
    return {}


def _replace_empty(out: Path, tmp: Path) -> dict:
    out.rename(tmp / "moved")
    out.mkdir()
    (out / "note.txt").write_text("someone else's directory\n")
    return {"moved": tmp / "moved", "other": out}


def _replace_by_a_second_bench(out: Path, tmp: Path) -> dict:
    """The path gets a new directory and a second bench fills it, while the first still runs."""
    out.rename(tmp / "moved")
    run_bench(bench_spec(out), progress=False)
    return {"moved": tmp / "moved", "other": out}


def _repoint_link(out: Path, tmp: Path) -> dict:
    """``out`` is a symbolic link to the locked directory; it is re-pointed at another one."""
    (tmp / "elsewhere").mkdir()
    out.unlink()
    out.symlink_to(tmp / "elsewhere")
    return {"moved": tmp / "real", "other": tmp / "elsewhere"}


def _replace_by_a_file(out: Path, tmp: Path) -> dict:
    out.rename(tmp / "moved")
    out.write_text("a file now\n")
    return {"moved": tmp / "moved"}


def _rename_and_link_back(out: Path, tmp: Path) -> dict:
    """The directory moves but the path still leads to it: the same directory, so the bench goes on."""
    out.rename(tmp / "moved")
    out.symlink_to(tmp / "moved")
    return {"moved": tmp / "moved", "same": True}


DIRECTORY_FAULTS = {
    "rename": _rename,
    "delete": _delete,
    "replace-empty": _replace_empty,
    "replace-by-second-bench": _replace_by_a_second_bench,
    "replace-by-a-file": _replace_by_a_file,
    "repoint-link": _repoint_link,
    "rename-and-link-back": _rename_and_link_back,
}


@pytest.mark.parametrize("when", [1, 2], ids=["before-first-unit", "after-first-unit"])
@pytest.mark.parametrize("fault", list(DIRECTORY_FAULTS))
def test_bench_stops_when_its_directory_is_moved_deleted_or_replaced(tmp_path, fault, when):
    if fault == "repoint-link":
        (tmp_path / "real").mkdir()
        out = tmp_path / "bench"
        out.symlink_to(tmp_path / "real")
    else:
        out = tmp_path / "bench"
    calls: list[int] = []
    after: dict = {}
    frozen: dict = {}

    def hook(base, model, us):
        calls.append(1)
        if len(calls) == when:
            after.update(DIRECTORY_FAULTS[fault](out, tmp_path))
            if "other" in after:
                frozen.update(snapshot(after["other"]))
        return []

    if fault == "rename-and-link-back":  # a documented success: every record, in that one directory
        run_bench(bench_spec(out, hook), progress=False)
        assert {r["user"] for r in ResultStore(out / "results.jsonl").load()} == {2, 8}
        return
    with pytest.raises(CropError, match="deleted or moved away|no longer the results directory") as info:
        run_bench(bench_spec(out, hook), progress=False)
    assert "\n" not in str(info.value)
    if fault in ("rename", "delete"):
        assert not os.path.lexists(out)  # never recreated
    if fault == "replace-by-a-file":
        assert out.read_text() == "a file now\n"
    if "other" in after:  # another directory now at the path: untouched by the first bench
        assert snapshot(after["other"]) == frozen
    if "moved" in after:  # the locked directory keeps what was written before, nothing after
        moved = after["moved"]
        units = {r["user"] for r in ResultStore(moved / "results.jsonl").load()}
        assert units == ({2} if when == 2 else set())
        assert json.loads((moved / "bench.json").read_text())["dataset"] == "hapt"
    assert not [p for p in tmp_path.rglob(".*.tmp*")]  # no temporary left anywhere


def test_a_second_bench_never_writes_the_directory_of_the_first(tmp_path):
    """The first bench's directory is renamed mid-run; a second bench on the same path gets a
    new directory and finishes; the first stops at its next write. Each directory holds the
    records of exactly one bench, none twice."""
    out = tmp_path / "bench"
    clean = tmp_path / "clean"
    run_bench(bench_spec(clean), progress=False)
    calls: list[int] = []

    def hook(base, model, us):
        calls.append(1)
        if len(calls) == 2:
            _replace_by_a_second_bench(out, tmp_path)
        return []

    with pytest.raises(CropError):
        run_bench(bench_spec(out, hook), progress=False)
    assert (out / "results.jsonl").read_bytes() == (clean / "results.jsonl").read_bytes()
    first = ResultStore(tmp_path / "moved" / "results.jsonl").load()
    assert {r["user"] for r in first} == {2} and len(first) == 2 * 3  # one unit: 2 contexts x 3 metrics
    assert (tmp_path / "moved" / "timings.jsonl").read_text().count("\n") == 1


@pytest.mark.parametrize("when", ["during-the-units", "before-the-tables"])
def test_cli_bench_whose_directory_vanishes_ends_with_one_line(tmp_path, monkeypatch, when):
    """The directory vanishes between two units, or after the last unit while the command
    writes its tables (still under the lock): one line, exit 2, nothing recreated."""
    import crop.bench.runner as runner

    out = tmp_path / "bench"
    if when == "during-the-units":
        real, calls = runner.evaluate_unit, []

        def evaluate_then_delete(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                shutil.rmtree(out)
            return real(*args, **kwargs)

        monkeypatch.setattr(runner, "evaluate_unit", evaluate_then_delete)
    else:
        real_append, timings = runner._append_json, []

        def append_then_delete(lock, name, record):
            real_append(lock, name, record)
            timings.append(name == "timings.jsonl")
            if sum(timings) == 2:  # the last unit's timing: the units are done
                shutil.rmtree(out)

        monkeypatch.setattr(runner, "_append_json", append_then_delete)
    code, _, err = cli(
        ["bench", "--scenario", "hapt-session:1", "--users", "2,8", "--methods", "generic"]
        + [
            "--out",
            out,
            "--quiet",
        ]
    )
    assert code == 2
    assert "deleted or moved away" in one_error_line(err)
    assert not os.path.lexists(out)


# =============================================================================================
# class 4: worker processes die with their parent
# =============================================================================================

CROP = [sys.executable, "-m", "crop"]  # the command's own entry point (crop.__main__), as the console script
LONG_FINETUNE = "[finetune.train]\nepochs = 10000\npatience = 10000\n"  # workers stay busy until killed


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: psutil if installed, else /proc."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        found = []
        for proc in psutil.process_iter(["status"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(proc.pid)
        return found
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_for(condition, timeout: float, step: float = 0.05) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - t0


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def start_in_own_session(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(a) for a in argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_and_count(proc: subprocess.Popen, sig: int, busy: float = 0.0) -> tuple[float, str]:
    """Wait until the run has two worker processes (plus ``busy`` seconds), send ``sig`` to the
    parent alone; the seconds until no process of the session is alive, and the parent's stderr."""
    sid = proc.pid
    try:
        wait_for(lambda: sum("spawn_main" in cmdline(p) for p in session_members(sid)) >= 2, timeout=240)
        time.sleep(busy)
        members = session_members(sid)
        assert len(members) >= 4  # the parent, two workers, the resource tracker
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
        return wait_for(lambda: not session_members(sid), timeout=5), err
    finally:
        for pid in session_members(sid):  # only when the test failed: leave nothing behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


BENCH_WORKERS = ["bench", "--scenario", "hapt-session:1", "--users", "2,8", "--methods", "finetune", "--workers", "2"]


@needs_proc
@pytest.mark.parametrize("busy", [0.0, pytest.param(3.0, marks=pytest.mark.slow)], ids=["starting", "busy"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_bench_workers_die_with_their_parent(tmp_path, sig, busy):
    (tmp_path / "long.toml").write_text(LONG_FINETUNE)
    argv = [*CROP, *BENCH_WORKERS, "--config", "long.toml", "--out", "out", "--quiet"]
    seconds, err = kill_and_count(start_in_own_session(argv, tmp_path), sig, busy)
    assert seconds < 5
    if sig == signal.SIGTERM:  # a clean stop: one line, and no worker's or tracker's complaint
        assert err == "crop: terminated\n"
    assert (
        not list((tmp_path / "out").glob("results.jsonl"))
        or ResultStore(tmp_path / "out" / "results.jsonl").load() == []
    )


@needs_proc
def test_ctrl_c_at_the_terminal_is_answered_by_the_parent_alone(tmp_path):
    """Ctrl-C reaches the whole process group: the workers ignore it, the parent stops them and
    prints one line."""
    (tmp_path / "long.toml").write_text(LONG_FINETUNE)
    argv = [*CROP, *BENCH_WORKERS, "--config", "long.toml", "--out", "out", "--quiet"]
    proc = start_in_own_session(argv, tmp_path)
    try:
        wait_for(lambda: sum("spawn_main" in cmdline(p) for p in session_members(proc.pid)) >= 2, timeout=240)
        time.sleep(2.0)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does
        _, err = proc.communicate(timeout=60)
        assert wait_for(lambda: not session_members(proc.pid), timeout=5) < 5
    finally:
        for pid in session_members(proc.pid):
            os.kill(pid, signal.SIGKILL)
    assert (proc.returncode, err) == (130, "crop: interrupted\n")


@pytest.mark.slow
@needs_proc
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_population_tuning_workers_die_with_their_parent(tmp_path, sig):
    argv = [*CROP, "tune", "--population", "--user", "2", "--method", "finetune", "--workers", "2", "--out", "out"]
    seconds, err = kill_and_count(start_in_own_session(argv, tmp_path), sig, busy=1.0)
    assert seconds < 5
    if sig == signal.SIGTERM:
        assert err == "crop: terminated\n"


@needs_proc
def test_a_helper_process_dies_with_its_parent(tmp_path):
    """crop.workers.child_command (crop resources' measuring runs): the helper is bound to its
    parent before it imports anything of its own."""
    (tmp_path / "sleeper.py").write_text("import time\nif __name__ == '__main__':\n    time.sleep(120)\n")
    parent = (
        "import subprocess, sys, time\n"
        "from crop.workers import child_command\n"
        "child = subprocess.Popen(child_command('sleeper'))\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        child = int(proc.stdout.readline())
        wait_for(lambda: "sleeper" in cmdline(child), timeout=30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert wait_for(lambda: not session_members(proc.pid), timeout=5) < 5
    finally:
        for pid in session_members(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_pool_stops_its_workers_when_the_parent_stops(tmp_path):
    """An exception in the parent (an error, Ctrl-C, SIGTERM) while tasks run: the workers are
    stopped at once, not after their tasks."""
    import multiprocessing

    from crop.workers import process_pool

    with pytest.raises(KeyboardInterrupt), process_pool(2) as pool:
        for i in range(2):
            pool.submit(_touch_and_sleep, tmp_path / f"started{i}", 60)
        wait_for(lambda: len(list(tmp_path.glob("started*"))) == 2, 120)  # both workers run a task
        t0 = time.monotonic()
        raise KeyboardInterrupt
    assert time.monotonic() - t0 < 10
    assert multiprocessing.active_children() == []


def _touch_and_sleep(path: Path, seconds: float) -> None:
    path.touch()
    time.sleep(seconds)


# =============================================================================================
# class 3: a model directory is one unit
# =============================================================================================


class Killed(BaseException):  # noqa: N818 - stands for the process being killed at that point
    """Raised by an injected fault: the process 'dies' there."""


def old_run(out: Path, sparse: bool = True) -> dict[str, str]:
    """A finished earlier run in ``out`` (user 8, a sparse model unless ``sparse`` is false, a
    certificate of it), written through the same publication as crop personalize;
    ``{file name: sha256}`` of its files."""
    import torch

    from crop.models import HAPTNet
    from crop.models.directory import model_directory, publish_model, sha256_file
    from crop.models.io import model_bytes, sparse_bytes

    torch.manual_seed(8)
    model = HAPTNet()
    with torch.no_grad():
        model[12].weight[:, 1:] = 0  # mostly zero: stored as CSR
    scores = {"available (test split)": {"balanced_accuracy": 0.5}, "unseen: session 2": {"balanced_accuracy": 0.5}}
    summary = {"dataset": "hapt", "user": 8, "scenario": "hapt-session:1", "method": "finetune", "seed": 0}
    summary |= {"metric": "balanced_accuracy", "scores": scores, "generic_scores": scores}
    summary |= {"generic_model": {"source": "shipped"}}
    with model_directory(out) as lock:
        publish_model(lock, model_bytes(model), summary, sparse_bytes(model) if sparse else None)
    shas = {p.name: sha256_file(p) for p in out.iterdir()}
    certificate = {"model": str(out / "model.safetensors"), "model_sha256": shas["model.safetensors"]}
    certificate["results"] = {"unseen: session 2": {"verified@linf:0.01": 0.25}}
    (out / "certify.json").write_text(json.dumps(certificate))
    return shas


PERSONALIZE_USER_2 = ["personalize", "--user", "2", "--method", "generic"]

# Where crop personalize dies while it replaces the earlier run (user 8, with a sparse file) by
# user 2's dense model: (fault, what crop card must then do).
PUBLICATION_FAULTS = {
    "staging-fails-enospc": "old",  # a write of a staged file fails: exit 2, nothing replaced
    "staging-interrupted": "old",  # Ctrl-C while staging: exit 130, nothing replaced
    "killed-before-sparse-removal": "old",
    "killed-before-model": "refuse",  # the old sparse file is gone, the summary still lists it
    "killed-before-summary": "refuse",  # the new model beside the old summary
    "completed": "new",
}


def inject(monkeypatch, fault: str) -> None:
    import errno

    import crop.dirlock as dirlock

    real_replace, real_unlink, real_write = os.replace, os.unlink, os.write

    def replace(src, dst, **kwargs):
        if "dst_dir_fd" in kwargs:  # a publication rename of crop.dirlock
            if dst == "model.safetensors" and fault == "killed-before-model":
                raise Killed
            if dst == "summary.json" and fault == "killed-before-summary":
                raise Killed
        return real_replace(src, dst, **kwargs)

    def unlink(path, **kwargs):
        if path == "model.sparse.safetensors" and fault == "killed-before-sparse-removal":
            raise Killed
        return real_unlink(path, **kwargs)

    def write(fd, data):
        if fault == "staging-fails-enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        if fault == "staging-interrupted":
            raise KeyboardInterrupt
        return real_write(fd, data)

    monkeypatch.setattr(dirlock.os, "replace", replace)
    monkeypatch.setattr(dirlock.os, "unlink", unlink)
    monkeypatch.setattr(dirlock.os, "write", write)


def card_of(model_dir: Path) -> tuple[int, str, str]:
    code, _, err = cli(["card", model_dir])
    text = (model_dir / "card.md").read_text() if code == 0 else ""
    return code, err, text


PUBLICATION_CASES = [
    pytest.param(fault, old_sparse, id=f"{fault}-over-{'sparse' if old_sparse else 'dense'}")
    for old_sparse in (True, False)
    for fault in PUBLICATION_FAULTS
    if old_sparse or fault != "killed-before-sparse-removal"  # no sparse file to remove
]


@pytest.mark.parametrize(("fault", "old_sparse"), PUBLICATION_CASES)
def test_card_never_describes_another_model_after_a_crash_between_writes(tmp_path, monkeypatch, fault, old_sparse):
    out = tmp_path / "model"
    old = old_run(out, sparse=old_sparse)
    before = snapshot(out)
    inject(monkeypatch, fault)
    if fault.startswith("killed"):
        with pytest.raises(Killed):
            cli([*PERSONALIZE_USER_2, "--out", out])
    else:
        code, _, err = cli([*PERSONALIZE_USER_2, "--out", out])
        if fault == "staging-fails-enospc":
            assert code == 2
            assert "cannot write" in one_error_line(err) and "model.safetensors" in err and "No space" in err
        elif fault == "staging-interrupted":
            assert (code, err) == (130, "crop: interrupted\n")
        else:
            assert code == 0
    monkeypatch.undo()
    assert not list(out.glob(".*tmp*"))  # nothing staged is left (a real SIGKILL: see the slow test)
    if PUBLICATION_FAULTS[fault] == "old" or (not old_sparse and fault == "killed-before-model"):
        assert snapshot(out) == before  # every file as it was
    code, err, text = card_of(out)
    from crop.models.directory import sha256_file

    expected = PUBLICATION_FAULTS[fault]
    if not old_sparse and fault == "killed-before-model":
        expected = "old"  # nothing to remove first: the model is the first rename, and it did not happen
    if expected == "refuse":
        assert code == 2
        line = one_error_line(err)
        assert "does not belong" in line or "is missing" in line
        assert not (out / "card.md").exists()
    elif expected == "old":
        assert code == 0 and "user 8" in text and old["model.safetensors"] in text
        assert "verified@linf:0.01" in text  # its own certificate is shown
    else:
        assert code == 0 and "user 2" in text and sha256_file(out / "model.safetensors") in text
        assert not (out / "model.sparse.safetensors").exists()  # the earlier run's sparse file went
        assert "verified@linf:0.01" not in text and "is not shown: it certified another model file" in text


def test_card_refuses_or_marks_every_file_that_does_not_belong(tmp_path):
    from crop.models.directory import sha256_file

    base = tmp_path / "base"
    old_run(base)
    cases = {}

    def variant(name: str, change) -> Path:
        d = tmp_path / name
        shutil.copytree(base, d)
        change(d)
        cases[name] = d
        return d

    variant("foreign-model", lambda d: shutil.copyfile(d / "model.sparse.safetensors", d / "model.safetensors"))
    variant("missing-sparse", lambda d: (d / "model.sparse.safetensors").unlink())
    variant("foreign-sparse", lambda d: (d / "model.sparse.safetensors").write_bytes(b"x" * 10))
    variant("bad-files-record", lambda d: _edit_summary(d, files={"model.safetensors": {"sha256": 5}}))
    variant("unlisted-sparse", lambda d: _edit_summary(d, files={"model.safetensors": _entry(d)}))
    for name in ("foreign-model", "missing-sparse", "foreign-sparse", "bad-files-record", "unlisted-sparse"):
        frozen = snapshot(cases[name])
        code, err, _ = card_of(cases[name])
        assert code == 2, name
        one_error_line(err)
        assert snapshot(cases[name]) == frozen  # no card written
    # files that cannot be checked or belong to another model are marked, never shown as this model's
    old_summary = variant("older-crop", lambda d: _edit_summary(d, files=None))
    code, err, text = card_of(old_summary)
    assert code == 0 and "not checked" in text and sha256_file(old_summary / "model.safetensors") in text
    unbound = variant("unbound-certificate", lambda d: _edit_json(d / "certify.json", model_sha256=None))
    code, err, text = card_of(unbound)
    assert code == 0 and "does not record the SHA-256" in text and "verified@linf:0.01" not in text
    other = variant("other-certificate", lambda d: _edit_json(d / "certify.json", model_sha256="ab" * 32))
    code, err, text = card_of(other)
    assert code == 0 and "certified another model file" in text and "verified@linf:0.01" not in text


def _entry(d: Path) -> dict:
    from crop.models.directory import sha256_file

    return {"sha256": sha256_file(d / "model.safetensors"), "bytes": (d / "model.safetensors").stat().st_size}


def _edit_json(path: Path, **changes) -> None:
    value = json.loads(path.read_text())
    for key, new in changes.items():
        if new is None:
            value.pop(key, None)
        else:
            value[key] = new
    path.write_text(json.dumps(value))


def _edit_summary(d: Path, **changes) -> None:
    _edit_json(d / "summary.json", **changes)


def test_a_second_personalize_on_the_same_directory_is_refused(tmp_path):
    from crop.dirlock import DirectoryLock

    out = tmp_path / "model"
    out.mkdir()
    with DirectoryLock(out, "model directory"):  # another run holds it (flock: also across processes)
        code, _, err = cli([*PERSONALIZE_USER_2, "--out", out])
        code_tune, _, err_tune = cli(
            ["tune", "--user", "2", "--method", "finetune", "--grid", "train.lr=0.01", "--out", out]
        )
    assert code == code_tune == 2
    assert "in use by another crop run" in one_error_line(err) and "in use" in one_error_line(err_tune)
    assert list(out.iterdir()) == []


def test_a_failed_personalize_removes_the_directory_it_created(tmp_path, monkeypatch):
    import crop.api

    def fail(*args, **kwargs):
        raise CropError("training diverged")

    monkeypatch.setattr(crop.api, "personalize", fail)
    code, _, err = cli([*PERSONALIZE_USER_2, "--out", tmp_path / "new" / "model"])
    assert code == 2 and "training diverged" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("step", ["model.safetensors", "summary.json"])
def test_sigkill_between_the_renames_then_card_and_a_new_run(tmp_path, step):
    """A real SIGKILL of crop personalize just before it renames ``step`` into place: its
    temporaries stay behind and card refuses; the next run removes them and succeeds."""
    out = tmp_path / "model"
    old_run(out)
    code = (
        "import os, signal, sys\n"
        "real = os.replace\n"
        "def replace(src, dst, **kw):\n"
        f"    if 'dst_dir_fd' in kw and dst == {step!r}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(src, dst, **kw)\n"
        "os.replace = replace\n"
        "from crop.cli import run\n"
        f"sys.exit(run({[*PERSONALIZE_USER_2, '--out', str(out)]!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    assert list(out.glob(".*tmp*"))  # SIGKILL leaves the staged files
    code_card, err, _ = card_of(out)
    assert code_card == 2 and ("does not belong" in err or "is missing" in err)
    assert cli([*PERSONALIZE_USER_2, "--out", out])[0] == 0
    assert not list(out.glob(".*tmp*"))  # the next run under the lock removed them
    code_card, err, text = card_of(out)
    assert code_card == 0 and "user 2" in text


# =============================================================================================
# class 10: I/O faults name their file and leave no temporary; Ctrl-C and SIGTERM at any moment
# =============================================================================================


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Every write of this process beyond ``limit`` bytes of a file fails with EFBIG ("File too
    large"), as on a full disk, without privileges (RLIMIT_FSIZE; SIGXFSZ ignored)."""
    import resource

    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.fixture(scope="module")
def io_fixtures(tmp_path_factory) -> Path:
    """A model directory and a bench directory (and, through them, warm caches), written
    without limits."""
    root = tmp_path_factory.mktemp("io-fixtures")
    assert cli([*PERSONALIZE_USER_2, "--out", root / "pdir"])[0] == 0
    bench = ["bench", "--scenario", "hapt-session:1", "--users", "2", "--methods", "generic"]
    assert cli([*bench, "--out", root / "bdir", "--quiet"])[0] == 0
    return root


# command -> argv; OUT: a new output path in the case's directory, @x: a fresh copy of fixture x
WRITERS = {
    "personalize": [*PERSONALIZE_USER_2, "--out", "OUT"],
    "personalize-sparse-over-old": [*PERSONALIZE_USER_2, "--out", "@pdir"],
    "tune": ["tune", "--user", "2", "--method", "finetune", "--grid", "train.epochs=1", "--out", "OUT"],
    "bench": ["bench", "--scenario", "hapt-session:1", "--users", "2", "--methods", "generic", "--out", "OUT"],
    "bench-resume": [
        "bench",
        "--scenario",
        "hapt-session:1",
        "--users",
        "2,8",
        "--methods",
        "generic",
        "--out",
        "@bdir",
    ],
    "report": ["report", "@bdir"],
    "card": ["card", "@pdir"],
    "certify": [
        "certify",
        "--model",
        "@pdir/model.safetensors",
        "--user",
        "2",
        "--certify",
        "eps=0.01",
        "--out",
        "OUT",
    ],
    "export": ["export", "@pdir/model.safetensors", "--out", "OUT"],
}
LIMITS = [0, 300, 1_000, 5_000, 20_000, 100_000]
FAST_WRITERS = {("personalize", 0), ("bench-resume", 1_000), ("card", 1_000), ("export", 20_000), ("tune", 20_000)}


def _writer_cases():
    for name in WRITERS:
        for limit in LIMITS:
            marks = () if (name, limit) in FAST_WRITERS else (pytest.mark.slow,)
            yield pytest.param(name, limit, marks=marks, id=f"{name}-{limit}")


@pytest.mark.parametrize(("name", "limit"), list(_writer_cases()))
def test_a_failing_write_names_its_file_and_leaves_no_temporary(tmp_path, io_fixtures, name, limit):
    argv = []
    for arg in WRITERS[name]:
        if arg == "OUT":
            arg = tmp_path / "out"
        elif arg.startswith("@"):
            source, _, rest = arg[1:].partition("/")
            if not (tmp_path / source).exists():
                shutil.copytree(io_fixtures / source, tmp_path / source)
            arg = tmp_path / source / rest if rest else tmp_path / source
        argv.append(arg)
    with file_size_limit(limit):
        code, _, err = cli(argv)
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]  # no temporary left
    if code == 0:
        return  # everything fitted under the limit
    assert code == 2, err
    line = one_error_line(err)
    assert "File too large" in line
    named = line.removeprefix("crop: error: cannot write ").split(": File too large")[0]
    assert named.startswith(str(tmp_path)) or named.startswith(str(io_fixtures)), line  # it names the file


def test_an_atomic_write_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    import errno
    from pathlib import Path as P

    from crop.report.files import write_bytes_atomic, write_text_atomic

    (tmp_path / "keep.txt").write_text("old\n")

    def full(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(P, "write_bytes", full)
    for target in ("keep.txt", "new.txt"):
        with pytest.raises(CropError, match=f"cannot write .*{target}: No space left on device"):
            write_text_atomic(tmp_path / target, "new contents\n")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "old\n"
    write_bytes_atomic(tmp_path / "keep.txt", b"new\n")
    assert (tmp_path / "keep.txt").read_text() == "new\n"


ENOSPC_COMMANDS = {
    "personalize": [*PERSONALIZE_USER_2, "--out", "{disk}/out"],
    "bench": ["bench", "--scenario", "hapt-session:1", "--users", "2", "--methods", "generic", "--out", "{disk}/out"],
}


def _unshare_works() -> bool:
    try:
        probe = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"]
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.parametrize("size_kb", [4, 40])
@pytest.mark.parametrize("command", list(ENOSPC_COMMANDS))
def test_a_full_disk_is_one_line_naming_the_file(tmp_path, command, size_kb):
    """A real full disk: a tiny tmpfs in a private mount namespace (skipped where unprivileged
    user namespaces are not allowed)."""
    if not _unshare_works():
        pytest.skip("no unprivileged mount namespace here")
    disk = tmp_path / "disk"
    disk.mkdir()
    argv = " ".join(f"'{a.format(disk=disk)}'" for a in ENOSPC_COMMANDS[command])
    script = f"mount -t tmpfs -o size={size_kb}k none '{disk}' && {sys.executable} -m crop {argv}; echo rc=$?; ls -A '{disk}'"
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], capture_output=True, text=True
    )
    assert ".tmp" not in proc.stdout.split("rc=")[1]  # no temporary left on the disk
    if "rc=0" in proc.stdout:
        return  # it fitted
    assert "rc=2" in proc.stdout, proc.stdout + proc.stderr
    assert "No space left on device" in one_error_line(proc.stderr) and str(disk) in proc.stderr


def test_import_crop_is_light_and_its_names_load_on_use():
    code = "import sys, crop, crop.__main__, crop.interrupts; print('torch' in sys.modules, 'typing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False"  # the entry point's imports leave Ctrl-C handling nothing to wait for
    import crop

    assert set(crop.__all__) == set(crop._EXPORTS) <= set(dir(crop))
    for name in crop.__all__:
        assert getattr(crop, name) is not None
    assert crop.personalize.__module__ == "crop.api"
    with pytest.raises(AttributeError):
        crop.no_such_name  # noqa: B018


# Ctrl-C and SIGTERM: (command, output argument) started as the console script would be
STOPPED = {
    "personalize": [*PERSONALIZE_USER_2, "--out", "out"],
    "bench": [
        "bench",
        "--scenario",
        "hapt-session:1",
        "--users",
        "2,8",
        "--methods",
        "generic,finetune",
        "--out",
        "out",
    ],
    "methods": ["methods"],
}
STOP_DELAYS = [0.2, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0]
FAST_STOPS = {("personalize", signal.SIGINT, 1.0), ("bench", signal.SIGINT, 2.5), ("bench", signal.SIGTERM, 0.5)}


def _stop_cases():
    for command in STOPPED:
        for sig in (signal.SIGINT, signal.SIGTERM):
            for delay in STOP_DELAYS:
                marks = () if (command, sig, delay) in FAST_STOPS else (pytest.mark.slow,)
                yield pytest.param(command, sig, delay, marks=marks, id=f"{command}-{sig.name}-{delay}s")


@pytest.mark.parametrize(("command", "sig", "delay"), list(_stop_cases()))
def test_a_stop_at_any_moment_is_one_line_and_leaves_nothing_half_written(tmp_path, command, sig, delay):
    proc = subprocess.Popen(
        [*CROP, *STOPPED[command], *(["--quiet"] if command == "bench" else [])],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    wait_for(lambda: not session_members(proc.pid), timeout=5)  # workers, trackers: none left
    finished = proc.returncode == 0 or (proc.returncode == -sig and err == "")
    if not finished:  # finished: the command ended first (or the signal came as the interpreter tore down)
        expected = ("crop: interrupted\n", 130) if sig == signal.SIGINT else ("crop: terminated\n", 143)
        assert (err, proc.returncode) == expected
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    out = tmp_path / "out"
    if command == "personalize" and out.exists():  # all or nothing, never an empty directory
        from crop.models.directory import check_model_dir

        check_model_dir(out, json.loads((out / "summary.json").read_text()))
    if command == "bench" and (out / "results.jsonl").exists():
        ResultStore(out / "results.jsonl").load()  # complete units only (a torn tail is repaired on resume)
        code, _, err = cli([*STOPPED["bench"][:-1], out, "--quiet"])  # and the run resumes
        assert code == 0, err

"""``crop bench --executor ray``: the same results file as the local executor, resume across
executors, a worker that dies is retried without losing or doubling records, and the options
are checked before anything is written. The Ray runs are skipped when Ray is not installed."""

import builtins
import json
import os
import shutil

import pytest

from crop.bench.runner import BenchSpec, run_bench
from crop.data.scenarios import parse_scenarios
from crop.errors import CropError
from crop.personalization.finetune import FinetuneConfig
from crop.personalization.loop import TrainConfig

USERS = [2, 8]
PRINT = builtins.print
FAST = {"finetune": FinetuneConfig(TrainConfig(epochs=2))}


def spec(out, users=USERS, executor="local", workers=None, hook=None, **kw):
    return BenchSpec(
        parse_scenarios("hapt-session:1"),
        list(users),
        [0],
        ["generic", "finetune"],
        out,
        configs=FAST,
        executor=executor,
        workers=workers,
        unit_hook=hook,
        **kw,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """results.jsonl of the local executor, in this process."""
    out = tmp_path_factory.mktemp("local")
    run_bench(spec(out), progress=False)
    return (out / "results.jsonl").read_bytes()


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance with 2 CPUs for the tests of this module, started as ``crop bench
    --executor ray --workers 2`` starts it (runs reuse a session that is already up: starting
    Ray and its workers costs more than these small benches)."""
    ray = pytest.importorskip("ray")
    from crop.bench.ray_executor import start_ray

    started, cpus = start_ray(workers=2)
    assert started and cpus == 2
    yield ray
    ray.shutdown()


def test_ray_run_equals_the_local_run_byte_for_byte(tmp_path, reference, ray_session):
    run_bench(spec(tmp_path / "ray", executor="ray", workers=2), progress=False)
    assert (tmp_path / "ray" / "results.jsonl").read_bytes() == reference
    assert ray_session.is_initialized()  # a session the caller started is left running
    timings = [json.loads(line) for line in (tmp_path / "ray" / "timings.jsonl").read_text().splitlines()]
    assert sorted((t["user"], t["method"]) for t in timings) == [(u, m) for u in USERS for m in ("finetune", "generic")]

    # A Ray run killed after some units left a prefix of that file (torn in the middle of a
    # unit here); the local executor resumes it to the same file.
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "ray", killed)
    data = (killed / "results.jsonl").read_bytes()
    (killed / "results.jsonl").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning):  # the abandoned records of the unfinished unit are reported
        run_bench(spec(killed), progress=False)
    assert (killed / "results.jsonl").read_bytes() == reference


def test_a_worker_that_dies_is_retried_and_nothing_is_lost_or_doubled(tmp_path, reference, ray_session):
    out = tmp_path / "out"
    run_bench(spec(out, users=USERS[:1]), progress=False)  # started with the local executor ...
    marker = tmp_path / "died"

    def die_once(base, model, us):
        """Kill this worker process the first time any unit gets here (after its personalization)."""
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return []
        os.write(fd, f"{os.getpid()} {base['user']} {base['method']}".encode())
        os.close(fd)
        os._exit(1)

    run_bench(spec(out, executor="ray", workers=2, hook=die_once), progress=False)  # ... resumed with Ray
    pid, user, _ = marker.read_text().split()
    assert int(user) == USERS[1] and int(pid) != os.getpid()  # a worker died on a unit of this run
    assert (out / "results.jsonl").read_bytes() == reference  # nothing lost, nothing written twice
    timings = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
    assert len(timings) == len({(t["user"], t["method"]) for t in timings}) == 2 * len(USERS)
    assert builtins.print is PRINT  # reporting the dead worker did not make Ray rebind print in this process


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"executor": "dask"}, "--executor must be one of local, ray"),
        ({"address": "auto"}, "--address applies with --executor ray only"),
        ({"executor": "ray", "address": "not an address"}, "--address must be"),
        ({"executor": "ray", "address": "head:99999"}, "--address must be"),
        ({"executor": "ray", "address": ""}, "--address must be"),
        ({"executor": "ray", "address": 6379}, "--address must be"),
    ],
)
def test_executor_options_are_refused_before_anything_is_written(tmp_path, change, message):
    with pytest.raises(CropError, match=message):
        run_bench(spec(tmp_path / "out", **change), progress=False)
    assert not (tmp_path / "out").exists()


def test_an_unreachable_cluster_is_refused_before_anything_is_written(tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(CropError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        run_bench(spec(tmp_path / "out", executor="ray", address="127.0.0.1:1"), progress=False)
    assert not (tmp_path / "out").exists()


def test_missing_ray_is_one_line_naming_the_install(tmp_path, monkeypatch):
    from crop.bench import ray_executor

    monkeypatch.setattr(ray_executor, "ray_available", lambda: False)
    with pytest.raises(CropError, match=r"pip install 'crop\[ray\]'") as info:
        run_bench(spec(tmp_path / "out", executor="ray"), progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", ["auto", "127.0.0.1:6379", "ray://head.example.org:10001", "head-node:6379"])
def test_cluster_addresses_of_every_form_ray_accepts_pass_the_format_check(address, monkeypatch):
    from crop.bench import ray_executor

    monkeypatch.setattr(ray_executor, "ray_available", lambda: True)
    monkeypatch.setattr(ray_executor, "probe", lambda address: None)  # no cluster here: the form only
    ray_executor.check_executor("ray", address)


def test_cli_executor_errors_are_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from crop.bench import ray_executor
    from crop.cli import app

    def bench(*extra):
        args = ["bench", "--scenario", "hapt-session:1", "--users", "2", "--methods", "generic", "--out"]
        return CliRunner().invoke(app, [*args, str(tmp_path / "out"), *extra])

    for extra, message in [
        (("--executor", "dask"), "--executor must be one of local, ray"),
        (("--address", "auto"), "--address applies with --executor ray only"),
    ]:
        result = bench(*extra)
        assert result.exit_code == 2 and message in result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    monkeypatch.setattr(ray_executor, "ray_available", lambda: False)
    result = bench("--executor", "ray")
    assert result.exit_code == 2 and result.output.strip() == f"crop: error: {ray_executor.INSTALL_HINT}"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_ray_run_prints_no_ray_messages(tmp_path):
    """The whole command in a fresh process (a fresh local Ray instance): Ray's start-up and
    shut-down print nothing; the output is the command's own last line."""
    pytest.importorskip("ray")
    import subprocess
    import sys

    import crop

    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(crop.__file__))}
    args = ["bench", "--scenario", "hapt-session:1", "--users", "2", "--methods", "generic,finetune", "--quiet"]
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "crop.cli", *args, "--executor", "ray", "--workers", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert " ".join(proc.stdout.split()) == f"wrote {out / 'results.jsonl'} and {out / 'table.md'}"

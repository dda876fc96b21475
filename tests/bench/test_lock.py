"""One writer per results directory: a second bench on the same --out is refused at once,
writes nothing and leaves no duplicate record."""

import contextlib
import io
import subprocess
import sys
import textwrap

import pytest

from crop.bench.checks import results_lock
from crop.bench.runner import BenchSpec, run_bench
from crop.bench.store import ResultStore, unit_key
from crop.data.scenarios import parse_scenarios
from crop.errors import CropError


def spec(out, hook=None):
    return BenchSpec(parse_scenarios("hapt-session:1"), [2, 8], [0], ["generic"], out, unit_hook=hook)


def test_a_second_bench_during_the_first_is_refused_and_adds_no_record(tmp_path):
    out = tmp_path / "bench"
    refused = []

    def second_run(base, model, us):
        if not refused:
            with pytest.raises(CropError, match="in use by another crop run"):
                run_bench(spec(out), progress=False)
            refused.append(True)
        return []

    run_bench(spec(out, hook=second_run), progress=False)
    assert refused
    records = ResultStore(out / "results.jsonl").load()
    keys = [unit_key(r) + (r["context"], r["metric"]) for r in records]
    assert len(keys) == len(set(keys)) == 2 * 2 * 3  # users x contexts x metrics, no duplicate
    run_bench(spec(out), progress=False)  # once the first has finished, the directory is free again


def test_cli_bench_is_refused_while_another_process_holds_the_directory(tmp_path):
    out = tmp_path / "bench"
    out.mkdir()
    holder = textwrap.dedent(
        f"""
        import sys
        from crop.bench.checks import results_lock
        with results_lock(__import__("pathlib").Path({str(out)!r})):
            print("locked", flush=True)
            sys.stdin.read()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        from crop.cli import run

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = run(
                ["bench", "--scenario", "hapt-session:1", "--users", "2", "--methods", "generic", "--out", str(out)]
            )
        assert code == 2
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("crop: error:") and "in use by another crop run" in lines[0]
        assert list(out.iterdir()) == []  # nothing written, not even a lock file
    finally:
        proc.communicate("")
    assert proc.returncode == 0


def test_the_lock_is_released_after_an_error(tmp_path):
    with pytest.raises(RuntimeError), results_lock(tmp_path):
        raise RuntimeError("boom")
    with results_lock(tmp_path):
        pass

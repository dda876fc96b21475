"""Run a bench's personalization groups as Ray tasks (``crop bench --executor ray``).

A team with thousands of enrolled people spreads ``crop bench`` over a cluster. Ray does the
scheduling, the transport and the retries; this module only decides *what* runs and keeps the
results file exactly as the local executor writes it:

* each :class:`~crop.bench.runner.UnitGroup` (one personalization, evaluated in each of its
  scenarios) is one Ray task calling the same :func:`~crop.bench.runner._run_group` as the local
  worker pool, so a unit's records are the same whichever executor computed them;
* the driver (this process) alone writes ``results.jsonl``, once per group, in plan order:
  tasks are submitted in a bounded window ahead of the next group to write, and a result that
  arrives early waits for the groups before it. ``results.jsonl`` is therefore byte-identical to
  the local executor's, for any number of workers, and a run started with one executor resumes
  with the other (the executor is not a setting of ``bench.json``);
* a worker process that dies (killed, out of memory, node lost) is retried by Ray
  (``max_retries``). A task's records only exist in the driver once the task has returned, so a
  retry can never write a unit twice. When every retry fails, the run stops with a one-line
  error; what was written stays valid and a resumed run recomputes the rest.

Without ``--address`` a private local Ray instance is started with ``num_cpus`` = ``--workers``
(default: one per core, at most 8) and shut down at the end; with ``--address`` (``auto``,
``HOST:PORT`` or ``ray://HOST:PORT``) the run joins an existing cluster, whose every node must
have the same version of ``crop`` installed. A Ray session the caller already started (for
example in a notebook) is used as it is and left running.

Ray is up before anything is written (:func:`ray_session`, entered by ``run_bench``), and an
address is checked in three steps, each a one-line error: its form (:func:`parse_address`: a
DNS name of at most 253 characters or an IPv4 address, a port 1-65535), a probe
(:func:`probe`: a TCP connection and a gRPC / HTTP/2 handshake, :data:`CONNECT_TIMEOUT` seconds
each), then a join in a child process given :data:`INIT_TIMEOUT` seconds (:func:`check_join`),
before this process calls ``ray.init``.

Ray is an optional extra (``pip install 'crop[ray]'``): it is imported here only, when a run
asks for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from crop.errors import CropError

EXECUTORS = ("local", "ray")
MAX_RETRIES = 3  # Ray re-runs a task whose worker process died this many times before giving up
INSTALL_HINT = "--executor ray needs Ray: pip install 'crop[ray]' (or pip install 'ray>=2.9')"
CONNECT_TIMEOUT = 5.0  # seconds for the TCP connection and the gRPC (HTTP/2) handshake of the probe
INIT_TIMEOUT = 30.0  # seconds for a child process to join a cluster that passed the probe (check_join)
MAX_HOST = 253  # characters of a DNS name (RFC 1035); each dot-separated label 1-63
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + an empty SETTINGS frame
_ADDRESS_FORMS = "'auto', HOST:PORT or ray://HOST:PORT (HOST a DNS name or an IPv4 address, PORT 1-65535)"


def ray_available() -> bool:
    """Whether Ray can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def parse_address(address: Any) -> tuple[str, str, int]:
    """``--address`` as ``(kind, host, port)``: kind ``auto`` (host ``""``, port 0), ``gcs``
    (``HOST:PORT``, a cluster's head node) or ``client`` (``ray://HOST:PORT``, the Ray client
    server). HOST is a DNS name (at most 253 characters, labels of 1-63 letters, digits and
    inner hyphens, not all digits) or a dotted IPv4 address; PORT is 1-65535. One line otherwise."""
    bad = CropError(f"--address must be {_ADDRESS_FORMS}, got {str(address)[:80]!r}")
    if not isinstance(address, str):
        raise bad
    if address == "auto":
        return "auto", "", 0
    kind, rest = ("client", address[len("ray://") :]) if address.startswith("ray://") else ("gcs", address)
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or len(port) > 5 or not 1 <= int(port) <= 65535:
        raise bad
    labels = host.split(".")
    numeric = all(label.isascii() and label.isdigit() for label in labels)
    if numeric:
        ok = len(labels) == 4 and all(len(label) <= 3 and int(label) <= 255 for label in labels)
    else:
        ok = len(host) <= MAX_HOST and all(_LABEL.match(label) for label in labels)
    if not ok:
        raise bad
    return kind, host, int(port)


def check_executor(executor: Any, address: Any) -> None:
    """``--executor`` and ``--address``: a known executor, an address only with Ray, of a form
    Ray accepts (:func:`parse_address`) where something speaking gRPC answers (:func:`probe`),
    and Ray installed when asked for. One-line :class:`CropError` otherwise."""
    if executor not in EXECUTORS:
        raise CropError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if address is not None:
        if executor != "ray":
            raise CropError("--address applies with --executor ray only (the Ray cluster to join)")
        parse_address(address)
    if executor == "ray" and not ray_available():
        raise CropError(INSTALL_HINT)
    if address is not None:
        probe(address)  # a cluster nobody listens on is refused before anything is written


def default_ray_workers() -> int:
    """CPUs of a local Ray instance when ``--workers`` is not given: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _group_task(task: Any, hooks: Sequence[Callable]) -> tuple[list[list[dict[str, Any]]], float, str | None]:
    """The body of one Ray task: one thread, as in the local worker pool, then the shared group runner."""
    import torch

    from crop.bench.runner import _run_group

    torch.set_num_threads(1)
    return _run_group(task, hooks)


def start_ray(workers: int | None = None, address: str | None = None) -> tuple[bool, int]:
    """Start a private local Ray instance with ``workers`` CPUs, or join the cluster at ``address``
    (probed first, then joined once in a child process given :data:`INIT_TIMEOUT` seconds), without Ray's start-up
    messages; returns whether this call started the session (a session already running is used
    as it is) and the CPUs tasks may use. One-line :class:`CropError` when Ray cannot start or join."""
    try:
        import ray
    except ImportError:
        raise CropError(INSTALL_HINT) from None
    if ray.is_initialized():
        return False, int(ray.cluster_resources().get("CPU", 1))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report and no notice about it
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")  # Ray would otherwise rebind builtins.print in this process
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}
    try:
        if address is None:
            cpus = workers if workers is not None else default_ray_workers()
            # "local": always a private instance, never a cluster that `ray start` left on this machine
            ray.init(address="local", num_cpus=cpus, runtime_env=_local_env(), **quiet)
        else:
            probe(address)
            check_join(address)
            ray.init(address=address, **quiet)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            if workers is not None:
                cpus = min(cpus, workers)
    except CropError:
        raise
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        ray.shutdown()
        where = f"the Ray cluster at {address}" if address is not None else "a local Ray instance"
        raise CropError(
            f"cannot start {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return True, max(1, cpus)


@contextlib.contextmanager
def ray_session(workers: int | None = None, address: str | None = None) -> Iterator[int]:
    """Ray up (:func:`start_ray`) for the ``with`` block, which gets the CPUs tasks may use; a
    session this call started is shut down at the end. ``crop bench`` enters it before it writes
    anything, so a cluster it cannot join leaves no ``bench.json`` behind."""
    started, cpus = start_ray(workers, address)
    try:
        yield cpus
    finally:
        if started:
            import ray

            ray.shutdown()


_JOIN = """
import logging, sys
import ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR, include_dashboard=False)
except Exception as exc:
    print("crop-join-failed", (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300])
    sys.exit(3)
ray.shutdown()
"""


def check_join(address: str, timeout: float | None = None) -> None:
    """Join the cluster at ``address`` once in a child process given ``timeout`` seconds (default
    :data:`INIT_TIMEOUT`), before this process does: a head that accepts the connection but never
    completes Ray's handshake (another gRPC service, a hung cluster, a missing auth token) makes
    ``ray.init`` retry for minutes, warning on stderr from Ray's C++ core. The child is killed
    after ``timeout``, its output is dropped, and the refusal is one line."""
    import subprocess

    timeout = INIT_TIMEOUT if timeout is None else timeout
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0")}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _JOIN, address],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise CropError(f"cannot join the Ray cluster at {address}: no answer from Ray within {timeout:g} s") from None
    if proc.returncode != 0:
        said = [line for line in proc.stdout.splitlines() if line.startswith("crop-join-failed ")]
        reason = said[-1].removeprefix("crop-join-failed ") if said else f"Ray exited with code {proc.returncode}"
        raise CropError(f"cannot join the Ray cluster at {address}: {reason}")


def probe(address: str, timeout: float | None = None) -> None:
    """Refuse in seconds an address where no Ray head listens: open a TCP connection and send
    the HTTP/2 connection preface, within ``timeout`` (default :data:`CONNECT_TIMEOUT`) seconds each; Ray's head (GCS) and client
    server speak gRPC, whose server answers with a SETTINGS frame. Nothing listening, a refused
    connection, a host that does not resolve or a server that answers otherwise (an HTTP/1 server,
    silence) is one line. Ray itself keeps retrying such an address for minutes, logging from its
    C++ core. (``auto`` is resolved by Ray, which fails fast when no cluster runs.)"""
    kind, host, port = parse_address(address)
    if kind == "auto":
        return
    import socket

    timeout = CONNECT_TIMEOUT if timeout is None else timeout

    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        raise CropError(f"cannot reach the Ray cluster at {address}: no answer within {timeout:g} s") from None
    except (OSError, UnicodeError) as exc:  # UnicodeError: a name the IDNA codec refuses
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise CropError(f"cannot reach the Ray cluster at {address}: {reason}") from None
    if len(head) < 9 or head[3] != 4:  # frame type 4: SETTINGS
        raise CropError(
            f"cannot join the Ray cluster at {address}: what listens there does not speak Ray's protocol "
            "(no gRPC / HTTP/2 answer)"
        )


def _local_env() -> dict[str, Any]:
    """Local workers import the same ``crop`` as this process, however it was put on the path
    (installed, or a ``PYTHONPATH`` that may be relative to this process's directory): the
    directory this ``crop`` comes from, then this process's ``PYTHONPATH``, made absolute."""
    import crop

    here = os.path.dirname(os.path.dirname(os.path.abspath(crop.__file__)))
    paths = [here] + [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def run_on_ray(
    tasks: list[Any],
    finish: Callable[..., None],
    workers: int | None = None,
    address: str | None = None,
    hooks: Sequence[Callable] = (),
    on_start: Callable[[int], None] | None = None,
) -> None:
    """Run ``tasks`` (``runner._Task``) as Ray tasks; hand each result to ``finish(task, blocks,
    seconds, error)`` in task order, from this process only.

    ``hooks`` (``BenchSpec.unit_hook``) travel to the workers with Ray's serializer, so unlike the
    local process pool they work with any number of workers. ``on_start(cpus)`` is called once Ray
    is up (the progress bar names the CPUs)."""
    if not tasks:
        return
    started, cpus = start_ray(workers, address)
    import ray
    from ray.exceptions import RayError

    if on_start is not None:
        on_start(cpus)
    remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_group_task)
    hooks_ref = ray.put(list(hooks))
    pending: dict[Any, int] = {}
    ready: dict[int, tuple] = {}
    next_submit = next_finish = 0
    window = 4 * cpus  # bounded look-ahead keeps the driver's memory flat and the write order exact
    try:
        while next_finish < len(tasks):
            while next_submit < len(tasks) and next_submit < next_finish + window:
                pending[remote.remote(tasks[next_submit], hooks_ref)] = next_submit
                next_submit += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    ready[index] = ray.get(ref)
                except RayError as exc:
                    g = tasks[index].group
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise CropError(
                        f"Ray could not run user {g.user} seed {g.seed} {g.method} after {MAX_RETRIES} retries "
                        f"({type(exc).__name__}: {first[:200]}); the results written so far are kept, run the "
                        "same command again to resume"
                    ) from None
            while next_finish in ready:
                finish(tasks[next_finish], *ready.pop(next_finish))
                next_finish += 1
    finally:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - the task may have ended meanwhile; shutting down matters more
                pass
        if started:
            ray.shutdown()

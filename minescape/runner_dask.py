"""Running units on Dask: a local cluster of worker processes or an existing scheduler.

Tasks are submitted through a sliding window (``Executor.max_in_flight`` units in flight), so the client holds a
bounded number of futures whatever the number of units; each task returns only a small dict (the unit
writes its outputs on the worker). A worker process that dies takes its tasks with it: the scheduler
reruns them on another worker up to ``allowed_failures`` times; a unit that keeps killing workers is
reported as failed with that reason and the run goes on.

Dask blames every task assigned to a dying worker, including one merely queued behind the unit that killed it.
So that such a bystander is not reported as a killer, the local cluster assigns a worker no more tasks than it
has threads (``worker-saturation`` 1.0), and a unit given up as ``KilledWorker`` is resubmitted once more
(:data:`KILLED_RETRIES`): a real killer dies again, a bystander then runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from minescape.errors import ConfigError, InputError

if TYPE_CHECKING:
    from minescape.runner import Executor, Unit

# Client-side resubmissions after scheduler/connection errors that are not the unit's fault.
CLIENT_RETRIES = 2
# Client-side resubmissions of a unit the scheduler gave up on as KilledWorker (it may have been a bystander).
KILLED_RETRIES = 1


#: Variables a local cluster's nannies write into this process's ``os.environ`` before starting each worker,
#: besides Dask's ``distributed.nanny.pre-spawn-environ`` (OMP/MKL/OPENBLAS_NUM_THREADS=1,
#: MALLOC_TRIM_THRESHOLD_): the nanny's hash seed and the process-title marker.
NANNY_ENVIRON = ("PYTHONHASHSEED", "__DASK_PARENT_PID")


@contextlib.contextmanager
def environ_restored(keys: Iterable[str]) -> Iterator[None]:
    """Put ``os.environ[key]`` for each of ``keys`` back as it was on entry (unset ones unset again) on exit.

    Dask's nannies run in the caller's process and set the variables their worker processes must inherit
    (one BLAS/OpenMP thread, glibc's trim threshold, a hash seed) in ``os.environ`` itself; left there, every
    process the caller starts afterwards (a GDAL tool, another Python, its own workers) would inherit them.
    """
    keys = tuple(keys)
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            elif os.environ.get(k) != v:
                os.environ[k] = v


def _nanny_environ() -> tuple[str, ...]:
    """The variables a local cluster's nannies write into this process's environment (see
    :data:`NANNY_ENVIRON`)."""
    import dask
    import distributed  # noqa: F401  (loads Dask's distributed.* config defaults)

    return (*dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}), *NANNY_ENVIRON)


def _connect(executor: Executor):
    """A ``(client, cluster)`` pair for the executor's mode (cluster None for an external scheduler)."""
    from distributed import Client, LocalCluster

    if executor.mode == "local":
        cluster = LocalCluster(
            n_workers=executor.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,  # unit failures are reported by the summary
        )
        return Client(cluster, set_as_default=False), cluster
    _check_reachable(executor.scheduler)
    try:
        return Client(executor.scheduler, timeout="10s", set_as_default=False), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler ({' '.join(str(exc).split())[:160]})",
                         path=executor.scheduler) from None


#: Schemes of a scheduler address that go to a host and port (an address without one is ``tcp``).
NETWORK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def _split_address(address: str):
    """``address`` split as a URL (``tcp://`` added when it has no scheme)."""
    from urllib.parse import urlsplit

    return urlsplit(address if "://" in address else f"tcp://{address}")


def check_scheduler_address(address: str) -> str:
    """``address`` if it names a Dask scheduler by host and port (``host:port``, ``tcp://host:port``, also
    ``tls://``, ``ws://``, ``wss://``, ``ucx://``; ``inproc://`` as Dask gives it), without connecting.

    Raises:
        ConfigError: no host, no port (Dask would wait for its connect timeout, then fail with a traceback), a
            port that is not a number in 1-65535, a path after the port or an unknown scheme.
    """
    fix = "give host:port or tcp://host:port (e.g. tcp://127.0.0.1:8786)"
    parts = _split_address(address)
    if parts.scheme == "inproc":
        return address
    if parts.scheme not in NETWORK_SCHEMES:
        raise ConfigError(f"not a Dask scheduler address (scheme {parts.scheme!r} is not one of "
                          f"{', '.join(NETWORK_SCHEMES)}, inproc); {fix}", path=address)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = -1
    what = ("no host" if not parts.hostname
            else "more than host:port" if parts.path or parts.query or parts.fragment
            else "no port" if port is None
            else "the port is not a number in 1-65535" if not 1 <= port <= 65535
            else None)
    if what is not None:
        raise ConfigError(f"not a Dask scheduler address ({what}); {fix}", path=address)
    return address


def _check_reachable(address: str) -> None:
    """Fail fast (one line) when a ``tcp://host:port`` scheduler refuses connections."""
    import socket

    parts = _split_address(address)
    if parts.scheme != "tcp" or not parts.hostname or not parts.port:
        return
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler ({exc.strerror or exc})", path=address) from None


def run_on_dask(
    units: list[Unit],
    func: Callable[[Unit], Any],
    *,
    executor: Executor,
    on_outcome: Callable[[Unit, dict[str, Any], int], None],
) -> None:
    """Run ``units`` on Dask; ``on_outcome(unit, outcome, attempts)`` is called in the client as each ends.

    Outcomes are the dicts of :func:`minescape.runner.execute_unit`. Units are submitted in order, several
    per task (:func:`units_per_task`; a task whose worker died is split into one task per unit, so the
    killer is found and the others run), with at most ``executor.max_in_flight`` tasks (default 4 per worker
    thread of the cluster) in flight.
    """
    import dask
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    from minescape.runner import execute_units

    run_token = uuid.uuid4().hex[:8]
    config = {
        "distributed.scheduler.allowed-failures": executor.allowed_failures,
        "distributed.nanny.environ": {"MINESCAPE_PROGRESS": "0"},
        "distributed.comm.timeouts.connect": "20s",
        "distributed.scheduler.worker-saturation": 1.0,
    }
    restored = environ_restored(_nanny_environ()) if executor.mode == "local" else contextlib.nullcontext()
    with dask.config.set(config), restored:  # the environment as it was once the local cluster is closed
        client, cluster = _connect(executor)
        try:
            threads = _total_threads(client, executor)
            size = executor.units_per_task or units_per_task(len(units), threads)
            chunks = [units[i:i + size] for i in range(0, len(units), size)]
            pending = iter(enumerate(chunks))
            owner: dict[Any, tuple[list[Unit], int, int, int]] = {}  # future -> (units, index, attempts, kills)
            # results are fetched in the event loop (with_results) and handled in batches: no per-task round trip
            done_iter = as_completed(loop=client.loop, with_results=True, raise_errors=False)

            def submit(chunk: list[Unit], index: int | str, attempt: int, killed: int = 0) -> None:
                fut = client.submit(execute_units, chunk, func,
                                    key=f"minescape-unit-{run_token}-{index}-{attempt}-{killed}", pure=False,
                                    retries=0)
                owner[fut] = (chunk, index, attempt, killed)
                done_iter.add(fut)

            window = executor.max_in_flight or max(2, 4 * threads)
            for _ in range(window):
                item = next(pending, None)
                if item is None:
                    break
                submit(item[1], item[0], 0)
            for batch in done_iter.batches():
                for fut, value in batch:
                    chunk, index, attempt, killed = owner.pop(fut)
                    fut.release()
                    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
                        value = value[1]  # an errored future gives (type, exception, traceback)
                    if isinstance(value, KilledWorker) and len(chunk) > 1:
                        # which unit killed the worker? each on its own, so bystanders run and a killer is named
                        for k, unit in enumerate(chunk):
                            submit([unit], f"{index}.{k}", attempt, 0)
                        continue
                    if isinstance(value, KilledWorker):
                        if killed < KILLED_RETRIES:
                            submit(chunk, index, attempt, killed + 1)
                            continue
                        deaths = (executor.allowed_failures + 1) * (KILLED_RETRIES + 1)
                        value = [{"ok": False, "seconds": 0.0, "reason": (
                            f"the worker process died {deaths} times while running this "
                            "unit (out of memory or a crash in native code?)")}]
                    elif isinstance(value, BaseException) or not isinstance(value, list):
                        # scheduler/connection trouble, not the units' own error (execute_unit never raises)
                        if attempt < CLIENT_RETRIES:
                            submit(chunk, index, attempt + 1, killed)
                            continue
                        from minescape.runner import failure_reason

                        reason = failure_reason(value) if isinstance(value, BaseException) else repr(value)
                        value = [{"ok": False, "seconds": 0.0, "reason": f"lost by the cluster: {reason}"}] \
                            * len(chunk)
                    for unit, outcome in zip(chunk, value, strict=True):
                        on_outcome(unit, outcome, attempt + 1)
                    item = next(pending, None)
                    if item is not None:
                        submit(item[1], item[0], 0)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


MAX_UNITS_PER_TASK = 16
TASKS_PER_THREAD = 8


def units_per_task(n_units: int, threads: int) -> int:
    """Units per Dask task: up to :data:`MAX_UNITS_PER_TASK`, keeping at least :data:`TASKS_PER_THREAD` tasks per
    worker thread (load balance) — the scheduler's per-task cost (a few ms) is then paid once per chunk."""
    return max(1, min(MAX_UNITS_PER_TASK, n_units // (TASKS_PER_THREAD * max(1, threads))))


def _total_threads(client, executor: Executor) -> int:
    """Worker threads of the cluster (the local cluster's ``workers`` if the scheduler cannot tell yet)."""
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    except TypeError:  # older distributed without n_workers
        workers = client.scheduler_info().get("workers", {})
    threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
    return max(threads, executor.workers, 1)

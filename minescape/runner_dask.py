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

Ctrl-C is the client's alone. A terminal sends SIGINT to its whole foreground process group, the local
cluster's worker processes included: each would die in a ``KeyboardInterrupt`` traceback (often in the middle of
its imports) while the client, interrupted wherever it was, left a half-started or half-closed cluster to
Dask's exit hook (more tracebacks). So the worker processes start with SIGINT blocked
(:func:`sigint_blocked_for_new_threads`), a Ctrl-C while the cluster starts or closes is acted on once it is
up or down (:func:`sigint_deferred`), and an interrupted run cancels its tasks and closes the cluster with
Dask's loggers silenced before the ``KeyboardInterrupt`` goes on (:func:`_shut_down`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
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
#: Seconds each of the client and the cluster is given to close after a Ctrl-C (workers left then are killed
#: with the client process: each exits when its parent's pipe closes).
INTERRUPT_CLOSE_TIMEOUT = 5
#: Loggers silenced while an interrupted run closes its cluster (connections closed under running tasks).
DASK_LOGGERS = ("distributed", "tornado", "asyncio", "bokeh")


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


@contextlib.contextmanager
def sigint_blocked_for_new_threads(*, start_method: str = "spawn") -> Iterator[None]:
    """SIGINT blocked in this thread, and so in every thread started from it meanwhile and in every process those
    threads start, until exit (this thread's signal mask is then put back as it was).

    A local cluster's nannies live in the caller's process and start worker processes from threads of the event
    loop thread the cluster starts; a signal mask is inherited by new threads, across ``fork`` and across
    ``exec``, so the workers (``spawn``, ``forkserver`` or ``fork``, and a worker a nanny restarts later) never
    see the terminal's Ctrl-C, from their first instruction on (a handler installed by the worker, e.g. through a
    preload, would come after its imports: the SIGINT most often arrives during them). Nothing else changes: the
    caller's SIGINT handler stays, and the kernel delivers a SIGINT to a thread that does not block it (the
    main thread once this returns). Python runs signal handlers in the main thread whichever thread the kernel
    picked, so blocking SIGINT in the loop's threads changes nothing for the client.

    ``multiprocessing``'s resource tracker unblocks SIGINT in the thread that first starts it (CPython's
    ``resource_tracker.ensure_running``); it is started here first, outside the blocked section, so that it does
    not unblock the event loop's thread. A no-op where there are no signal masks (Windows).
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    caller = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    if start_method != "fork":
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()  # a no-op when it runs already
    signal.pthread_sigmask(signal.SIG_SETMASK, caller | {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, caller)


@contextlib.contextmanager
def sigint_deferred(*, redeliver: bool = True) -> Iterator[None]:
    """A Ctrl-C (SIGINT) during the block is held until the block ends, then delivered to the caller's own
    handler (``redeliver``; otherwise dropped). Several collapse into one.

    Dask cannot close a cluster it is still starting (its exit hook then fails with ``AssertionError:
    Status.init``) nor one half closed; holding the interrupt lets the start or the close finish (both are
    bounded by Dask's timeouts). Only the main thread can change a signal handler and only it receives
    ``KeyboardInterrupt``: elsewhere, or when the caller's handler is not a Python function (SIGINT ignored, or
    the default action of ending the process), nothing is changed. The caller's handler is back in place on
    exit.
    """
    caller = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(caller):
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, caller)  # a signal still pending is first handled by the holding handler
    if held and redeliver:
        signal.raise_signal(signal.SIGINT)  # the caller's handler runs now (KeyboardInterrupt by default)


@contextlib.contextmanager
def loggers_silenced(names: Iterable[str] = DASK_LOGGERS) -> Iterator[None]:
    """The loggers ``names`` and their children emit nothing until exit (their levels are then put back)."""
    prefixes = tuple(names)
    manager = logging.Logger.manager
    found = [logging.getLogger(n) for n in prefixes]
    found += [lg for n, lg in list(manager.loggerDict.items())
              if isinstance(lg, logging.Logger) and n.split(".", 1)[0] in prefixes]
    saved = {lg: lg.level for lg in found}
    for lg in saved:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in saved.items():
            lg.setLevel(level)


def _shut_down(client, cluster, *, interrupted: bool, pending: Iterable[Any] = ()) -> None:
    """Close ``client`` and ``cluster`` (either may be None).

    After a Ctrl-C (``interrupted``): cancel the ``pending`` futures, give each of the client and the cluster
    :data:`INTERRUPT_CLOSE_TIMEOUT` seconds, with Dask's loggers silenced (closing connections under running
    tasks makes them report ``CommClosedError`` s) and errors of the close itself ignored: the
    ``KeyboardInterrupt`` is what the caller gets. A cluster that did not close in time is not closed again by
    Dask's exit hook; its worker processes end with this process. Another Ctrl-C meanwhile is dropped.
    """
    if not interrupted:
        with sigint_deferred():
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        return
    with sigint_deferred(redeliver=False), loggers_silenced():
        if client is not None:
            with contextlib.suppress(Exception):
                futures = list(pending)
                if futures:
                    client.cancel(futures, force=True)
            with contextlib.suppress(Exception):
                client.close(timeout=INTERRUPT_CLOSE_TIMEOUT)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=INTERRUPT_CLOSE_TIMEOUT)
            cluster.shutdown_on_close = False  # closed, or given up: no second try (and traceback) at exit


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
        client = cluster = None
        owner: dict[Any, tuple[list[Unit], int, int, int]] = {}  # future -> (units, index, attempts, kills)
        interrupted = False
        try:
            # workers never see Ctrl-C; one during the start is acted on once the cluster is up (closable)
            shielded = (sigint_blocked_for_new_threads(
                start_method=dask.config.get("distributed.worker.multiprocessing-method", "spawn"))
                if executor.mode == "local" else contextlib.nullcontext())
            with sigint_deferred(), shielded:
                client, cluster = _connect(executor)
            threads = _total_threads(client, executor)
            size = executor.units_per_task or units_per_task(len(units), threads)
            chunks = [units[i:i + size] for i in range(0, len(units), size)]
            pending = iter(enumerate(chunks))
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
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            _shut_down(client, cluster, interrupted=interrupted, pending=list(owner))


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

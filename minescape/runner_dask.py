"""Running units on Dask: a local cluster of worker processes or an existing scheduler.

Tasks are submitted through a sliding window (``Executor.window`` units in flight), so the client holds a
bounded number of futures whatever the number of units; each task returns only a small dict (the unit
writes its outputs on the worker). A worker process that dies takes its tasks with it: the scheduler
reruns them on another worker up to ``allowed_failures`` times; a unit that keeps killing workers is
reported as failed with that reason and the run goes on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from minescape.errors import InputError

if TYPE_CHECKING:
    from minescape.runner import Executor, Unit

# Client-side resubmissions after scheduler/connection errors that are not the unit's fault.
CLIENT_RETRIES = 2


def _connect(executor: Executor):
    """A ``(client, cluster)`` pair for the executor's mode (cluster None for an external scheduler)."""
    from distributed import Client, LocalCluster

    if executor.mode == "local":
        cluster = LocalCluster(
            n_workers=executor.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return Client(cluster, set_as_default=False), cluster
    try:
        return Client(executor.scheduler, timeout="10s", set_as_default=False), None
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler ({' '.join(str(exc).split())[:160]})",
                         path=executor.scheduler) from None


def run_on_dask(
    units: list[Unit],
    func: Callable[[Unit], Any],
    *,
    executor: Executor,
    on_outcome: Callable[[Unit, dict[str, Any], int], None],
) -> None:
    """Run ``units`` on Dask; ``on_outcome(unit, outcome, attempts)`` is called in the client as each ends.

    Outcomes are the dicts of :func:`minescape.runner.execute_unit`. Units are submitted in order with at
    most ``executor.window`` in flight.
    """
    import dask
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    from minescape.runner import execute_unit

    run_token = uuid.uuid4().hex[:8]
    config = {
        "distributed.scheduler.allowed-failures": executor.allowed_failures,
        "distributed.nanny.environ": {"MINESCAPE_PROGRESS": "0"},
        "distributed.comm.timeouts.connect": "20s",
    }
    with dask.config.set(config):
        client, cluster = _connect(executor)
        try:
            pending = iter(enumerate(units))
            owner: dict[Any, tuple[Unit, int, int]] = {}  # future -> (unit, index, client attempts)
            done_iter = as_completed(loop=client.loop)

            def submit(unit: Unit, index: int, attempt: int) -> None:
                fut = client.submit(execute_unit, unit, func, key=f"minescape-unit-{run_token}-{index}-{attempt}",
                                    pure=False, retries=0)
                owner[fut] = (unit, index, attempt)
                done_iter.add(fut)

            for _ in range(executor.window):
                item = next(pending, None)
                if item is None:
                    break
                submit(item[1], item[0], 0)
            for fut in done_iter:
                unit, index, attempt = owner.pop(fut)
                try:
                    outcome = fut.result()
                except KilledWorker:
                    outcome = {"ok": False, "seconds": 0.0, "reason": (
                        f"the worker process died {executor.allowed_failures + 1} times while running this unit "
                        "(out of memory or a crash in native code?)")}
                except Exception as exc:  # scheduler/connection trouble, not the unit's own error
                    if attempt < CLIENT_RETRIES:
                        fut.release()
                        submit(unit, index, attempt + 1)
                        continue
                    from minescape.runner import failure_reason

                    outcome = {"ok": False, "seconds": 0.0, "reason": f"lost by the cluster: {failure_reason(exc)}"}
                fut.release()
                on_outcome(unit, outcome, attempt + 1)
                item = next(pending, None)
                if item is not None:
                    submit(item[1], item[0], 0)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

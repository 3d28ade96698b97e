"""An order-preserving parallel map over worker processes, for single runs that use every core.

Windows of one change map and sites of one release are independent; what makes the outputs identical for
any number of workers is that the caller consumes results **in input order** and writes them itself, exactly
as the one-process loop does. Processes rather than threads: the clean-up (``scipy.ndimage`` morphology and
labelling) and the polygon tracing hold the GIL.

Workers start with ``forkserver`` (``spawn`` where there is none), never plain ``fork``: the caller may hold
open GDAL datasets and threads. At most ``ahead`` results wait in the parent (memory stays bounded by a few
windows whatever the input size).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], *, workers: int,
                ahead: int | None = None, chunk: int = 1, pool=None,
                preload: tuple[str, ...] | None = None) -> Iterator[Any]:
    """``map(fn, items)`` computed by ``workers`` processes, yielded lazily in input order.

    ``fn`` and the items must be picklable (module-level functions, plain values). With ``workers == 1``
    this is the builtin ``map`` in this process. Exceptions raised by ``fn`` are re-raised here, in order.

    Args:
        fn: function of one item.
        items: the items (consumed lazily, ``ahead`` at a time).
        workers: processes (1 = this process).
        ahead: tasks submitted but not yet yielded, at most (default ``4 * workers``).
        chunk: items per task (short items: the per-task cost of a process pool is paid once per chunk).
        pool: a :func:`process_pool` to use (several maps then share its started workers); default a new one.
        preload: modules for a new pool's fork server to import first (default :data:`PRELOAD`).
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with contextlib.nullcontext(pool) if pool is not None else process_pool(workers, preload=preload or PRELOAD) \
            as pool:
        pending: deque = deque()
        limit = ahead or 4 * workers
        for batch in _batches(items, max(1, int(chunk))):
            pending.append(pool.submit(_apply, fn, batch))
            if len(pending) >= limit:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def _batches(items: Iterable[Any], size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _apply(fn: Callable[[Any], Any], batch: list) -> list:
    return [fn(item) for item in batch]


def workers_for(n_items: int, *, per_worker: int, limit: int | None = None) -> int:
    """Processes worth starting for ``n_items`` items: one per ``per_worker`` items (starting a worker costs
    about a second), at most ``limit`` (default: every core this process may use), at least 1."""
    from minescape.threads import available_cores

    return max(1, min(limit or available_cores(), n_items // max(1, per_worker)))


#: imported once by the fork server, so each worker starts with them instead of importing them itself
PRELOAD = ("numpy", "rasterio", "scipy.ndimage", "minescape.geo.handles", "minescape.change.difference")


@contextlib.contextmanager
def process_pool(workers: int, *, preload: tuple[str, ...] = PRELOAD):
    """A ``ProcessPoolExecutor`` of ``workers`` processes started by forkserver (or spawn); shut down on exit
    (pending work cancelled if the block raised). ``preload``: modules the fork server imports when it starts
    (once per process), so workers do not each import them again."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(list(preload))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    ok = False
    try:
        yield pool
        ok = True
    finally:
        pool.shutdown(wait=True, cancel_futures=not ok)

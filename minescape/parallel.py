"""An order-preserving parallel map over worker processes, for single runs that use every core.

Windows of one change map and sites of one release are independent; what makes the outputs identical for
any number of workers is that the caller consumes results **in input order** and writes them itself, exactly
as the one-process loop does. Processes rather than threads: the clean-up (``scipy.ndimage`` morphology and
labelling) and the polygon tracing hold the GIL.

Workers start with ``forkserver`` (``spawn`` where there is none), never plain ``fork``: the caller may hold
open GDAL datasets and threads. At most ``ahead`` results wait in the parent (memory stays bounded by a few
windows whatever the input size). Each worker keeps the files it reads open for its whole life (one reader-pool
session, :func:`minescape.geo.handles.session`), so it opens a file once, not once per window.

Like every ``multiprocessing`` start method but ``fork``, a worker first runs the caller's script again (as
``__mp_main__``) to find what it was started with. A script that calls minescape at its top level, without an
``if __name__ == "__main__":`` guard, would then call it again in every worker; :func:`process_pool` refuses
such a script up front (:class:`MainGuardError`) instead of letting each worker die with a traceback.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from minescape.errors import MainGuardError


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], *, workers: int,
                ahead: int | None = None, chunk: int = 1, pool=None,
                preload: tuple[str, ...] | None = None) -> Iterator[Any]:
    """``map(fn, items)`` computed by ``workers`` processes, yielded lazily in input order.

    ``fn`` and the items must be picklable (module-level functions, plain values). With ``workers == 1``
    this is the builtin ``map`` in this process. Exceptions raised by ``fn`` are re-raised here, in order.

    Args:
        fn: function of one item.
        items: the items (consumed lazily, ``ahead`` at a time).
        workers: processes (1 = this process). More than 1 from a script: its code that calls minescape must
            sit under ``if __name__ == "__main__":`` (each worker imports the script again), else
            :class:`MainGuardError`.
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


def unguarded_main_script() -> str | None:
    """The path of the running ``__main__`` script when its workers would run its minescape calls again: a file
    (``python script.py``, ``python -m module``) with no top-level ``if`` on ``__name__``. None otherwise: an
    interactive session, a notebook or ``python -c`` (no file: workers import nothing), a guarded script, or a
    source that cannot be read or parsed (not claimed)."""
    import ast
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.If) and any(isinstance(n, ast.Name) and n.id == "__name__"
                                            for n in ast.walk(node.test)):
            return None
    return str(path)


def _worker_session() -> None:
    """Process pool initializer: one reader-pool session for the worker's life (files opened once a worker)."""
    from minescape.geo.handles import session

    scope = session()
    scope.__enter__()
    _WORKER_SCOPE.append(scope)  # held until the worker exits (the OS closes its files)


_WORKER_SCOPE: list = []


@contextlib.contextmanager
def process_pool(workers: int, *, preload: tuple[str, ...] = PRELOAD):
    """A ``ProcessPoolExecutor`` of ``workers`` processes started by forkserver (or spawn); shut down on exit
    (pending work cancelled if the block raised). ``preload``: modules the fork server imports when it starts
    (once per process), so workers do not each import them again. Each worker holds one reader-pool session.

    Raises:
        MainGuardError: the caller is a script without an ``if __name__ == "__main__":`` guard
            (:func:`unguarded_main_script`): every worker would run the script again and die.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    script = unguarded_main_script()
    if script is not None:
        raise MainGuardError(f"{script}: worker processes run this script again; put its code under "
                             f"`if __name__ == \"__main__\":` (or pass workers=1)")
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(list(preload))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_session)
    ok = False
    try:
        yield pool
        ok = True
    finally:
        pool.shutdown(wait=True, cancel_futures=not ok)

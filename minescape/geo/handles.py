"""A per-process pool of open rasterio datasets, so a worker opens each scene and DEM-change map once.

Opening a GeoTIFF costs about a millisecond (header parse, GDAL environment), and GDAL keeps decoded blocks
per open dataset: a per-site chain that reopens a scene for every site pays both again and again (16 opens
per site, each window decompressed anew). :func:`borrow` hands out an open reader for a path and takes it
back afterwards:

* **bounded**: at most ``max_idle`` idle readers are kept (least recently used closed first);
* **thread-safe**: a reader is lent to one thread at a time; a second thread asking for the same file while
  the first holds it gets its own reader (rasterio datasets must not be read from two threads at once);
* **fresh**: a reader is reused only while the file's inode, size and modification time are unchanged, so a
  file rewritten in place (or replaced atomically) is reopened;
* **scoped to a call**: readers are kept only while a :func:`session` is open, and the end of the outermost
  session closes every idle reader and drops :func:`reserve`'s raised limit. minescape opens one for each
  library call that reads many windows (:mod:`minescape.runner`'s units, the GDAL read scopes of
  :mod:`minescape.geo.raster` such as ``scan_reads`` and ``window_reads``, a process pool's workers), so a file
  is opened once per call, not once per window, and nothing stays open once the call returns: a notebook or a
  Dask worker that deletes a batch's inputs frees their disk space. Outside any session a borrowed reader is
  closed when given back. A caller that wants readers kept across several calls opens its own ``session()``;
* **closed at exit** (``atexit``), and **not shared across forks**: a forked child forgets the parent's
  readers without touching them (their file offsets are shared with the parent) and opens its own.

Use it for inputs read many times in one process (scenes, DEM-change and year rasters). Outputs and files
read once (class maps being published) keep using :func:`minescape.geo.raster.open_raster` directly.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import rasterio

from minescape.geo.raster import open_raster

DEFAULT_MAX_IDLE = 32  # readers kept open per process (each holds a file descriptor and its block cache share)

_Key = tuple[str, int, int, int]  # path, inode, size, mtime (ns)
_ORPHANS: list = []  # a forked child's copies of its parent's readers, never used nor closed


class DatasetPool:
    """Open readers by file, lent to one user at a time (see the module docstring).

    Args:
        max_idle: idle readers kept open at most; older ones are closed.
    """

    def __init__(self, max_idle: int = DEFAULT_MAX_IDLE) -> None:
        self.base_idle = max(1, int(max_idle))  # the limit between sessions (reserve() raises it for one)
        self.max_idle = self.base_idle
        self._idle: OrderedDict[_Key, list[rasterio.io.DatasetReader]] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._sessions = 0  # sessions open in this process (all threads)
        self.opened = 0  # readers opened by this pool in this process (for tests and benches)

    def _key(self, path: Path) -> _Key:
        st = path.stat()
        return (str(path), st.st_ino, st.st_size, st.st_mtime_ns)

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # forked child: the parent's readers are not ours to use or close
            self._forget()

    def _forget(self) -> None:
        # keep the parent's readers referenced: letting them be collected would close them here (GDAL state
        # copied from the parent), and a child never reads through them
        _ORPHANS.extend(r for v in self._idle.values() for r in v)
        self._idle = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._sessions = 0  # the parent's sessions end in the parent
        self.max_idle = self.base_idle
        self.opened = 0

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Keep readers given back inside the ``with`` block for reuse; sessions nest (also across threads).

        When the outermost session ends, every idle reader is closed and the limit goes back to ``base_idle``
        (undoing :meth:`reserve`), so nothing a call opened stays open after it returns.
        """
        self._check_fork()
        pid = self._pid
        with self._lock:
            self._sessions += 1
        try:
            yield
        finally:
            if os.getpid() == pid and self._pid == pid:  # a forked child never ends its parent's session
                with self._lock:
                    self._sessions -= 1
                    readers = self._drain_if_unused()
                for r in readers:
                    r.close()

    def _drain_if_unused(self) -> list[rasterio.io.DatasetReader]:
        """With no session open: empty the idle list (returned, to close outside the lock) and reset the
        limit. Call with the lock held."""
        if self._sessions:
            return []
        readers = [r for v in self._idle.values() for r in v]
        self._idle = OrderedDict()
        self.max_idle = self.base_idle
        return readers

    def reserve(self, readers: int) -> None:
        """Raise the idle limit to ``readers`` (never lower it) until the current outermost session ends, or the
        next one if none is open."""
        with self._lock:
            self.max_idle = max(self.max_idle, int(readers))

    def in_session(self) -> bool:
        """True while a :meth:`session` is open in this process."""
        return self._sessions > 0 and os.getpid() == self._pid

    @contextlib.contextmanager
    def borrow(self, path: str | Path) -> Iterator[rasterio.io.DatasetReader]:
        """An open reader of ``path`` for the duration of the ``with`` block (do not close it).

        Raises the same one-line InputError / MissingInputError as :func:`open_raster` for missing or
        unreadable files.
        """
        path = Path(path).absolute()
        try:
            key = self._key(path)
        except FileNotFoundError:
            open_raster(path)  # raises the one-line MissingInputError
            raise
        self._check_fork()
        src = None
        with self._lock:
            stale = [k for k in self._idle if k[0] == key[0] and k != key]
            old = [r for k in stale for r in self._idle.pop(k)]
            readers = self._idle.get(key)
            if readers:
                src = readers.pop()
                if not readers:
                    del self._idle[key]
        for r in old:
            r.close()
        if src is None:
            src = open_raster(path)
            self.opened += 1
        ok = False
        try:
            yield src
            ok = True
        finally:
            if ok and not src.closed and os.getpid() == self._pid:
                self._give_back(key, src)
            elif not src.closed and os.getpid() == self._pid:
                src.close()  # an error while reading: do not keep a reader in an unknown state

    def _give_back(self, key: _Key, src: rasterio.io.DatasetReader) -> None:
        with self._lock:
            if not self._sessions:  # no call in progress: nothing stays open after it
                evicted = [src]
            else:
                evicted = self._keep(key, src)
        for r in evicted:
            r.close()

    def _keep(self, key: _Key, src: rasterio.io.DatasetReader) -> list[rasterio.io.DatasetReader]:
        """Add ``src`` to the idle readers; returns those evicted past ``max_idle`` (to close). Lock held."""
        evicted = []
        self._idle.setdefault(key, []).append(src)
        self._idle.move_to_end(key)
        while self.idle_count() > self.max_idle:
            oldest = next(iter(self._idle))
            readers = self._idle[oldest]
            evicted.append(readers.pop(0))
            if not readers:
                del self._idle[oldest]
        return evicted

    def idle_count(self) -> int:
        """Idle (open, not lent) readers."""
        return sum(len(v) for v in self._idle.values())

    def idle_readers(self) -> list[rasterio.io.DatasetReader]:
        """The idle readers (for tests)."""
        return [r for v in self._idle.values() for r in v]

    def close(self) -> None:
        """Close every idle reader of this process (readers lent at the time go back to the pool)."""
        if os.getpid() != self._pid:
            self._forget()
            return
        with self._lock:
            readers = [r for v in self._idle.values() for r in v]
            self._idle = OrderedDict()
        for r in readers:
            r.close()


_POOL = DatasetPool()


def pool() -> DatasetPool:
    """This process's pool."""
    return _POOL


def borrow(path: str | Path) -> contextlib.AbstractContextManager[rasterio.io.DatasetReader]:
    """An open reader of ``path`` from this process's pool (see :meth:`DatasetPool.borrow`)."""
    return _POOL.borrow(path)


def session() -> contextlib.AbstractContextManager[None]:
    """Keep this process's readers open for reuse until the outermost session ends (see
    :meth:`DatasetPool.session`)."""
    return _POOL.session()


def reserve(readers: int) -> None:
    """Let this process's pool keep at least ``readers`` idle readers (a job reading that many files, or the same
    files from several threads: below that, readers are closed and reopened on every window), within half the
    process's open-file limit, until the current outermost :func:`session` ends (the next one when none is open:
    a call reserves, then opens its session)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = soft // 2 if soft != resource.RLIM_INFINITY else readers
    _POOL.reserve(min(int(readers), cap))


def close_all() -> None:
    """Close this process's idle readers now, even inside a session (at exit; readers lent at the time are
    closed when given back outside a session)."""
    _POOL.close()


atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _POOL._forget())

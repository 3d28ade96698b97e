"""The per-process pool of open rasters: reuse, bound, thread-safety, freshness, closing, sessions, and forks."""

from __future__ import annotations

import multiprocessing
import os
import threading

import numpy as np
import pytest
from affine import Affine
from open_files import open_files_under
from rasterio.crs import CRS

from minescape.errors import MissingInputError
from minescape.geo.handles import DatasetPool, borrow, close_all, pool, session
from minescape.geo.raster import Raster, write_raster


def _tif(path, value: int, shape=(6, 9)):
    data = np.full((1, *shape), value, dtype=np.uint16)
    return write_raster(Raster(data, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4000000), 0), path)


def test_reuses_one_reader_and_bounds_idle_readers(tmp_path):
    paths = [_tif(tmp_path / f"r{i}.tif", i + 1) for i in range(5)]
    p = DatasetPool(max_idle=3)
    with p.session():
        with p.borrow(paths[0]) as a:
            assert a.read(1)[0, 0] == 1
        with p.borrow(paths[0]) as b:
            assert b is a  # the same open reader, not a second open
        assert p.opened == 1
        for path in paths[1:]:
            with p.borrow(path) as src:
                src.read(1)
        assert p.opened == 5 and p.idle_count() == 3
        assert a.closed  # least recently used, closed when the pool went past its bound
        kept = p.idle_readers()
        assert {os.path.basename(r.name) for r in kept} == {"r2.tif", "r3.tif", "r4.tif"}
        p.close()
    assert p.idle_count() == 0 and all(r.closed for r in kept)
    with pytest.raises(MissingInputError, match="not found"):
        with p.borrow(tmp_path / "absent.tif"):
            pass


def test_rewritten_file_is_reopened(tmp_path):
    path = _tif(tmp_path / "x.tif", 7)
    p = DatasetPool()
    with p.session():
        with p.borrow(path) as a:
            assert a.read(1)[0, 0] == 7
        _tif(path, 8, shape=(7, 9))  # replaced atomically (new inode), other size
        with p.borrow(path) as b:
            assert b is not a and b.read(1)[0, 0] == 8 and b.height == 7
        assert a.closed and p.idle_count() == 1


def test_threads_never_share_a_reader(tmp_path):
    path = _tif(tmp_path / "t.tif", 3, shape=(64, 64))
    p = DatasetPool()
    inside = threading.Barrier(2)
    seen: list[int] = []
    sums: list[int] = []

    def work():
        with p.borrow(path) as src:
            seen.append(id(src))
            inside.wait(timeout=10)  # both threads hold a reader at the same time
            sums.append(int(src.read(1).sum()))

    with p.session():
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(seen)) == 2 and sums == [3 * 64 * 64] * 2
        assert p.opened == 2 and p.idle_count() == 2  # both kept for the next borrowers
    assert p.idle_count() == 0  # the session's end closed them


def _child(path, queue):
    try:
        inherited = len(pool().idle_readers())
        with session(), borrow(path) as src:
            queue.put((inherited, pool().opened, int(src.read(1)[0, 0]), id(src)))
    except Exception as exc:  # pragma: no cover - reported to the parent
        queue.put(repr(exc))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")
def test_forked_child_opens_its_own_readers(tmp_path):
    path = _tif(tmp_path / "f.tif", 5)
    close_all()
    with session():  # forked inside a session: the child neither inherits nor ends it
        with borrow(path) as parent_src:
            parent_id = id(parent_src)
        assert pool().idle_count() == 1
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(path, queue))
        proc.start()
        got = queue.get(timeout=60)
        proc.join(timeout=60)
        assert proc.exitcode == 0, got
        inherited, opened, value, _ = got
        assert inherited == 0 and opened == 1 and value == 5  # nothing inherited; the child opened its own
        with borrow(path) as again:  # the parent's reader is untouched and still reads
            assert id(again) == parent_id and not again.closed and again.read(1)[0, 0] == 5
    assert pool().idle_count() == 0 and again.closed


def test_reserve_raises_the_limit_until_the_session_ends():
    import resource

    from minescape.geo.handles import reserve

    p = pool()
    assert p.max_idle == p.base_idle and not p.in_session()
    with session():
        reserve(p.base_idle - 1)
        assert p.max_idle == p.base_idle  # never lowered
        reserve(p.base_idle + 40)
        assert p.max_idle == p.base_idle + 40
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        reserve(10**9)  # within half the open-file limit
        assert p.max_idle == max(p.base_idle, soft // 2 if soft != resource.RLIM_INFINITY else 10**9)
    assert p.max_idle == p.base_idle  # undone with the session
    reserve(p.base_idle + 7)  # a call reserves, then opens its session: it lasts until that session ends
    with session():
        assert p.max_idle == p.base_idle + 7
    assert p.max_idle == p.base_idle


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_readers_live_only_while_a_session_is_open(tmp_path):
    """Inside a session (nested ones too) a file is opened once and kept; when the outermost session ends every
    reader is closed, so a deleted input frees its space. Outside any session nothing is kept."""
    paths = [_tif(tmp_path / f"s{i}.tif", i + 1) for i in range(3)]
    p = DatasetPool()
    with p.session():
        for _ in range(3):
            with p.session():  # a call inside the user's session: its end closes nothing
                for path in paths:
                    with p.borrow(path) as src:
                        src.read(1)
        assert p.opened == 3 and p.idle_count() == 3
        assert len(open_files_under(tmp_path)) == 3  # what the session's end must close is there
        os.unlink(paths[0])
        assert any(t.endswith("(deleted)") for t in open_files_under(tmp_path))
    assert p.idle_count() == 0 and open_files_under(tmp_path) == []
    with p.borrow(paths[1]) as src:  # no session: opened, read, closed
        assert src.read(1)[0, 0] == 2
    assert src.closed and p.idle_count() == 0 and p.opened == 4


def test_a_session_ended_while_another_thread_reads_keeps_its_reader_safe(tmp_path):
    """Two threads' sessions end in any order; the reader lent across the other's end stays usable, and is
    closed when given back after the last session."""
    path = _tif(tmp_path / "t.tif", 4, shape=(32, 32))
    p = DatasetPool()
    holding, ended = threading.Event(), threading.Event()
    got: list = []

    def reader():
        with p.session(), p.borrow(path) as src:
            holding.set()
            ended.wait(timeout=10)
            got.append((src.closed, int(src.read(1).sum())))
        got.append(src.closed)

    t = threading.Thread(target=reader)
    with p.session():
        t.start()
        assert holding.wait(timeout=10)
    ended.set()  # this thread's session ended while the other holds a reader
    t.join(timeout=10)
    assert got == [(False, 4 * 32 * 32), True] and p.idle_count() == 0

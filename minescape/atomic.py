"""Atomic output: write under a temporary name beside the target, rename on success.

Nothing half-written ever sits under a final name. A temporary name carries the writer's host and process
id (``.tmp-<host>-<pid>-<random>-<name>``), so a writer that was killed outright (SIGKILL, out of memory)
leaves a file the next write of the same target recognises as stale and removes: its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path


#: Short id of this host in temporary names (a process id means nothing on another host of a shared disk).
HOST = format(zlib.crc32(socket.gethostname().encode()), "08x")[:6]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


#: Per folder, the temporary files of this host found there by this process's first write into it:
#: ``[(pid, name after "<pid>-<random>-", path)]``. One listing per folder and process, so writing n files
#: into a folder stays O(n), not O(n²).
_LEFTOVERS: dict[str, list[tuple[int, str, Path]]] = {}
_LEFTOVERS_LOCK = threading.Lock()


def _leftovers(folder: Path) -> list[tuple[int, str, Path]]:
    key = os.path.abspath(folder)
    found = _LEFTOVERS.get(key)
    if found is None:
        prefix = f".tmp-{HOST}-"
        found = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not entry.name.startswith(prefix):
                        continue
                    parts = entry.name[len(prefix):].split("-", 2)
                    if len(parts) == 3 and parts[0].isdigit():
                        found.append((int(parts[0]), parts[2], folder / entry.name))
        _LEFTOVERS[key] = found
    return found


def sweep_stale(path: str | Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by dead writers on this host; return what was removed.

    Only ``.tmp-<this host>-<pid>-*-<name>`` files (and their GDAL sidecars) whose process no longer exists are
    touched: a live writer's file, another host's, or another target's are left alone. The folder is listed
    once per process (at its first write there); leftovers of writers that die later are the next run's.
    """
    path = Path(path)
    removed = []
    with _LEFTOVERS_LOCK:
        found = _leftovers(path.parent)
        keep = []
        for pid, rest, f in found:
            if not rest.startswith(path.name) or _alive(pid):
                keep.append((pid, rest, f))
                continue
            with contextlib.suppress(FileNotFoundError):
                if f.is_dir():
                    shutil.rmtree(f, ignore_errors=True)
                else:
                    f.unlink()
                removed.append(f)
        found[:] = keep
    return removed


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` (file or folder) that :func:`sweep_stale` can attribute to this
    process; stale ones of the same target are swept first."""
    path = Path(path)
    sweep_stale(path)
    return path.with_name(f".tmp-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it to ``path`` when the block succeeds.

    The suffix is kept so drivers chosen by extension (``.tif``, ``.gpkg``) still work. On error the
    temporary file is removed and the exception propagates. Temporary files of the same target left by
    writers that were killed (see :func:`sweep_stale`) are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def replace_dir(tmp: str | Path, final: str | Path) -> Path:
    """Move the finished folder ``tmp`` to ``final`` with renames only, replacing an earlier ``final``.

    The old folder is first renamed aside (``.old-*``), restored if the move fails, and removed after, so
    ``final`` never holds a mix of old and new files. Both must be on one file system.
    """
    tmp, final = Path(tmp), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".old-{uuid.uuid4().hex[:12]}-{final.name}")
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final

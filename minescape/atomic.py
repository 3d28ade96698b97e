"""Atomic output: write under a temporary name beside the target, rename on success.

Nothing half-written ever sits under a final name. A temporary name carries the writer's host and process
id (``.tmp-<host>-<pid>-<random>-<name>``), so a writer that was killed outright (SIGKILL, out of memory)
leaves a file the next write into the same folder recognises as stale and removes: its process is gone.
Every temporary name of every writer (files, folders, a temporary file's own temporary files such as the
streamed GeoTIFF of a COG, GDAL sidecars, the old copy of a replaced folder) starts with that prefix, so one
sweep finds them all. A temporary name never needs more bytes than the file system allows a name
(:data:`NAME_MAX`) when its final name fits: a long final name is shortened in it (``~<hash><end of the name>``,
the extension kept), and :func:`public_name` still gives the final name back.

A write that fails because of where it goes (disk full, read-only file system, no permission, a folder where
a file is expected, a file where a folder is expected) raises :class:`~minescape.errors.OutputError` naming
the final path the user gave, never the temporary name.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import hashlib
import os
import re
import shutil
import socket
import threading
import uuid
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from minescape.errors import MinescapeError, OutputError
from minescape.path_identity import PathSet

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
    """Remove the temporary files and folders left by dead writers on this host in ``path``'s folder; return
    what was removed.

    Only ``.tmp-<this host>-<pid>-*`` entries whose process no longer exists are touched, whatever target they
    were for (a dead writer's file is never renamed into place; its nested temporary files and sidecars carry
    the same prefix): a live writer's file and another host's are left alone. The folder is listed once per
    process (at its first write there); leftovers of writers that die later are the next run's.
    """
    path = Path(path)
    removed = []
    with _LEFTOVERS_LOCK:
        found = _leftovers(path.parent)
        keep = []
        for pid, rest, f in found:
            if _alive(pid):
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


#: Longest file name in bytes of the file systems written to (ext4, XFS, btrfs, ZFS, APFS, NTFS: 255).
NAME_MAX = 255
#: Bytes a temporary name leaves free below :data:`NAME_MAX` for what writers append to it (the streamed GeoTIFF
#: of a COG and its GDAL sidecars: ``.stream.tif.aux.xml``, ``.stream.tif.msk``, ``.stream.tif.ovr.tmp``).
TEMP_ROOM = 24
#: Final names shortened in temporary names by this process: tag (``~<hash>``) -> (final name, end kept).
_SHORTENED: dict[str, tuple[str, str]] = {}

#: A temporary-name prefix in any text (``.tmp-<host>-<pid>-<random>-``).
_TMP_PREFIX = re.compile(r"\.tmp-[0-9a-f]{6}-\d+-[0-9a-f]{8}-")
#: The tag of a shortened final name, right after the prefix.
_TMP_TAG = re.compile(r"~[0-9a-f]{8}")
#: Temporary suffixes a writer adds to a temporary name (the streamed GeoTIFF of a COG, GDAL sidecars).
_TMP_SUFFIX = re.compile(r"(\.stream\.tif|\.aux\.xml|\.ovr\.tmp|\.msk)+(?=$|[\s:'\")])")


def public_name(text: str | Path) -> str:
    """``text`` with every temporary name replaced by the final name it stands for (for messages)."""
    text = str(text)
    if not _TMP_PREFIX.search(text):
        return text
    parts = _TMP_PREFIX.split(text)
    return parts[0] + "".join(_TMP_SUFFIX.sub("", _long_name(p), count=1) for p in parts[1:])


def _long_name(text: str) -> str:
    """``text`` (what follows a temporary prefix) with a shortened final name (:func:`temp_path`) spelled out."""
    tag = _TMP_TAG.match(text)
    if tag is None or tag.group() not in _SHORTENED:
        return text
    name, tail = _SHORTENED[tag.group()]
    rest = text[tag.end():]
    return name + rest[len(tail):] if rest.startswith(tail) else text


#: errno -> the cause in words, for outputs.
_CAUSES = {
    _errno.ENOSPC: "no space left on the device",
    _errno.EDQUOT: "disk quota exceeded",
    _errno.EROFS: "read-only file system",
    _errno.EACCES: "permission denied",
    _errno.EPERM: "operation not permitted",
    _errno.EFBIG: "file too large for the file system",
    _errno.ENAMETOOLONG: "file name too long for the file system",
    _errno.EISDIR: "is a folder; give a file name",
    _errno.ENOTDIR: "a parent of the path is a file, not a folder",
    _errno.EEXIST: "exists and is a file; give a folder",
}


def output_cause(folder: str | Path) -> tuple[int, str] | None:
    """Why nothing can be written into ``folder`` (errno, words), or None when it looks writable.

    Used after a write failed with a library error that lost the OS error (GDAL, SQLite): a file system with
    less than 1 MiB free is full, one mounted read-only is read-only, one the user cannot write is denied.
    """
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return _errno.EROFS, _CAUSES[_errno.EROFS]
    if st.f_bavail * st.f_frsize < (1 << 20):
        return _errno.ENOSPC, _CAUSES[_errno.ENOSPC]
    if not os.access(folder, os.W_OK):
        return _errno.EACCES, _CAUSES[_errno.EACCES]
    return None


def output_error(exc: BaseException, final: str | Path) -> OutputError | None:
    """The :class:`OutputError` naming ``final`` that ``exc`` (raised while writing it) stands for, or None
    when the failure is not about where the output goes (then the original error stands)."""
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, MinescapeError) or not isinstance(exc, Exception):
        return None  # the user's input, not the output's place
    final = Path(final)
    if isinstance(exc, OSError):
        name = exc.filename
        if name is not None and os.path.abspath(Path(public_name(name)).parent) != os.path.abspath(final.parent) \
                and os.path.abspath(public_name(name)) != os.path.abspath(final):
            return None  # about another file (an input read inside the block)
        if exc.errno in _CAUSES:
            return OutputError(f"cannot write ({_CAUSES[exc.errno]})", path=final, errno=exc.errno)
    cause = output_cause(final.parent)
    if cause is not None:
        return OutputError(f"cannot write ({cause[1]})", path=final, errno=cause[0])
    return None


def prepare_output(path: str | Path, *, folder: bool = False) -> Path:
    """Check that ``path`` can be an output file (or, with ``folder``, an output folder) and create its parent
    folders (or itself, for a folder).

    Raises:
        OutputError: a folder where a file is expected, a file where a folder is expected, a parent that is a
            file, a read-only or full file system, no permission.
    """
    path = Path(path)
    try:  # a name too long for the file system fails already in exists()
        if folder and path.exists() and not path.is_dir():
            raise OutputError("exists and is a file; give a folder", path=path, errno=_errno.EEXIST)
        if not folder and path.is_dir():
            raise OutputError("is a folder; give a file name", path=path, errno=_errno.EISDIR)
        (path if folder else path.parent).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (output_error(exc, path) or exc) from None
    return path


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` (file or folder) that :func:`sweep_stale` can attribute to this
    process; stale ones of the same target are swept first.

    The name is ``.tmp-<host>-<pid>-<random>-<name>``; when that would leave less than :data:`TEMP_ROOM` bytes
    below :data:`NAME_MAX` (a final name of more than about 200 bytes), ``<name>`` is shortened to
    ``~<hash of the name><end of the name>`` (extension kept, for drivers chosen by it), which
    :func:`public_name` turns back into the final name in this process.
    """
    path = Path(path)
    sweep_stale(path)
    prefix = f".tmp-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    return path.with_name(prefix + _short_name(path.name, NAME_MAX - TEMP_ROOM - len(prefix)))


def _short_name(name: str, size: int) -> str:
    """``name`` if it fits in ``size`` bytes (UTF-8), else ``~<hash><the end of name>`` in ``size`` bytes."""
    if len(name.encode()) <= size:
        return name
    tag = "~" + hashlib.sha256(name.encode()).hexdigest()[:8]
    tail = name[-max(size - len(tag), 0):]
    while len(tail.encode()) > size - len(tag):  # multi-byte characters
        tail = tail[1:]
    _SHORTENED[tag] = (name, tail)
    return tag + tail


@contextlib.contextmanager
def as_output_error(path: Path) -> Iterator[None]:
    """Re-raise a write failure inside the block as the :class:`OutputError` naming ``path`` (the user's
    path, never the temporary one); other exceptions pass unchanged."""
    try:
        yield
    except Exception as exc:
        err = output_error(exc, path)
        if err is None or err is exc:
            raise
        raise err from exc


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it to ``path`` when the block succeeds.

    The suffix is kept so drivers chosen by extension (``.tif``, ``.gpkg``) still work. On error the
    temporary file is removed and the exception propagates. Temporary files of the same target left by
    writers that were killed (see :func:`sweep_stale`) are removed first.
    """
    path = prepare_output(path)
    tmp = temp_path(path)
    try:
        with as_output_error(path):
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

    The old folder is first renamed aside (under a temporary name), restored if the move fails, and removed after, so
    ``final`` never holds a mix of old and new files. Both must be on one file system.
    """
    tmp, final = Path(tmp), Path(final)
    old = None
    if final.exists() and not final.is_dir():
        raise OutputError("exists and is a file; give a folder", path=final, errno=_errno.EEXIST)
    if final.exists():
        old = temp_path(final)  # the old copy carries a temporary name: swept if a kill leaves it
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


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` whole
    (:func:`replace_dir`), on error it is removed. Write failures become :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    prepare_output(path.parent, folder=True)
    if path.exists() and not path.is_dir():
        raise OutputError("exists and is a file; give a folder", path=path, errno=_errno.EEXIST)
    tmp = temp_path(path)
    try:
        try:
            tmp.mkdir()
        except OSError as exc:
            raise (output_error(exc, path) or exc) from None
        with as_output_error(path):
            yield tmp
            replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prune(folder: str | Path, pattern: str, keep: Iterable[str | Path], *,
          protect: Iterable[str | Path] = ()) -> list[Path]:
    """Remove the files of ``folder`` matching ``pattern`` that a run did not produce (not in ``keep``): the run
    owns its output folder, so outputs of an earlier run (a unit since removed, renamed or failed) never sit
    beside the new ones. Files in ``protect`` (the run's inputs) and anything under a protected folder are never
    touched, whatever their spelling (a symlink, a ``..``: :class:`PathSet`), nor hidden files (temporary names
    are the sweep's). Returns the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    kept, guarded = PathSet(keep), PathSet(protect, within=True)
    removed = []
    for f in sorted(folder.glob(pattern)):
        if f.name.startswith(".") or not f.is_file() or kept.match(f) is not None or guarded.match(f) is not None:
            continue
        f.unlink(missing_ok=True)
        removed.append(f)
    return removed

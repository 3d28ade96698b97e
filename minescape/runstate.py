"""The run folder: a journal of unit states, so an interrupted or partly failed run resumes.

Layout of a run folder::

    run.json        what the run is: description, mode, unit ids, start/finish times, counts (atomic rewrite)
    units.jsonl     append-only journal, one JSON line per finished unit: {"id", "key", "status":
                    "done"|"failed", "result"|"reason", "seconds", "attempts"}; the last line of an id wins
    .lock           held (``flock``) while a run uses the folder

A unit is *done* when its latest line says ``done`` with the same ``key`` (a hash of the unit's args, its
``fingerprint`` of inputs + config and the function), and every path its result lists under ``"outputs"``
still holds what the unit wrote: the line records each output's size and SHA-256 (``"checks"``), verified
before the unit is skipped, so an output truncated, overwritten or deleted after the run is made again.
Anything else (no line, failed, other key, missing output) runs again. Each line is written
and flushed as its unit finishes; a SIGKILL can at worst cut the last line, which the reader ignores (and
the next run starts on a fresh line). Outputs are renamed into place by the units, never half-written. The
journal is compacted (one line per unit, atomic rewrite) when re-runs have made it more than twice as long.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minescape.atomic import as_output_error, atomic_write_text
from minescape.errors import InputError, MissingInputError
from minescape.jsonfile import read_json

RUN_FILE = "run.json"
JOURNAL = "units.jsonl"


def _canonical(value: Any) -> str:
    """Stable JSON text of plain data (paths and other objects via ``str``; keys sorted)."""
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def fingerprint(paths: Iterable[str | Path] = (), config: Mapping[str, Any] | None = None, *,
                content: bool = False) -> str:
    """Fingerprint of a unit's inputs and configuration (a hex SHA-256).

    Each input file contributes its absolute path, size and modification time (nanoseconds), or with
    ``content=True`` its bytes (slower, but survives copies and ``touch``). A folder contributes every file
    under it. ``config`` is any JSON-able mapping (keys sorted). Change one input or one config value and
    the fingerprint changes; nothing else does.

    Raises:
        MissingInputError: an input path does not exist.
    """
    h = hashlib.sha256()
    files: list[Path] = []
    for p in paths:
        p = Path(p).absolute()
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        elif p.exists():
            files.append(p)
        else:
            raise MissingInputError("input not found", path=p)
    for f in sorted(set(files)):
        h.update(str(f).encode())
        if content:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023
                    h.update(chunk)
        else:
            st = f.stat()
            h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
        h.update(b"\0")
    h.update(_canonical(dict(config or {})).encode())
    return h.hexdigest()


def unit_key(unit_id: str, args: Mapping[str, Any], fingerprint_: str, func_name: str) -> str:
    """The key a unit's state must match to count as done: hash of function, id, args and fingerprint."""
    text = _canonical({"func": func_name, "id": unit_id, "args": dict(args), "fingerprint": fingerprint_})
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class UnitState:
    """A unit's recorded state."""

    id: str
    key: str
    status: str  # "done" | "failed"
    result: Any = None
    reason: str = ""
    seconds: float = 0.0
    attempts: int = 1
    checks: dict[str, list] | None = None  # output path -> [size in bytes, SHA-256 hex] when the unit finished

    def outputs_exist(self) -> bool:
        """True unless the result lists ``outputs`` of which one is missing, or (when the journal recorded
        their sizes and checksums) one whose size or SHA-256 changed since the unit wrote it."""
        outputs = result_outputs(self.result)
        if not all(Path(p).exists() for p in outputs):
            return False
        if self.checks is None:
            return True  # a journal line of an older version: existence is all it can tell
        return all(self.checks.get(str(p)) == list(file_check(p)) for p in outputs)


def result_outputs(result: Any) -> list[str]:
    """The paths a unit's result lists under ``"outputs"`` (a path or a list of paths)."""
    outputs = result.get("outputs") if isinstance(result, dict) else None
    if not outputs:
        return []
    if isinstance(outputs, (str, Path)):
        outputs = [outputs]
    return [str(p) for p in outputs]


def file_check(path: str | Path) -> tuple[int, str]:
    """``(size in bytes, SHA-256 hex)`` of a file; a folder contributes every file under it (sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    size = 0
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023
                h.update(chunk)
                size += len(chunk)
    return size, h.hexdigest()


def output_checks(result: Any) -> dict[str, list]:
    """``{path: [size, SHA-256]}`` of the outputs a finished unit's result lists (missing ones left out)."""
    return {p: list(file_check(p)) for p in result_outputs(result) if Path(p).exists()}


def _line(state: UnitState) -> str:
    data = {"id": state.id, "key": state.key, "status": state.status, "seconds": round(state.seconds, 4),
            "attempts": state.attempts}
    if state.status == "done":
        data["result"] = state.result
        if state.checks is not None:
            data["checks"] = state.checks
    else:
        data["reason"] = state.reason
    return json.dumps(data, default=str, separators=(",", ":")) + "\n"


@contextlib.contextmanager
def open_journal(run_dir: Path) -> Iterator[Callable[[UnitState], None]]:
    """Yield ``record(state)``, which appends a unit's state to the journal and flushes it.

    If a previous run was killed in the middle of a line, a newline is added first so that the cut line
    stays unreadable (and ignored) instead of merging with the next record.
    """
    path = run_dir / JOURNAL
    with as_output_error(path):  # a full disk names the journal (a flush error carries no file name)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            if fh.tell() > 0:
                with open(path, "rb") as check:
                    check.seek(-1, os.SEEK_END)
                    if check.read(1) != b"\n":
                        fh.write(b"\n")
        fh = open(path, "a", encoding="utf-8")

    def record(state: UnitState) -> None:
        with as_output_error(path):
            fh.write(_line(state))
            fh.flush()

    try:
        yield record
    finally:
        with contextlib.suppress(OSError):  # flushed after every record: a failed flush has raised already
            fh.close()


def _parse(line: str) -> UnitState | None:
    """The state on one journal line, or None for a line that is not one: cut by a kill, or edited into other
    types (then the unit counts as not finished and a re-run redoes it)."""
    try:
        d = json.loads(line)
    except ValueError:
        return None  # a line cut by a kill
    if not isinstance(d, dict):
        return None
    uid, key, status, reason = d.get("id"), d.get("key"), d.get("status"), d.get("reason", "")
    seconds, attempts, checks = d.get("seconds", 0.0), d.get("attempts", 1), d.get("checks")
    if not (isinstance(uid, str) and isinstance(key, str) and status in ("done", "failed")
            and isinstance(reason, str) and _is_number(seconds) and _is_number(attempts)):
        return None
    return UnitState(uid, key, status, d.get("result"), reason, float(seconds), int(attempts),
                     checks if isinstance(checks, dict) else None)


def _is_number(value: Any) -> bool:
    """True for a finite JSON number (not a bool, not a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < float("inf")


def read_states(run_dir: str | Path) -> dict[str, UnitState]:
    """The latest recorded state of every unit of a run folder, by unit id (cut lines are ignored)."""
    states, _ = _read_journal(Path(run_dir))
    return states


def _read_journal(run_dir: Path) -> tuple[dict[str, UnitState], int]:
    path = run_dir / JOURNAL
    states: dict[str, UnitState] = {}
    lines = 0
    if not path.exists():
        return states, lines
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            lines += 1
            state = _parse(line)
            if state is not None:
                states[state.id] = state
    return states, lines


def load_for_run(run_dir: Path) -> dict[str, UnitState]:
    """Read the journal at the start of a run (lock held) and compact it if re-runs doubled its length."""
    states, lines = _read_journal(run_dir)
    if lines > 2 * len(states) + 100:
        atomic_write_text(run_dir / JOURNAL, "".join(_line(s) for s in states.values()))
    return states


def is_done(state: UnitState | None, key: str) -> bool:
    """True when ``state`` records a success for ``key`` whose outputs still exist."""
    return state is not None and state.status == "done" and state.key == key and state.outputs_exist()


def now() -> str:
    """UTC time stamp (ISO 8601, seconds)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def write_run_info(run_dir: Path, info: dict[str, Any]) -> Path:
    """Write ``run.json`` atomically."""
    return atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=1, default=str))


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a run folder (InputError if the folder is not a run folder)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingInputError("run folder not found", path=run_dir)
    path = run_dir / RUN_FILE
    if not path.exists():
        raise InputError("not a run folder (no run.json); pass the --run-dir of a run", path=run_dir)
    info = read_json(path, "run.json")
    ids = info.get("unit_ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        got = "an entry is not text" if isinstance(ids, list) else type(ids).__name__
        raise InputError(f"unit_ids is not a list of unit ids ({got}); not written by a run, or edited", path=path)
    for name in ("description", "function", "mode", "scheduler", "started", "finished"):
        if info.get(name) is not None and not isinstance(info[name], str):
            raise InputError(f"{name} is not text ({type(info[name]).__name__}); not written by a run, "
                             "or edited", path=path)
    return info


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir`` (InputError if another live run holds it).

    The lock is an ``flock`` on ``run_dir/.lock``: the kernel releases it when the process dies, so a
    killed run never leaves a stale lock.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError("run folder is in use by another running process; wait for it or use another "
                             "--run-dir", path=run_dir) from None
        yield run_dir
    finally:
        os.close(fd)


def is_running(run_dir: str | Path) -> bool:
    """True while a live process holds the run folder's lock."""
    path = Path(run_dir) / ".lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def summarize(run_dir: str | Path) -> dict[str, Any]:
    """Counts and failures of a run folder: ``{"info", "total", "done", "failed": {id: reason}, "missing"}``.

    Units are those listed in ``run.json`` by the latest run; states whose key no longer matches are not
    known here (keys need the current inputs), so *done* means done when last recorded.
    """
    info = read_run_info(run_dir)
    states = read_states(run_dir)
    ids = info.get("unit_ids") or sorted(states)
    done = [i for i in ids if i in states and states[i].status == "done"]
    failed = {i: states[i].reason for i in ids if i in states and states[i].status == "failed"}
    missing = [i for i in ids if i not in states]
    seconds = sum(states[i].seconds for i in ids if i in states)
    return {"info": info, "running": is_running(run_dir), "total": len(ids), "done": done, "failed": failed,
            "missing": missing, "unit_seconds": seconds, "states": states}

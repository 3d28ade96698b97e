"""One executor for per-site and per-tile work: in this process, on a local Dask cluster or on a scheduler.

A run is a list of :class:`Unit` s and a function that processes one unit, writes its outputs itself
(atomically, with :mod:`minescape.atomic` or the ``write_*`` helpers) and returns a small JSON-able dict.
Outputs never travel back to the client; only that dict does. A unit that raises is recorded as failed
with a one-line reason; the others go on. :func:`run_units` returns a :class:`RunSummary`.

With ``Executor(run_dir=...)`` each finished unit's state is recorded in the run folder
(:mod:`minescape.runstate`); running the same units again finishes only the missing, failed or changed
ones (a unit's ``fingerprint`` of inputs + config is part of its key, see :func:`fingerprint`).

Modes give byte-identical outputs as long as ``func`` is deterministic (seeded), because the same
function runs on the same unit wherever it runs.
"""

from __future__ import annotations

import errno
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from minescape.atomic import public_name
from minescape.errors import ConfigError, MinescapeError, OutputError, UnitFailed, check_choice
from minescape.progress import make_progress
from minescape.runstate import (
    UnitState,
    fingerprint,
    is_done,
    load_for_run,
    locked,
    now,
    open_journal,
    output_checks,
    unit_key,
    write_run_info,
)

__all__ = ["Executor", "RunInterrupted", "RunSummary", "Unit", "failure_reason", "fingerprint", "run_units",
           "unit_path"]

MODES = ("inprocess", "local", "scheduler")


@dataclass(frozen=True)
class Unit:
    """One unit of work: a stable ``id``, picklable ``args`` and a ``fingerprint`` of its inputs+config.

    Keep ``args`` plain (str, numbers, lists, dicts, paths): they are part of the unit's resume key. Paths in
    ``args`` are absolute (:func:`unit_path`): the unit may run in another working folder.
    """

    id: str
    args: dict[str, Any]
    fingerprint: str = ""


def unit_path(path: str | Path) -> Path:
    """``path`` as a unit's args carry it: absolute (not resolved: symbolic links stay as given).

    A unit may run on a worker of a scheduler whose working folder is not the client's; a relative path would
    name another file there (an input "not found", an output written where the client never looks). Paths in
    ``Unit.args`` are therefore always absolute, whatever the mode, so a unit's resume key is the same in every
    mode too.
    """
    return Path(path).absolute()


@dataclass(frozen=True)
class Executor:
    """Where and how units run.

    Attributes:
        mode: ``inprocess`` (default), ``local`` (a local Dask cluster of ``workers`` processes, one thread
            each) or ``scheduler`` (an existing Dask scheduler at ``scheduler``, e.g. ``tcp://host:8786``).
        workers: worker processes of the local cluster.
        scheduler: scheduler address for the ``scheduler`` mode.
        run_dir: folder recording each unit's state so an interrupted run resumes (None: no record).
        max_in_flight: tasks submitted but not finished at any time (default 4 per worker thread of the
            cluster); bounds the client's memory whatever the number of units.
        units_per_task: units run by one Dask task (default: up to 16, so that each worker thread still
            gets at least 8 tasks); short units then do not pay the scheduler's few milliseconds each.
        allowed_failures: times a unit may be lost with a dying worker before it is reported as failed
            (the scheduler retries it on another worker meanwhile).
    """

    mode: Literal["inprocess", "local", "scheduler"] = "inprocess"
    workers: int = 1
    scheduler: str | None = None
    run_dir: Path | None = None
    max_in_flight: int | None = None
    allowed_failures: int = 3
    units_per_task: int | None = None

    def __post_init__(self) -> None:
        check_choice(self.mode, MODES, what="executor mode")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1 (got {self.workers})")
        if self.units_per_task is not None and self.units_per_task < 1:
            raise ConfigError(f"units_per_task must be >= 1 (got {self.units_per_task})")
        if self.mode == "scheduler" and not self.scheduler:
            raise ConfigError("executor mode 'scheduler' needs a scheduler address (e.g. tcp://host:8786)")
        if self.mode == "scheduler":
            from minescape.runner_dask import check_scheduler_address

            check_scheduler_address(self.scheduler)  # at once, not after Dask's connect timeout
        if self.run_dir is not None and not isinstance(self.run_dir, Path):
            object.__setattr__(self, "run_dir", Path(self.run_dir))


@dataclass
class RunSummary:
    """Results by unit id (including units skipped as already done), failures by unit id (one-line
    reasons), ids skipped because a previous run finished them, and the wall time in seconds."""

    results: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no unit failed."""
        return not self.failed

    @property
    def ran(self) -> int:
        """Units processed by this run (done or failed)."""
        return len(self.results) + len(self.failed) - len(self.skipped)

    def line(self, what: str = "units") -> str:
        """One line: ``N units: a done (s skipped as already done), f failed``."""
        total = len(self.results) + len(self.failed)
        done = len(self.results)
        text = f"{total} {what}: {done} done"
        if self.skipped:
            text += f" ({len(self.skipped)} already done before, skipped)"
        text += f", {len(self.failed)} failed in {self.seconds:.1f} s"
        return text

    def raise_for_failures(self, what: str = "units", *, show: int = 3) -> None:
        """Raise :class:`UnitFailed` (the CLI exits with code 3) naming the failed units and reasons."""
        if not self.failed:
            return
        items = sorted(self.failed.items())
        shown = "; ".join(f"{uid}: {reason}" for uid, reason in items[:show])
        more = f"; and {len(items) - show} more" if len(items) > show else ""
        raise UnitFailed(f"{len(items)} of {len(self.results) + len(items)} {what} failed: {shown}{more}")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (a ``KeyboardInterrupt``) during :func:`run_units`, with how far the run got; still a
    ``KeyboardInterrupt``, so ``except KeyboardInterrupt`` catches it and the CLI exits with code 130.

    The units finished before the interrupt keep their outputs (each written atomically) and, with a run folder
    (``run_dir``), their recorded state: the same run again does only the others. Worker processes of a local
    cluster are gone when it is raised.

    Attributes:
        description: the run's label (``run_units(description=...)``).
        done: units done, including those skipped as done by an earlier run.
        failed: units that failed before the interrupt.
        total: units of the run.
        run_dir: the run folder, or None when the run was not recorded.
    """

    def __init__(self, description: str, *, done: int, failed: int, total: int, run_dir: Path | None) -> None:
        self.description, self.done, self.failed, self.total, self.run_dir = description, done, failed, total, run_dir
        failures = f", {failed} failed" if failed else ""
        super().__init__(f"{done} of {total} units done{failures} ({description})")


def failure_reason(exc: BaseException) -> str:
    """One line describing a unit failure (user errors verbatim, others with their type and place); a temporary
    name in it is replaced by the final name it stands for (users never see ``.tmp-...`` names)."""
    text = " ".join(public_name(str(exc)).split()) or type(exc).__name__
    if isinstance(exc, MinescapeError):
        return text
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {text}{where}"


#: Causes of an :class:`OutputError` that stop a multi-unit run instead of failing one unit: every unit after it
#: would be computed and then fail to write the same way (a full disk, a quota, a read-only file system).
STOPPING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def execute_unit(unit: Unit, func: Callable[[Unit], Any]) -> dict[str, Any]:
    """Run ``func(unit)`` where the unit is (this process or a worker); never raises for unit errors.

    Returns ``{"ok": True, "result": ..., "seconds": s}`` or ``{"ok": False, "reason": ..., "seconds": s}``;
    an output that cannot be written for a reason of :data:`STOPPING_ERRNOS` adds ``"stop": {"message", "errno"}``
    (the run then stops with that error, :func:`run_units`).
    """
    t0 = time.perf_counter()
    try:
        result = func(unit)
    except OutputError as exc:
        outcome = {"ok": False, "reason": failure_reason(exc), "seconds": time.perf_counter() - t0}
        if exc.errno in STOPPING_ERRNOS:  # the place the outputs go, not this unit: the run stops
            outcome["stop"] = {"message": outcome["reason"], "errno": exc.errno}
        return outcome
    except Exception as exc:  # one bad unit must not stop the run
        return {"ok": False, "reason": failure_reason(exc), "seconds": time.perf_counter() - t0}
    return {"ok": True, "result": result, "seconds": time.perf_counter() - t0}


def execute_units(units: Sequence[Unit], func: Callable[[Unit], Any]) -> list[dict[str, Any]]:
    """:func:`execute_unit` for each of ``units`` in turn (one Dask task for several short units), in one session
    of the reader pool (:func:`minescape.geo.handles.session`: files shared by the units are opened once, and
    closed when the task ends, so a long-lived worker holds no input open between tasks)."""
    from minescape.geo.handles import session

    with session():
        return [execute_unit(u, func) for u in units]


def func_name(func: Callable) -> str:
    """``module:qualname`` of a function (part of each unit's resume key)."""
    return f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"


def run_units(
    units: Sequence[Unit],
    func: Callable[[Unit], Any],
    *,
    description: str = "units",
    executor: Executor | None = None,
) -> RunSummary:
    """Process ``units`` with a progress bar (ETA, failure count); failures are recorded, not raised.

    Args:
        units: the units; ids must be unique.
        func: a module-level (picklable) function of one :class:`Unit` that writes its outputs itself
            (atomically) and returns a small JSON-able result (list written files under ``"outputs"`` so
            a resumed run redoes a unit whose outputs were deleted).
        description: progress-bar label.
        executor: where to run (default in this process, no run folder).

    Returns:
        A :class:`RunSummary`; call ``summary.raise_for_failures()`` to turn failures into exit code 3.

    Raises:
        RunInterrupted: on Ctrl-C (a ``KeyboardInterrupt``), with the counts of units done, failed and in all.
        OutputError: a unit could not write its output for a reason every later unit would meet too
            (:data:`STOPPING_ERRNOS`: a full disk, a quota, a read-only file system); units done before it keep
            their outputs and recorded state, so the same run resumes once there is room.
    """
    executor = executor or Executor()
    ids = [u.id for u in units]
    if len(set(ids)) != len(ids):
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)[:5]
        raise ConfigError(f"unit ids must be unique; repeated: {dupes}")
    t0 = time.perf_counter()
    name = func_name(func)
    keys = {u.id: unit_key(u.id, u.args, u.fingerprint, name) for u in units}
    summary = RunSummary()
    try:
        return _run(units, func, executor, description, summary, keys, ids, name, t0)
    except KeyboardInterrupt as exc:  # Ctrl-C: how far the run got (a local cluster's workers are gone by now)
        raise RunInterrupted(description, done=len(summary.results), failed=len(summary.failed),
                             total=len(units), run_dir=executor.run_dir).with_traceback(exc.__traceback__) from None


def _run(units: Sequence[Unit], func, executor: Executor, description: str, summary: RunSummary,
         keys: dict[str, str], ids: list[str], name: str, t0: float) -> RunSummary:
    """:func:`run_units` once its arguments are checked: with or without the run folder."""
    run_dir = executor.run_dir
    if run_dir is None:
        _dispatch(list(units), func, executor, description, summary, keys, None, skipped=0)
        summary.seconds = time.perf_counter() - t0
        return _in_unit_order(summary, ids)
    with locked(run_dir):
        states = load_for_run(run_dir)
        todo = []
        for u in units:
            st = states.get(u.id)
            if is_done(st, keys[u.id]):
                summary.results[u.id] = st.result
                summary.skipped.append(u.id)
            else:
                todo.append(u)
        info = {"description": description, "function": name, "mode": executor.mode, "workers": executor.workers,
                "scheduler": executor.scheduler, "started": now(), "total": len(units),
                "skipped": len(summary.skipped), "unit_ids": ids}
        write_run_info(run_dir, info)
        with open_journal(run_dir) as journal:
            _dispatch(todo, func, executor, description, summary, keys, journal, skipped=len(summary.skipped))
        summary.seconds = time.perf_counter() - t0
        info.update(finished=now(), done=len(summary.results), failed=len(summary.failed),
                    seconds=round(summary.seconds, 3))
        write_run_info(run_dir, info)
    return _in_unit_order(summary, ids)


def _in_unit_order(summary: RunSummary, ids: list[str]) -> RunSummary:
    """Results, failures and skipped ids in the order of the units (the same in every mode)."""
    summary.results = {i: summary.results[i] for i in ids if i in summary.results}
    summary.failed = {i: summary.failed[i] for i in ids if i in summary.failed}
    return summary


def _dispatch(todo: list[Unit], func, executor: Executor, description: str, summary: RunSummary,
              keys: dict[str, str], journal: Callable[[UnitState], None] | None, *, skipped: int) -> None:
    """Run ``todo`` in the executor's mode, recording each outcome as it arrives."""
    with make_progress() as progress:
        extra = f"[dim]{skipped} already done" if skipped else ""
        task = progress.add_task(description, total=len(todo) + skipped, completed=skipped, extra=extra)

        def record(unit: Unit, outcome: dict[str, Any], attempts: int = 1) -> None:
            stop = outcome.get("stop")
            if stop:  # not this unit's failure: it stays to do, and the run ends here with the cause
                raise OutputError(stop["message"], errno=stop["errno"])
            if outcome["ok"]:
                summary.results[unit.id] = outcome["result"]
                summary.failed.pop(unit.id, None)
            else:
                summary.failed[unit.id] = outcome["reason"]
            if journal is not None:
                journal(UnitState(
                    unit.id, keys[unit.id], "done" if outcome["ok"] else "failed", outcome.get("result"),
                    outcome.get("reason", ""), outcome.get("seconds", 0.0), attempts,
                    output_checks(outcome.get("result")) if outcome["ok"] else None))
            parts = [f"[dim]{skipped} already done"] if skipped else []
            if summary.failed:
                parts.append(f"[red]{len(summary.failed)} failed")
            progress.update(task, advance=1, extra="  ".join(parts))

        if not todo:
            return
        if executor.mode == "inprocess":
            from minescape.geo.handles import session

            with session():  # files shared by the units opened once; all closed when the run returns
                for unit in todo:
                    record(unit, execute_unit(unit, func))
        else:
            from minescape.runner_dask import run_on_dask

            run_on_dask(todo, func, executor=executor, on_outcome=record)

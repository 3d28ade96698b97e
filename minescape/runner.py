"""One executor for per-site and per-tile work.

A run is a list of :class:`Unit` s and a function that processes one unit, writes its outputs itself
(atomically) and returns a small JSON-able dict. A unit that raises is recorded as failed with a
one-line reason; the others go on. :func:`run_units` returns a :class:`RunSummary`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from minescape.errors import MinescapeError
from minescape.progress import make_progress


@dataclass(frozen=True)
class Unit:
    """One unit of work: a stable ``id``, picklable ``args`` and a ``fingerprint`` of its inputs+config."""

    id: str
    args: dict[str, Any]
    fingerprint: str = ""


@dataclass(frozen=True)
class Executor:
    """Where and how units run: ``inprocess`` (default), ``local`` (a local Dask cluster of ``workers``
    processes) or ``scheduler`` (an existing Dask scheduler address). ``run_dir`` records unit states so an
    interrupted run resumes."""

    mode: Literal["inprocess", "local", "scheduler"] = "inprocess"
    workers: int = 1
    scheduler: str | None = None
    run_dir: Path | None = None


@dataclass
class RunSummary:
    """Results by unit id, failures by unit id (one-line reasons)."""

    results: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no unit failed."""
        return not self.failed


def failure_reason(exc: BaseException) -> str:
    """One line describing a unit failure (user errors verbatim, others with their type)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MinescapeError):
        return text
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {text}{where}"


def run_units(
    units: Sequence[Unit],
    func: Callable[[Unit], Any],
    *,
    description: str = "units",
    executor: Executor | None = None,
) -> RunSummary:
    """Process ``units`` with a progress bar; failures are recorded, not raised.

    ``func`` must be a module-level (picklable) function of one :class:`Unit` that writes its outputs itself
    (atomically) and returns a small JSON-able result. Only the in-process mode exists so far.
    """
    executor = executor or Executor()
    if executor.mode != "inprocess":
        raise NotImplementedError(f"executor mode {executor.mode!r} is not available yet")
    summary = RunSummary()
    with make_progress() as progress:
        task = progress.add_task(description, total=len(units), extra="")
        for unit in units:
            try:
                summary.results[unit.id] = func(unit)
            except Exception as exc:  # one bad unit must not stop the run
                summary.failed[unit.id] = failure_reason(exc)
            progress.update(task, advance=1, extra=f"[red]{len(summary.failed)} failed" if summary.failed else "")
    return summary

"""Shared CLI plumbing: error handling (one line, exit 2), the --debug state, common options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer

from minescape.errors import InputError, MinescapeError, UnitFailed
from minescape.progress import err_console

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2
EXIT_PARTIAL = 3  # some units of a multi-unit run failed


class _State:
    debug: bool = False


state = _State()


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print ``error: message`` on one line (stderr) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn user errors into one stderr line and exit code 2 (a traceback only with --debug)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except (InputError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            if state.debug:
                raise
            msg = str(exc) if isinstance(exc, InputError) else f"{getattr(exc, 'filename', '') or ''}: " \
                f"{exc.strerror or exc}".lstrip(": ")
            raise fail(" ".join(msg.split())) from None
        except UnitFailed as exc:
            if state.debug:
                raise
            raise fail(" ".join(str(exc).split()), EXIT_PARTIAL) from None
        except MinescapeError as exc:
            if state.debug:
                raise
            raise fail(" ".join(str(exc).split())) from None

    return wrapper  # type: ignore[return-value]


# --- shared executor options (``--workers``, ``--scheduler``, ``--run-dir``) ---------------------------------

WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        help="Worker processes: 1 runs in this process; N > 1 starts a local Dask cluster of N processes.",
    ),
]
SchedulerOpt = Annotated[
    Optional[str],  # noqa: UP007 (Typer needs Optional on older Pythons)
    typer.Option(
        "--scheduler",
        help="Address of an existing Dask scheduler (e.g. tcp://host:8786); overrides --workers.",
    ),
]
RunDirOpt = Annotated[
    Optional[Path],  # noqa: UP007
    typer.Option(
        "--run-dir",
        help="Folder recording each unit's state; re-running the same command resumes (only missing or "
        "changed units run).",
    ),
]


def executor_from_options(workers: int = 1, scheduler: str | None = None, run_dir: Path | None = None):
    """Build a :class:`minescape.runner.Executor` from the shared CLI options.

    ``scheduler`` wins over ``workers``; ``workers > 1`` starts a local Dask cluster; otherwise units run in
    this process. ``run_dir`` (optional) makes the run resumable.
    """
    from minescape.runner import Executor

    if scheduler:
        return Executor(mode="scheduler", workers=workers, scheduler=scheduler, run_dir=run_dir)
    if workers > 1:
        return Executor(mode="local", workers=workers, run_dir=run_dir)
    return Executor(mode="inprocess", workers=1, run_dir=run_dir)

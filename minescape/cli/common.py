"""Shared CLI plumbing: error handling (one line, exit 2), the --debug state, common options."""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from minescape.errors import MinescapeError, UnitFailed
from minescape.progress import err_console

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2
EXIT_PARTIAL = 3  # some units of a multi-unit run failed
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, what Typer and shells give an interrupted command)
FAILURES_SHOWN = 20  # failed units printed one by one; the rest in one line pointing at the run's record


class _State:
    debug: bool = False
    main: bool = False  # the ``minescape`` program itself (:func:`run_main`), not a CliRunner in a test
    ended: str | None = None  # how the command ended: "completed", "failed" or "interrupted" (its line printed)
    late_interrupt: bool = False  # Ctrl-C after the command ended, while the process shut down


state = _State()


def print_failures(lines: Sequence[str], *, word: str = "failed", record: str | Path | None = None) -> None:
    """``<word>: <line>`` on stderr for the first :data:`FAILURES_SHOWN` lines (``<unit>: <reason>``, see
    :func:`unit_lines`), then one line for the rest naming ``record`` (the file that lists them all): a run of
    80,000 sites that all miss the DCM prints 21 lines, not 80,000."""
    items = list(lines)
    for line in items[:FAILURES_SHOWN]:
        err_console.print(f"{word}: {line}", markup=False, highlight=False)
    if len(items) > FAILURES_SHOWN:
        where = f" (all of them in {record})" if record is not None else ""
        err_console.print(f"{word}: {len(items) - FAILURES_SHOWN} more{where}", markup=False, highlight=False)


def unit_lines(failed: Mapping[str, str]) -> list[str]:
    """``<unit>: <reason>`` for each failed unit (the lines :func:`print_failures` prints)."""
    return [f"{unit}: {reason}" for unit, reason in failed.items()]


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print ``error: message`` on one line (stderr) and return the Exit to raise."""
    from rich.markup import escape

    # the message is text, not markup: "[x]" in a path stays, ":abc:" in an address is not an emoji
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, emoji=False, highlight=False,
                      soft_wrap=True)
    return typer.Exit(code)


def _os_error_line(exc: OSError) -> str:
    """One line for an OS error: the user's path(s) (never a temporary name) and the cause in words. A read
    that rasterio reports as ``Read failed. See previous exception for details.`` (a read site that did not name
    its file, :func:`minescape.geo.raster.corrupt_reads_named`) shows the GDAL error it chains, which starts
    with the file's name."""
    from minescape.atomic import _CAUSES, public_name

    names = [public_name(n) for n in (exc.filename, exc.filename2) if n is not None]
    chained = str(exc.__cause__) if exc.__cause__ is not None and not names else ""
    cause = _CAUSES.get(exc.errno) or exc.strerror or chained or str(exc)
    return public_name(f"{' -> '.join(names)}: {cause}" if names else cause)


def error_line(exc: BaseException) -> str:
    """The one line a user sees for ``exc`` (whitespace folded, temporary names replaced by final ones)."""
    from minescape.atomic import public_name

    if isinstance(exc, OSError) and not isinstance(exc, MinescapeError):
        text = _os_error_line(exc)
    else:
        text = public_name(str(exc))
    return " ".join(text.split())


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one stderr line, ``warning: <message>`` (the category named unless it is a UserWarning, no
    source line): the same shape as the error lines. ``--debug`` keeps Python's own format."""
    text = " ".join(str(message).split())
    kind = "" if category is UserWarning else f" ({category.__name__})"
    sys.stderr.write(f"warning: {text}{kind}\n")


def handle_errors(func: F) -> F:
    """Turn user errors into one stderr line and exit code 2 (a traceback only with --debug).

    User errors are the project's :class:`~minescape.errors.InputError` and
    :class:`~minescape.errors.OutputError`, and every ``OSError`` (missing file, no permission, disk full,
    read-only file system, a file where a folder is expected and the reverse): the line names the user's path
    and the cause. A :class:`~minescape.errors.UnitFailed` exits with 3. Ctrl-C during a multi-unit run
    (:class:`~minescape.runner.RunInterrupted`) prints one line, how far it got and whether the same command
    resumes, and exits with 130 like any other Ctrl-C (which Typer turns into 130 without a word).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ended = "failed"
        try:
            with warnings.catch_warnings():
                if not state.debug:
                    warnings.showwarning = _warning_line
                result = func(*args, **kwargs)
            ended = "completed"
            return result
        except typer.Exit as exc:
            ended = "completed" if exc.exit_code == 0 else "failed"
            raise
        except typer.Abort:
            raise
        except KeyboardInterrupt as exc:
            if state.debug:
                raise
            ended = "interrupted"
            err_console.print(interrupted_line(exc), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except UnitFailed as exc:
            if state.debug:
                raise
            raise fail(error_line(exc), EXIT_PARTIAL) from None
        except (MinescapeError, OSError) as exc:
            if state.debug:
                raise
            raise fail(error_line(exc)) from None
        finally:
            if state.main:
                _guard_shutdown(ended)

    return wrapper  # type: ignore[return-value]


def interrupted_line(exc: KeyboardInterrupt) -> str:
    """The line printed for a Ctrl-C: for a :class:`~minescape.runner.RunInterrupted` its counts, then how to go on;
    for another ``KeyboardInterrupt`` its own words (what a command had done when it came), or just that."""
    from minescape.runner import RunInterrupted

    if not isinstance(exc, RunInterrupted):
        text = " ".join(str(exc).split())
        return f"interrupted: {text}" if text else "interrupted"
    if exc.run_dir is not None:
        return f"interrupted: {exc}; the same command again does the rest (recorded in {exc.run_dir})"
    return f"interrupted: {exc}; not recorded (with --run-dir DIR the same command again would do only the rest)"


# --- Ctrl-C once the command has ended -----------------------------------------------------------------------
# After the command returns, the process still shuts down: Typer returns, non-daemon threads are joined, atexit
# callbacks run (a Dask cluster's close), then the interpreter tears its modules down with SIGINT back at its
# default action, where a Ctrl-C ended the process silently (-SIGINT, "130" in a shell, no line). From the end of
# the command a Ctrl-C prints one line, shutdown goes on (a further Ctrl-C is ignored: the outputs are already
# written, and cutting the cleanup short could leave worker processes behind) and the process exits with 130.


def run_main(app: typer.Typer, *, prog_name: str | None = None) -> None:
    """Run the ``minescape`` program: ``app`` with the shutdown guard (:func:`_guard_shutdown`); never returns.
    ``prog_name``: the name in usage lines (``python -m minescape`` gives ``minescape``, not click's guess)."""
    import atexit

    state.main = True
    atexit.register(_last_at_exit)  # registered before any command's own: runs after them, last
    sys.exit(app(prog_name=prog_name))


def _guard_shutdown(ended: str) -> None:
    """From the end of the command (``ended``: how it ended) to the end of the process, a Ctrl-C prints one line
    (none after an interrupted command, which printed its own) and the exit status becomes 130."""
    import signal

    state.ended = ended
    signal.signal(signal.SIGINT, _late_sigint)


def _late_sigint(signum, frame) -> None:
    if state.late_interrupt or state.ended == "interrupted":
        state.late_interrupt = True
        return
    state.late_interrupt = True
    what = ("after the command completed: its outputs are complete" if state.ended == "completed"
            else "after the command ended (its error is above)")
    sys.stderr.write(f"interrupted while exiting, {what}\n")
    sys.stderr.flush()


def _last_at_exit() -> None:
    """The last atexit callback: from here the interpreter only tears its modules down, with no Python signal
    handler; a Ctrl-C is ignored (rather than ending the process silently). After a Ctrl-C during shutdown the
    process ends here with 130."""
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if state.late_interrupt:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(EXIT_INTERRUPTED)


OverviewsOpt = typer.Option(
    True,
    "--overviews/--no-overviews",
    help="Build the output GeoTIFFs' internal overviews, so QGIS draws them zoomed out without reading every "
    "pixel (change detect on a 10980 x 10980 pair: about x1.2 the time, built in a process of their own during the "
    "second pass; the masks' cost little).",
)


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
    str | None,  # noqa: UP007 (Typer needs Optional on older Pythons)
    typer.Option(
        "--scheduler",
        help="Address of an existing Dask scheduler (e.g. tcp://host:8786); overrides --workers.",
    ),
]
RunDirOpt = Annotated[
    Path | None,  # noqa: UP007
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


PREDICT_THREADS_HELP = ("Cores to use (default: every core this process may use). On a CPU that many tiles run at "
                        "once, one thread each: the outputs are the same bytes for any number.")

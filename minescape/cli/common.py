"""Shared CLI plumbing: error handling (one line, exit 2), the --debug state, common options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

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

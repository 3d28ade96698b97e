"""Rich progress bars and consoles shared by every long-running step (written to stderr)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

T = TypeVar("T")

err_console = Console(stderr=True, soft_wrap=True, highlight=False)


def progress_disabled() -> bool:
    """True when ``MINESCAPE_PROGRESS=0`` (quiet batch runs)."""
    return os.environ.get("MINESCAPE_PROGRESS", "1") == "0"


def make_progress(*, transient: bool = False, enabled: bool = True) -> Progress:
    """A Progress with description, bar, count, elapsed time and ETA; drawn unless ``enabled`` is False (a
    library call's ``progress=False``) or ``MINESCAPE_PROGRESS=0``.

    The description and the free text at the end (a unit's name, a loss) are cut with "…" to a quarter and a
    fifth of the terminal's width (at least 20 and 16 characters), so long names never squeeze out the bar and
    the counts (at 80 columns they did).
    """
    width = err_console.width
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}",
                   table_column=Column(max_width=max(20, width // 4), no_wrap=True, overflow="ellipsis")),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[extra]}", table_column=Column(max_width=max(16, width // 5), no_wrap=True,
                                                               overflow="ellipsis")),
        console=err_console,
        transient=transient,
        disable=not enabled or progress_disabled(),
    )


def track(items: Iterable[T], description: str, *, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total, extra="")
        for item in items:
            yield item
            progress.advance(task)

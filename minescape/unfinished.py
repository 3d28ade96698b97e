"""Mark an output folder while a run writes into it, so nothing downstream takes a half-made run for a finished one.

A run that writes many files into its folder (``lulc classify``: one class map per site, then ``sites.json`` and
``report/``) cannot replace them all in one rename. Interrupted part-way (Ctrl-C, a kill, a full disk), its folder
holds new maps beside an earlier run's, under a ``sites.json`` that still lists the earlier run as complete, or,
for a first run, maps with no listing at all. :func:`running` writes the marker file :data:`MARKER` (which names
the command) before the first output and removes it once the run has finished; :func:`check_finished` refuses a
marked folder in one line, and the marker stays until a run into the folder completes. ``lulc classify``,
``change detect`` and ``change predict`` mark their folders; ``publish``, ``report``, ``lulc evaluate`` and the
``change`` commands that read a mask (:func:`check_finished_output`) check it before they read a run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from minescape.atomic import atomic_write_text
from minescape.errors import InputError

#: The marker's name in the run's output folder (hidden: it exists only while, or because, a run did not finish).
MARKER = ".minescape-unfinished.json"


@contextlib.contextmanager
def running(out_dir: Path, command: str) -> Iterator[None]:
    """Mark ``out_dir`` as being written by ``command`` (e.g. ``"minescape lulc classify"``) for the block; the
    mark is removed when the block ends normally and stays when it raises or the process dies, unless the folder
    then holds nothing else (refused before anything was written: no folder is left that holds only a marker)."""
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    marker = out_dir / MARKER
    atomic_write_text(marker, json.dumps({"command": command}) + "\n")
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            if [p.name for p in out_dir.iterdir()] == [MARKER]:
                marker.unlink()
                if created:
                    out_dir.rmdir()
        raise
    marker.unlink(missing_ok=True)


def unfinished_command(folder: Path) -> str | None:
    """The command whose run into ``folder`` did not finish, or None when the folder carries no marker (a run
    of another version, or one that is not marked, counts as finished)."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return None
    try:
        command = json.loads(marker.read_text(encoding="utf-8")[:4096]).get("command")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        command = None
    return command if isinstance(command, str) and command.startswith("minescape ") else "minescape"


def unfinished_reason(folder: Path) -> str | None:
    """The one-line reason ``folder`` cannot be read as a finished run, or None."""
    command = unfinished_command(folder)
    if command is None:
        return None
    return (f"the '{command}' run into this folder did not finish (interrupted, or stopped by an error), so it "
            "may hold outputs of two runs; run it again into this folder first")


def check_finished(folder: Path) -> None:
    """Raise :class:`InputError` naming ``folder`` when a run into it did not finish (:func:`running`)."""
    reason = unfinished_reason(folder)
    if reason is not None:
        raise InputError(reason, path=folder)


def check_finished_output(path: Path) -> None:
    """Raise :class:`InputError` when ``path`` (an output file of a run, like ``OUT/change_mask.tif``, or a folder
    of them) is in a folder that a run into it did not finish (:func:`running`)."""
    path = Path(path)
    check_finished(path if path.is_dir() else path.parent)

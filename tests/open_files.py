"""What this process holds open, for tests that check a call leaves no file open behind it."""

from __future__ import annotations

import os
from pathlib import Path


def open_files_under(folder: str | Path) -> list[str]:
    """This process's open descriptors on files under ``folder`` (deleted ones included, as ``... (deleted)``);
    needs ``/proc/self/fd`` (Linux)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            out.append(target)
    return out

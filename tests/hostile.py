"""Planting hostile files for tests: pickles whose loading would run code, and tiny or read-only file systems.

Used by every test that proves a loader never runs code from a file users exchange (map checkpoints, LULC
model JSON, change models and checkpoints) and by the disk-full / read-only tests. Each planting helper also
proves that its payload is live: loading the planted bytes with an unsafe loader in a separate process does
create the marker, so a test that finds no marker is not vacuous.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


class Payload:
    """An object whose unpickling calls ``exec`` to create ``marker`` (a file): arbitrary code from a file."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def pickle_bytes(marker: str | Path) -> bytes:
    """A pickle (protocol 2) that creates ``marker`` when loaded with ``pickle.loads``."""
    return pickle.dumps(Payload(marker), protocol=2)


def plant_pickle(path: str | Path, marker: str | Path) -> Path:
    """Write a bare pickle at ``path`` (whatever its extension) that would create ``marker``; prove it would."""
    path, marker = Path(path).absolute(), Path(marker).absolute()
    path.write_bytes(pickle_bytes(marker))
    _prove(f"import pickle; pickle.loads(open({str(path)!r}, 'rb').read())", marker)
    return path


def plant_torch(path: str | Path, marker: str | Path, payload: dict | None = None) -> Path:
    """Write a real ``torch.save`` file at ``path`` whose dict (``payload``, e.g. a checkpoint's keys) holds the
    :class:`Payload` under ``"evil"``: ``torch.load(weights_only=False)`` would create ``marker``; prove it."""
    import torch

    path, marker = Path(path).absolute(), Path(marker).absolute()
    buf = io.BytesIO()
    torch.save({**(payload or {}), "evil": Payload(marker)}, buf)
    path.write_bytes(buf.getvalue())
    _prove(f"import torch; torch.load({str(path)!r}, map_location='cpu', weights_only=False)", marker)
    return path


def _prove(code: str, marker: str | Path) -> None:
    """Run ``code`` (an unsafe load) in a fresh interpreter; the marker must appear; then remove it."""
    marker = Path(marker)
    assert not marker.exists(), marker
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                   cwd=Path(__file__).resolve().parents[1])
    assert marker.exists(), f"the planted payload is not live: {code}"
    marker.unlink()


# --------------------------------------------------------------------------- tiny and read-only file systems

def can_mount() -> bool:
    """True when this process may mount a tmpfs (root, or CAP_SYS_ADMIN)."""
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def small_fs(folder: Path, *, kib: int = 64, readonly: bool = False) -> Iterator[Path]:
    """Mount a ``kib`` KiB tmpfs on ``folder`` (read-only with ``readonly``) for the block; skip when this
    process cannot mount (a real disk-full or read-only condition needs a real file system)."""
    if not can_mount():
        pytest.skip("needs a tmpfs mount (root) for a real disk-full / read-only file system")
    folder.mkdir(parents=True, exist_ok=True)
    opts = f"size={kib}k" + (",ro" if readonly else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def one_error_line(output: str) -> str:
    """The single ``error:`` line of a CLI output (asserts there is exactly one and no traceback)."""
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    assert ".tmp-" not in output, output
    return lines[0]


__all__ = ["Payload", "can_mount", "one_error_line", "pickle_bytes", "plant_pickle", "plant_torch", "small_fs"]

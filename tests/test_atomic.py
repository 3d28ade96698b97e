"""Atomic outputs: a writer killed outright leaves a temporary file that the next write of the same target
removes; live writers' and other targets' temporary files are left alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from minescape.atomic import atomic_write_text, sweep_stale

WRITER = textwrap.dedent("""
    import os, signal, sys, time
    from minescape.atomic import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("half-written")
        print(tmp, flush=True)
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
""")


def _writer(target: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), mode], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    return proc, Path(proc.stdout.readline().strip())


def test_killed_writer_leftover_is_swept_by_the_next_write(tmp_path):
    target, other = tmp_path / "map.tif", tmp_path / "other.tif"
    live, live_tmp = _writer(target, "sleep")  # first: a writer sweeps the target's dead leftovers itself
    killed, stale = _writer(target, "kill")
    killed.wait(30)
    killed_other, stale_other = _writer(other, "kill")
    killed_other.wait(30)
    try:
        assert stale.exists() and stale_other.exists() and live_tmp.exists()
        assert not target.exists()  # nothing half-written under the final name
        atomic_write_text(target, "done")
        assert target.read_text() == "done"
        assert not stale.exists()  # dead writer of this target: removed
        assert live_tmp.exists()  # a live writer's file is not touched
        assert stale_other.exists()  # another target's leftover waits for that target's next write
        assert sweep_stale(other) == [stale_other] and not stale_other.exists()
    finally:
        live.kill()
        live.wait(30)
    assert sweep_stale(target) == [live_tmp]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]


def test_a_folder_is_listed_once_per_process_not_once_per_write(tmp_path, monkeypatch):
    """Writing n files into one folder must not list it n times (O(n²) for a folder of patches or site maps)."""
    import os

    import minescape.atomic as atomic

    calls = []
    real = os.scandir
    monkeypatch.setattr(atomic.os, "scandir", lambda p: calls.append(p) or real(p))
    for i in range(50):
        atomic_write_text(tmp_path / f"f{i}.json", "{}")
    assert calls == [tmp_path] and len(list(tmp_path.iterdir())) == 50

"""The process pool: a script without the ``__main__`` guard gets one clear error, workers keep their files open."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from minescape.geo.raster import Raster, write_raster

ROOT = Path(__file__).resolve().parents[1]

BODY = """
import os
print("top-level code runs", flush=True)
from minescape.parallel import ordered_map
"""
CALL = "print('sum', sum(ordered_map(abs, range(-5, 5), workers=2)), flush=True)\n"


def _run(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(source)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_script_without_main_guard_gets_one_clear_error(tmp_path):
    """Workers start by running the caller's script again; without the guard each would call minescape again and
    die (BrokenProcessPool, a traceback a worker). The script is refused before any worker starts."""
    guarded = _run(tmp_path, BODY + "if __name__ == '__main__':\n    " + CALL)
    assert guarded.returncode == 0, guarded.stderr
    lines = guarded.stdout.splitlines()
    assert "sum 25" in lines and lines.count("top-level code runs") == 3  # each worker ran the script again
    bare = _run(tmp_path, BODY + CALL)
    assert bare.returncode == 1
    assert bare.stdout.splitlines() == ["top-level code runs"]  # no worker started, so nothing ran again
    last = bare.stderr.strip().splitlines()[-1]
    assert last.startswith("minescape.errors.MainGuardError: ") and "script.py" in last
    assert 'if __name__ == "__main__":' in last and "workers=1" in last
    assert "BrokenProcessPool" not in bare.stderr and bare.stderr.count("Traceback") == 1


def test_interactive_and_guarded_callers_are_not_refused(tmp_path):
    """``python -c`` (as a notebook: no file to import again) and a guarded script are not claimed."""
    code = "from minescape.parallel import unguarded_main_script as u; print(u())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}).stdout.strip()
    assert out == "None"
    script = tmp_path / "g.py"
    script.write_text(f"import sys\n{code}\nif __name__ == '__main__':\n    pass\n")
    assert _run(tmp_path, script.read_text()).stdout.strip() == "None"
    script.write_text(code + "\n")
    assert _run(tmp_path, script.read_text()).stdout.strip().endswith("script.py")


def read_in_worker(path: str) -> tuple[int, bool, int]:
    """(readers this worker has opened, whether a reader-pool session is open, the file's first value)."""
    from minescape.geo.handles import borrow, pool

    with borrow(path) as src:
        value = int(src.read(1)[0, 0])
    return pool().opened, pool().in_session(), value


def test_a_worker_opens_a_file_once_for_all_its_tasks(tmp_path):
    """Each worker holds one reader-pool session for its life: outside a session a reader is closed when given
    back, so without it a worker would reopen its files for every window."""
    from minescape.parallel import ordered_map

    path = tmp_path / "x.tif"
    write_raster(Raster(np.full((1, 4, 5), 9, np.uint16), CRS.from_epsg(32633),
                        Affine(10, 0, 500000, 0, -10, 4000000), 0), path)
    got = list(ordered_map(read_in_worker, [str(path)] * 12, workers=2))
    assert all(in_session and value == 9 for _, in_session, value in got)
    assert max(opened for opened, _, _ in got) == 1  # every task of a worker reused its one reader

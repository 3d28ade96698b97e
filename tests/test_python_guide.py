"""docs/python.md runs as written, and a notebook's process is as it left it afterwards (torch threads,
deterministic mode and random stream, matplotlib backend and figures, GDAL's block cache, open input files,
progress output with MINESCAPE_PROGRESS=0)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "python.md"

CHECKS = '''
import os, sys
import matplotlib.pyplot as plt
import torch
from rasterio.env import get_gdal_config

problems = []
if matplotlib.get_backend().lower() != "svg":
    problems.append(f"backend switched to {matplotlib.get_backend()}")
if plt.get_fignums():
    problems.append(f"{len(plt.get_fignums())} figures left in pyplot")
if torch.get_num_threads() != 1:
    problems.append(f"torch threads {torch.get_num_threads()} (set 1)")
if torch.are_deterministic_algorithms_enabled():
    problems.append("torch deterministic mode left on")
if not torch.equal(torch.rand(3), EXPECTED):
    problems.append("torch's random stream moved")
if int(get_gdal_config("GDAL_CACHEMAX")) != CACHE:
    problems.append(f"GDAL cache {get_gdal_config('GDAL_CACHEMAX')} (was {CACHE})")
held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")]
held = [p for p in held if p.startswith(str(work))]
if held:
    problems.append(f"{len(held)} files of the run still open: {held[:3]}")
print("PROBLEMS:", problems)
'''

PRELUDE = '''
import matplotlib
matplotlib.use("svg")  # the caller's backend (a notebook's would be inline)
import torch
from rasterio.env import get_gdal_config
torch.set_num_threads(1)
torch.manual_seed(3)
EXPECTED = torch.rand(3)
torch.manual_seed(3)
CACHE = int(get_gdal_config("GDAL_CACHEMAX"))
'''


def test_the_python_guide_runs_and_leaves_the_process_as_it_was(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(blocks) >= 6  # the guide's examples are there to run
    script = tmp_path / "guide.py"
    script.write_text(PRELUDE + "\n".join(blocks) + CHECKS)
    env = {**os.environ, "MINESCAPE_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PROBLEMS: []" in proc.stdout, proc.stdout[-2000:]
    assert proc.stderr.strip() == "", proc.stderr[-2000:]  # MINESCAPE_PROGRESS=0: no bar, and no warning either

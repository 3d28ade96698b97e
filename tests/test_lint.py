"""The code passes ruff with the project's rules (``[tool.ruff]`` in pyproject.toml, pinned in requirements.lock)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ("minescape", "tests", "bench", "experiments")


def _ruff() -> str:
    beside = Path(sys.executable).with_name("ruff")  # the venv's own
    found = str(beside) if beside.exists() else shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (requirements.lock pins it: make venv)")
    return found


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_ruff(), "check", "--no-cache", "--output-format", "concise", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_ruff_reports_a_planted_problem(tmp_path):
    """First, the check sees what it should: an undefined name and unsorted imports under the project's rules."""
    bad = tmp_path / "planted.py"
    bad.write_text('"""Planted."""\n\nimport sys\nimport os\n\nprint(undefined_name, os, sys)\n')
    res = _check("--config", str(ROOT / "pyproject.toml"), str(bad))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "F821" in res.stdout and "I001" in res.stdout


def test_the_code_passes_ruff():
    files = [p for tree in TREES for p in (ROOT / tree).rglob("*.py")]
    assert len(files) > 200  # the trees are there to be checked
    res = _check(*TREES)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-1000:]

"""Ctrl-C at the very end of a run, once its outputs are complete (while it writes its report, or while the process
shuts down: thread joins, atexit, a Dask cluster's close): one line on stderr, exit 130, no traceback; never a
silent death by SIGINT (:func:`minescape.cli.common.run_main`). Real processes, real SIGINTs to the process group,
as a terminal's Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from minescape.unfinished import MARKER

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")

MAIN = "from minescape.cli.app import main; main()"


def _interrupt_at_line(code: str, args: list[str], starts: str, *, before_sigint=None) -> tuple[int, str, str]:
    """Run ``python -c code args`` in its own process group; as soon as stdout has a line starting with
    ``starts``, SIGINT the group. Returns the exit code, stdout and stderr."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, "MINESCAPE_PROGRESS": "0"})
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if line.startswith(starts):
                if before_sigint is not None:
                    before_sigint()
                os.killpg(proc.pid, signal.SIGINT)
                break
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert any(line.startswith(starts) for line in out), (out, proc.stderr)
    return proc.returncode, "".join(out) + rest, err


def _one_line(err: str) -> str:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_ctrl_c_while_the_process_shuts_down_is_one_line_and_130():
    """A command that has completed, then a thread the interpreter joins at exit (what a Dask cluster's threads
    are): the Ctrl-C lands in the join, once the main thread has finished (it says so on stdout)."""
    code = ("import sys, threading, time\n"
            "def late():\n"
            "    while threading.main_thread().is_alive():\n"
            "        time.sleep(0.01)\n"
            "    print('shutting down', flush=True)\n"
            "    time.sleep(3)\n"
            "threading.Thread(target=late).start()\n" + MAIN)
    rc, _, err = _interrupt_at_line(code, ["legend", "mining_lulc"], "shutting down")
    assert rc == 130, err
    assert _one_line(err) == "interrupted while exiting, after the command completed: its outputs are complete"


def test_ctrl_c_as_a_detect_run_completes_is_one_line_and_130(small_region, tmp_path):
    out = tmp_path / "det"
    rc, stdout, err = _interrupt_at_line(MAIN, ["change", "detect", str(small_region.t1), str(small_region.t2),
                                                str(out)], "wrote ")
    assert rc == 130, (stdout, err)
    line = _one_line(err)
    assert line.startswith("interrupted"), line
    assert (out / "change_mask.tif").is_file() and not (out / MARKER).exists()
    if "report" in line:  # it landed while the report was written: none is left of an earlier run either
        assert str(out) in line and not (out / "report.html").exists()


def test_ctrl_c_as_a_classify_run_completes_is_one_line_and_130(small_region, tmp_path):
    out = tmp_path / "lulc"
    args = ["lulc", "classify", str(small_region.sites), str(out), "--dcm", str(small_region.dcm_dh), "--dcm-year",
            str(small_region.dcm_year), "--no-quicklook", "-s", str(small_region.scene_dir)]

    def complete():  # the completion line comes once the run has removed its marker
        assert not (out / MARKER).exists() and (out / "sites.json").is_file()

    rc, stdout, err = _interrupt_at_line(MAIN, args, f"{out / 'maps'}: ", before_sigint=complete)
    assert rc == 130, (stdout, err)
    line = _one_line(err)
    assert line.startswith("interrupted"), line
    assert len(list((out / "maps").glob("*.tif"))) == 2

"""Ctrl-C of a run on a local Dask cluster: one line and exit 130 like an in-process run, no worker left behind.

A terminal sends SIGINT to the whole foreground process group, the cluster's worker processes included; they must
leave it to the client (``runner_dask.sigint_blocked_for_new_threads``), which cancels, closes the cluster quietly
and exits with 130 (``runner_dask._shut_down``, ``runner.RunInterrupted``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minescape.runner import Executor, Unit, run_units
from minescape.runner_dask import sigint_deferred
from minescape.runstate import read_states

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask") or not Path("/proc/self/status").exists(),
                                reason="POSIX signal masks and /proc (Linux)")

N_SITES = 8


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    """A synthetic region of 8 sites: units that take long enough (0.5-3 s each on 2 workers) to interrupt."""
    from minescape.synthetic import RegionConfig, generate

    return generate(tmp_path_factory.mktemp("region8"), RegionConfig(seed=7, width=400, height=320, n_sites=N_SITES))


def _blocked_signals() -> set[int]:
    """Signals blocked in this process's main thread, from ``/proc`` (what a worker process was started with)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("SigBlk:"))
    bits = int(line.split()[1], 16)
    return {n for n in range(1, 65) if bits >> (n - 1) & 1}


def worker_signals(unit: Unit) -> dict:
    """Where a unit runs: its process, and whether SIGINT is blocked there."""
    return {"pid": os.getpid(), "sigint_blocked": signal.SIGINT in _blocked_signals()}


def test_workers_block_sigint_and_the_callers_handler_and_mask_are_kept():
    """Worker processes start with SIGINT blocked; the caller's own handler and its thread's mask are untouched."""
    seen = []

    def handler(signum, frame):  # a caller's (a notebook's) own handler
        seen.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        summary = run_units([Unit("u0", {}), Unit("u1", {})], worker_signals,
                            executor=Executor(mode="local", workers=1))
        assert summary.ok
        assert {r["pid"] for r in summary.results.values()} != {os.getpid()}  # really ran in a worker process
        assert all(r["sigint_blocked"] for r in summary.results.values())
        assert signal.getsignal(signal.SIGINT) is handler
        assert signal.pthread_sigmask(signal.SIG_BLOCK, ()) == mask
        assert signal.SIGINT not in _blocked_signals()
        assert seen == []
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigint_deferred_holds_a_ctrl_c_until_the_block_ends():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # several: one KeyboardInterrupt
            time.sleep(0.05)
            reached.append("end of block")
    assert reached == ["end of block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with sigint_deferred(redeliver=False):  # dropped (while an interrupted cluster closes)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _descendants(pid: int):
    import psutil

    return psutil.Process(pid).children(recursive=True)


def test_ctrl_c_of_a_workers_run_is_one_line_exit_130_and_leaves_no_worker(region, tmp_path):
    out, run_dir = tmp_path / "out", tmp_path / "run"
    args = ["lulc", "classify", str(region.sites), str(out), "--dcm", str(region.dcm_dh), "--dcm-year",
            str(region.dcm_year), "--workers", "2", "--run-dir", str(run_dir), "--no-report"]
    for scene in region.scenes:
        args += ["-s", str(scene)]
    proc = subprocess.Popen([sys.executable, "-c", "from minescape.cli.app import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "MINESCAPE_PROGRESS": "0"})
    try:
        deadline = time.monotonic() + 50
        while proc.poll() is None and time.monotonic() < deadline and not read_states(run_dir):
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        # work really started: a unit is recorded, and the workers are there
        assert 1 <= len(read_states(run_dir)) < N_SITES
        children = _descendants(proc.pid)
        workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 2, [c.cmdline() for c in children]
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    recorded = len(read_states(run_dir))
    assert 1 <= recorded < N_SITES  # it was interrupted in the middle
    assert lines[0].startswith(f"interrupted: {recorded} of {N_SITES} units done (classify sites); "), lines[0]
    assert str(run_dir) in lines[0]
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.05)
    assert [c.pid for c in children if _alive(c)] == []


def _alive(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

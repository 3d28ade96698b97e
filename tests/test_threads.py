"""The one place that decides how many threads a run uses."""

from __future__ import annotations

import os

import pytest

from minescape.errors import ConfigError
from minescape.threads import available_cores, resolve_threads


def test_default_is_the_cores_this_process_may_use():
    cores = len(os.sched_getaffinity(0))
    assert available_cores() == cores
    assert resolve_threads(None) == cores
    assert resolve_threads(1) == 1
    assert resolve_threads(cores) == cores


@pytest.mark.parametrize("bad", [0, -1, "many"])
def test_zero_negative_or_not_a_number_is_one_line(bad):
    with pytest.raises(ConfigError, match="--threads") as err:
        resolve_threads(bad)
    assert "\n" not in str(err.value)


def test_more_than_available_names_the_range():
    cores = available_cores()
    with pytest.raises(ConfigError, match=f"choose 1 to {cores}"):
        resolve_threads(cores + 1, what="--workers")


def test_automatic_workers_follow_the_work():
    from minescape.parallel import ordered_map, workers_for

    cores = available_cores()
    assert workers_for(3, per_worker=4) == 1  # too little work to start processes
    assert workers_for(10_000, per_worker=4) == cores
    assert workers_for(10_000, per_worker=4, limit=1) == 1
    assert workers_for(8, per_worker=4) == min(2, cores)
    # the process map keeps input order and chunks
    assert list(ordered_map(abs, range(-7, 3), workers=2, chunk=3, ahead=2)) == [abs(i) for i in range(-7, 3)]


def _spinner(cpu: int):
    """A real busy process pinned to ``cpu`` (started and confirmed running before returning)."""
    import subprocess
    import sys

    code = (f"import os, sys\nos.sched_setaffinity(0, {{{cpu}}})\nprint('spinning', flush=True)\n"
            "while True:\n    pass\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "spinning"
    return proc


def test_proc_stat_shares_cover_the_usable_cores():
    from minescape.threads import busy_core_shares

    shares = busy_core_shares(0.05)
    assert len(shares) == available_cores()
    assert all(0.0 <= s <= 1.0 for s in shares)


def test_prediction_threads_leave_out_a_core_another_process_keeps_busy():
    """A real spinning process on one usable core: the compute default drops that core (OpenMP threads sharing
    it would spin-wait), a chosen --threads is kept, and training keeps all cores (its bytes depend on them)."""
    from minescape.threads import busy_core_shares, compute_threads

    cores = available_cores()
    if cores < 2:
        pytest.skip("one usable core: nothing to leave out")
    cpu = sorted(os.sched_getaffinity(0))[-1]
    proc = _spinner(cpu)
    try:
        shares = busy_core_shares(0.2)
        assert max(shares) >= 0.5  # the spinner is seen (what the rule relies on)
        choice = compute_threads(None, sample_s=0.2)
        assert choice.busy >= 1 and choice.threads == cores - choice.busy
        assert "busy with other processes" in choice.note()
        assert compute_threads(cores).threads == cores  # the user's choice stands
        assert compute_threads(None, load_aware=False).threads == cores  # training: all cores
    finally:
        proc.kill()
        proc.wait()


def test_prediction_compute_names_the_load():
    pytest.importorskip("torch")
    from minescape.compute import resolve_compute

    cores = available_cores()
    if cores < 2:
        pytest.skip("one usable core: nothing to leave out")
    proc = _spinner(sorted(os.sched_getaffinity(0))[0])
    try:
        c = resolve_compute("cpu", "fp32")
        assert c.threads < cores and "busy" in c.note and "busy" in c.describe()
        assert resolve_compute("cpu", "fp32", workload="change-training").threads == cores
    finally:
        proc.kill()
        proc.wait()

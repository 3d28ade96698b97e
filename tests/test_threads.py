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


def test_prediction_takes_every_core_while_another_process_keeps_one_busy():
    """A real spinning process on one usable core: prediction's default still runs a tile on every core (one
    thread each, so none spin-waits on another; leaving the busy core out was measured the slower choice), and
    training keeps every core too."""
    pytest.importorskip("torch")
    from minescape.compute import resolve_compute

    cores = available_cores()
    if cores < 2:
        pytest.skip("one usable core: nothing another process could take")
    proc = _spinner(sorted(os.sched_getaffinity(0))[-1])
    try:
        c = resolve_compute("cpu", "fp32")
        assert (c.threads, c.tiles_at_once, c.op_threads) == (cores, cores, 1)
        assert "busy" not in c.describe()
        assert resolve_compute("cpu", "fp32", 1).tiles_at_once == 1  # the user's choice stands
        t = resolve_compute("cpu", "fp32", workload="change-training")
        assert (t.threads, t.tiles_at_once, t.op_threads) == (cores, 1, cores)
    finally:
        proc.kill()
        proc.wait()

"""How many threads (or worker processes) a single run may use: the one place that decides it.

The default is the cores this process may run on (``os.sched_getaffinity``; a container or ``taskset`` limit
counts, the machine's total does not). Asking for 0 or for more than those cores is a one-line
:class:`~minescape.errors.ConfigError` (the CLI's ``--threads`` / ``--workers`` options come here).

Compute threads (torch and onnxruntime, :func:`compute_threads`) also leave out the cores that other processes
keep busy when the run starts: their OpenMP threads spin-wait for each other, so two threads sharing a core
with another busy process ran 2.6x slower than one thread (bench/bench_deep_speed.py, ``loaded`` case).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

#: seconds over which /proc/stat is sampled to see which cores other processes keep busy
LOAD_SAMPLE_S = 0.1
#: a core counts as taken when other processes keep it busy at least this share of the sample
BUSY_SHARE = 0.5


def available_cores() -> int:
    """CPU cores this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def resolve_threads(n: int | None, *, what: str = "--threads") -> int:
    """The number of threads to use: ``n`` checked against the available cores, or all of them when None.

    Args:
        n: requested threads (None: every core this process may use).
        what: the option's name, for the error message.

    Raises:
        ConfigError: ``n`` < 1 or more than the available cores (the message gives the valid range).
    """
    from minescape.errors import ConfigError

    cores = available_cores()
    if n is None:
        return cores
    if isinstance(n, bool) or not isinstance(n, int):
        raise ConfigError(f"{what} must be a whole number from 1 to {cores} (got {n!r})")
    if n < 1 or n > cores:
        raise ConfigError(f"{what} {n} is not possible here: choose 1 to {cores} "
                          f"(the CPU cores this process may use)")
    return n


@dataclass(frozen=True)
class ThreadChoice:
    """Compute threads decided for one run: ``threads`` to use, and ``busy`` cores that other processes kept
    busy when it was decided (0 when the user chose, or where /proc/stat cannot be read)."""

    threads: int
    cores: int
    busy: int = 0

    def note(self) -> str:
        """A phrase for the run's output when the load lowered the default, else ``""``."""
        if not self.busy:
            return ""
        return (f"{self.busy} of {self.cores} cores busy with other processes: {self.threads} "
                f"thread{'s' if self.threads != 1 else ''} (--threads to choose)")


def compute_threads(n: int | None, *, load_aware: bool = True, what: str = "--threads",
                    sample_s: float = LOAD_SAMPLE_S) -> ThreadChoice:
    """Threads for torch/onnxruntime: ``n`` checked (:func:`resolve_threads`), or by default the available cores,
    less (with ``load_aware``) those other processes keep busy over ``sample_s`` seconds (at least 1 thread).

    Raises:
        ConfigError: as :func:`resolve_threads`.
    """
    cores = available_cores()
    if n is not None or not load_aware:
        return ThreadChoice(resolve_threads(n, what=what), cores)
    busy = min(cores - 1, round_busy(busy_core_shares(sample_s)))
    return ThreadChoice(cores - busy, cores, busy)


def round_busy(shares: list[float]) -> int:
    """How many cores count as taken: those busy at least :data:`BUSY_SHARE` of the sample."""
    return sum(1 for s in shares if s >= BUSY_SHARE)


def busy_core_shares(sample_s: float = LOAD_SAMPLE_S) -> list[float]:
    """For each core this process may use, the share (0-1) of ``sample_s`` seconds it spent busy, from two
    reads of ``/proc/stat`` (Linux); ``[]`` where that file is unavailable. Call it before this process
    starts computing: its own work would count too."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return []
    first = _cpu_ticks()
    if not first:
        return []
    time.sleep(sample_s)
    second = _cpu_ticks()
    shares = []
    for cpu in allowed:
        if cpu not in first or cpu not in second:
            continue
        (b0, t0), (b1, t1) = first[cpu], second[cpu]
        shares.append((b1 - b0) / (t1 - t0) if t1 > t0 else 0.0)
    return shares


def _cpu_ticks() -> dict[int, tuple[int, int]]:
    """``{cpu: (busy ticks, total ticks)}`` from /proc/stat; idle and iowait are not busy."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            cpu = int(name[3:])
            ticks = [int(v) for v in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        except ValueError:
            continue
        total = sum(ticks)
        out[cpu] = (total - ticks[3] - ticks[4], total)
    return out

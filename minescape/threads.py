"""How many threads (or worker processes) a single run may use: the one place that decides it.

The default is the cores this process may run on (``os.sched_getaffinity``; a container or ``taskset`` limit
counts, the machine's total does not), whatever other processes do: prediction runs one tile per thread, so no
thread spin-waits on another, and with one core kept busy by another process 2 tiles at once ran 1.3x faster
than 1 (bench/bench_deep_speed.py, ``loaded`` case; earlier releases left busy cores out, which was then the
slow choice). Asking for 0 or for more than those cores is a one-line :class:`~minescape.errors.ConfigError`
(the CLI's ``--threads`` / ``--workers`` options come here).
"""

from __future__ import annotations

import os


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

"""What every bench measures the same way: peak memory of the process that did the work, and summaries of
repeated, alternating runs (median, min, max).

Peak memory. ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is *not* the work's peak in a child process on
Linux: the kernel carries the parent's high-water mark across ``fork`` + ``exec`` (the signal struct's
``maxrss``), so a child started by a 3 GB parent reports at least 3 GB. ``VmHWM`` in ``/proc/self/status``
belongs to the process's current address space and starts again at ``exec``: that is the figure here. Work
spread over worker processes is measured by :class:`TreePeak`, which samples the summed resident memory of a
process and all its descendants (psutil) every few milliseconds.

Repeats. Each case runs in a fresh child process, cases alternate within each repeat (A B A B ...), and every
figure is reported as ``median (min-max, n runs)``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's own peak resident memory in MB (VmHWM; not inherited from the parent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


class TreePeak:
    """Peak of the summed RSS of this process and its descendants, sampled every ``interval`` s (a thread).

    Use as a context manager around work that starts worker processes; ``peak_mb`` afterwards. A sample can miss
    a peak shorter than the interval; the process's own VmHWM is a lower bound that never misses.

    ``cpu_seconds`` afterwards: CPU time (user + system) of the work, this process's and its workers' (their
    last sample: a worker's final ``interval`` may be missed). Unlike wall time it hardly depends on other jobs
    on the machine, so ``cpu(1 worker) / cpu(2 workers) x 2`` bounds the speed-up two idle cores would give.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self.cpu_seconds = 0.0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float:
        import psutil

        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                with p.oneshot():
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    self._cpu[p.pid] = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> TreePeak:
        t = os.times()
        self._own0 = t.user + t.system
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._sample(), peak_rss_mb())
        t = os.times()
        own = t.user + t.system - self._own0
        self.cpu_seconds = own + sum(v for pid, v in self._cpu.items() if pid != os.getpid())


def summary(values: Sequence[float]) -> dict:
    """``{median, min, max, n}`` of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(values: Sequence[float], unit: str = "", digits: int = 2) -> str:
    """``median (min-max, n runs)`` with ``unit``."""
    s = summary(values)
    return (f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f}{unit}, "
            f"{s['n']} run{'s' if s['n'] != 1 else ''})")


def ratio(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """Pairwise ratios of two equally long series of alternating runs (run i against run i)."""
    return [a / b for a, b in zip(num, den)]


def two_core_bound(cpu_one: Sequence[float], cpu_two: Sequence[float]) -> list[float]:
    """Per run, the speed-up two idle cores would give at most: ``2 x`` CPU seconds of the one-process run over
    those of the two-process run (parent and workers); hardly moved by other jobs on the machine."""
    return [2 * a / b for a, b in zip(cpu_one, cpu_two)]


def run_child(argv: Sequence[str], *, env: dict | None = None, cwd: str | None = None) -> dict:
    """Run ``argv`` (a Python child) and return the JSON object on its last ``RESULT`` line."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def emit(result: dict) -> None:
    """Print ``result`` as the child's ``RESULT`` line (with its own peak memory added)."""
    result.setdefault("peak_rss_mb", peak_rss_mb())
    print("RESULT " + json.dumps(result), flush=True)


def machine_line() -> str:
    """CPUs this process may use and the load average (benches print it: figures on a loaded machine lie)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: {cores} usable CPUs, load average {os.getloadavg()[0]:.1f} (1 min) at start; "
            f"python {sys.version.split()[0]}")


def export_tree(ref: str, work: Path) -> Path:
    """The source tree of git revision ``ref`` under ``work`` (exported once), for a baseline run beside this
    tree's: a child started with ``PYTHONPATH=<tree>`` imports that revision's ``minescape``."""
    root = Path(__file__).resolve().parents[1]
    sha = subprocess.run(["git", "rev-parse", ref], capture_output=True, text=True, cwd=root, check=True).stdout.strip()
    dest = work / f"baseline-{sha[:12]}"
    if not (dest / "minescape").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], capture_output=True, cwd=root, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest

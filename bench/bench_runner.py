"""Executor benchmark: scale-out, per-task overhead and resume, each as a ratio against a baseline run here.

1. Speed-up from 1 to 2 workers (local Dask cluster, cluster start-up included) on the per-site LULC chain
   (``minescape.lulc.pipeline.classify_sites``: site year, clearest scene, clipped stack, features, rules,
   post-processing, GeoTIFF) over 240 sites of a synthetic region; outputs compared byte for byte.
2. Per-task overhead of the Dask mode against in-process on trivial units:
   ``(t(N units) - t(1 unit)) / (N - 1)`` so cluster start-up and shutdown cancel out.
3. Resume: a run SIGKILLed at 50 % of its units, then the same command again; the resumed run's time against
   a full run.

Run with ``flock /tmp/minescape-heavy.lock .venv/bin/python bench/bench_runner.py`` (the machine is shared).
Options: ``--sites N`` (default 240), ``--trivial N`` (default 400), ``--only speedup,overhead,resume``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("MINESCAPE_PROGRESS", "0")

WORK = Path("/tmp/minescape-bench-runner")


def region(n_sites: int):
    """The synthetic region with ``n_sites`` sites (generated once, cached under /tmp)."""
    from minescape.synthetic import RegionConfig, generate, load_region_files

    root = WORK / f"region-{n_sites}"
    if (root / "region.json").exists():
        return load_region_files(root)
    scale = (n_sites / 240) ** 0.5  # 240 sites on 1600 x 1200 px: ~90 x 90 px per site
    return generate(root, RegionConfig(seed=11, width=max(64, int(1600 * scale)), height=max(64, int(1200 * scale)),
                                       n_sites=n_sites))


def classify(files, out: Path, executor) -> tuple[float, object]:
    from minescape.lulc.pipeline import classify_sites

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = classify_sites(files.sites, list(files.scenes), files.dcm_dh, files.dcm_year, out,
                                 executor=executor, config={"quicklook": False})
    return time.perf_counter() - t0, summary


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted((folder / "maps").glob("*.tif"))}


def bench_speedup(n_sites: int) -> None:
    from minescape.runner import Executor

    files = region(n_sites)
    from minescape.runner import Unit, run_units

    startup = {}
    for w in (1, 2):  # cluster start-up + shutdown, measured with one trivial unit
        t0 = time.perf_counter()
        run_units([Unit("one", {"i": 0})], trivial, executor=Executor(mode="local", workers=w))
        startup[w] = time.perf_counter() - t0
    t_in, s_in = classify(files, WORK / "lulc-inprocess", Executor())
    t1, s1 = classify(files, WORK / "lulc-w1", Executor(mode="local", workers=1))
    t2, s2 = classify(files, WORK / "lulc-w2", Executor(mode="local", workers=2))
    same = digests(WORK / "lulc-inprocess") == digests(WORK / "lulc-w1") == digests(WORK / "lulc-w2")
    print(f"[speed-up] per-site LULC chain, {n_sites} sites ({len(s2.results)} classified, {len(s2.failed)} failed)")
    print(f"  in-process          {t_in:7.1f} s")
    print(f"  local, 1 worker     {t1:7.1f} s   (baseline)")
    print(f"  local, 2 workers    {t2:7.1f} s   speed-up x{t1 / t2:.2f} (goal >= 1.7); vs in-process x{t_in / t2:.2f}")
    print(f"  without cluster start-up/shutdown ({startup[1]:.1f} s / {startup[2]:.1f} s): speed-up "
          f"x{(t1 - startup[1]) / (t2 - startup[2]):.2f}")
    print(f"  maps byte-identical across the three runs: {'yes' if same else 'NO'} ({len(digests(WORK / 'lulc-w2'))} maps)")


def trivial(unit) -> dict:
    """A unit that does nothing but return a small dict."""
    return {"i": unit.args["i"]}


def bench_overhead(n: int) -> None:
    import logging

    from distributed import LocalCluster

    from minescape.runner import Executor, Unit, run_units

    units = [Unit(f"u{i}", {"i": i}) for i in range(n)]
    t0 = time.perf_counter()
    run_units(units, trivial)
    t_in = time.perf_counter() - t0
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster:
        t_start = time.perf_counter() - t0
        ex = Executor(mode="scheduler", scheduler=cluster.scheduler_address)
        run_units(units[:2], trivial, executor=ex)  # warm the workers
        t0 = time.perf_counter()
        run_units(units, trivial, executor=ex)
        t_dask = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_units(units[:1], trivial, executor=Executor(mode="local", workers=2))
    t_local_one = time.perf_counter() - t0
    per_in, per_dask = t_in / n, t_dask / n
    print(f"[overhead] {n} trivial units (a function returning a small dict)")
    print(f"  in-process                      {per_in * 1000:8.3f} ms per task   (baseline)")
    print(f"  Dask, 2 workers (running)       {per_dask * 1000:8.3f} ms per task   = in-process + "
          f"{(per_dask - per_in) * 1000:.2f} ms (x{per_dask / per_in:.0f})")
    print(f"  local cluster start-up          {t_start:8.2f} s;  --workers 2 run of one unit (start, run, stop) "
          f"{t_local_one:.2f} s")
    # with a run folder: one atomic JSON state per unit
    run_dir = WORK / "overhead-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    run_units(units, trivial, executor=Executor(run_dir=run_dir))
    t_state = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = run_units(units, trivial, executor=Executor(run_dir=run_dir))
    t_skip = time.perf_counter() - t0
    print(f"  in-process + run folder: {t_state / n * 1000:.3f} ms per task (state write); re-run skipping all "
          f"{len(s.skipped)}: {t_skip:.2f} s")


def child(n_sites: int, out: str, run_dir: str) -> None:
    """The resumable command (run as a subprocess so it can be SIGKILLed)."""
    from minescape.runner import Executor

    files = region(n_sites)
    t, summary = classify_resumable(files, Path(out), Executor(run_dir=Path(run_dir)))
    print(json.dumps({"seconds": t, "skipped": len(summary.skipped), "done": len(summary.results),
                      "failed": len(summary.failed)}))


def classify_resumable(files, out: Path, executor):
    from minescape.lulc.pipeline import classify_sites

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = classify_sites(files.sites, list(files.scenes), files.dcm_dh, files.dcm_year, out,
                                 executor=executor, config={"quicklook": False})
    return time.perf_counter() - t0, summary


def _spawn(n_sites: int, out: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", str(out), str(run_dir), "--sites", str(n_sites)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def bench_resume(n_sites: int) -> None:
    from minescape.runstate import read_states

    region(n_sites)
    full_out, full_run = WORK / "resume-full", WORK / "resume-full-run"
    out, run_dir = WORK / "resume-out", WORK / "resume-run"
    for p in (full_out, full_run, out, run_dir):
        shutil.rmtree(p, ignore_errors=True)
    t0 = time.perf_counter()
    proc = _spawn(n_sites, full_out, full_run)
    full = json.loads(proc.communicate()[0])
    t_full = time.perf_counter() - t0

    proc = _spawn(n_sites, out, run_dir)
    half = n_sites // 2
    t0 = time.perf_counter()
    while proc.poll() is None:
        if len(read_states(run_dir)) >= half:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t_killed = time.perf_counter() - t0
    states = len(read_states(run_dir))
    t0 = time.perf_counter()
    proc = _spawn(n_sites, out, run_dir)
    resumed = json.loads(proc.communicate()[0])
    t_resume = time.perf_counter() - t0
    same = digests(out) == digests(full_out)
    print(f"[resume] LULC chain, {n_sites} sites, in-process; process start-up included in each time")
    print(f"  full run                    {t_full:7.1f} s   (baseline; {full['done']} sites)")
    print(f"  killed (SIGKILL) after      {t_killed:7.1f} s   with {states} of {n_sites} unit states recorded")
    print(f"  same command again          {t_resume:7.1f} s   = {t_resume / t_full:.2f} x full run "
          f"({resumed['skipped']} skipped, {resumed['done'] - resumed['skipped']} run)")
    print(f"  maps byte-identical to the uninterrupted run: {'yes' if same else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=240)
    parser.add_argument("--trivial", type=int, default=400)
    parser.add_argument("--only", default="speedup,overhead,resume")
    parser.add_argument("--child", nargs=2, metavar=("OUT", "RUN_DIR"))
    args = parser.parse_args()
    if args.child:
        child(args.sites, *args.child)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    wanted = args.only.split(",")
    if "overhead" in wanted:
        bench_overhead(args.trivial)
    if "speedup" in wanted:
        bench_speedup(args.sites)
    if "resume" in wanted:
        bench_resume(args.sites)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

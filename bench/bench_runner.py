"""Executor benchmark: per-site throughput, scale-out, per-task overhead and resume, each as a ratio against a
baseline run here, every figure the median of alternating runs with min and max (``bench/measure.py``).

1. ``inprocess``: the per-site LULC chain (``minescape.lulc.pipeline.classify_sites``: site year, clearest
   scene, clipped stack, features, rules, post-processing, GeoTIFF) over the synthetic region's 240 sites, in
   this process, each run in a fresh child (imports outside the timing). With ``--baseline REF`` the same
   runs alternate with the code of git revision REF (exported under /tmp) and the ratio is printed.
2. ``speedup``: 1 -> 2 workers of a local Dask cluster on the same 240 sites, ``--rounds`` alternating rounds
   (default 5). Per round and worker count: cluster start + a first run (end to end, what a user waits
   for), then a second run on the warm cluster (steady state, what 80,000 sites see). Maps compared byte for
   byte across every run.
3. ``project``: 80,000 real mine polygons with LightGBM on 2 cores, projected (see :func:`bench_project`).
4. ``overhead``: per-task overhead of the Dask mode against in-process on trivial units:
   ``(t(N units) - t(1 unit)) / (N - 1)`` so cluster start-up and shutdown cancel out.
5. ``resume``: a run SIGKILLed at 50 % of its units, then the same command again; the resumed run's time
   against a full run.

Run: ``python bench/bench_runner.py`` (all, about 4 min idle on 2 cores), ``--only inprocess --baseline
d186f4d`` (3x goal, ~1 min), ``--only speedup`` (1.7x goal, ~2 min), ``--only project`` (~2 min).
Options: ``--sites N`` (default 240), ``--rounds N``, ``--trivial N`` (default 400).
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

WORK = Path(os.environ.get("MINESCAPE_BENCH_DIR", "/tmp/minescape-bench-runner"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


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


def _inprocess_child(n_sites: int, out: str) -> None:
    """One timed in-process run (a child of :func:`bench_inprocess`; ``minescape`` from its PYTHONPATH)."""
    from measure import emit

    from minescape.runner import Executor

    files = region(n_sites)
    import minescape.lulc.pipeline  # noqa: F401  (imports are not what we measure)

    t, summary = classify(files, Path(out), Executor())
    emit({"seconds": t, "ok": len(summary.results), "failed": len(summary.failed), "digests": digests(Path(out))})


def bench_inprocess(n_sites: int, rounds: int, baseline: str | None) -> None:
    from measure import export_tree, fmt, ratio, run_child

    region(n_sites)
    root = str(Path(__file__).resolve().parents[1])
    trees = {"this tree": root}
    if baseline:
        trees[f"baseline {baseline}"] = str(export_tree(baseline, WORK))
    times: dict[str, list[float]] = {k: [] for k in trees}
    maps: dict[str, dict] = {}
    for _ in range(rounds):
        for name, tree in trees.items():  # alternate the trees within each round
            r = run_child([sys.executable, __file__, "--inprocess-child", str(WORK / "inproc-out"),
                           "--sites", str(n_sites)], env={"PYTHONPATH": tree}, cwd=str(Path(__file__).parent))
            assert r["failed"] == 0, r
            times[name].append(r["seconds"])
            maps.setdefault(name, r["digests"])
            assert r["digests"] == maps[name], "maps differ between runs"
    print(f"[in-process] per-site LULC chain (rules), {n_sites} sites, {rounds} alternating rounds, imports excluded")
    for name, ts in times.items():
        print(f"  {name:24s} {fmt(ts, ' s')}  = {fmt([60 * n_sites / t for t in ts], ' sites/min', 0)}")
    if baseline:
        base = times[f"baseline {baseline}"]
        print(f"  speed-up over the baseline: x{fmt(ratio(base, times['this tree']))} (goal >= 3); maps "
              f"byte-identical to the baseline's: "
              f"{'yes' if maps['this tree'] == maps[f'baseline {baseline}'] else 'NO'}")


def bench_speedup(n_sites: int, rounds: int) -> None:
    """1 -> 2 local Dask workers: end to end (start + first run) and steady state (a second run, warm)."""
    import logging

    from distributed import LocalCluster
    from measure import fmt, ratio

    from minescape.runner import Executor

    files = region(n_sites)
    t_in, _ = classify(files, WORK / "lulc-inprocess", Executor())
    reference = digests(WORK / "lulc-inprocess")
    end: dict[int, list[float]] = {1: [], 2: []}
    steady: dict[int, list[float]] = {1: [], 2: []}
    same = True
    for _ in range(rounds):
        for w in (1, 2):  # alternate within each round
            t0 = time.perf_counter()
            with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0",
                              silence_logs=logging.CRITICAL) as cluster:
                ex = Executor(mode="scheduler", scheduler=cluster.scheduler_address)
                _, first = classify(files, WORK / f"lulc-w{w}", ex)
                end[w].append(time.perf_counter() - t0)
                same &= digests(WORK / f"lulc-w{w}") == reference and not first.failed
                t_steady, second = classify(files, WORK / f"lulc-w{w}", ex)
                steady[w].append(t_steady)
                same &= digests(WORK / f"lulc-w{w}") == reference and not second.failed
    print(f"[speed-up] per-site LULC chain, {n_sites} sites, {rounds} alternating rounds "
          f"(in-process once: {t_in:.1f} s)")
    for w in (1, 2):
        print(f"  {w} worker{'s' if w > 1 else ' '} end to end (cluster start + run) {fmt(end[w], ' s')};  "
              f"steady state (warm cluster) {fmt(steady[w], ' s')} = "
              f"{fmt([60 * n_sites / t for t in steady[w]], ' sites/min', 0)}")
    print(f"  1 -> 2 workers, steady state: x{fmt(ratio(steady[1], steady[2]))} (goal >= 1.7); "
          f"end to end: x{fmt(ratio(end[1], end[2]))}")
    print(f"  maps byte-identical to in-process in all {4 * rounds} runs: {'yes' if same else 'NO'} "
          f"({len(reference)} maps)")


def _real_sites(files, out: Path, scale: float = 1.0) -> Path:
    """The real mine polygons (``../shared/data/mining-polygons``), each moved (shape and size kept, in
    metres) to a seeded random place inside the synthetic region, as a sites GPKG."""
    import geopandas as gpd
    import numpy as np
    import shapely

    from minescape.geo.crs import transformer
    from minescape.sites import WGS84, read_sites

    src = Path(__file__).resolve().parents[2] / "shared" / "data" / "mining-polygons" / \
        "mining_polygons_combined_demo.gpkg"
    if not src.exists():
        raise SystemExit(f"{src} not found: the projection needs the real polygons")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sites, _ = read_sites(src)
    import rasterio

    with rasterio.open(files.dcm_year) as ds:
        left, bottom, right, top = ds.bounds
        crs = ds.crs
    rng = np.random.default_rng(7)
    to_ll = transformer(crs, WGS84)
    geoms, ids = [], []
    for s in sites:
        g = shapely.affinity.scale(s.geometry_utm, scale, scale, origin="centroid") if scale != 1 else s.geometry_utm
        minx, miny, maxx, maxy = g.bounds
        w, h = maxx - minx, maxy - miny
        x = rng.uniform(left + 20, max(left + 21, right - w - 20))
        y = rng.uniform(bottom + 20, max(bottom + 21, top - h - 20))
        moved = shapely.affinity.translate(g, x - minx, y - miny)
        geoms.append(shapely.transform(moved, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1]))))
        ids.append(s.id)
    path = out / f"real_sites_x{scale:g}.gpkg"
    gpd.GeoDataFrame({"site_id": ids}, geometry=geoms, crs=4326).to_file(path, engine="pyogrio")
    return path


def bench_project(n_sites: int, rounds: int) -> None:
    """80,000 real-polygon sites with LightGBM on 2 cores, projected.

    How: the 100 real mine polygons are moved into the synthetic region (shapes and sizes kept), a LightGBM
    model is trained on 3 of the region's own sites (truth labels), and the chain classifies the 100 sites
    (a) in this process and (b) on a warm 2-worker local cluster (after one warm-up run), GDAL's block cache
    capped at 16 MB so a site reads its scenes cold, as it would among 80,000 sites spread over the world.
    Projection: 80,000 / 100 x the 2-worker time of the 100 sites (their mean bounding box is the real data's).
    For sites of another mean size (the issue's 323k px) the per-site times of the run are fitted with
    ``t = a + b * pixels`` (least squares over the 100 sites) and 80,000 x (a + b * 323,000) is divided by the
    measured 2-worker speed-up.
    """
    import logging

    import numpy as np
    from distributed import LocalCluster
    from measure import fmt

    from minescape.lulc.model import save_model
    from minescape.lulc.pipeline import classify_sites, train_from_sites
    from minescape.runner import Executor
    from minescape.sites import read_sites

    files = region(n_sites)
    out = WORK / "project"
    out.mkdir(parents=True, exist_ok=True)
    sites_path = _real_sites(files, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real, _ = read_sites(sites_path)
        own, _ = read_sites(files.sites)
        tr = train_from_sites(files.sites, list(files.scenes), files.dcm_dh, files.dcm_year, labels=files.truth_lulc,
                              site_ids=[s.id for s in own[:3]])
    model = save_model(tr.model, out / "model.json")
    px = {s.id: s.grid.width * s.grid.height for s in real}
    mean_px = float(np.mean(list(px.values())))

    def run(executor, name):
        shutil.rmtree(out / name, ignore_errors=True)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = classify_sites(sites_path, list(files.scenes), files.dcm_dh, files.dcm_year, out / name,
                               classifier=model, executor=executor, config={"quicklook": False})
        return time.perf_counter() - t0, s

    import shutil

    import rasterio

    from minescape.runstate import read_states

    inproc, two, fits = [], [], []
    with rasterio.Env(GDAL_CACHEMAX=16 * 2**20), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=logging.CRITICAL, env={"GDAL_CACHEMAX": "16"}) as cluster:
        ex = Executor(mode="scheduler", scheduler=cluster.scheduler_address)
        run(ex, "warm")  # worker imports, scene index, model load
        for _ in range(rounds):
            journal = out / "journal-inprocess"
            shutil.rmtree(journal, ignore_errors=True)
            t, s = run(Executor(run_dir=journal), "inprocess")  # per-site seconds live in the run journal
            inproc.append(t)
            ok = [k for k in s.results]
            secs = {k: st.seconds for k, st in read_states(journal).items()}
            a = np.vstack([np.ones(len(ok)), [px[k] for k in ok]]).T
            coef, *_ = np.linalg.lstsq(a, np.array([secs[k] for k in ok]), rcond=None)
            fits.append(coef)
            t2, s2 = run(ex, "two")
            two.append(t2)
    n = len(real)
    failed = len(s.failed)
    speed = [a / b for a, b in zip(inproc, two)]
    print(f"[project] {n} real mine polygons (mean site grid {mean_px:,.0f} px, {failed} failed), LightGBM, "
          f"GDAL cache 16 MB, {rounds} alternating rounds")
    print(f"  in-process (1 core)   {fmt(inproc, ' s')} = {fmt([60 * n / t for t in inproc], ' sites/min', 0)}")
    print(f"  2 workers (warm)      {fmt(two, ' s')} = {fmt([60 * n / t for t in two], ' sites/min', 0)}; "
          f"x{fmt(speed)} over in-process")
    print(f"  80,000 sites of the real polygons' sizes on 2 cores: {fmt([80000 / n * t / 3600 for t in two], ' h')}")
    a_, b_ = np.median(np.array(fits), axis=0)
    for target in (323_000,):
        hours = [80000 * (a + b * target) / sp / 3600 for (a, b), sp in zip(fits, speed)]
        print(f"  per-site fit t = {a_ * 1000:.1f} ms + {b_ * 1e6:.3f} us/px; 80,000 sites of {target:,} px on 2 "
              f"cores: {fmt(hours, ' h')} (goal < 6 h)")


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
    from measure import machine_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=240)
    parser.add_argument("--trivial", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5; project 3)")
    parser.add_argument("--baseline", help="git revision whose code the in-process runs alternate with")
    parser.add_argument("--only", default="inprocess,speedup,project,overhead,resume")
    parser.add_argument("--child", nargs=2, metavar=("OUT", "RUN_DIR"))
    parser.add_argument("--inprocess-child", metavar="OUT")
    args = parser.parse_args()
    if args.child:
        child(args.sites, *args.child)
        return
    if args.inprocess_child:
        _inprocess_child(args.sites, args.inprocess_child)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    wanted = args.only.split(",")
    if "inprocess" in wanted:
        bench_inprocess(args.sites, args.rounds or 5, args.baseline)
    if "speedup" in wanted:
        bench_speedup(args.sites, args.rounds or 5)
    if "project" in wanted:
        bench_project(args.sites, args.rounds or 3)
    if "overhead" in wanted:
        bench_overhead(args.trivial)
    if "resume" in wanted:
        bench_resume(args.sites)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

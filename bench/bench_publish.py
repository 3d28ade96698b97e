"""Benchmark: vectorise + attribute + write a class map, against the users' path and polygonize alone.

Methods, each timed in its own subprocess on the same seeded class map (peak RSS from getrusage):

* ``users``: ``rasterio.features.shapes`` -> ``shapely.geometry.shape`` per feature -> GeoDataFrame ->
  ``to_crs(4326)`` -> ``pyproj.Geod`` area per feature -> ``to_file`` (GPKG, pyogrio);
* ``shapes``: polygonize alone (``list(rasterio.features.shapes(...))``, no conversion);
* ``publish`` / ``publish_x2`` (optional): ``minescape publish`` end to end from GeoTIFFs (read, vectorise,
  write shards, ZIPs, manifest) with 1 or 2 worker processes; ``publish_1core``: the 1-process run held to one
  CPU (``sched_setaffinity``), since one process already puts its ZIP appends on a second core (a thread);
* ``minescape``: :func:`minescape.publish.release.site_features` (boundary tracing into flat arrays,
  ellipsoidal area, lon/lat, WKB) and GPKG shards of <= 5,000 features with the QGIS style (:class:`_ShardBuffer`),
  i.e. what ``minescape publish`` does per site, minus reading the GeoTIFF and zipping.

Cases: a 4000 x 4000 class map (~10,000 polygons), a 10980 x 10980 one (a Sentinel-2 tile), and 2,000
sites of 200 x 200 px (reported as sites/s and extrapolated to 80,000 sites). For ``minescape`` the
area of every feature (a 20,000-feature sample on the tile) is compared with ``pyproj.Geod`` on the
written geometry.

Every method runs ``--repeat`` times (default 3), alternating with the other methods, each in a fresh child;
figures are medians with min and max. Peak memory is the child's own VmHWM (``bench/measure.py``; with worker
processes, the summed RSS of the child and its workers), not the ``ru_maxrss`` a child inherits from its parent.
The class maps are generated once and cached as ``.npy`` under /tmp, so a child's peak holds the map it works on
but not the filters that made it.

``publish_x2`` against ``publish`` is the "both cores" figure: on the sites case the sites are vectorised in two
processes; the release is checked to be the same bytes.

Run: ``python bench/bench_publish.py`` (all cases, about 25 min idle: the users' path on the 10980^2 map takes
~3 min a run), ``python bench/bench_publish.py --cases 4000,sites`` (~6 min), or ``--quick`` (the 4000^2 map
and 500 sites, 2 rounds, ~2 min).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {"4000": (4000, 11.0), "10980": (10980, 11.0)}
sys.path.insert(0, str(Path(__file__).resolve().parent))
N_SITES, SITE_PX = 2000, 200
UTM = 32750
ORIGIN = (600000.0, 7500000.0)


def class_map(n: int, sigma: float, seed: int = 0) -> np.ndarray:
    """A seeded n x n MINING_LULC-like class map of smooth patches of 7 classes."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out = np.empty((n, n), dtype=np.uint8)
    step = 2000
    field = np.empty((n, n), dtype=np.float32)
    noise = rng.standard_normal((n, n), dtype=np.float32)
    for r in range(0, n, step):  # filter in strips to bound memory
        r0, r1 = max(0, r - 64), min(n, r + step + 64)
        f = ndimage.gaussian_filter(noise[r0:r1], sigma)
        field[r:min(n, r + step)] = f[r - r0:r - r0 + min(step, n - r)]
    del noise
    q = np.quantile(field[::9, ::9], np.linspace(0, 1, 8)[1:-1])
    out[:] = np.digitize(field, q) + 1
    return out


def site_maps(seed: int = 1, n_sites: int = N_SITES) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """``n_sites`` (2,000) synthetic 200 x 200 px sites (uint8 codes, nodata 0 outside a blob), with their origins."""
    from minescape.publish.sample_maps import draw_mine

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SITE_PX, :SITE_PX]
    sites = []
    for k in range(n_sites):
        r = np.hypot(xx - 100, yy - 100)
        ang = np.arctan2(yy - 100, xx - 100)
        mask = r < 85 + 12 * np.sin(3 * ang + k)
        codes = draw_mine(rng, mask)
        x0 = ORIGIN[0] + (k % 50) * 3000.0
        y0 = ORIGIN[1] - (k // 50) * 3000.0
        sites.append((codes, (x0, y0)))
    return sites


def _transform(x0, y0):
    from affine import Affine

    return Affine(10.0, 0, x0, 0, -10.0, y0)


def run_users(maps, out: Path) -> int:
    import geopandas as gpd
    import pandas as pd
    import rasterio.features
    from pyproj import Geod
    from shapely.geometry import shape

    from minescape.legend import MINING_LULC

    geod = Geod(ellps="WGS84")
    frames = []
    for k, (codes, (x0, y0)) in enumerate(maps):
        feats = list(rasterio.features.shapes(codes, mask=codes != 0, transform=_transform(x0, y0)))
        gdf = gpd.GeoDataFrame({"class": [int(v) for _, v in feats], "site": k},
                               geometry=[shape(g) for g, _ in feats], crs=UTM)
        gdf = gdf.to_crs(4326)
        gdf["area_m2"] = [abs(geod.geometry_area_perimeter(g)[0]) for g in gdf.geometry]
        frames.append(gdf)
    gdf = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    gdf["class_name"] = [MINING_LULC.name_of(c) for c in gdf["class"]]
    gdf["year"] = 2020
    gdf["index_n"] = np.arange(1, len(gdf) + 1)
    gdf[["index_n", "class_name", "area_m2", "year", "geometry"]].to_file(out / "users.gpkg", engine="pyogrio")
    return len(gdf)


def run_shapes(maps, out: Path) -> int:
    import rasterio.features

    n = 0
    for codes, (x0, y0) in maps:
        n += len(list(rasterio.features.shapes(codes, mask=codes != 0, transform=_transform(x0, y0))))
    return n


def run_minescape(maps, out: Path) -> tuple[int, list]:
    from pyproj import CRS

    from minescape.geo.raster import Raster
    from minescape.legend import MINING_LULC
    from minescape.publish import release as rel
    from minescape.publish.release import SiteMap, _ShardBuffer, _Stats

    crs = CRS.from_epsg(4326)
    buf = _ShardBuffer(out, "bench", cap=5000, crs=crs, legend=MINING_LULC, extra=False, stats=_Stats())
    original = rel.read_class_map
    rasters = {}
    rel.read_class_map = lambda site, legend: rasters[site.site_id]  # maps are in memory here
    n = 0
    for k, (codes, (x0, y0)) in enumerate(maps):
        sid = f"S{k:05d}"
        rasters[sid] = Raster(codes, CRS.from_epsg(UTM), _transform(x0, y0), 0)
        feats = rel.site_features(SiteMap(Path(sid), sid, 2020, "oceania", 0.0, 0.0), legend=MINING_LULC, crs=crs)
        buf.add(feats)
        n += len(feats.codes)
        del rasters[sid]
    buf.flush(final=True)
    rel.read_class_map = original
    return n, [out / s["name"] for s in buf.written["oceania"]]


def write_maps(maps, folder: Path) -> Path:
    """The maps as publish input GeoTIFFs (not timed)."""
    from rasterio.crs import CRS

    from minescape.geo.raster import Raster, write_raster
    from minescape.legend import MINING_LULC

    for k, (codes, (x0, y0)) in enumerate(maps):
        write_raster(Raster(codes, CRS.from_epsg(UTM), _transform(x0, y0), 0), folder / f"S{k:05d}.tif",
                     legend=MINING_LULC, tags={"SITE_ID": f"S{k:05d}", "YEAR": "2020"})
    return folder


def run_publish(maps_dir: Path, out: Path, workers: int) -> int:
    """``minescape publish`` end to end: read GeoTIFFs, ..., ZIPs, manifest, README."""
    from minescape.publish.release import publish

    return publish(maps_dir, out / "release", progress=False, workers=workers).features


def release_files(out: Path) -> list[Path]:
    """The release's GPKG shards, unzipped for the area check (after the timing: not part of publishing)."""
    import zipfile

    files = []
    for z in sorted((out / "release").glob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            zf.extractall(out / "x")
            files += [out / "x" / n for n in zf.namelist()]
    return files


def area_check(files: list[Path], sample: int | None) -> float:
    """Max relative difference area_m2 vs pyproj.Geod over the written features (or a sample)."""
    import pyogrio
    import shapely
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    worst = 0.0
    rng = np.random.default_rng(0)
    per_file = None if sample is None else max(1, sample // max(1, len(files)))
    for f in files:
        df = pyogrio.read_dataframe(f)
        idx = np.arange(len(df))
        if per_file is not None and len(idx) > per_file:
            idx = rng.choice(idx, per_file, replace=False)
        geoms = shapely.from_wkb(shapely.to_wkb(df.geometry.values[idx]))
        ref = np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in geoms])
        worst = max(worst, float(np.max(np.abs(df["area_m2"].values[idx] / ref - 1))))
    return worst


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (less sensitive than wall time to other jobs on the machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


CACHE = Path(tempfile.gettempdir()) / "minescape-bench-publish"


def cached_map(case: str) -> Path:
    """The class map of a tile case as a ``.npy`` file (made once; the children load it)."""
    n, sigma = CASES[case]
    path = CACHE / f"class_map_{n}_{sigma:g}.npy"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, class_map(n, sigma))
        tmp.replace(path)
    return path


def worker(case: str, method: str, n_sites: int = N_SITES) -> dict:
    from measure import TreePeak

    if method == "publish_1core":  # the one-process run held to one CPU: the "one core" of the goal
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    if case == "sites":
        maps = site_maps(n_sites=n_sites)
    else:
        maps = [(np.load(cached_map(case)), ORIGIN)]
    import geopandas  # noqa: F401  (imports are not what we measure)
    import pyogrio  # noqa: F401
    import rasterio.features  # noqa: F401

    import minescape.publish.release  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        out = Path(tmp)
        if method.startswith("publish"):
            (out / "maps").mkdir()
            maps_dir = write_maps(maps, out / "maps")
        t0 = time.perf_counter()
        c0 = _cpu_seconds()
        extra = {}
        with TreePeak() as peak:
            if method == "users":
                n_poly = run_users(maps, out)
            elif method == "shapes":
                n_poly = run_shapes(maps, out)
            elif method.startswith("publish"):
                n_poly = run_publish(maps_dir, out, workers=2 if method == "publish_x2" else 1)
            else:
                n_poly, files = run_minescape(maps, out)
            seconds = time.perf_counter() - t0
        extra["cpu_seconds"] = max(_cpu_seconds() - c0, peak.cpu_seconds)  # with worker processes: theirs too
        if method.startswith("publish"):  # checks after the timing: not part of publishing
            import hashlib

            extra["release_sha256"] = hashlib.sha256(b"".join(
                hashlib.sha256(p.read_bytes()).digest() for p in sorted((out / "release").iterdir())
                if p.is_file())).hexdigest()
            files = release_files(out)
        if method in ("minescape", "publish", "publish_x2", "publish_1core"):
            extra["files"] = len(files)
            extra["max_rel_area_err"] = area_check(files, 20000 if case == "10980" else None)
    return {"case": case, "method": method, "seconds": seconds, "polygons": n_poly, "peak_mb": peak.peak_mb, **extra}


def main() -> None:
    from measure import fmt, machine_line, ratio, two_core_bound

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="4000,10980,sites")
    ap.add_argument("--methods", default="shapes,minescape,users,publish,publish_x2,publish_1core")
    ap.add_argument("--sites", type=int, default=N_SITES, help="number of small sites (default 2000)")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs per method (default 3)")
    ap.add_argument("--quick", action="store_true", help="4000^2 map and 500 sites, 2 rounds")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, n_sites=args.sites)))
        return
    if args.quick:
        args.cases, args.sites, args.repeat = "4000,sites", 500, 2
    print(machine_line(), flush=True)
    methods = args.methods.split(",")
    for case in args.cases.split(","):
        if case != "sites":
            cached_map(case)
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for rep in range(args.repeat):  # methods alternate within each round
            for method in methods:
                proc = subprocess.run([sys.executable, __file__, "--worker", case, method, "--sites", str(args.sites)],
                                      capture_output=True, text=True, check=False, cwd=str(Path(__file__).parent))
                if proc.returncode != 0:
                    print(f"{case} {method}: failed\n{proc.stderr[-2000:]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[method].append(r)
                line = (f"{case:>6} {method:<10} {r['seconds']:8.2f} s (cpu {r['cpu_seconds']:7.2f} s)  "
                        f"{r['polygons']:>8,} polygons  peak {r['peak_mb']:7.0f} MB")
                if "max_rel_area_err" in r:
                    line += f"  files {r['files']}  max |area/Geod - 1| {r['max_rel_area_err']:.1e}"
                print(line + f"  (round {rep + 1}/{args.repeat})", flush=True)
        secs = {m: [r["seconds"] for r in rs] for m, rs in runs.items() if rs}
        print(f"== {case}: median (min-max) of {args.repeat} alternating runs ==")
        for m, rs in runs.items():
            if rs:
                print(f"{case:>6} {m:<10} {fmt(secs[m], ' s')}  peak {fmt([r['peak_mb'] for r in rs], ' MB', 0)}")
        if {"minescape", "users", "shapes"} <= set(secs):
            print(f"{case:>6} minescape vs the users' path: x{fmt(ratio(secs['users'], secs['minescape']))} faster "
                  f"(goal >= 2.5); vs polygonize alone: x{fmt(ratio(secs['minescape'], secs['shapes']))} (goal <= 2)")
        if {"publish", "users"} <= set(secs):
            print(f"{case:>6} publish end to end vs the users' path: "
                  f"x{fmt(ratio(secs['users'], secs['publish']))} faster")
        if {"publish", "publish_x2"} <= set(secs):
            same = len({r["release_sha256"] for m in ("publish", "publish_x2", "publish_1core") if m in runs
                        for r in runs[m]}) == 1
            print(f"{case:>6} publish on 2 processes vs 1: x{fmt(ratio(secs['publish'], secs['publish_x2']))} "
                  f"(goal >= 1.6 where sites run in parallel; one map is one site); same release bytes: {same}")
            if "publish_1core" in secs:  # one process already uses a second core for its ZIP thread
                print(f"{case:>6} publish on 2 processes vs 1 process held to one CPU: "
                      f"x{fmt(ratio(secs['publish_1core'], secs['publish_x2']))} (goal >= 1.6 over one core)")
            cpu1 = [r["cpu_seconds"] for r in runs["publish"]]
            cpu2 = [r["cpu_seconds"] for r in runs["publish_x2"]]
            print(f"{case:>6}   CPU seconds {fmt(cpu1, ' s', 1)} vs {fmt(cpu2, ' s', 1)} (parent + workers): at most "
                  f"x{fmt(two_core_bound(cpu1, cpu2))} on two idle cores (load-independent bound)")
        if case == "sites":
            for m in ("minescape", "publish", "publish_x2", "publish_1core", "users", "shapes"):
                if m in secs:
                    print(f" sites {m:<10} 80,000 sites in "
                          f"{fmt([80000 / (args.sites / t) / 60 for t in secs[m]], ' min', 1)}")


if __name__ == "__main__":
    main()

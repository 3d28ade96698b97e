"""Benchmark: Sentinel-2 from a STAC catalogue on loopback (rustac serve + range-request server).

The synthetic region (1000 x 800 px, 6 sites) is written in the STAC layout with 11 scenes a year (10 under 20 %
cloud, one 60 % cloudy) for the DCM years. Cases:

* ``bytes``: per site, one fresh process classifies it through the loopback API (median composite, cold window
  cache); the asset server's log gives the bytes transferred. Compared with (a) the full sizes of the assets
  read and (b) the compressed size of the blocks the site's window needs (``block_size`` of every COG block that
  the window plus a 1-pixel halo touches), with and without the COG header GDAL reads at open.
* ``speed``: sites per minute for ``lulc classify`` (rules, median of 10 scenes a year) through the loopback
  server vs the same items from local files (ItemCollection with file hrefs); >= 3 alternating runs, each a
  fresh process and output folder (cold caches); median, min, max; the projection for 80,000 sites.
* ``latency``: the same through an asset server that waits 50 ms before each answer (an emulated internet round
  trip), 2 sites: what the 80,000-site projection looks like off loopback.
* ``accuracy``: overall accuracy against the region's truth of the median composite vs the clearest scene (both
  from the catalogue, --max-cloud 20).
* ``odc``: read the 10 bands + SCL of one year onto each site grid with minescape's reader vs ``odc.stac.load``
  (same loopback server, same items, same grid), when odc-stac is installed.

Run: ``flock /tmp/minescape-heavy.lock .venv/bin/python bench/bench_stac.py [--runs 3] [--cases ...]``. Writes
``docs/img/stac_bench.png`` and prints a JSON summary. Timings are from whatever machine runs it: say so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = Path(os.environ.get("MINESCAPE_BENCH_DIR", "/tmp/minescape-bench-stac"))
SCENES_PER_YEAR = 11


def _data():
    from minescape.synthetic import RegionConfig, load_region_files, make_region, write_region
    from minescape.synthetic_stac import StacRegion, write_stac_region

    root = SCRATCH / "data"
    if (root / "stac" / "stac.json").exists():
        s = root / "stac"
        return load_region_files(root / "region"), StacRegion(s, s / "assets", s / "earth-search" / "items.json",
                                                               s / "planetary-computer" / "items.json",
                                                               s / "stac.json")
    region = make_region(RegionConfig(seed=42))
    files = write_region(region, root / "region")
    stac = write_stac_region(region, root / "stac", scenes_per_year=SCENES_PER_YEAR,
                             years=tuple(region.config.dcm_years))
    return files, stac


def _child(task: dict) -> dict:
    """Run one classify in this (fresh) process; returns seconds (after imports) and the summary."""
    from minescape.imagery.stac_search import StacQuery
    from minescape.lulc.pipeline import classify_sites

    t0 = time.perf_counter()
    summary = classify_sites(task["sites"], [], task["dcm_dh"], task["dcm_year"], task["out"],
                             config={"quicklook": False, "composite": task["composite"],
                                     "imagery": {"threads": task.get("threads")}},
                             site_ids=task.get("site_ids"),
                             stac=StacQuery(task["stac"], task.get("collection"), 20.0))
    return {"seconds": time.perf_counter() - t0, "ok": len(summary.results), "failed": summary.failed}


def _run_child(task: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MINESCAPE_PROGRESS": "0"}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(task)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _task(files, stac_source: str, out: Path, *, collection=None, composite="median", site_ids=None,
          threads: int | None = 8) -> dict:
    return {"sites": str(files.sites), "dcm_dh": str(files.dcm_dh), "dcm_year": str(files.dcm_year),
            "out": str(out), "stac": stac_source, "collection": collection, "composite": composite,
            "site_ids": site_ids, "threads": threads}


def _log_bytes(log: Path) -> tuple[int, int]:
    time.sleep(0.3)  # the server writes a line after its response went out
    if not log.exists():
        return 0, 0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return sum(r["bytes"] for r in rows), len(rows)


def _needed_bytes(site, scenes) -> tuple[int, int, int]:
    """(blocks' compressed bytes the site window needs, COG header bytes, full asset bytes) over ``scenes``."""
    import rasterio
    from rasterio.windows import from_bounds

    from minescape.geo.grid import bounds_in

    need = header = full = 0
    for scene in scenes:
        for asset in scene.assets.values():
            path = Path(asset.href)
            full += path.stat().st_size
            with rasterio.open(path) as src:
                b = site.grid.bounds if src.crs == site.crs else bounds_in(site.grid.bounds, site.crs, src.crs)
                w = from_bounds(*b, transform=src.transform)
                c0, r0 = max(0, int(np.floor(w.col_off)) - 1), max(0, int(np.floor(w.row_off)) - 1)
                c1 = min(src.width, int(np.ceil(w.col_off + w.width)) + 1)
                r1 = min(src.height, int(np.ceil(w.row_off + w.height)) + 1)
                bh, bw = src.block_shapes[0]
                for i in range(r0 // bh, (r1 - 1) // bh + 1):
                    for j in range(c0 // bw, (c1 - 1) // bw + 1):
                        need += src.block_size(1, i, j)
                header += min(16384, path.stat().st_size)  # GDAL_INGESTED_BYTES_AT_OPEN default
    return need, header, full


def case_bytes(files, stac) -> dict:
    from minescape.imagery.loopback import serve_catalogue
    from minescape.imagery.sources import StacSource
    from minescape.imagery.stac_search import StacQuery
    from minescape.sites import read_sites, site_year

    sites, _ = read_sites(files.sites)
    local = StacSource(StacQuery(str(stac.earth_search), None, 20.0))
    rows = []
    work = SCRATCH / "bytes"
    log = work / "requests.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    with serve_catalogue(stac.earth_search, stac.assets, work, log=log) as lb:
        for site in sites:
            before, nreq0 = _log_bytes(log)
            res = _run_child(_task(files, lb.stac_url, work / f"out-{site.id}-{time.time_ns()}",
                                   collection="sentinel-2-l2a", site_ids=[site.id]))
            after, nreq1 = _log_bytes(log)
            year = site_year(site, files.dcm_year).year
            scenes = local.scenes(site.grid, year)
            need, header, full = _needed_bytes(site, scenes)
            rows.append({"site": site.id, "pixels": site.grid.width * site.grid.height, "scenes": len(scenes),
                         "transferred": after - before, "requests": nreq1 - nreq0, "needed_blocks": need,
                         "header": header, "assets_full": full, "ok": res["ok"]})
    return {"sites": rows}


def case_speed(files, stac, runs: int) -> dict:
    from minescape.imagery.loopback import serve_catalogue

    work = SCRATCH / "speed"
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, list[float]] = {"loopback": [], "loopback_1_thread": [], "files": []}
    with serve_catalogue(stac.earth_search, stac.assets, work) as lb:
        for k in range(runs):  # alternating, each a fresh process and output folder (cold caches)
            for name, src, coll, threads in (("loopback", lb.stac_url, "sentinel-2-l2a", 8),
                                             ("loopback_1_thread", lb.stac_url, "sentinel-2-l2a", 1),
                                             ("files", str(stac.earth_search), None, 8)):
                r = _run_child(_task(files, src, work / f"{name}-{k}-{time.time_ns()}", collection=coll,
                                     threads=threads))
                times[name].append(r["seconds"])
    n = r["ok"]

    def stats(v):
        spm = [60 * n / s for s in v]
        return {"seconds": v, "sites_per_min_median": statistics.median(spm), "min": min(spm), "max": max(spm)}

    out = {"sites": n, **{k: stats(v) for k, v in times.items()}}
    out["ratio_loopback_vs_files"] = statistics.median(times["loopback"]) / statistics.median(times["files"])
    out["hours_80000_sites_loopback_1_process"] = 80000 / out["loopback"]["sites_per_min_median"] / 60
    return out


def case_latency(files, stac, delay_ms: float = 50.0, n_sites: int = 2) -> dict:
    """Sites per minute when every asset request waits ``delay_ms`` (an emulated internet round trip), 1 and 2
    worker processes, on the first ``n_sites`` sites."""
    from minescape.imagery.loopback import serve_catalogue
    from minescape.sites import read_sites

    sites, _ = read_sites(files.sites)
    ids = [s.id for s in sites[:n_sites]]
    work = SCRATCH / "latency"
    work.mkdir(parents=True, exist_ok=True)
    out = {"delay_ms": delay_ms, "sites": ids}
    with serve_catalogue(stac.earth_search, stac.assets, work, delay_ms=delay_ms) as lb:
        r1 = _run_child(_task(files, lb.stac_url, work / f"l1-{time.time_ns()}", collection="sentinel-2-l2a",
                              site_ids=ids, threads=1))
        r = _run_child(_task(files, lb.stac_url, work / f"l-{time.time_ns()}", collection="sentinel-2-l2a",
                             site_ids=ids))
    out["seconds_1_thread"] = r1["seconds"]
    out["sites_per_min_1_thread"] = 60 * len(ids) / r1["seconds"]
    out["seconds"] = r["seconds"]
    out["sites_per_min"] = 60 * len(ids) / r["seconds"]
    out["hours_80000_sites_1_process"] = 80000 / out["sites_per_min"] / 60
    return out


def case_accuracy(files, stac) -> dict:
    from minescape.lulc.evaluate import evaluate_maps

    work = SCRATCH / "accuracy"
    out = {}
    for method in ("median", "clearest", "medoid"):
        o = work / f"{method}-{time.time_ns()}"
        _run_child(_task(files, str(stac.earth_search), o, composite=method))
        ev = evaluate_maps(o, files.truth_lulc)
        out[method] = {"overall_accuracy": ev["overall_accuracy"], "kappa": ev["kappa"], "n": ev["n"]}
    return out


def case_odc(files, stac) -> dict:
    try:
        import odc.stac
    except ModuleNotFoundError:
        return {"skipped": "odc-stac is not installed"}
    from odc.geo.geobox import GeoBox
    from pystac_client import Client

    from minescape.imagery.loopback import serve_catalogue
    from minescape.imagery.sources import StacSource
    from minescape.imagery.stac_search import StacQuery
    from minescape.lulc.features import SPECTRAL_BANDS
    from minescape.sites import read_sites, site_year

    sites, _ = read_sites(files.sites)
    keys = ["blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "swir16", "swir22", "scl"]
    work = SCRATCH / "odc"
    work.mkdir(parents=True, exist_ok=True)
    own, odc_t, diffs = [], [], []
    with serve_catalogue(stac.earth_search, stac.assets, work) as lb:
        src = StacSource(StacQuery(lb.stac_url, "sentinel-2-l2a", 20.0))
        client = Client.open(lb.stac_url)
        for rep in range(3):  # alternating per site: minescape's reader, then odc-stac
            t_own = t_odc = 0.0
            for site in sites:
                year = site_year(site, files.dcm_year).year
                scenes = src.scenes(site.grid, year)
                items = list(client.search(collections=["sentinel-2-l2a"], ids=[s.id for s in scenes]).items())
                t0 = time.perf_counter()
                dn = [[src._band(s.assets[b], site.grid, "nearest" if b == "SCL" else "bilinear")
                       for b in [*SPECTRAL_BANDS, "SCL"]] for s in scenes]
                t_own += time.perf_counter() - t0
                gb = GeoBox((site.grid.height, site.grid.width), site.grid.transform, site.grid.crs.to_wkt())
                t0 = time.perf_counter()
                ds = odc.stac.load(items, bands=keys, geobox=gb, resampling={"*": "bilinear", "scl": "nearest"},
                                   groupby="id", chunks=None)
                t_odc += time.perf_counter() - t0
                if rep == 0:  # same pixels? (scenes are one per date: both sorted by time)
                    mine = np.stack([d[0] for d in dn]).astype(np.float64)
                    theirs = ds["blue"].values.astype(np.float64)
                    diffs.append(float(np.abs(mine - theirs).max()) if mine.shape == theirs.shape else None)
            own.append(t_own)
            odc_t.append(t_odc)
    return {"minescape_seconds": own, "odc_stac_seconds": odc_t,
            "ratio_odc_vs_minescape": statistics.median(odc_t) / statistics.median(own),
            "max_abs_dn_difference_blue_per_site": diffs}


def figure(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    if "bytes" in res:
        rows = res["bytes"]["sites"]
        x = np.arange(len(rows))
        ax = axes[0]
        ax.bar(x - 0.3, [r["assets_full"] / 1e6 for r in rows], 0.2, label="assets' full size")
        ax.bar(x - 0.1, [r["transferred"] / 1e6 for r in rows], 0.2, label="transferred (server log)")
        ax.bar(x + 0.1, [(r["needed_blocks"] + r["header"]) / 1e6 for r in rows], 0.2,
               label="needed blocks + headers")
        ax.bar(x + 0.3, [r["needed_blocks"] / 1e6 for r in rows], 0.2, label="needed blocks")
        ax.set_xticks(x, [r["site"] for r in rows])
        ax.set_ylabel("MB per site (10 scenes x 11 assets)")
        ax.set_title("Bytes read per site")
        ax.legend(fontsize=7)
    if "speed" in res:
        s = res["speed"]
        ax = axes[1]
        keys = [k for k in ("loopback", "loopback_1_thread", "files") if k in s]
        labels = {"loopback": "loopback\n8 threads", "loopback_1_thread": "loopback\n1 thread",
                  "files": "local files\n8 threads"}
        med = [s[k]["sites_per_min_median"] for k in keys]
        lo = [m - s[k]["min"] for m, k in zip(med, keys, strict=True)]
        hi = [s[k]["max"] - m for m, k in zip(med, keys, strict=True)]
        ax.bar([labels[k] for k in keys], med, yerr=[lo, hi], capsize=4,
               color=["tab:blue", "tab:cyan", "tab:gray"][:len(keys)])
        best = s.get("loopback_1_thread", s["loopback"])["sites_per_min_median"]  # the auto default on loopback
        title = (f"median of 10 scenes/yr, rules, 1 process\n80,000 sites: {80000 / best / 60:.0f} h "
                 "(loopback, 1 thread = auto)")
        if "latency" in res:
            lat = res["latency"]
            title += f"; {lat['hours_80000_sites_1_process']:.0f} h at {lat['delay_ms']:.0f} ms RTT (8 threads)"
            ax.bar(["50 ms RTT\n1 thread", "50 ms RTT\n8 threads"],
                   [lat.get("sites_per_min_1_thread", 0), lat["sites_per_min"]], color=["salmon", "tab:red"])
        ax.set_ylabel("sites per minute (median, min-max)")
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    if "accuracy" in res:
        a = res["accuracy"]
        ax = axes[2]
        ax.bar(list(a), [a[m]["overall_accuracy"] for m in a], color=["tab:green", "tab:orange", "tab:purple"])
        ax.set_ylim(min(a[m]["overall_accuracy"] for m in a) - 0.05, 1.0)
        ax.set_ylabel("overall accuracy vs truth (all sites)")
        ax.set_title("LULC from composite vs clearest scene")
    fig.suptitle("minescape STAC path, synthetic region. LOADED MACHINE (2 cores shared with other jobs): "
                 "timings indicative only", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", default=None)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cases", default="bytes,speed,latency,accuracy,odc")
    p.add_argument("--figure", default=str(ROOT / "docs" / "img" / "stac_bench.png"))
    p.add_argument("--from-json", default=None, help="Only draw the figure from a saved summary.")
    a = p.parse_args()
    if a.child:
        print(json.dumps(_child(json.loads(a.child))))
        return
    if a.from_json:
        figure(json.loads(Path(a.from_json).read_text()), Path(a.figure))
        return
    files, stac = _data()
    res: dict = {}
    cases = a.cases.split(",")
    if "bytes" in cases:
        res["bytes"] = case_bytes(files, stac)
    if "speed" in cases:
        res["speed"] = case_speed(files, stac, a.runs)
    if "latency" in cases:
        res["latency"] = case_latency(files, stac)
    if "accuracy" in cases:
        res["accuracy"] = case_accuracy(files, stac)
    if "odc" in cases:
        res["odc"] = case_odc(files, stac)
    figure(res, Path(a.figure))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

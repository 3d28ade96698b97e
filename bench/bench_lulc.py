"""Benchmark: the mining LULC chain per site, and a whole Sentinel-2 tile classified by windows.

Cases, each run in its own subprocess, ``--repeat`` times (default 3) alternating with the other cases; every
figure is the median with min and max (peak memory: the child's own VmHWM, ``bench/measure.py``, not the
``ru_maxrss`` a child inherits from its parent):

* ``sites``: ``classify_sites`` on the synthetic region (1000 x 800 px, 6 sites) with the knowledge-based rules
  and with a LightGBM model (trained on 3 sites' truth), quicklooks off and on: sites per minute and Mpix/s
  (site-grid pixels) for the whole per-site chain (year, scene choice, reading, features, classifier,
  post-processing, GeoTIFF). Baseline in the same run: the same rules applied by a naive per-pixel Python loop.
* ``whole``: a 2048 x 2048 10-band scene classified as ONE array (the whole-array version): Mpix/s and peak memory.
* ``tiled-small``: the same scene by 1024-px windows (same output, checked).
* ``tile``: a 10980 x 10980 10-band uint16 scene (a Sentinel-2 tile; made on disk by streamed writes) classified by
  1024-px windows: Mpix/s and peak memory, against the whole-array case (memory per Mpix extrapolated).

Run: ``python bench/bench_lulc.py [--cases sites,whole,tiled-small,tile] [--repeat N]`` (about 8 min idle on 2
cores with the 10980^2 tile, made once in ~2 min), ``python bench/bench_lulc.py --quick`` (sites only, 2 rounds,
~1 min). Scratch data lives in ``/tmp/minescape-bench-lulc`` (reused between runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SCRATCH = Path(os.environ.get("MINESCAPE_BENCH_DIR", "/tmp/minescape-bench-lulc"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
TILE = 10980
SMALL = 2048


def _region():
    from minescape.synthetic import RegionConfig, generate, load_region_files

    root = SCRATCH / "region"
    if (root / "region.json").exists():
        return load_region_files(root)
    return generate(root, RegionConfig(seed=42))


def _make_scene(n: int, path: Path) -> tuple[Path, Path]:
    """An n x n 10-band uint16 scene and its DCM, tiled from the synthetic region, written by row blocks."""
    import rasterio
    from affine import Affine

    from minescape.geo.grid import Grid
    from minescape.geo.raster import open_writer
    from minescape.sentinel2 import TEN_BANDS

    dh_path = path.with_name(path.stem + "_dh.tif")
    if path.exists() and dh_path.exists():
        return path, dh_path
    region = _region()
    scene_src = next(p for p in region.scenes if "_2019" in p.name)
    with rasterio.open(scene_src) as src:
        dn = src.read()
        tags = src.tags()
    with rasterio.open(region.dcm_dh) as src:
        dh = src.read(1)
        dh_nodata = src.nodata
    h, w = dn.shape[1:]
    grid = Grid("EPSG:32750", Affine(10, 0, 600000, 0, -10, 7500000), n, n)
    cols = np.arange(n) % w
    block = 512
    with open_writer(path, grid, count=10, dtype="uint16", nodata=0, band_names=TEN_BANDS, compress="none",
                     tags=tags) as dst, open_writer(dh_path, grid, count=1, dtype="float32", nodata=dh_nodata,
                                                    compress="none") as ddst:
        for r0 in range(0, n, block):
            rows = np.arange(r0, min(n, r0 + block)) % h
            win = rasterio.windows.Window(0, r0, n, len(rows))
            dst.write(dn[:, rows][:, :, cols], window=win)
            ddst.write(dh[rows][:, cols][None], window=win)
    return path, dh_path


def _naive_rules(features, rules) -> np.ndarray:
    """The same decisions as :func:`minescape.lulc.rules.classify_rules`, one pixel at a time (baseline)."""
    names = list(features.band_names)
    ix = {n: names.index(n) for n in names}
    data = features.data
    out = np.zeros(features.shape, dtype=np.uint8)
    r = rules
    for i in range(features.shape[0]):
        for j in range(features.shape[1]):
            v = data[:, i, j]
            if not np.isfinite(v).all():
                continue
            ndvi, dh, bright = v[ix["NDVI"]], v[ix["DH"]], v[ix["BRIGHT"]]
            sb = v[ix["B11"]] / max(v[ix["B02"]], 1e-4)
            if v[ix["MNDWI"]] > r["water"]["mndwi_min"]:
                c = 4
            elif (bright > r["facility"]["bright_min"] and ndvi < r["facility"]["ndvi_max"]
                  and v[ix["BSI"]] < r["facility"]["bsi_max"] and sb > r["facility"]["swir1_blue_min"]):
                c = 5
            elif dh < r["open_pit"]["dh_max"]:
                c = 1
            elif dh > r["waste_dump"]["dh_min"]:
                c = 2
            elif ndvi > r["vegetation"]["ndvi_min"]:
                c = 7
            elif (abs(dh) < r["disturbed"]["abs_dh_max"] and ndvi < r["disturbed"]["ndvi_max"]
                  and v[ix["IRON"]] < r["disturbed"]["iron_max"]):
                c = 3
            else:
                c = 6
            out[i, j] = c
    return out


def case_sites() -> dict:
    from minescape.lulc.features import compute_features
    from minescape.lulc.inputs import discover_scenes, load_dh, load_stack
    from minescape.lulc.model import save_model
    from minescape.lulc.pipeline import classify_sites, train_from_sites
    from minescape.lulc.rules import classify_rules, default_rules
    from minescape.sites import read_sites

    region = _region()
    sites, _ = read_sites(region.sites)
    mpix = sum(s.grid.width * s.grid.height for s in sites) / 1e6
    out = SCRATCH / "runs"
    res: dict = {"sites": len(sites), "site_grid_mpix": round(mpix, 3)}
    for name, clf, ql in (("rules", "rules", False), ("rules+quicklook", "rules", True)):
        t0 = time.perf_counter()
        s = classify_sites(region.sites, [region.scene_dir], region.dcm_dh, region.dcm_year, out / name,
                           classifier=clf, config={"quicklook": ql})
        dt = time.perf_counter() - t0
        assert s.ok, s.failed
        res[name] = {"seconds": dt, "sites_per_min": 60 * len(sites) / dt, "mpix_per_s": mpix / dt}
    t0 = time.perf_counter()
    tr = train_from_sites(region.sites, [region.scene_dir], region.dcm_dh, region.dcm_year, labels=region.truth_lulc,
                          site_ids=[s.id for s in sites[:3]])
    res["train_seconds"] = time.perf_counter() - t0
    model = save_model(tr.model, SCRATCH / "model.json")
    t0 = time.perf_counter()
    s = classify_sites(region.sites, [region.scene_dir], region.dcm_dh, region.dcm_year, out / "model",
                       classifier=model, config={"quicklook": False})
    dt = time.perf_counter() - t0
    res["lightgbm"] = {"seconds": dt, "sites_per_min": 60 * len(sites) / dt, "mpix_per_s": mpix / dt}
    # baseline: rules by a per-pixel Python loop vs vectorised, on the same features of one site
    refs = discover_scenes([region.scene_dir])
    site = sites[0]
    ref = next(r for r in refs if r.date.year == 2018 and r.date.month == 7)
    stack, _ = load_stack(ref, site, bands=list(__import__("minescape.lulc.features", fromlist=["x"]).SPECTRAL_BANDS))
    f = compute_features(stack, load_dh(region.dcm_dh, site))
    sub = f.with_data(f.data[:, :100, :100].copy(), band_names=f.band_names)
    rules = default_rules()
    t0 = time.perf_counter()
    naive = _naive_rules(sub, rules)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        vec, _ = classify_rules(sub, rules=rules)
    t_vec = (time.perf_counter() - t0) / 20
    assert (naive == vec).all(), "naive and vectorised rules disagree"
    res["rules_naive_mpix_per_s"] = 0.01 / t_naive
    res["rules_vectorised_mpix_per_s"] = 0.01 / t_vec
    return res


def _scene_case(n: int, tile: int) -> dict:
    from minescape.lulc.pipeline import classify_scene

    scene, dh = _make_scene(n, SCRATCH / f"scene_{n}.tif")
    out = SCRATCH / f"classes_{n}_{tile}.tif"
    t0 = time.perf_counter()
    res = classify_scene(scene, dh, out, tile=tile, progress=False)
    dt = time.perf_counter() - t0
    return {"n": n, "tile": tile, "seconds": dt, "mpix_per_s": n * n / 1e6 / dt, "tiles": res["tiles"],
            "mapped_share": res["pixels"] / (n * n)}


CASES = {
    "sites": case_sites,
    "whole": lambda: _scene_case(SMALL, 4096),
    "tiled-small": lambda: _scene_case(SMALL, 1024),
    "tile": lambda: _scene_case(TILE, 1024),
}


def _child(name: str) -> None:
    from measure import emit

    os.environ.setdefault("MINESCAPE_PROGRESS", "0")
    emit(CASES[name]())


def _run(name: str) -> dict:
    from measure import run_child

    return run_child([sys.executable, __file__, "--child", name], env={"MINESCAPE_PROGRESS": "0"})


def _median_of(runs: list[dict]) -> dict:
    """Field by field median of runs' results (nested dicts too); ``_runs`` keeps every run."""
    import statistics

    out: dict = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = _median_of([r[key] for r in runs])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in runs)
        else:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="sites,whole,tiled-small,tile")
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--quick", action="store_true", help="the sites case only, 2 rounds")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    if args.quick:
        args.cases, args.repeat = "sites", 2
    from measure import fmt, machine_line

    print(machine_line(), flush=True)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    if not (SCRATCH / "region" / "region.json").exists():
        _region()
    wanted = args.cases.split(",")
    for name in wanted:
        if name not in CASES:
            raise SystemExit(f"unknown case {name!r}; choose from {', '.join(CASES)}")
        if name in ("whole", "tiled-small"):
            _make_scene(SMALL, SCRATCH / f"scene_{SMALL}.tif")
        if name == "tile":
            t0 = time.perf_counter()
            _make_scene(TILE, SCRATCH / f"scene_{TILE}.tif")
            print(f"made the {TILE} x {TILE} x 10 uint16 scene in {time.perf_counter() - t0:.0f} s "
                  "(reused on later runs)", flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in wanted}
    for rnd in range(args.repeat):  # cases alternate within each round
        for name in wanted:
            runs[name].append(_run(name))
            print(f"round {rnd + 1} {name}: {json.dumps(runs[name][-1])}", flush=True)
    results = {name: _median_of(rs) for name, rs in runs.items()}
    print(f"\n== mining LULC benchmark: medians of {args.repeat} alternating rounds (min-max below) ==")
    for name, rs in runs.items():
        if name == "sites":
            for k in ("rules", "rules+quicklook", "lightgbm"):
                print(f"  sites {k:16s} {fmt([r[k]['sites_per_min'] for r in rs], ' sites/min', 1)}")
        else:
            print(f"  {name:22s} {fmt([r['mpix_per_s'] for r in rs], ' Mpix/s')}  peak "
                  f"{fmt([r['peak_rss_mb'] for r in rs], ' MB', 0)}")
    if "sites" in results:
        s = results["sites"]
        print(f"per-site chain ({s['sites']:.0f} sites, {s['site_grid_mpix']} Mpix of site grids):")
        for k in ("rules", "rules+quicklook", "lightgbm"):
            print(f"  {k:16s} {s[k]['sites_per_min']:7.1f} sites/min  {s[k]['mpix_per_s']:6.3f} Mpix/s "
                  f"({s[k]['seconds']:.1f} s)")
        print(f"  training LightGBM on 3 sites: {s['train_seconds']:.1f} s; peak RSS {s['peak_rss_mb']:.0f} MB")
        print(f"  rules vectorised {s['rules_vectorised_mpix_per_s']:.2f} Mpix/s vs naive per-pixel loop "
              f"{s['rules_naive_mpix_per_s']:.4f} Mpix/s: "
              f"x{s['rules_vectorised_mpix_per_s'] / s['rules_naive_mpix_per_s']:.0f}")
    if "whole" in results:
        w = results["whole"]
        print(f"whole-array {SMALL}x{SMALL} (baseline): {w['mpix_per_s']:.2f} Mpix/s, peak {w['peak_rss_mb']:.0f} MB "
              f"({w['peak_rss_mb'] / (SMALL * SMALL / 1e6):.0f} MB/Mpix)")
        if "tiled-small" in results:
            t = results["tiled-small"]
            print(f"windowed {SMALL}x{SMALL}: {t['mpix_per_s']:.2f} Mpix/s (x{t['mpix_per_s'] / w['mpix_per_s']:.2f} "
                  f"of whole), peak {t['peak_rss_mb']:.0f} MB (x{t['peak_rss_mb'] / w['peak_rss_mb']:.2f} of whole)")
    if "tile" in results:
        t = results["tile"]
        print(f"windowed {TILE}x{TILE} 10-band tile: {t['mpix_per_s']:.2f} Mpix/s ({t['seconds']:.0f} s, "
              f"{t['tiles']} windows), peak {t['peak_rss_mb']:.0f} MB (goal < 2048 MB: "
              f"{'met' if t['peak_rss_mb'] < 2048 else 'NOT met'})")
        if "whole" in results:
            w = results["whole"]
            extrap = w["peak_rss_mb"] / (SMALL * SMALL / 1e6) * TILE * TILE / 1e6
            print(f"  vs whole-array: speed x{t['mpix_per_s'] / w['mpix_per_s']:.2f}; "
                  f"memory x{t['peak_rss_mb'] / extrap:.3f} "
                  f"of the whole-array version extrapolated to the tile ({extrap / 1024:.1f} GB)")


if __name__ == "__main__":
    main()

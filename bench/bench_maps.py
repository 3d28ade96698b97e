"""Benchmarks of large-area maps: tiled-inference memory, weak supervision, real WorldCover products/validation.

Run:  flock /tmp/minescape-heavy.lock .venv/bin/python bench/bench_maps.py [--only memory|weak|worldcover|scan]

Each case runs in its own subprocess and reports its peak resident memory (``resource.getrusage``), so
cases do not inherit each other's peaks. Figures are printed as ratios against a baseline measured in the
same run (a process that only imports the libraries; the smaller input for the memory-scaling case; the
upsampled low-resolution labels for weak supervision; the census of every pixel for the sampled agreement).
Scratch files go to /tmp/minescape-bench-maps (removed at the end unless --keep).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SCRATCH = Path("/tmp/minescape-bench-maps")
WORLDCOVER_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "esa-worldcover"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------------- workers


def case_baseline() -> dict:
    import lightgbm  # noqa: F401
    import rasterio  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import torch  # noqa: F401

    import minescape.maps.tiled  # noqa: F401

    return {}


def _write_input(path: Path, side: int) -> Path:
    """A 3-band uint8 image of ``side`` x ``side`` px, streamed strip by strip (cheap smooth pattern)."""
    import numpy as np
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.windows import Window

    from minescape.geo.grid import Grid
    from minescape.geo.raster import open_writer

    if path.exists():
        return path
    grid = Grid(CRS.from_epsg(32633), Affine(10, 0, 300000, 0, -10, 5_000_000), side, side)
    cols = np.arange(side, dtype=np.float32)
    with open_writer(path, grid, count=3, dtype="uint8", nodata=0, blocksize=512) as dst:
        for r0 in range(0, side, 512):
            h = min(512, side - r0)
            rows = np.arange(r0, r0 + h, dtype=np.float32)[:, None]
            a = 128 + 60 * np.sin(cols[None] / 97) + 60 * np.cos(rows / 131)
            b = 128 + 90 * np.sin((cols[None] + rows) / 211)
            c = 128 + 90 * np.cos((cols[None] - rows) / 173)
            block = np.clip(np.stack([a, b, c]), 1, 255).astype(np.uint8)
            if r0 == 0:
                block[:, :64, :64] = 0  # a nodata corner
            dst.write(block, window=Window(0, r0, side, h))
    return path


def _logistic_model():
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.uniform(1, 255, (3000, 3)).astype(np.float32)
    y = np.where(x[:, 0] > 150, 10, np.where(x[:, 1] > 128, 30, 80))
    return LogisticRegression(max_iter=500).fit(x, y)


def case_make_input(side: int) -> dict:
    t0 = time.perf_counter()
    _write_input(SCRATCH / f"input_{side}.tif", side)
    return {"seconds": time.perf_counter() - t0}


def case_pixel(side: int, tile: int) -> dict:
    from minescape.legend import WORLDCOVER
    from minescape.maps.tiled import pixel_predictor, predict_tiled

    model = _logistic_model()
    pred = pixel_predictor(model, codes=model.classes_, n_bands=3, name="logistic regression")
    t0 = time.perf_counter()
    res = predict_tiled(SCRATCH / f"input_{side}.tif", pred, SCRATCH / f"pixel_{side}.tif", legend=WORLDCOVER,
                        tile=tile)
    return {"seconds": time.perf_counter() - t0, "tiles": res.tiles, "mpix": side * side / 1e6,
            "out_mb": res.path.stat().st_size / 1e6}


def case_unet(side: int, tile: int) -> dict:
    import numpy as np
    import torch

    from minescape.legend import WORLDCOVER
    from minescape.maps.tiled import predict_tiled, unet_predictor
    from minescape.maps.train import Checkpoint
    from minescape.maps.unet import UNet

    torch.manual_seed(0)  # the bench's own process: seeded, one thread (as before)
    torch.set_num_threads(1)
    net = UNet(3, len(WORLDCOVER), base=8, depth=3).eval()  # untrained weights: memory/speed only
    ckpt = Checkpoint(net=net, legend=WORLDCOVER, mean=np.full(3, 128, np.float32), std=np.full(3, 50, np.float32))
    t0 = time.perf_counter()
    res = predict_tiled(SCRATCH / f"input_{side}.tif", unet_predictor(ckpt, window=256, stride=192),
                        SCRATCH / f"unet_{side}.tif", legend=WORLDCOVER, tile=tile)
    return {"seconds": time.perf_counter() - t0, "tiles": res.tiles, "mpix": side * side / 1e6}


def case_weak() -> dict:
    import numpy as np

    from minescape.accuracy import evaluate
    from minescape.legend import SINOLC1
    from minescape.maps.boundary import boundary_f1
    from minescape.maps.synthetic_hr import HRConfig, make_scene
    from minescape.maps.train import TrainConfig, predict_proba
    from minescape.maps.weak import train_weak, upsample_labels

    scene = make_scene(HRConfig(seed=0))
    truth = scene.truth.data[0]
    codes = np.asarray(SINOLC1.codes)

    def scores(pred):
        return {"oa": evaluate(truth, pred, SINOLC1.codes).overall_accuracy,
                "bf1_1px": boundary_f1(truth, pred, tolerance=1)["f1"],
                "bf1_2px": boundary_f1(truth, pred, tolerance=2)["f1"]}

    out = {name: scores(upsample_labels(p, scene.image.grid, SINOLC1).data[0])
           for name, p in (("labels_10m", scene.label_10m), ("labels_30m", scene.label_30m))}
    t0 = time.perf_counter()
    res = train_weak(scene.image, [scene.label_10m, scene.label_30m], SINOLC1,
                     config=TrainConfig(epochs=10, steps_per_epoch=30, seed=0))
    out["train_seconds"] = time.perf_counter() - t0
    for name, ck in (("unet_round1", res.first_round), ("unet_self_trained", res.model)):
        out[name] = scores(codes[predict_proba(ck, scene.image.data).argmax(0)])
    out["agreement_share"] = res.agreement_share
    out["relabel_share"] = res.relabel_share
    out["scene"] = f"{truth.shape[1]}x{truth.shape[0]} px at 1 m"
    return out


def case_worldcover() -> dict:
    import numpy as np
    import pandas as pd

    from minescape.legend import WORLDCOVER
    from minescape.maps.products import grid_units, make_products, read_admin, unit_stem
    from minescape.maps.validate import (
        census_agreement,
        compare_areas,
        map_class_areas,
        oa_per_unit,
        validate_sample,
        write_validation,
    )
    from minescape.sampling import export_points, read_reference_at, stratified_points

    m = WORLDCOVER_DIR / "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"
    r = WORLDCOVER_DIR / "ESA_WorldCover_10m_2020_v100_N00E006_Map.tif"
    out = SCRATCH / "worldcover"
    units = grid_units((6.0, 0.0, 9.0, 3.0), nx=6, ny=6, regions=2, provinces_per_region=3)
    units.to_file(SCRATCH / "admin.gpkg")
    times = {}
    t0 = time.perf_counter()
    p21 = make_products(m, SCRATCH / "admin.gpkg", out / "products2021", legend=WORLDCOVER, size_cap=2 * 10**6)
    times["products_2021"] = time.perf_counter() - t0
    make_products(r, SCRATCH / "admin.gpkg", out / "products2020", legend=WORLDCOVER, size_cap=2 * 10**6)
    t0 = time.perf_counter()
    census = census_agreement(m, r, WORLDCOVER)
    times["census"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pts, counts = stratified_points(m, 2000, WORLDCOVER, allocation="olofsson", min_per_class=50, seed=0)
    pts["ref_code"] = read_reference_at(pts, r)
    pts = pts[np.isin(pts["ref_code"], WORLDCOVER.codes)]
    export_points(pts, out / "sample")
    areas = map_class_areas(m, WORLDCOVER)
    v = validate_sample(pts, WORLDCOVER, areas)
    adm = read_admin(SCRATCH / "admin.gpkg")
    adm["unit"] = [unit_stem(a.region, a.province, a.city) for a in adm.itertuples()]
    write_validation(v, WORLDCOVER, out / "validation", per_unit=oa_per_unit(pts, adm))
    times["sample_validate"] = time.perf_counter() - t0
    cmp = compare_areas(pd.read_csv(out / "products2021" / "class_areas.csv"),
                        pd.read_csv(out / "products2020" / "class_areas.csv"), WORLDCOVER)
    e = v.estimates
    k = {c: i for i, c in enumerate(WORLDCOVER.codes)}
    census_area = census.matrix.sum(axis=1) / census.n * areas.sum()
    big = cmp[cmp["reference"] > 1.0]
    return {
        "units": len(p21.tiles), "failed": len(p21.failed), "zips": len(p21.zips), "versions": len(p21.versions),
        "land_km2_2021": float(areas.sum() - areas[k[80]]), "water_km2_2021": float(areas[k[80]]),
        "census_oa": census.overall_accuracy, "census_n": census.n,
        "sample_n": len(pts), "sample_oa": v.metrics.overall_accuracy, "sample_kappa": v.metrics.kappa,
        "aw_oa": e.overall_accuracy, "aw_oa_ci": e.overall_accuracy_ci,
        "tree_km2": [float(e.area[k[10]]), float(e.area_ci[k[10]]), float(census_area[k[10]])],
        "built_km2": [float(e.area[k[50]]), float(e.area_ci[k[50]]), float(census_area[k[50]])],
        "median_abs_rel_diff_units_gt_1km2": float(big["relative_difference"].abs().median()),
        "seconds": times,
    }


def case_scan(cache_mb: int) -> dict:
    """One-pass readers over the real WorldCover tiles (class counts, ellipsoidal class areas, the census of two
    maps) with GDAL's block cache capped at ``cache_mb`` MB (``scan_reads``; 0 = GDAL's default, 5 % of RAM)."""
    import minescape.geo.raster as raster
    from minescape.legend import WORLDCOVER
    from minescape.maps.validate import census_agreement, map_class_areas
    from minescape.sampling import stratum_counts

    raster.SCAN_CACHE_MB = cache_mb
    m = WORLDCOVER_DIR / "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"
    r = WORLDCOVER_DIR / "ESA_WorldCover_10m_2020_v100_N00E006_Map.tif"
    t0 = time.perf_counter()
    counts = stratum_counts(m, WORLDCOVER)
    areas = map_class_areas(m, WORLDCOVER)
    census = census_agreement(m, r, WORLDCOVER)
    return {"seconds": time.perf_counter() - t0, "pixels": int(counts.sum()), "km2": float(areas.sum()),
            "census_oa": census.overall_accuracy}


# ---------------------------------------------------------------------------------------------------- driver


def _run(case: str, *args: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"case {case} {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs="+")
    ap.add_argument("--only", choices=["memory", "weak", "worldcover", "scan"])
    ap.add_argument("--runs", type=int, default=3, help="alternating runs per setting of the scan case")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--big", type=int, default=20000, help="side of the large input (px)")
    ns = ap.parse_args()
    if ns.worker:
        import os

        os.environ.setdefault("MINESCAPE_PROGRESS", "0")
        name, *args = ns.worker
        fn = globals()[f"case_{name.replace('-', '_')}"]
        result = fn(*[int(a) for a in args])
        result["peak_mb"] = _peak_mb()
        print(json.dumps(result))
        return
    sys.stdout.reconfigure(line_buffering=True)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = _run("baseline")["peak_mb"]
    print(f"baseline: a process importing numpy/rasterio/torch/lightgbm/sklearn/minescape peaks at {base:.0f} MB")
    try:
        if ns.only in (None, "weak"):
            w = _run("weak")
            print(f"\n[low-to-high weak supervision, synthetic scene {w['scene']}, truth as reference; boundary F1 "
                  f"with 1 and 2 px tolerance]")
            for name in ("labels_10m", "labels_30m", "unet_round1", "unet_self_trained"):
                s = w[name]
                print(f"  {name:18s} OA {s['oa']:.3f}  BF1@1px {s['bf1_1px']:.3f}  BF1@2px {s['bf1_2px']:.3f}")
            b, h = w["labels_10m"], w["unet_self_trained"]
            print(f"  self-trained U-Net vs upsampled 10 m labels: OA x{h['oa'] / b['oa']:.3f}, BF1@2px "
                  f"x{h['bf1_2px'] / b['bf1_2px']:.2f}; labels agree on {w['agreement_share']:.1%}, self-training "
                  f"relabelled {w['relabel_share']:.1%}; training {w['train_seconds']:.0f} s, "
                  f"peak {w['peak_mb']:.0f} MB")
        if ns.only in (None, "memory"):
            small, big, tile = 2000, ns.big, 1024
            for side in (small, big):
                _run("make-input", str(side))
            p_small = _run("pixel", str(small), str(tile))
            p_big = _run("pixel", str(big), str(tile))
            print(f"\n[tiled inference, pixel model (logistic regression predict_proba), tile {tile} px, COG output]")
            for side, p in ((small, p_small), (big, p_big)):
                raw = side * side * 3 / 1e6
                print(f"  {side}x{side} px ({p['mpix']:.0f} Mpx, {raw:.0f} MB raw input): peak {p['peak_mb']:.0f} MB, "
                      f"{p['tiles']} tiles, {p['seconds']:.1f} s, {p['mpix'] / p['seconds']:.2f} Mpx/s")
            print(f"  pixels x{p_big['mpix'] / p_small['mpix']:.0f} -> peak memory "
                  f"x{p_big['peak_mb'] / p_small['peak_mb']:.2f} (the baseline process also imports torch)")
        if ns.only in (None, "worldcover"):
            if not WORLDCOVER_DIR.exists():
                print(f"\n[worldcover] skipped: {WORLDCOVER_DIR} not found")
            else:
                r = _run("worldcover")
                print("\n[real ESA WorldCover N00E006, 36000x36000 px: 2021 v200 as map, 2020 v100 as reference, "
                      "6x6 synthetic admin units]")
                print(f"  products: {r['units']} unit GeoTIFFs ({r['failed']} failed), {r['zips']} province ZIPs, "
                      f"{r['versions']} versions; land {r['land_km2_2021']:.1f} km², "
                      f"water {r['water_km2_2021']:.1f} km²")
                print(f"  census agreement (all {r['census_n'] / 1e6:.0f} Mpx with data in both): "
                      f"OA {r['census_oa']:.4f}")
                print(f"  stratified sample n={r['sample_n']} (Olofsson allocation): "
                      f"area-weighted OA {r['aw_oa']:.4f} ± "
                      f"{r['aw_oa_ci']:.4f} (95 %), ratio to census {r['aw_oa'] / r['census_oa']:.4f}; sample OA "
                      f"{r['sample_oa']:.3f}, kappa {r['sample_kappa']:.3f}")
                for name, key in (("tree cover", "tree_km2"), ("built-up", "built_km2")):
                    est, ci, cen = r[key]
                    print(f"  {name} area: {est:.1f} ± {ci:.1f} km² estimated vs {cen:.1f} km² census (ratio "
                          f"{est / cen:.3f})")
                print(f"  per-unit class areas 2021 vs 2020: median |relative difference| "
                      f"{r['median_abs_rel_diff_units_gt_1km2']:.3f} (classes > 1 km² in 2020)")
                print(f"  seconds: {r['seconds']}; peak memory {r['peak_mb']:.0f} MB (limit 3072 MB, baseline "
                      f"{base:.0f} MB)")
        if ns.only in (None, "scan"):
            if not WORLDCOVER_DIR.exists():
                print(f"\n[scan] skipped: {WORLDCOVER_DIR} not found")
            else:
                from minescape.geo.raster import SCAN_CACHE_MB

                runs: dict[int, list[dict]] = {0: [], SCAN_CACHE_MB: []}
                for _ in range(ns.runs):  # alternating, each in a fresh process
                    for cap in runs:
                        runs[cap].append(_run("scan", str(cap)))
                same = {json.dumps({k: v for k, v in x.items() if k not in ("seconds", "peak_mb")}, sort_keys=True)
                        for xs in runs.values() for x in xs}
                print(f"\n[one-pass readers over the real WorldCover tiles (class counts, class areas, census of "
                      f"2021 vs 2020), {ns.runs} alternating runs: GDAL's default block cache vs scan_reads' "
                      f"{SCAN_CACHE_MB} MB; median (min-max)]")
                for cap, xs in runs.items():
                    peaks, secs = sorted(x["peak_mb"] for x in xs), sorted(x["seconds"] for x in xs)
                    label = "GDAL default" if cap == 0 else f"cap {cap} MB"
                    print(f"  {label:13s} peak {peaks[len(peaks) // 2]:.0f} MB ({peaks[0]:.0f}-{peaks[-1]:.0f}), "
                          f"{secs[len(secs) // 2]:.1f} s ({secs[0]:.1f}-{secs[-1]:.1f})")
                med = {cap: sorted(x["peak_mb"] for x in xs)[len(xs) // 2] for cap, xs in runs.items()}
                tmed = {cap: sorted(x["seconds"] for x in xs)[len(xs) // 2] for cap, xs in runs.items()}
                print(f"  peak memory x{med[SCAN_CACHE_MB] / med[0]:.2f}, time x{tmed[SCAN_CACHE_MB] / tmed[0]:.2f} "
                      f"(capped / default; baseline process {base:.0f} MB); "
                      f"same results in every run: {len(same) == 1}")
        if ns.only in (None, "memory"):
            _run("make-input", "1000")
            u_small = _run("unet", "1000", "512")
            u_big = _run("unet", str(small), "512")
            print("\n[tiled inference, U-Net patch model (window 256, stride 192, Hann blending), tile 512 px]")
            for side, p in ((1000, u_small), (small, u_big)):
                print(f"  {side}x{side} px: peak {p['peak_mb']:.0f} MB, {p['tiles']} tiles, {p['seconds']:.1f} s "
                      f"({p['mpix'] / p['seconds']:.3f} Mpx/s)")
            print(f"  pixels x{u_big['mpix'] / u_small['mpix']:.0f} -> "
                  f"peak memory x{u_big['peak_mb'] / u_small['peak_mb']:.2f}")
    finally:
        if not ns.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()

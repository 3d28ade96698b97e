"""DEFLATE of float GeoTIFFs: GDAL's default level 6 against level 1 (``geo.raster.FLOAT_DEFLATE_LEVEL``), and
level 1 without the float predictor (what ``change detect`` writes its difference with).

The float maps minescape writes, made here from real data where there is some: the SAVI differences of two OSCD
city pairs (``change detect`` on ``../shared/data/oscd``; skipped without it), and the DEM change and SAVI
difference of the built-in synthetic region. Each map is written whole, tiled 256 px, three ways in turn, for
``--repeat`` rounds (default 5): level 6 with predictor 3 (the baseline: minescape until session 20), level 1
with predictor 3 (float maps now), level 1 without a predictor; figures are medians with min and max of the
per-round ratios against the baseline, of write time, file size and read time.

    .venv/bin/python bench/bench_float_deflate.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MINESCAPE_PROGRESS", "0")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
OSCD = ROOT.parent / "shared" / "data" / "oscd" / "images"
CITIES = ("beirut", "cupertino")


def float_maps(work: Path) -> dict[str, Path]:
    """Name -> a float32 GeoTIFF to recompress."""
    from minescape.change.difference import DetectOptions, detect_files
    from minescape.synthetic import generate

    maps: dict[str, Path] = {}
    for city in CITIES:
        if (OSCD / city).is_dir():
            res = detect_files(OSCD / city / "imgs_1", OSCD / city / "imgs_2", work / city, options=DetectOptions(),
                               overviews=False)
            maps[f"OSCD {city} SAVI difference"] = Path(res.difference)
        else:
            print(f"skipped OSCD {city}: {OSCD / city} not found", flush=True)
    region = generate(work / "region")
    maps["synthetic DEM change (m)"] = region.dcm_dh
    res = detect_files(region.t1, region.t2, work / "synthetic", options=DetectOptions(), overviews=False)
    maps["synthetic SAVI difference"] = Path(res.difference)
    return maps


def write(data, profile: dict, level: int, path: Path) -> float:
    import rasterio

    start = time.perf_counter()
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(path, "w", **{**profile, "zlevel": level}) as dst:
            dst.write(data, 1)
    return time.perf_counter() - start


def read(path: Path) -> float:
    import rasterio

    start = time.perf_counter()
    with rasterio.open(path) as src:
        src.read(1)
    return time.perf_counter() - start


def main() -> None:
    import numpy as np
    import rasterio
    from measure import fmt, ratio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="minescape-bench-deflate-") as tmp:
        work = Path(tmp)
        for name, path in float_maps(work).items():
            with rasterio.open(path) as src:
                data = src.read(1)
                assert data.dtype == np.float32 and np.isfinite(data).sum() > 1000, name  # a real float map
                profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1,
                           "dtype": "float32", "crs": src.crs, "transform": src.transform, "nodata": src.nodata,
                           "compress": "deflate", "predictor": 3, "tiled": True, "blockxsize": 256,
                           "blockysize": 256}
            ways = {"level 6, predictor 3": (6, 3), "level 1, predictor 3": (1, 3), "level 1, no predictor": (1, 1)}
            writes: dict[str, list[float]] = {w: [] for w in ways}
            reads: dict[str, list[float]] = {w: [] for w in ways}
            sizes: dict[str, list[float]] = {w: [] for w in ways}
            for _ in range(args.repeat):
                for way, (level, predictor) in ways.items():
                    out = work / "recompressed.tif"
                    writes[way].append(write(data, {**profile, "predictor": predictor}, level, out))
                    reads[way].append(read(out))
                    sizes[way].append(out.stat().st_size / 2**20)
                    with rasterio.open(out) as src:
                        assert np.array_equal(src.read(1), data, equal_nan=True), way  # lossless
            print(f"{name}, {data.shape[1]} x {data.shape[0]} px ({data.nbytes / 2**20:.1f} MB raw; level 6, "
                  f"predictor 3: {sizes['level 6, predictor 3'][0]:.2f} MB)", flush=True)
            base = "level 6, predictor 3"
            for way in ("level 1, predictor 3", "level 1, no predictor"):
                print(f"  {way} / {base}: write x{fmt(ratio(writes[way], writes[base]))}, "
                      f"size x{fmt(ratio(sizes[way], sizes[base]), digits=3)}, "
                      f"read x{fmt(ratio(reads[way], reads[base]))}", flush=True)


if __name__ == "__main__":
    main()

"""Change-detection benchmark: a 10980 x 10980 pair (one Sentinel-2 tile), streamed by windows vs whole-array.

A synthetic pair is written once under /tmp (uint16 DN, bands B04 and B08 per date, tiled, uncompressed,
~0.5 GB per date; T2 has cleared patches and a nodata corner). Each case runs in its own subprocess, which
reports its wall time and its peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``):

* ``whole``: the baseline: both dates read whole (``read_pair``), ``detect`` on the arrays (SAVI difference,
  Otsu threshold, opening 1, closing 1, minimum area 500 m²), mask and difference written;
* ``streamed``: ``detect_files`` with 1024-pixel windows: pass 1 writes the difference and accumulates
  the score histogram (Otsu needs the global histogram), pass 2 thresholds and cleans haloed tiles.
* ``streamed-quarter``: the same on the top-left 5490 x 5490 quarter, to show memory does not grow with input.

The masks of ``whole`` and ``streamed`` are compared window by window (they must be identical). Printed: Mpix/s,
peak memory and the ratios streamed / whole.

Run with ``flock /tmp/minescape-heavy.lock .venv/bin/python bench/bench_change.py`` (the machine is shared).
Options: ``--size N`` (default 10980), ``--window N`` (default 1024), ``--keep`` (keep the pair in /tmp).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MINESCAPE_PROGRESS", "0")

WORK = Path("/tmp/minescape-bench-change")
BANDS = ("B04", "B08")


def make_pair(size: int, folder: Path) -> tuple[Path, Path]:
    """The synthetic B04/B08 pair (``synthetic_pair.write_pair``, 1024-row strips). Deterministic."""
    from synthetic_pair import write_pair

    return write_pair(folder, size, bands=BANDS, strip=1024, stem=str(size))


def run_case(case: str, t1: str, t2: str, out: str, window: int) -> dict:
    """Run one case in this process; return time and peak memory."""
    from minescape.change.difference import DetectOptions, detect, detect_files
    from minescape.change.pairs import open_pair, read_pair
    from minescape.geo.raster import write_raster
    from minescape.legend import CHANGE

    options = DetectOptions(method="SAVI", threshold="otsu", opening=1, closing=1, min_area_m2=500)
    out_dir = Path(out)
    t0 = time.perf_counter()
    if case == "whole":
        pair = open_pair(t1, t2, bands=BANDS)
        a, b = read_pair(pair)
        res = detect(a, b, options=options)
        del a, b
        write_raster(res.mask, out_dir / "change_mask.tif", legend=CHANGE)
        write_raster(res.difference, out_dir / "difference.tif")
        stats = res.stats
        pixels = pair.grid.width * pair.grid.height
    else:
        res = detect_files(t1, t2, out_dir, options=options, window=window)
        stats = res.stats
        pixels = stats["width"] * stats["height"]
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "seconds": seconds, "peak_mb": peak_mb, "pixels": pixels,
            "threshold": stats["threshold"], "changed_pixels": stats["changed_pixels"]}


def compare_masks(a: Path, b: Path) -> bool:
    """True if two masks are identical (read window by window)."""
    import numpy as np
    import rasterio

    with rasterio.open(a) as sa, rasterio.open(b) as sb:
        if sa.shape != sb.shape:
            return False
        for _, win in sa.block_windows(1):
            if not np.array_equal(sa.read(1, window=win), sb.read(1, window=win)):
                return False
    return True


def crop_quarter(t: Path, out: Path) -> Path:
    """The top-left quarter of a scene (GDAL translate by window: no full read)."""
    import rasterio
    from rasterio.windows import Window

    if out.exists():
        return out
    with rasterio.open(t) as src:
        half = src.width // 2
        profile = src.profile | {"width": half, "height": half,
                                 "transform": src.window_transform(Window(0, 0, half, half))}
        with rasterio.open(out, "w", **profile) as dst:
            dst.descriptions = src.descriptions
            for _, win in dst.block_windows(1):
                dst.write(src.read(window=win), window=win)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--args", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process
        print(json.dumps(run_case(args.case, *args.args, window=args.window)))
        return 0

    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    t1, t2 = make_pair(args.size, WORK)
    print(f"pair: {args.size} x {args.size} px, bands {', '.join(BANDS)} per date, uint16 "
          f"({(t1.stat().st_size + t2.stat().st_size) / 2**30:.2f} GiB on disk; ready in "
          f"{time.perf_counter() - t0:.0f} s)", flush=True)
    q1 = crop_quarter(t1, WORK / f"t1_{args.size}_q.tif")
    q2 = crop_quarter(t2, WORK / f"t2_{args.size}_q.tif")

    results = {}
    for case, a, b in (("streamed", t1, t2), ("streamed-quarter", q1, q2), ("whole", t1, t2)):
        out = WORK / f"out-{case}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        proc = subprocess.run([sys.executable, __file__, "--case", case.split("-")[0], "--window", str(args.window),
                               "--args", str(a), str(b), str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{case}: failed\n{proc.stderr[-2000:]}")
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results[case] = r
        print(f"{case:17s} {r['pixels'] / 1e6:7.1f} Mpix  {r['seconds']:7.1f} s  "
              f"{r['pixels'] / 1e6 / r['seconds']:6.2f} Mpix/s  peak {r['peak_mb']:7.0f} MB  "
              f"threshold {r['threshold']:.4f}  changed {r['changed_pixels']}", flush=True)
    s, w, q = results["streamed"], results["whole"], results["streamed-quarter"]
    same = compare_masks(WORK / "out-streamed" / "change_mask.tif", WORK / "out-whole" / "change_mask.tif")
    print(f"streamed / whole: speed x{(s['pixels'] / s['seconds']) / (w['pixels'] / w['seconds']):.2f}, "
          f"peak memory x{s['peak_mb'] / w['peak_mb']:.3f} ({s['peak_mb']:.0f} MB vs {w['peak_mb']:.0f} MB); "
          f"masks identical: {same}")
    print(f"streamed full / quarter: pixels x{s['pixels'] / q['pixels']:.1f}, peak memory "
          f"x{s['peak_mb'] / q['peak_mb']:.2f}; streamed peak under 1 GB: {s['peak_mb'] < 1024}")
    for case in results:
        shutil.rmtree(WORK / f"out-{case}", ignore_errors=True)
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

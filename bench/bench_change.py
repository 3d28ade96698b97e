"""Change-detection benchmark: a 10980 x 10980 pair (one Sentinel-2 tile), streamed by windows on one and two
worker processes, against the whole-array version.

A synthetic pair is written once under /tmp (uint16 DN, bands B04 and B08 per date, tiled, uncompressed,
~0.5 GB per date; T2 has cleared patches and a nodata corner). Each case runs in its own child process, which
reports its wall time and the peak memory of the work (``measure.TreePeak``: the child's own VmHWM and the
summed RSS of its worker processes, never the parent's ``ru_maxrss`` inherited across exec):

* ``whole``: the baseline: both dates read whole (``read_pair``), ``detect`` on the arrays (SAVI difference,
  Otsu threshold, opening 1, closing 1, minimum area 500 m²), mask and difference written;
* ``streamed``: ``detect_files`` with 1024-pixel windows in one process: pass 1 writes the difference and
  accumulates the score histogram (Otsu needs the global histogram), pass 2 thresholds and cleans haloed tiles;
* ``streamed-x2``: the same with ``workers=2`` (windows computed by two processes, written in order);
* ``streamed-quarter``: one process on the top-left 5490 x 5490 quarter, to show memory does not grow with input;
* ``streamed-bare`` / ``streamed-x2-bare``: ``streamed`` / ``streamed-x2`` without the outputs' internal
  overviews (``--no-overviews``): what building them costs (the other streamed cases build them, as the CLI
  does by default; ``whole`` writes none).

Cases alternate within each of ``--repeat`` rounds (default 3); figures are medians with min and max. The mask
and difference of ``streamed`` and ``streamed-x2`` must be the same bytes, and the masks of ``whole`` and
``streamed`` identical pixel for pixel.

Run: ``python bench/bench_change.py`` (about 6 min idle on 2 cores: 3 rounds of 4 cases after a one-off pair
write of ~1 min), or ``python bench/bench_change.py --quick`` (2048 px pair, 2 rounds, about 30 s).
Options: ``--size N`` (default 10980), ``--window N`` (default 1024), ``--repeat N``, ``--keep``, ``--baseline REV``
(the streamed and streamed-x2 cases also on the code of git revision REV, alternating: "this tree / baseline").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MINESCAPE_PROGRESS", "0")

WORK = Path(os.environ.get("MINESCAPE_BENCH_DIR", "/tmp/minescape-bench-change"))
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
BANDS = ("B04", "B08")


def make_pair(size: int, folder: Path) -> tuple[Path, Path]:
    """The synthetic B04/B08 pair (``synthetic_pair.write_pair``, 1024-row strips). Deterministic."""
    from synthetic_pair import write_pair

    return write_pair(folder, size, bands=BANDS, strip=1024, stem=str(size))


def run_case(case: str, t1: str, t2: str, out: str, window: int) -> dict:
    """Run one case in this process; return time and peak memory."""
    from measure import TreePeak

    from minescape.change.difference import DetectOptions, detect, detect_files
    from minescape.change.pairs import open_pair, read_pair
    from minescape.geo.raster import write_raster
    from minescape.legend import CHANGE

    options = DetectOptions(method="SAVI", threshold="otsu", opening=1, closing=1, min_area_m2=500)
    out_dir = Path(out)
    with TreePeak() as peak:
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
            workers = 2 if "x2" in case else 1
            res = detect_files(t1, t2, out_dir, options=options, window=window, workers=workers,
                               overviews=not case.endswith("bare"))
            stats = res.stats
            pixels = stats["width"] * stats["height"]
        seconds = time.perf_counter() - t0
    return {"case": case, "seconds": seconds, "peak_mb": peak.peak_mb, "cpu_seconds": peak.cpu_seconds,
            "pixels": pixels, "threshold": stats["threshold"], "changed_pixels": stats["changed_pixels"]}


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


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes."""
    import filecmp

    return filecmp.cmp(a, b, shallow=False)


CASES = ("streamed", "streamed-x2", "whole", "streamed-quarter", "streamed-bare", "streamed-x2-bare")


def main() -> int:
    from measure import fmt, machine_line, ratio, two_core_bound

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of alternating cases (default 3)")
    parser.add_argument("--quick", action="store_true", help="2048 px pair, 2 rounds: a check in ~30 s")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--baseline", help="git revision whose code also runs the streamed and streamed-x2 cases, "
                                           "alternating (from session 19 on: detect_files takes overviews=)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--args", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process
        print(json.dumps(run_case(args.case, *args.args, window=args.window)))
        return 0
    if args.quick:
        args.size, args.repeat = 2048, 2

    print(machine_line(), flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    t1, t2 = make_pair(args.size, WORK)
    print(f"pair: {args.size} x {args.size} px, bands {', '.join(BANDS)} per date, uint16 "
          f"({(t1.stat().st_size + t2.stat().st_size) / 2**30:.2f} GiB on disk; ready in "
          f"{time.perf_counter() - t0:.0f} s)", flush=True)
    q1 = crop_quarter(t1, WORK / f"t1_{args.size}_q.tif")
    q2 = crop_quarter(t2, WORK / f"t2_{args.size}_q.tif")

    cases = list(CASES)
    env = dict(os.environ)
    if args.baseline:  # the same two cases on the baseline's code (PYTHONPATH puts its minescape first)
        from measure import export_tree

        tree = export_tree(args.baseline, WORK)
        cases += [f"{c}@baseline" for c in ("streamed", "streamed-x2")]
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    same_files, same_masks = True, True
    for rnd in range(args.repeat):  # cases alternate within each round
        for case in cases:
            a, b = (q1, q2) if case.endswith("quarter") else (t1, t2)
            out = WORK / f"out-{case}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            child_env = {**env, "PYTHONPATH": str(tree)} if case.endswith("@baseline") else env
            proc = subprocess.run([sys.executable, __file__, "--case",
                                   case.removesuffix("-quarter").removesuffix("@baseline"),
                                   "--window", str(args.window), "--args", str(a), str(b), str(out)],
                                  capture_output=True, text=True, cwd=str(HERE), env=child_env)
            if proc.returncode != 0:
                print(f"{case}: failed\n{proc.stderr[-2000:]}")
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[case].append(r)
            print(f"round {rnd + 1}  {case:17s} {r['pixels'] / 1e6:7.1f} Mpix  {r['seconds']:7.1f} s  "
                  f"{r['pixels'] / 1e6 / r['seconds']:6.2f} Mpix/s  cpu {r['cpu_seconds']:6.1f} s  "
                  f"peak {r['peak_mb']:7.0f} MB  "
                  f"threshold {r['threshold']:.4f}  changed {r['changed_pixels']}", flush=True)
        o1, o2, ow = (WORK / f"out-{c}" for c in ("streamed", "streamed-x2", "whole"))
        same_files &= all(same_bytes(o1 / n, o2 / n) for n in ("change_mask.tif", "difference.tif", "detect.json"))
        same_masks &= compare_masks(o1 / "change_mask.tif", ow / "change_mask.tif")

    def mpix_s(case):
        return [r["pixels"] / 1e6 / r["seconds"] for r in runs[case]]

    def peaks(case):
        return [r["peak_mb"] for r in runs[case]]

    print(f"\n== change detection, {args.size}^2 pair, {args.repeat} alternating rounds: median (min-max) ==")
    for case in cases:
        print(f"{case:17s} {fmt(mpix_s(case), ' Mpix/s')}   peak {fmt(peaks(case), ' MB', 0)}")
    print(f"2 workers / 1 worker (streamed): speed x{fmt(ratio(mpix_s('streamed-x2'), mpix_s('streamed')))} "
          f"(goal >= 1.6); files the same bytes: {same_files}")
    cpu1 = [r["cpu_seconds"] for r in runs["streamed"]]
    cpu2 = [r["cpu_seconds"] for r in runs["streamed-x2"]]
    print(f"  CPU seconds 1 worker {fmt(cpu1, ' s', 1)}, 2 workers (parent + workers) {fmt(cpu2, ' s', 1)}: "
          f"at most x{fmt(two_core_bound(cpu1, cpu2))} on two idle cores (load-independent bound)")
    print(f"streamed / whole: speed x{fmt(ratio(mpix_s('streamed'), mpix_s('whole')))}, peak memory "
          f"x{fmt(ratio(peaks('streamed'), peaks('whole')), digits=3)}; masks identical: {same_masks}")
    print(f"overviews: streamed / streamed-bare: time x{fmt(ratio(mpix_s('streamed-bare'), mpix_s('streamed')))}, "
          f"peak memory x{fmt(ratio(peaks('streamed'), peaks('streamed-bare')))}; 2 workers: time "
          f"x{fmt(ratio(mpix_s('streamed-x2-bare'), mpix_s('streamed-x2')))}")
    print(f"2 workers / 1 worker without overviews: speed "
          f"x{fmt(ratio(mpix_s('streamed-x2-bare'), mpix_s('streamed-bare')))}")
    if args.baseline:
        for case in ("streamed", "streamed-x2"):
            print(f"{case}: time this tree / baseline {args.baseline} "
                  f"x{fmt(ratio(mpix_s(case + '@baseline'), mpix_s(case)))}")
        base2, base1 = mpix_s("streamed-x2@baseline"), mpix_s("streamed@baseline")
        print(f"  baseline: 2 workers / 1 worker x{fmt(ratio(base2, base1))}")
    print(f"streamed full / quarter: peak memory x{fmt(ratio(peaks('streamed'), peaks('streamed-quarter')))}; "
          f"streamed peak under 1 GB in every run: {max(peaks('streamed')) < 1024}")
    for case in CASES:
        shutil.rmtree(WORK / f"out-{case}", ignore_errors=True)
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
    return 0 if same_files and same_masks else 1


if __name__ == "__main__":
    sys.exit(main())

"""Deep change inference benchmark: Mpix/s and peak memory, streamed tiles vs whole-image, on a full OSCD city and
on a 10980 x 10980 synthetic pair (one Sentinel-2 tile).

Each case runs in its own subprocess and reports its wall time and peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). The network is a seeded, untrained FC-Siam-diff (speed and
memory do not depend on the weights); ``--arch`` picks another.

* ``city-whole`` (baseline): the largest OSCD city (abudhabi, 799 x 785 px, 13 bands) read whole
  (``read_oscd_city``) and predicted as one image (``predict_arrays`` with one tile, no overlap);
* ``city-streamed``: ``predict_scene`` on the city's band folders: 256-px tiles, 32-px blended overlap, one strip
  of tiles in memory, both GeoTIFFs written window by window. Its probabilities are compared with the whole-image
  ones (max/mean absolute difference: the blending tolerance);
* ``city-coregistered``: the same with ``coregister=True`` (shift estimated on the central window, each strip read
  with a halo and date 2 shifted): the cost of co-registration against ``city-streamed``;
* ``s2tile-streamed``: ``predict_scene`` on a 10980 x 10980 synthetic pair (uint16 DN stacks, 4 bands, in /tmp,
  written once, window by window), 512-px tiles with 32-px overlap.
* ``s2tile-whole`` is not run by default: the whole-image baseline on 10980 x 10980 x 4 bands would need about
  120 Mpix x (2 dates x 4 bands x 4 B + the network's activations, ~1 KB/px for FC-Siam-diff) > 100 GB.

Printed: Mpix/s, peak MB and the ratios streamed / whole (speed) and s2tile / city (memory: it must not grow with
the number of pixels, only with the tile-strip width).

Run with ``flock /tmp/minescape-heavy.lock .venv/bin/python bench/bench_deep_change.py`` (the machine is shared).
Options: ``--size N`` (default 10980), ``--rows N`` (a strip of the full width: same peak memory, less time),
``--threads N`` (default 2), ``--arch``, ``--keep`` (keep the pair),
``--skip-big``.
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

ROOT = Path(__file__).resolve().parents[1]
WORK = Path("/tmp/minescape-bench-deep")
BANDS = ("B02", "B03", "B04", "B08")
CITY = "abudhabi"


def make_pair(size: int, folder: Path, rows: int | None = None) -> tuple[Path, Path]:
    """The synthetic 4-band pair (``synthetic_pair.write_pair``, ``rows`` x ``size`` px, 512-row strips)."""
    from synthetic_pair import write_pair

    return write_pair(folder, size, rows=rows, bands=BANDS, strip=512)


def _model(arch: str, bands, folder: Path) -> Path:
    import numpy as np
    import torch

    from minescape.change.deep.model import ChangeModel, build_model, save_model

    path = folder / f"{arch}_{len(bands)}.pt"
    if not path.exists():
        torch.manual_seed(0)
        save_model(path, ChangeModel(net=build_model(arch, len(bands)), arch=arch, bands=tuple(bands),
                                     mean=np.full(len(bands), 0.1, np.float32),
                                     std=np.full(len(bands), 0.05, np.float32), threshold=0.5))
    return path


def run_case(case: str, args) -> dict:
    """Run one case in this process; return wall time, pixels and peak memory."""
    import numpy as np
    import torch

    from minescape.change.deep.infer import predict_arrays, predict_scene
    from minescape.change.deep.model import load_model
    from minescape.change.deep.runner import torch_runner

    torch.set_num_threads(args.threads)
    out = WORK / "out" / case
    out.mkdir(parents=True, exist_ok=True)
    extra: dict = {}
    t0 = time.perf_counter()
    if case == "city-whole":
        from minescape.change.datasets import read_oscd_city
        from minescape.sentinel2 import ALL_BANDS

        model = load_model(_model(args.arch, ALL_BANDS, WORK))
        pair = read_oscd_city(args.oscd, CITY, bands=ALL_BANDS)
        h, w = pair.t1.shape
        tile = ((max(h, w) + 15) // 16) * 16
        prob = predict_arrays(torch_runner(model.net), pair.t1.data, pair.t2.data, mean=model.mean, std=model.std,
                              tile=tile, overlap=0)
        np.save(out / "prob.npy", prob)
        pixels = h * w
    elif case in ("city-streamed", "city-coregistered"):
        from minescape.sentinel2 import ALL_BANDS

        model = load_model(_model(args.arch, ALL_BANDS, WORK))
        city = Path(args.oscd) / "images" / CITY
        res = predict_scene(model, city / "imgs_1", city / "imgs_2", out / "prob.tif", out / "mask.tif", tile=256,
                            overlap=32, coregister=case == "city-coregistered")
        pixels = res.pixels
        extra.update(tiles=res.tiles, shift=res.shift)
    else:  # s2tile-streamed
        model = load_model(_model(args.arch, BANDS, WORK))
        rows = args.rows or args.size
        t1, t2 = WORK / f"t1_{rows}x{args.size}.tif", WORK / f"t2_{rows}x{args.size}.tif"
        res = predict_scene(model, t1, t2, out / "prob.tif", out / "mask.tif", tile=512, overlap=32)
        pixels = res.pixels
        extra.update(tiles=res.tiles, changed_fraction=res.changed_fraction)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "seconds": seconds, "pixels": pixels, "peak_mb": peak_mb, **extra}


def _subprocess(case: str, args) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--size", str(args.size), "--rows", str(args.rows or args.size),
           "--threads", str(args.threads),
           "--arch", args.arch, "--oscd", str(args.oscd)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case")
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--rows", type=int, default=None, help="rows of the synthetic pair (default --size)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="fc-siam-diff")
    ap.add_argument("--oscd", default=str(ROOT.parent / "shared" / "data" / "oscd"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return
    import numpy as np

    WORK.mkdir(parents=True, exist_ok=True)
    results = {}
    for case in ("city-whole", "city-streamed", "city-coregistered"):
        results[case] = r = _subprocess(case, args)
        print(f"{case:16s} {r['pixels'] / 1e6:7.2f} Mpix  {r['seconds']:7.1f} s  "
              f"{r['pixels'] / 1e6 / r['seconds']:6.3f} Mpix/s  peak {r['peak_mb']:7.0f} MB", flush=True)
    from minescape.geo.raster import read_raster

    whole = np.load(WORK / "out" / "city-whole" / "prob.npy")
    streamed = read_raster(WORK / "out" / "city-streamed" / "prob.tif").data[0]
    ok = np.isfinite(whole) & np.isfinite(streamed)
    d = np.abs(whole - streamed)[ok]
    print(f"city streamed vs whole: max |dp| {d.max():.4f}, mean {d.mean():.5f}, masks agree on "
          f"{np.mean((whole[ok] >= 0.5) == (streamed[ok] >= 0.5)):.4%} of pixels")
    if not args.skip_big:
        t0 = time.perf_counter()
        make_pair(args.size, WORK, args.rows)
        print(f"synthetic pair {args.rows or args.size} x {args.size} x {len(BANDS)} bands ready "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        results["s2tile-streamed"] = r = _subprocess("s2tile-streamed", args)
        print(f"{'s2tile-streamed':16s} {r['pixels'] / 1e6:7.2f} Mpix  {r['seconds']:7.1f} s  "
              f"{r['pixels'] / 1e6 / r['seconds']:6.3f} Mpix/s  peak {r['peak_mb']:7.0f} MB", flush=True)
    cw, cs, cc = results["city-whole"], results["city-streamed"], results["city-coregistered"]
    speed = lambda r: r["pixels"] / r["seconds"]  # noqa: E731
    print(f"\nratios: city streamed/whole speed {speed(cs) / speed(cw):.2f}x, "
          f"memory {cs['peak_mb'] / cw['peak_mb']:.2f}x")
    print(f"        city co-registered/streamed (date 2 moved by {cc['shift'][0]:+.2f}, {cc['shift'][1]:+.2f} px): "
          f"speed {speed(cc) / speed(cs):.2f}x, memory {cc['peak_mb'] / cs['peak_mb']:.2f}x")
    if "s2tile-streamed" in results:
        b = results["s2tile-streamed"]
        print(f"        s2tile/city: pixels {b['pixels'] / cs['pixels']:.0f}x, speed {speed(b) / speed(cs):.2f}x, "
              f"peak memory {b['peak_mb'] / cs['peak_mb']:.2f}x")
    (WORK / "results.json").write_text(json.dumps(results, indent=2))
    if not args.keep:
        for p in WORK.glob("t?_*.tif"):
            p.unlink()
        shutil.rmtree(WORK / "out", ignore_errors=True)


if __name__ == "__main__":
    main()

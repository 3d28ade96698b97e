"""Benchmark: time to open one site's DCM window from a DLR delivery of 100 tile ZIPs vs 4 tile ZIPs.

Both deliveries hold LAST-map tile ZIPs in DLR's layout (:mod:`minescape.dcm.synthetic_tiles`): 100 tiles
(10 x 10 degrees around 117°E 22°S) and the 4 of them around the site. The site (about 1.6 x 1.1 km) straddles
the S23E117 / S23E118 edge, so each open reads windows of two tiles through ``/vsizip/`` and mosaics them onto
the site's 10 m UTM grid with the HAI/CIM masks.

Measured per delivery:

* ``index``: building the tile index once (walk the folder, list each ZIP's members);
* ``open``: :func:`minescape.dcm.site.read_site_dcm` for the site with the index built once (the per-site cost;
  goal: it does not grow with the number of tiles);
* ``no index``: the same open when the index is rebuilt for every site (what the index saves).

Each figure is the median of >= 3 runs alternating between the two deliveries (min and max shown); a run of
``open`` is the mean of 5 opens. Ratios are 100 tiles / 4 tiles in the same run.

Run: ``python bench/bench_dcm.py [--runs 5]``; scratch data in ``/tmp/minescape-bench-dcm`` (reused).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

SCRATCH = Path(os.environ.get("MINESCAPE_BENCH_DIR", "/tmp/minescape-bench-dcm"))
SITE_BOX = (117.992, -22.615, 118.007, -22.605)  # lon/lat degrees, across 118°E


def deliveries() -> dict[str, Path]:
    """The two deliveries (written once)."""
    from minescape.dcm.layers import MapKind
    from minescape.dcm.synthetic_tiles import analytic_field, write_dcm_tiles

    field = analytic_field((2018, 2019), split_lon=118.0)
    out = {}
    for name, lons, lats in (("100", range(113, 123), range(-27, -17)), ("4", range(117, 119), range(-23, -21))):
        folder = SCRATCH / f"tiles_{name}"
        done = folder / ".done"
        if not done.exists():
            boxes = [(lo + 0.45, la + 0.45, lo + 0.55, la + 0.55) for lo in lons for la in lats]
            boxes.append((SITE_BOX[0] - 0.01, SITE_BOX[1] - 0.01, SITE_BOX[2] + 0.01, SITE_BOX[3] + 0.01))
            zips = write_dcm_tiles(folder, boxes, field, kinds=(MapKind.LAST,))
            assert len(zips) == int(name), (name, len(zips))
            done.write_text("ok")
        out[name] = folder
    return out


def _time(fn, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    from shapely import box

    from minescape.dcm.index import build_index
    from minescape.dcm.site import read_site_dcm
    from minescape.sites import make_site

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    t0 = time.perf_counter()
    folders = deliveries()
    print(f"deliveries ready in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} ZIPs {sum(p.stat().st_size for p in v.glob('*.zip')) / 1e6:.1f} MB"
                      for k, v in folders.items()))
    site = make_site("BENCH", box(*SITE_BOX))
    indexes = {k: build_index(v) for k, v in folders.items()}
    for k, idx in indexes.items():
        assert len(idx) == int(k)
        d = read_site_dcm(idx, site)
        assert len(d.tiles) == 2 and d.void_share == 0, d.tiles  # both tiles really read
    times: dict[str, dict[str, list[float]]] = {k: {"index": [], "open": [], "no index": []} for k in folders}
    for _ in range(max(3, args.runs)):
        for k in ("100", "4"):  # alternate
            times[k]["index"].append(_time(lambda k=k: build_index(folders[k])))
            times[k]["open"].append(_time(lambda k=k: read_site_dcm(indexes[k], site), repeat=5))
            times[k]["no index"].append(_time(lambda k=k: read_site_dcm(build_index(folders[k]), site)))
    print(f"{'case':10s} {'100 tiles (ms)':>26s} {'4 tiles (ms)':>26s} {'ratio 100/4':>12s}")
    for case in ("index", "open", "no index"):
        cells = []
        for k in ("100", "4"):
            v = [t * 1000 for t in times[k][case]]
            cells.append(f"{statistics.median(v):8.1f} [{min(v):6.1f}-{max(v):6.1f}]")
        ratio = statistics.median(times["100"][case]) / statistics.median(times["4"][case])
        print(f"{case:10s} {cells[0]:>26s} {cells[1]:>26s} {ratio:12.2f}")
    print(f"runs: {max(3, args.runs)} alternating; load average at the end {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

"""Benchmark: how fast a big run's report opens and answers a click in headless Chromium.

A run folder of N sites is built with the real writers: irregular site polygons (``sites.gpkg``), one
synthetic class map per site (:func:`minescape.publish.sample_maps.make_site_maps`), ``sites.json`` and
``report/run.json`` (:func:`minescape.lulc.pipeline.write_run_files`, areas counted from the maps); no
quicklooks (they only load on a click). ``minescape report`` writes the page; Chromium (Debian's package,
through Selenium and /usr/bin/chromedriver) then opens it, alternating with a baseline page (the report of an
empty folder: Leaflet and the page script, no data), ``--repeat`` times each. Timed: from ``driver.get`` to
the page's ``minescapeReport.ready`` (load event, features drawn, map fitted), and from a click on a site to its
attributes in the side panel. Printed: median (min-max) and the ratio to the baseline.

``--features-only N`` adds a run of N site polygons spread over every world region, without class maps (the
80,000-site question): with more than ``MAX_PAGE_FEATURES`` sites the report has one page per region; the
biggest is timed. ``--max-page N`` overrides that cap (``--max-page 100000``: all on one page).

Run: ``.venv/bin/python bench/bench_report.py [--sites 5000] [--repeat 3] [--features-only 80000]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def site_polygons(n: int, seed: int = 0, *, world: bool = False):
    """``n`` irregular polygons (24-48 vertices, radius 250-700 m) on a jittered grid across Western Australia
    (UTM zones 49-51), or with ``world`` across 120 W - 150 E, 40 S - 60 N (every world9 region), as a
    GeoDataFrame with ``site_id``.
    """
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    geoms = []
    for k in range(n):
        if world:
            lon = -120.0 + 270.0 * (k % side) / side + rng.uniform(0, 0.01)
            lat = -40.0 + 100.0 * (k // side) / side + rng.uniform(0, 0.01)
        else:
            lon = 114.0 + 10.0 * (k % side) / side + rng.uniform(0, 0.01)
            lat = -30.0 + 10.0 * (k // side) / side + rng.uniform(0, 0.01)
        m = int(rng.integers(24, 49))
        ang = np.sort(rng.uniform(0, 2 * np.pi, m))
        r = rng.uniform(250, 700) * rng.uniform(0.6, 1.0, m) / 111_000
        xs = lon + r * np.cos(ang) / np.cos(np.radians(lat))
        ys = lat + r * np.sin(ang)
        geoms.append(shapely.make_valid(shapely.Polygon(np.column_stack([xs, ys]))))
    return gpd.GeoDataFrame({"site_id": [f"M{k:06d}" for k in range(n)]}, geometry=geoms, crs=4326)


def build_run(folder: Path, n: int, *, maps: bool) -> float:
    """Write a run folder of ``n`` sites; returns the seconds spent."""
    import rasterio

    from minescape.geo.vector import write_gpkg
    from minescape.legend import MINING_LULC
    from minescape.lulc.pipeline import write_run_files
    from minescape.publish.sample_maps import make_site_maps
    from minescape.runner import RunSummary
    from minescape.sites import read_sites

    t0 = time.perf_counter()
    folder.mkdir(parents=True)
    gdf = site_polygons(n, world=not maps)
    write_gpkg(gdf, folder / "sites.gpkg")
    sites, _ = read_sites(folder / "sites.gpkg", id_field="site_id")
    results = {}
    if maps:
        make_site_maps(gdf, folder / "maps", id_column="site_id", year=2020)
    for s in sites:
        path = folder / "maps" / f"{s.id}.tif"
        areas = {c: 0.0 for c in MINING_LULC.names}
        if maps:
            with rasterio.open(path) as src:
                counts = np.bincount(src.read(1).ravel(), minlength=8)
                px = abs(src.transform.a * src.transform.e)
            areas = {MINING_LULC.name_of(c): float(counts[c] * px) for c in MINING_LULC.codes}
        results[s.id] = {
            "site_id": s.id,
            "year": 2020,
            "year_rule": "centroid",
            "scene": "S2A_MSIL2A_20200715T022551_N0213_R046_T50KQB_20200715T061234.tif",
            "scene_date": "2020-07-15",
            "cloud_share": 0.01,
            "path": str(path) if maps else str(folder),
            "area_m2": areas,
        }
    summary = RunSummary(results=results)
    write_run_files(
        folder,
        sites,
        summary,
        config={},
        classifier="rules",
        notes=[],
        source={"sites": str(folder / "sites.gpkg"), "layer": None, "id_field": "site_id"},
    )
    if not maps:  # rows point at no map: the report draws the polygons only
        import json

        rows = json.loads((folder / "sites.json").read_text())
        for r in rows:
            r["map"] = None
        (folder / "sites.json").write_text(json.dumps(rows))
    return time.perf_counter() - t0


def browser():
    import os
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)


def open_seconds(driver, page: Path) -> float:
    """Seconds from navigation to ``minescapeReport.ready`` (asserts no console error)."""
    url = page.resolve().as_uri()
    driver.get("about:blank")
    driver.get_log("browser")
    t0 = time.perf_counter()
    driver.get(url)
    while not driver.execute_script(
        "return document.URL === arguments[0] && document.readyState === 'complete'"
        " && !!(window.minescapeReport && window.minescapeReport.ready)",
        url,
    ):
        if time.perf_counter() - t0 > 120:
            raise AssertionError(f"{page}: not ready after 120 s")
        time.sleep(0.01)
    dt = time.perf_counter() - t0
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe
    return dt


def click_seconds(driver, site_id: str) -> float:
    """Seconds from a real click on the site to its attributes in the panel."""
    from tests.webreport.test_browser import click_site

    # a user zooms to a site before clicking it (at the whole-run view a site is a pixel or two)
    driver.execute_script(
        "var id = arguments[0], R = window.minescapeReport; R.layers.forEach(function (g) { g.eachLayer("
        "function (l) { if (l.feature.properties.id === id)"
        " R.map.fitBounds(l.getBounds(), {animate: false}); }); });",
        site_id,
    )
    time.sleep(0.3)
    t0 = time.perf_counter()
    click_site(driver, site_id)
    while f"Site {site_id}" not in driver.find_element("id", "site-info").text:
        if time.perf_counter() - t0 > 30:
            raise AssertionError(f"site {site_id}: no attributes 30 s after the click")
        time.sleep(0.005)
    return time.perf_counter() - t0


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--features-only", type=int, default=0)
    ap.add_argument("--max-page", type=int, default=None)
    args = ap.parse_args()
    from minescape.webreport.write import write_report

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "empty").mkdir()
        base = write_report(tmp / "empty").path
        cases = [("sites", args.sites, True)]
        if args.features_only:
            cases.append(("features-only", args.features_only, False))
        driver = browser()
        try:
            for name, n, maps in cases:
                build = build_run(tmp / name, n, maps=maps)
                t0 = time.perf_counter()
                res = write_report(
                    tmp / name, **({"max_page_features": args.max_page} if args.max_page else {})
                )
                write = time.perf_counter() - t0
                size = res.path.stat().st_size / 1e6
                assets = (
                    sum(p.stat().st_size for p in (tmp / name / "report_files").rglob("*") if p.is_file())
                    / 1e6
                )
                print(
                    f"{name}: {n} sites ({'with' if maps else 'without'} class maps): run folder built in "
                    f"{build:.1f} s; report written in {write:.1f} s; report.html {size:.2f} MB, "
                    f"report_files "
                    f"{assets:.1f} MB; {res.sites} features",
                    flush=True,
                )
                page, first, count = res.path, "M000000", n
                if res.pages:  # one page per region: time the biggest
                    sizes = {p: p.stat().st_size for p in res.pages}
                    page = max(sizes, key=sizes.get)
                    text = page.read_text()
                    first = re.search(r'"properties":\{"id":"([^"]+)"', text).group(1)
                    count = text.count('"type":"Feature",')
                    print(
                        f"  {len(res.pages)} region pages, {min(sizes.values()) / 1e6:.2f}-"
                        f"{max(sizes.values()) / 1e6:.2f} MB; timed: {page.name} ({count} sites)",
                        flush=True,
                    )
                t_base, t_page, t_click = [], [], []
                for _ in range(args.repeat):
                    t_base.append(open_seconds(driver, base))
                    t_page.append(open_seconds(driver, page))
                    assert (
                        driver.execute_script("return window.minescapeReport.featureCount('sites')") == count
                    )
                    t_click.append(click_seconds(driver, first))
                ratio = statistics.median(t_page) / statistics.median(t_base)
                print(
                    f"  open: {_fmt(t_page)} vs baseline (empty report) {_fmt(t_base)}: {ratio:.1f}x; "
                    f"click -> attributes: {_fmt(t_click)}; goal: open + click < 3 s",
                    flush=True,
                )
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())

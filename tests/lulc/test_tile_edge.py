"""A site across the edge of two Sentinel-2 tiles of one pass: the clearest-scene path fills what the chosen tile
leaves empty from the other tile of the same date, and what no scene covers is recorded and warned about."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.windows import Window
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.lulc.inputs import discover_scenes, load_stack
from minescape.lulc.pipeline import classify_sites
from minescape.sites import read_sites

BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
SOIL = [.12, .15, .20, .22, .24, .25, .27, .28, .32, .28]
WATER = [.06, .08, .05, .04, .03, .03, .03, .03, .01, .01]
CRS = "EPSG:32750"  # the site's own UTM zone (117.5 E, 22.7 S)
LEFT, TOP = 449_000.0, 7_490_000.0  # scene origin (m)
W, H = 420, 300  # scene size (10 m pixels)
DATE = "20190715"
QUIET = {"quicklook": False}


def _name(tile: str, date: str = DATE) -> str:
    return f"S2A_MSIL2A_{date}T022551_N0213_R046_{tile}_{date}T061234.tif"


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    """A 3 x 2 km site in the middle of a scene (a pond in it), the scene whole and cut into two tiles of one pass
    (west and east, 20 px overlap) with the same date, and a prepared DCM (a pit) in the site's CRS."""
    import geopandas as gpd

    root = tmp_path_factory.mktemp("tile_edge")
    transform = Affine(10, 0, LEFT, 0, -10, TOP)
    x0, y1 = LEFT + 600, TOP - 500
    site = shapely.box(x0, y1 - 2000, x0 + 3000, y1)
    gpd.GeoDataFrame({"site_id": ["edge"]}, geometry=[site], crs=CRS).to_file(root / "sites.gpkg", driver="GPKG")
    rows, cols = np.indices((H, W))
    pond = (np.hypot(cols - 200, rows - 170) < 20)
    data = np.empty((10, H, W), np.uint16)
    rng = np.random.default_rng(3)
    for i in range(10):
        data[i] = (np.where(pond, WATER[i], SOIL[i]) * 10000 + rng.integers(0, 60, (H, W))).astype(np.uint16)
    prof = dict(driver="GTiff", width=W, height=H, count=10, dtype="uint16", crs=CRS, transform=transform, nodata=0)
    tags = dict(DATE="2019-07-15", CLOUDY_PIXEL_PERCENTAGE="0.00", PROCESSING_BASELINE="02.13",
                PROCESSING_LEVEL="Level-2A")
    (root / "full").mkdir()
    with rasterio.open(root / "full" / _name("T50KQA"), "w", **prof) as dst:
        dst.write(data)
        dst.descriptions = tuple(BANDS)
        dst.update_tags(**tags)
    (root / "tiles").mkdir()
    half = W // 2
    for tile, win in (("T50KQA", Window(0, 0, half + 10, H)), ("T50KRA", Window(half - 10, 0, W - half + 10, H))):
        p = dict(prof, width=win.width, height=win.height, transform=rasterio.windows.transform(win, transform))
        with rasterio.open(root / "tiles" / _name(tile), "w", **p) as dst:
            dst.write(data[:, win.row_off:win.row_off + win.height, win.col_off:win.col_off + win.width])
            dst.descriptions = tuple(BANDS)
            dst.update_tags(**tags)
    pit = (np.hypot(cols - 150, rows - 120) < 25)
    p1 = dict(driver="GTiff", width=W, height=H, count=1, crs=CRS, transform=transform)
    with rasterio.open(root / "dcm_dh.tif", "w", dtype="float32", nodata=-32767, **p1) as d:
        d.write(np.where(pit, -20.0, 0.0).astype(np.float32), 1)
    with rasterio.open(root / "dcm_year.tif", "w", dtype="uint16", nodata=0, **p1) as d:
        d.write(np.full((H, W), 2019, np.uint16), 1)
    return root


def _classify(case: Path, scenes, out: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = classify_sites(case / "sites.gpkg", scenes, case / "dcm_dh.tif", case / "dcm_year.tif", out,
                                 config=QUIET)
    assert not summary.failed, summary.failed
    row = json.loads((out / "sites.json").read_text())[0]
    with rasterio.open(out / "maps" / "edge.tif") as src:
        classes, tags = src.read(1), src.tags()
    return row, classes, tags, [str(w.message) for w in caught]


def test_each_tile_alone_covers_part_of_the_site(case):
    site = read_sites(case / "sites.gpkg")[0][0]
    inside = site.mask()
    assert inside.sum() > 50_000  # 3 x 2 km at 10 m
    shares = []
    for ref in discover_scenes([case / "tiles"]):
        stack, _ = load_stack(ref, site, bands=["B02", "B11"])
        shares.append(float(np.isfinite(stack.data).all(axis=0)[inside].mean()))
    assert len(shares) == 2 and all(0.3 < s < 0.7 for s in shares), shares  # the condition: neither is enough
    assert sum(shares) > 1.0  # together they cover it (the tiles overlap by 20 px)


def test_site_across_two_same_date_tiles_is_mapped_whole(case, tmp_path):
    site = read_sites(case / "sites.gpkg")[0][0]
    inside = site.mask()
    row, classes, tags, caught = _classify(case, [case / "tiles"], tmp_path / "tiles")
    assert (classes[inside] > 0).mean() > 0.99
    assert row["imagery_nodata_share"] == 0.0 and len(row["filled_from"]) == 1
    assert row["filled_from"][0] != row["scene"] and tags["FILLED_FROM"] == row["filled_from"][0]
    assert not [m for m in caught if "no imagery" in m]
    # the pixels are the ones the whole scene gives: the same map as from one scene covering the site
    full_row, full, full_tags, _ = _classify(case, [case / "full"], tmp_path / "full")
    assert full_row["imagery_nodata_share"] == 0.0 and "filled_from" not in full_row
    assert "FILLED_FROM" not in full_tags
    assert np.array_equal(classes, full)


def test_fill_is_deterministic(case, tmp_path):
    tiles = sorted((case / "tiles").glob("*.tif"))
    _classify(case, tiles, tmp_path / "a")
    _classify(case, tiles[::-1], tmp_path / "b")
    assert (tmp_path / "a" / "maps" / "edge.tif").read_bytes() == (tmp_path / "b" / "maps" / "edge.tif").read_bytes()


def test_site_partly_covered_records_share_and_warns(case, tmp_path):
    west = next((case / "tiles").glob("*T50KQA*.tif"))
    row, classes, _, caught = _classify(case, [west], tmp_path / "west")
    site = read_sites(case / "sites.gpkg")[0][0]
    unmapped = 1 - float((classes[site.mask()] > 0).mean())
    assert unmapped > 0.3  # the condition: part of the site has no imagery
    assert row["imagery_nodata_share"] == pytest.approx(unmapped, abs=0.01)
    assert "filled_from" not in row
    hits = [m for m in caught if "no imagery" in m]
    assert len(hits) == 1 and "site edge" in hits[0] and f"{row['imagery_nodata_share']:.1%}" in hits[0]
    run = json.loads((tmp_path / "west" / "report" / "run.json").read_text())
    assert run["results"]["edge"]["imagery_nodata_share"] == row["imagery_nodata_share"]


def test_cli_prints_one_warning_line(case, tmp_path, monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    west = next((case / "tiles").glob("*T50KQA*.tif"))
    res = CliRunner().invoke(app, ["lulc", "classify", str(case / "sites.gpkg"), str(tmp_path / "run"), "-s",
                                   str(west), "--dcm", str(case / "dcm_dh.tif"), "--dcm-year",
                                   str(case / "dcm_year.tif"), "--no-report", "--no-quicklook"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("warning:") and "no imagery" in ln]
    assert len(lines) == 1 and "site edge" in lines[0], res.output


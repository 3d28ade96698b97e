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
from minescape.lulc.inputs import discover_scenes, fill_same_date, load_stack, rank_scenes
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
    return _write_case(tmp_path_factory.mktemp("tile_edge"))


#: a cloud (bright in the blue, SWIR1 darker: the spectral cloud test) east of the west tile, in scene pixels
CLOUD_CENTRE, CLOUD_RADIUS = (300, 150), 15
CLOUD = [.50, .50, .50, .50, .50, .50, .50, .50, .30, .25]


@pytest.fixture(scope="module")
def cloudy_case(tmp_path_factory) -> Path:
    """:func:`case` with a cloud inside the site where only the east tile has data."""
    return _write_case(tmp_path_factory.mktemp("tile_edge_cloud"), cloud=True)


@pytest.fixture(scope="module")
def three_tiles(tmp_path_factory) -> Path:
    """:func:`case` cut into three tiles of one pass (west, middle, east; 10 px overlaps), none covering the
    site alone: the middle tile (most of the site) is chosen, the two others fill, clearest first."""
    return _write_case(tmp_path_factory.mktemp("tile_edge_three"),
                       cuts=(("T50KPA", 0, 150), ("T50KQA", 140, 290), ("T50KRA", 280, W)))


def _write_case(root: Path, *, cloud: bool = False,
                cuts: tuple[tuple[str, int, int], ...] = (("T50KQA", 0, W // 2 + 10), ("T50KRA", W // 2 - 10, W))
                ) -> Path:
    """Write the scene (``full/``), its tiles (``tiles/``, columns ``[c0, c1)`` per tile name), the site and
    the DCM under ``root``."""
    import geopandas as gpd

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
    if cloud:
        in_cloud = np.hypot(cols - CLOUD_CENTRE[0], rows - CLOUD_CENTRE[1]) < CLOUD_RADIUS
        for i in range(10):
            data[i][in_cloud] = int(CLOUD[i] * 10000)
    prof = dict(driver="GTiff", width=W, height=H, count=10, dtype="uint16", crs=CRS, transform=transform, nodata=0)
    tags = dict(DATE="2019-07-15", CLOUDY_PIXEL_PERCENTAGE="0.00", PROCESSING_BASELINE="02.13",
                PROCESSING_LEVEL="Level-2A")
    (root / "full").mkdir()
    with rasterio.open(root / "full" / _name("T50KQA"), "w", **prof) as dst:
        dst.write(data)
        dst.descriptions = tuple(BANDS)
        dst.update_tags(**tags)
    (root / "tiles").mkdir()
    for tile, win in ((t, Window(c0, 0, c1 - c0, H)) for t, c0, c1 in cuts):
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



def _result(out: Path) -> dict:
    return json.loads((out / "report" / "run.json").read_text())["results"]["edge"]


def test_cloud_share_after_fill_counts_the_pixels_used(case, tmp_path):
    """No pixel of either tile is cloudy: the filled map lacks nothing for clouds, although the chosen tile alone
    has no data over about half of the site (no imagery is not cloud)."""
    row, _, _, _ = _classify(case, [case / "tiles"], tmp_path / "tiles")
    assert row["filled_from"]  # the condition: the site was filled from the other tile
    ranked_share = dict((r.source.name, s) for r, s in rank_scenes(
        discover_scenes([case / "tiles"]), read_sites(case / "sites.gpkg")[0][0], 2019))[row["scene"]]
    assert ranked_share > 0.3  # what the chosen tile alone lacks over the site
    assert _result(tmp_path / "tiles")["cloud_share"] == 0.0


def test_cloud_share_after_fill_sees_clouds_of_the_filling_scene(cloudy_case, tmp_path):
    site = read_sites(cloudy_case / "sites.gpkg")[0][0]
    inside = site.mask()
    row, classes, _, _ = _classify(cloudy_case, [cloudy_case / "tiles"], tmp_path / "tiles")
    assert "T50KQA" in row["scene"] and row["filled_from"] and "T50KRA" in row["filled_from"][0]
    # the cloud's pixels inside the polygon, on the site grid (scene and site share the 10 m lattice)
    stack, _ = load_stack(discover_scenes([cloudy_case / "full"])[0], site, bands=["B02", "B11"])
    cloudy = (stack.band("B02") > 0.4) & inside
    assert 500 < cloudy.sum() < 1000  # the condition: a cloud, all of it in the filling tile's part
    expected = round(float(cloudy.sum() / inside.sum()), 4)
    assert row["imagery_nodata_share"] == 0.0
    assert _result(tmp_path / "tiles")["cloud_share"] == pytest.approx(expected, abs=1e-4)


def test_filled_from_lists_the_other_scenes_in_the_order_used(three_tiles, tmp_path):
    """``scene`` is the chosen (clearest) scene, ``filled_from`` the others in the order they filled: the
    ranking order (:func:`rank_scenes`), the map tag alike."""
    site = read_sites(three_tiles / "sites.gpkg")[0][0]
    ranked = [r.source.name for r, _ in rank_scenes(discover_scenes([three_tiles / "tiles"]), site, 2019)]
    assert len(ranked) == 3 and "T50KQA" in ranked[0]  # the middle tile is the clearest
    row, classes, tags, _ = _classify(three_tiles, [three_tiles / "tiles"], tmp_path / "tiles")
    assert row["scene"] == ranked[0] and row["filled_from"] == ranked[1:]
    assert tags["FILLED_FROM"] == ",".join(ranked[1:]) and tags["SCENE"] == ranked[0]
    assert row["imagery_nodata_share"] == 0.0 and (classes[site.mask()] > 0).mean() > 0.99
    assert _result(tmp_path / "tiles")["filled_from"] == ranked[1:]


def test_fill_same_date_fills_only_inside_the_mask_it_is_given(case):
    """The polygon mask is passed in (``prepare_site`` has it), not computed again: gaps outside it stay."""
    site = read_sites(case / "sites.gpkg")[0][0]
    refs = discover_scenes([case / "tiles"])
    ranked = rank_scenes(refs, site, 2019)
    chosen = ranked[0][0]
    stack, _ = load_stack(chosen, site, bands=BANDS)
    inside = site.mask()
    gaps = inside & ~np.isfinite(stack.data).all(axis=0)
    part = inside.copy()
    part[: part.shape[0] // 2] = False  # the southern half of the polygon only
    assert (gaps & part).any() and (gaps & ~part).any()  # the condition: gaps on both sides
    fill_same_date(stack, chosen, ranked, site, part, bands=BANDS)
    has = np.isfinite(stack.data).all(axis=0)
    assert has[gaps & part].all() and not has[gaps & ~part].any()

"""Bad DCM deliveries through ``lulc classify`` (docs/bad-input.md, DCM rows): one line naming the tile or
site, the site is reported, the other sites are classified, exit code 3."""

from __future__ import annotations

import json
import shutil
import zipfile

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.io import MemoryFile
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.cli.common import EXIT_PARTIAL
from minescape.dcm.layers import Layer, MapKind
from minescape.dcm.synthetic_tiles import tile_grid, write_tile_zip
from minescape.dcm.tiles import TileName

runner = CliRunner()


def _copy(region, tmp_path):
    dst = tmp_path / "dcm"
    shutil.copytree(region.dcm, dst)
    return dst


def _zip(folder, tile, kind="LAST"):
    return next(folder.glob(f"TDM1_DCM__10_{tile}_{kind}1622_*.zip"))


def _layers(path) -> dict[Layer, np.ndarray]:
    out = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            for layer in Layer:
                if f"_{layer.value.rstrip('_')}_" in name.rsplit("/", 1)[-1] and name.endswith(".tif"):
                    with MemoryFile(zf.read(name)) as mem, mem.open() as src:
                        out[layer] = src.read(1)
    assert set(out) == set(Layer)
    return out


def _classify(region, sites, dcm, out):
    res = runner.invoke(app, ["lulc", "classify", str(sites), str(out), "-s", str(region.scene_dir), "--dcm", str(dcm),
                              "--no-quicklook"])
    rows = {r["id"]: r for r in json.loads((out / "sites.json").read_text())}
    return res, rows


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")


def test_good_delivery_reports_masked_share(dcm_region, tmp_path):
    res, rows = _classify(dcm_region, dcm_region.sites, dcm_region.dcm, tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert all(0 <= r["dcm_masked_share"] < 0.5 for r in rows.values())
    assert any(r["dcm_masked_share"] > 0 for r in rows.values())  # the region has HAI / CIM patches
    run = json.loads((tmp_path / "out" / "report" / "run.json").read_text())
    assert len(run["results"]["S01"]["dcm_tiles"]) == 2


def test_zip_that_is_not_a_dcm_tile(dcm_region, tmp_path):
    dcm = _copy(dcm_region, tmp_path)
    with zipfile.ZipFile(dcm / "holiday_photos.zip", "w") as zf:
        zf.writestr("readme.txt", "not a tile")
    res, rows = _classify(dcm_region, dcm_region.sites, dcm, tmp_path / "out")
    assert res.exit_code == EXIT_PARTIAL, res.output
    assert rows["S01"]["status"] == rows["S02"]["status"] == "ok"
    line = next(x for x in res.output.splitlines() if "holiday_photos.zip" in x)
    assert "not a TanDEM-X DCM tile" in line
    assert rows["dcm holiday_photos.zip"]["status"] == "failed"


def test_tile_with_date_missing(dcm_region, tmp_path):
    dcm = _copy(dcm_region, tmp_path)
    path = _zip(dcm, "S23E117")
    with zipfile.ZipFile(path) as zf:
        members = [(i, zf.read(i)) for i in zf.infolist() if "_DATE_" not in i.filename]
    assert len(members) == 4  # xml, DCM, HAI, CIM: DATE really gone
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    res, rows = _classify(dcm_region, dcm_region.sites, dcm, tmp_path / "out")
    assert res.exit_code == EXIT_PARTIAL, res.output
    assert rows["S02"]["status"] == "ok"  # S02 lies in S23E118 only
    assert rows["S01"]["status"] == "failed"
    assert "S23E117" in rows["S01"]["reason"] and "no DATE layer" in rows["S01"]["reason"]
    assert "\n" not in rows["S01"]["reason"]


def test_date_all_zeros_under_a_site(dcm_region, tmp_path):
    dcm = _copy(dcm_region, tmp_path)
    path = _zip(dcm, "S23E118")
    layers = _layers(path)
    assert (layers[Layer.DATE] > 0).any()
    layers[Layer.DATE][:] = 0
    write_tile_zip(path, TileName(-23, 118), MapKind.LAST, layers)
    res, rows = _classify(dcm_region, dcm_region.sites, dcm, tmp_path / "out")
    assert res.exit_code == EXIT_PARTIAL, res.output
    assert rows["S01"]["status"] == "ok"  # S01 keeps its dated pixels in S23E117
    assert "DATE is 0" in rows["S02"]["reason"] and "S23E118" in rows["S02"]["reason"]


def test_two_tiles_overlap_with_different_grids(dcm_region, tmp_path):
    dcm = _copy(dcm_region, tmp_path)
    tile = TileName(-23, 117)
    transform, _, _ = tile_grid(tile)
    shifted = transform @ transform.translation(0.5, 0.5)  # half a pixel off the lattice
    write_tile_zip(dcm / "reprocessed" / "TDM1_DCM__10_S23E117_LAST1622_V02_C.zip", tile, MapKind.LAST,
                   _layers(_zip(dcm, "S23E117")), transform=shifted)
    res, rows = _classify(dcm_region, dcm_region.sites, dcm, tmp_path / "out")
    assert res.exit_code == EXIT_PARTIAL, res.output
    assert rows["S02"]["status"] == "ok"
    reason = rows["S01"]["reason"]
    assert "overlap with different grids" in reason and reason.count("S23E117") >= 2


def test_site_outside_every_tile(dcm_region, tmp_path):
    sites = gpd.read_file(dcm_region.sites).to_crs(4326)
    far = gpd.GeoDataFrame({"site_id": ["FAR"], "name": ["nowhere"]},
                           geometry=[shapely.box(10.0, 10.0, 10.01, 10.01)], crs=4326)
    path = tmp_path / "sites.gpkg"
    gpd.GeoDataFrame(gpd.pd.concat([sites, far], ignore_index=True), crs=4326).to_file(path)
    res, rows = _classify(dcm_region, path, dcm_region.dcm, tmp_path / "out")
    assert res.exit_code == EXIT_PARTIAL, res.output
    assert rows["S01"]["status"] == rows["S02"]["status"] == "ok"
    assert "site FAR lies outside every DCM tile" in rows["FAR"]["reason"] and "N10E010" in rows["FAR"]["reason"]
    assert any("FAR" in x for x in res.output.splitlines())


def test_missing_neighbour_tile_is_named_in_sites_json(dcm_region, tmp_path):
    """S01 straddles two tiles; with one of them left out of the delivery, S01 is still classified from the
    other, and sites.json says which share of it had no tile and which tile is missing."""
    res, rows = _classify(dcm_region, dcm_region.sites, dcm_region.dcm, tmp_path / "full")
    run = json.loads((tmp_path / "full" / "report" / "run.json").read_text())
    tiles = run["results"]["S01"]["dcm_tiles"]
    assert len(tiles) == 2 and rows["S01"]["dcm_outside_share"] == 0 and "dcm_missing_tiles" not in rows["S01"]
    dcm = _copy(dcm_region, tmp_path)
    gone = dcm / tiles[1].split("(")[1].rstrip(")")  # "tile S23E118 LAST (TDM1_DCM__10_S23E118_LAST...zip)"
    gone.unlink()
    res, rows = _classify(dcm_region, dcm_region.sites, dcm, tmp_path / "out")
    assert rows["S01"]["status"] == "ok", res.output
    assert 0 < rows["S01"]["dcm_outside_share"] <= rows["S01"]["dcm_void_share"]
    assert rows["S01"]["dcm_missing_tiles"] == [tiles[1].split()[1]]


def test_voids_inside_a_site_are_warned(dcm_region, dcm_sites, tmp_path):
    """Voids (-32767) in the change under S02 are filled by the features; above 1 % of the polygon the run
    warns, naming the site and the share that sites.json records; S01 (no voids) is not warned about."""
    from minescape.dcm.synthetic_tiles import tile_grid

    dcm = _copy(dcm_region, tmp_path)
    path = _zip(dcm, "S23E118")
    layers = _layers(path)
    lon, lat = dcm_sites["S02"].centroid_lonlat
    col, row = (int(v) for v in ~tile_grid(TileName(-23, 118))[0] @ (lon, lat))
    layers[Layer.DCM][row - 4:row + 4, col - 4:col + 4] = -32767  # 8 x 8 arcsec (~240 m) at the centroid
    write_tile_zip(path, TileName(-23, 118), MapKind.LAST, layers)
    res, rows = _classify(dcm_region, dcm_region.sites, dcm, tmp_path / "out")
    assert res.exit_code == 0, res.output
    share = rows["S02"]["dcm_void_share"]
    assert 0.01 < share < 0.9 and rows["S01"]["dcm_void_share"] == 0  # the condition: voids under S02 only
    lines = [ln for ln in res.output.splitlines() if ln.startswith("warning:") and "void" in ln]
    assert len(lines) == 1, (share, res.output)
    assert "site S02" in lines[0] and f"{share:.1%}" in lines[0]

"""Real mine polygon layers as users get them -> sites -> working grids -> years from a synthetic DCM tile set
generated under them. Reads ../shared/data/mining-polygons (skips when absent)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest

from minescape.dcm.layers import MapKind
from minescape.dcm.site import read_site_dcm
from minescape.dcm.synthetic_tiles import TileLayers, write_dcm_tiles
from minescape.sites import read_sites
from tests.conftest import shared_path

N = 3  # polygons per layer (each needs its own 1° tiles)


def tile_year(lon, lat):
    """A different acquisition year per 1° tile, 2016-2022."""
    return 2016 + (np.floor(lon).astype(int) * 3 + np.floor(lat).astype(int)) % 7


def field(lon, lat, kind):
    year = tile_year(lon, lat)
    dh = (3 * np.sin(np.radians(lon) * 500) * np.cos(np.radians(lat) * 500)).astype(np.float32)
    return TileLayers(dh, (year * 10000 + 8 * 100 + 21).astype(np.int32), np.full(lon.shape, 1.5, np.float32),
                      np.ones(lon.shape, np.uint8))


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    """Files in the forms users receive, made from the real polygons (first N of each layer)."""
    src = shared_path("mining-polygons", "mining_tiles_with_masks.gpkg")
    combined = shared_path("mining-polygons", "mining_polygons_combined_demo.gpkg")
    tmp = tmp_path_factory.mktemp("polygons")
    maus = gpd.read_file(src, layer="maus_polygons")
    tang = gpd.read_file(src, layer="tang_polygons")
    assert maus.geometry.isna().any()  # real data: some tiles have no polygon (read_sites drops them)
    maus = maus[maus.geometry.notna()].iloc[:N]
    tang = tang[tang.geometry.notna()].iloc[N:2 * N]
    # Maus et al. 2022 v2: ISO3_CODE, COUNTRY_NAME, AREA (km²), no id field
    v2 = gpd.GeoDataFrame({"ISO3_CODE": ["AUS"] * N, "COUNTRY_NAME": ["Australia"] * N,
                           "AREA": maus.to_crs("EPSG:6933").area.to_numpy() / 1e6}, geometry=maus.geometry.values,
                          crs=maus.crs)
    v2.to_file(tmp / "global_mining_polygons_v2.gpkg")
    # Tang & Werner 2023: a shapefile in a projected CRS with OBJECTID
    tw = gpd.GeoDataFrame({"OBJECTID": np.arange(101, 101 + N, dtype=np.int64)}, geometry=tang.geometry.values,
                          crs=tang.crs).to_crs("EPSG:6933")
    tw.to_file(tmp / "tang_werner_2023.shp")
    merged = gpd.GeoDataFrame(gpd.pd.concat([v2, tw.to_crs(4326)], ignore_index=True), crs=4326)
    merged.to_file(tmp / "merged.gpkg")
    return {"shared_maus": (src, "maus_polygons"), "shared_tang": (src, "tang_polygons"),
            "combined_demo": (combined, None), "maus_v2": (tmp / "global_mining_polygons_v2.gpkg", None),
            "tang_werner": (tmp / "tang_werner_2023.shp", None), "merged": (tmp / "merged.gpkg", None)}


def _sites(path, layer):
    sites, _ = read_sites(path, layer=layer)
    return sites[:N] if layer or "combined" in str(path) else sites


def test_ids_from_the_right_field(layers):
    path, layer = layers["shared_maus"]
    s, _ = read_sites(path, layer=layer)
    assert s[0].attrs["tile_id"] is not None and s[0].id.startswith("site-")  # tile_id repeats: not a site id
    s, _ = read_sites(layers["combined_demo"][0])
    assert {"ISO3_CODE", "COUNTRY_NAME", "id"} <= set(s[0].attrs) and s[0].id == str(s[0].attrs["id"])
    s, _ = read_sites(layers["maus_v2"][0])
    assert {"ISO3_CODE", "COUNTRY_NAME", "AREA"} <= set(s[0].attrs)
    assert all(x.id.startswith("site-") for x in s) and len({x.id for x in s}) == N  # no id field: geometry hash
    t, _ = read_sites(layers["tang_werner"][0])
    assert [x.id for x in t] == ["101", "102", "103"]  # OBJECTID, read from a projected shapefile
    assert all(-180 <= x.centroid_lonlat[0] <= 180 and -90 <= x.centroid_lonlat[1] <= 90 for x in t)
    m, _ = read_sites(layers["merged"][0])
    assert [x.id for x in m[N:]] == ["101", "102", "103"] and all(x.id.startswith("site-") for x in m[:N])
    assert [x.id for x in m[:N]] == [x.id for x in s]  # same geometry, same id in both files


def test_sites_grids_years_against_a_tile_set_under_them(layers, tmp_path):
    everything = {k: _sites(*v) for k, v in layers.items()}
    boxes = []
    for sites in everything.values():
        for s in sites:
            w, so, e, n = s.geometry.bounds
            boxes.append((w - 0.01, so - 0.01, e + 0.01, n + 0.01))
    assert all(b[2] - b[0] < 180 for b in boxes)  # no antimeridian site among these
    zips = write_dcm_tiles(tmp_path, boxes, field, kinds=(MapKind.LAST,))
    assert len(zips) >= 4
    checked = 0
    for name, sites in everything.items():
        for s in sites:
            lon, lat = s.centroid_lonlat
            zone = int((lon + 180) // 6) + 1
            assert s.crs.to_epsg() in (32600 + zone, 32700 + zone) or abs(lat) > 56, (name, s.id)
            assert s.grid.res == (10.0, 10.0) and s.mask().any()
            d = read_site_dcm(tmp_path, s)
            inside = s.mask()
            assert d.void_share == 0 and np.isfinite(d.dh.data[0][inside]).mean() > 0.99
            r, c = d.year.row, d.year.col
            x, y = s.grid.xy(np.array([r]), np.array([c]))
            from pyproj import Transformer

            plon, plat = Transformer.from_crs(s.crs, "EPSG:4326", always_xy=True).transform(x[0], y[0])
            expected = int(tile_year(np.array([plon]), np.array([plat]))[0])
            near_edge = min(abs(plon - round(plon)), abs(plat - round(plat))) < 2 / 3600
            assert near_edge or d.year.year == expected, (name, s.id, d.year, expected)
            assert d.date_used == d.year.year * 10000 + 821
            checked += 1
    assert checked >= 5 * N

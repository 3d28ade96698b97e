"""Sites and releases across the antimeridian, on real files: a site layer in a projected CRS (Fiji in EPSG:32760)
and class maps published in projected CRSs that cover 180°."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from pyproj import CRS, Geod, Transformer

from minescape.errors import InputError
from minescape.geo.raster import Raster, write_raster
from minescape.geo.vector import geodesic_area
from minescape.legend import MINING_LULC
from minescape.publish import release as rel
from minescape.publish.inspect import inspect_release
from minescape.sites import make_site, read_sites, sites_frame
from minescape.webreport.geojson import geometries_geojson

GEOD = Geod(ellps="WGS84")


def _geod_area(geom) -> float:
    return abs(GEOD.geometry_area_perimeter(shapely.orient_polygons(geom))[0])


def _fiji_layer(tmp_path: Path, epsg: int = 32760) -> tuple[Path, shapely.Polygon]:
    """A 3 x 2 km box across 180° near Fiji (16.5°S) written in ``epsg`` (metres) as a GPKG; also its continuous
    lon/lat outline (longitudes past 180°), densified so that both describe the same polygon."""
    lonlat = shapely.segmentize(shapely.box(179.986, -16.509, 180.014, -16.491), 0.0005)
    tf = Transformer.from_crs(4326, epsg, always_xy=True)
    projected = shapely.transform(lonlat, lambda xy: np.c_[tf.transform(xy[:, 0], xy[:, 1])])
    path = tmp_path / "sites.gpkg"
    gpd.GeoDataFrame({"site_id": ["fiji"]}, geometry=[projected], crs=f"EPSG:{epsg}").to_file(path, driver="GPKG")
    return path, lonlat


@pytest.mark.parametrize("epsg", [32760, 32701, 3832])
def test_projected_layer_across_180_gives_a_valid_site(tmp_path, epsg):
    path, lonlat = _fiji_layer(tmp_path, epsg)
    # the condition is there: the layer's polygon is valid in its CRS, and in lon/lat its ring jumps across 180°
    layer = gpd.read_file(path)
    assert CRS.from_user_input(layer.crs).is_projected and layer.geometry.iloc[0].is_valid
    wrapped = layer.to_crs(4326).geometry.iloc[0]
    assert not wrapped.is_valid and wrapped.bounds[2] - wrapped.bounds[0] > 359
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sites, notes = read_sites(path)
    assert notes == [] and len(sites) == 1
    site = sites[0]
    g = site.geometry
    assert g.is_valid and g.geom_type == "MultiPolygon" and len(g.geoms) == 2
    west, east = sorted(g.geoms, key=lambda p: p.bounds[0])
    assert west.bounds[2] == pytest.approx(-179.986, abs=1e-6) and west.bounds[0] == -180.0
    assert east.bounds[0] == pytest.approx(179.986, abs=1e-6) and east.bounds[2] == 180.0
    assert _geod_area(g) == pytest.approx(_geod_area(lonlat), rel=0.005)
    assert site.geometry_utm.is_valid and site.geometry_utm.area == pytest.approx(_geod_area(lonlat), rel=0.005)
    # the working CRS is the UTM zone of the centroid near 180° (zone 60 or 1 south), as before
    assert site.crs.to_epsg() in (32760, 32701) and abs(abs(site.centroid_lonlat[0]) - 180.0) < 0.01
    # rebuilding the site from its own geometry (as a worker does) gives the same site
    again = make_site(site.id, site.geometry)
    assert again.geometry.equals(site.geometry) and again.grid == site.grid and again.crs == site.crs
    assert shapely.equals_exact(again.geometry_utm, site.geometry_utm, 1e-6)
    assert np.array_equal(again.mask(), site.mask()) and site.mask().sum() > 0
    # every consumer gets valid geometries: the report's GeoJSON and the sites frame
    gj = geometries_geojson([site.geometry])[0]
    assert gj["type"] == "MultiPolygon" and len(gj["coordinates"]) == 2
    assert all(-180.0 <= x <= 180.0 for poly in gj["coordinates"] for ring in poly for x, _ in ring)
    assert shapely.from_geojson(json.dumps(gj)).is_valid
    frame = sites_frame(sites)
    assert frame.geometry.is_valid.all()


def test_valid_ring_written_across_180_is_the_small_polygon():
    """A valid EPSG:4326 ring written 179.95 -> -179.95: read as it is, it is a band 359.9° wide."""
    ring = shapely.Polygon([(179.95, -16.6), (-179.95, -16.6), (-179.95, -16.5), (179.95, -16.5)])
    assert ring.is_valid and ring.bounds[2] - ring.bounds[0] > 359
    site = make_site("band", ring)
    assert site.geometry.is_valid and site.geometry.geom_type == "MultiPolygon"
    small = shapely.box(179.95, -16.6, 180.05, -16.5)
    assert _geod_area(site.geometry) == pytest.approx(_geod_area(small), rel=1e-6)
    # the band's planar extent (which a map draws, and a rasterisation in degrees fills) is gone
    assert site.geometry.area == pytest.approx(small.area) and ring.area > 3000 * small.area


def test_sites_away_from_180_are_kept_as_read():
    box = shapely.box(15.0, 45.0, 15.02, 45.01)
    assert make_site("a", box).geometry is box
    split = shapely.MultiPolygon([shapely.box(179.99, -17.0, 180.0, -16.99),
                                  shapely.box(-180.0, -17.0, -179.99, -16.99)])
    assert split.is_valid
    assert make_site("b", split).geometry is split  # already split at 180° (RFC 7946)


def _class_map_across_180(maps: Path) -> None:
    """A Chukotka class map on its UTM 60N grid with a pit across 180°."""
    from affine import Affine

    x, y = Transformer.from_crs(4326, 32660, always_xy=True).transform(180.0, 66.0)
    t = Affine(10, 0, round(x) - 1000, 0, -10, round(y) + 500)
    a = np.full((100, 200), 6, np.uint8)
    a[30:70, 50:150] = 1
    a[10:20, 20:40] = 3
    maps.mkdir()
    write_raster(Raster(a, CRS.from_epsg(32660), t, 0), maps / "chukotka.tif", legend=MINING_LULC,
                 tags={"SITE_ID": "chukotka", "YEAR": "2019"})


def _release_frame(release: Path, tmp: Path) -> gpd.GeoDataFrame:
    frames = []
    for z in sorted(release.glob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            for name in zf.namelist():
                if name.endswith(".gpkg"):
                    zf.extract(name, tmp / z.stem)
                    frames.append(pyogrio.read_dataframe(tmp / z.stem / name, layer=Path(name).stem))
    assert frames
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)


@pytest.mark.parametrize("crs", ["EPSG:32660", "EPSG:3571", "EPSG:3832", "+proj=laea +lat_0=90 +lon_0=180"])
def test_publish_across_180_in_a_projected_crs_that_covers_it(tmp_path, crs):
    maps = tmp_path / "maps"
    _class_map_across_180(maps)
    # the condition is there: the map spans 180° (its west edge is east of 179°, its east edge west of -179°)
    site = rel.scan_site(maps / "chukotka.tif", lambda *a: "north_asia")
    ref = rel.publish(maps, tmp_path / "ll", crs="EPSG:4326", progress=False)
    ll = _release_frame(tmp_path / "ll", tmp_path / "x_ll")
    across = [g for g in ll.geometry if g.geom_type == "MultiPolygon" and g.bounds[2] - g.bounds[0] > 359]
    assert site is not None and ref.features == len(ll) and len(across) >= 2
    summary = rel.publish(maps, tmp_path / "out", crs=crs, progress=False)
    assert summary.skipped == [] and summary.features == len(ll)
    out = _release_frame(tmp_path / "out", tmp_path / "x_out")
    assert CRS.from_user_input(out.crs).equals(CRS.from_user_input(crs))
    assert out.geometry.is_valid.all() and len(out) == len(ll)
    np.testing.assert_allclose(out["area_m2"].to_numpy(), ll["area_m2"].to_numpy(), rtol=1e-12)
    # the same polygons: each one's area on the ellipsoid is its area_m2 (a pit's hole subtracted, across 180°)
    np.testing.assert_allclose(geodesic_area(out.geometry.values, out.crs), out["area_m2"].to_numpy(), rtol=1e-5)
    assert inspect_release(tmp_path / "out").ok


def test_publish_3857_still_splits_at_180(tmp_path):
    maps = tmp_path / "maps"
    _class_map_across_180(maps)
    summary = rel.publish(maps, tmp_path / "out", crs="EPSG:3857", progress=False)
    out = _release_frame(tmp_path / "out", tmp_path / "x")
    assert summary.skipped == [] and out.geometry.is_valid.all()
    assert (out.geometry.bounds["maxx"] - out.geometry.bounds["minx"] > 3.9e7).sum() >= 2  # parts at both edges


def test_publish_across_180_in_a_crs_far_away_is_still_refused(tmp_path):
    maps = tmp_path / "maps"
    _class_map_across_180(maps)
    with pytest.raises(InputError, match=r"chukotka.tif: .* polygons .* become invalid in the output CRS "
                                         r"EPSG:32633 \(its area of use is 12..18°E"):
        rel.publish(maps, tmp_path / "out", crs="EPSG:32633", progress=False)


def _year_raster_across_180(path: Path, crs: str, lat: float) -> Path:
    """A DCM later-acquisition year raster covering 180° at ``lat``: 2019 west of 180°, 2020 east of it, written
    in ``crs`` (a UTM zone, or EPSG:4326 with longitudes running past 180° as a mosaic across it is written)."""
    from affine import Affine

    if CRS.from_user_input(crs).is_geographic:
        t, shape = Affine(0.0001, 0, 179.95, 0, -0.0001, lat + 0.05), (1000, 1000)
    else:
        x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(180.0, lat)
        t, shape = Affine(10, 0, round(x) - 5000, 0, -10, round(y) + 5000), (1000, 1000)
    xs = t.c + t.a * (np.arange(shape[1]) + 0.5)  # column centres along the middle row
    lons = Transformer.from_crs(crs, 4326, always_xy=True).transform(xs, np.full(shape[1], t.f + t.e * shape[0] / 2))[0]
    east = (np.asarray(lons) < 0) | (np.asarray(lons) >= 180.0)
    data = np.tile(np.where(east, 2020, 2019).astype(np.uint16), (shape[0], 1))
    return write_raster(Raster(data, CRS.from_user_input(crs), t, 0), path)


@pytest.mark.parametrize("crs", ["EPSG:32660", "EPSG:32601", "EPSG:4326"])
@pytest.mark.parametrize("west,east", [(179.97, -179.99), (179.99, -179.97)])
def test_site_year_across_180_is_the_centroid_pixel(tmp_path, crs, west, east):
    """A site across 180° whose centroid pixel holds a year gets it by the centroid rule, whichever side of 180°
    the centroid and the year raster's CRS lie on."""
    from minescape.sites import site_year

    lat = 66.0
    site = make_site("chukotka", shapely.box(west, lat - 0.005, east + 360.0, lat + 0.005))
    # the condition is there: the site is split at 180° and its centroid is on the side that holds more of it
    assert site.geometry.geom_type == "MultiPolygon" and len(site.geometry.geoms) == 2
    lon_c = site.centroid_lonlat[0]
    assert abs(abs(lon_c) - 180.0) == pytest.approx(0.01, abs=1e-6)
    path = _year_raster_across_180(tmp_path / "year.tif", crs, lat)
    y = site_year(site, path)
    assert y.rule == "centroid"
    assert y.year == (2019 if lon_c > 0 else 2020)

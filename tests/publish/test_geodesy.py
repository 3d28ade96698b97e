"""Fast ellipsoidal areas and lon/lat transforms agree with pyproj on every feature."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from scipy import ndimage

from minescape.geo.polygonize import polygonize
from minescape.geo.raster import Raster
from minescape.publish.geodesy import ellipsoidal_area, split_antimeridian, transform_geometries

GEOD = Geod(ellps="WGS84")


def _polys(epsg, x0, y0, n=160, m=130, seed=0):
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.standard_normal((n, m)), 2.5)
    a = (np.digitize(f, np.quantile(f, np.linspace(0, 1, 8)[1:-1])) + 1).astype(np.uint8)
    a[:7, :9] = 0
    r = Raster(a, CRS.from_epsg(epsg), Affine(10, 0, x0, 0, -10, y0), 0)
    return polygonize(r).geometries, r.crs


# equator, Pilbara (zone edge), 70 N near the zone edge, 60 S, zone 1 next to the antimeridian
CASES = [(32631, 500000, 10000), (32750, 780000, 7500000), (32633, 210000, 7800000),
         (32719, 300000, 3400000), (32601, 180000, 7000000)]


@pytest.mark.parametrize(("epsg", "x0", "y0"), CASES)
def test_area_and_coordinates_agree_with_pyproj(epsg, x0, y0):
    geoms, crs = _polys(epsg, x0, y0)
    ll = transform_geometries(geoms, crs, 4326)
    tf = Transformer.from_crs(crs, 4326, always_xy=True)
    exact = shapely.transform(geoms, lambda c: np.column_stack(tf.transform(c[:, 0], c[:, 1])))
    err = np.abs(shapely.get_coordinates(ll) - shapely.get_coordinates(exact))
    assert err.max() < 1e-8  # degrees (~1 mm)
    area = ellipsoidal_area(geoms, crs)
    ref = np.array([abs(GEOD.geometry_area_perimeter(g)[0]) for g in ll])
    assert np.all(np.abs(area / ref - 1) < 1e-4)
    assert np.max(np.abs(area / ref - 1)) < 5e-5
    assert shapely.is_valid(ll).all()


def test_large_tile_extent_and_multipolygons():
    # polygons spread over a 110 km tile: the areal-scale fit must still hold
    boxes = [shapely.box(x, y, x + 500, y + 300) for x in (600000, 650000, 709000) for y in (7400000, 7450000, 7509000)]
    holed = shapely.Polygon(shapely.box(700000, 7500000, 705000, 7504000).exterior.coords,
                            [shapely.box(701000, 7501000, 702000, 7502000).exterior.coords])
    multi = shapely.MultiPolygon([shapely.box(600000, 7509000, 601000, 7509500), holed])
    geoms = shapely.orient_polygons(np.array(boxes + [holed, multi], dtype=object))
    area = ellipsoidal_area(geoms, 32750)
    ll = transform_geometries(geoms, 32750, 4326)
    ref = np.array([abs(GEOD.geometry_area_perimeter(g)[0]) for g in ll])
    assert np.all(np.abs(area / ref - 1) < 1e-5)
    assert area[-2] < area[-1]


def test_geographic_input_falls_back_to_geod():
    g = np.array([shapely.box(10, 10, 10.01, 10.01)], dtype=object)
    assert ellipsoidal_area(g, 4326)[0] == pytest.approx(abs(GEOD.geometry_area_perimeter(g[0])[0]))


def test_antimeridian_split_keeps_area():
    ring = shapely.box(179.9, -17.0, 180.1, -16.9)
    out = split_antimeridian(np.array([ring, shapely.box(180.2, 1, 180.3, 2), shapely.box(5, 5, 6, 6)]))
    assert out[0].geom_type == "MultiPolygon" and len(out[0].geoms) == 2
    b = shapely.bounds(out)
    assert b[:, 0].min() >= -180 and b[:, 2].max() <= 180
    assert out[1].bounds == pytest.approx((-179.8, 1, -179.7, 2))
    assert out[2].equals(shapely.box(5, 5, 6, 6))
    a0 = abs(GEOD.geometry_area_perimeter(shapely.box(-0.1, -17.0, 0.1, -16.9))[0])
    assert abs(GEOD.geometry_area_perimeter(out[0])[0]) == pytest.approx(a0, rel=1e-5)
    assert shapely.is_valid(out).all()


def test_transform_across_the_antimeridian_is_continuous():
    # a UTM zone 60 raster whose east edge crosses 180 degrees
    geoms, crs = _polys(32760, 815000, 8100000, n=60, m=600)
    ll = transform_geometries(geoms, crs, 4326)
    assert shapely.total_bounds(ll)[2] > 180  # unwrapped, no jump from +180 to -180
    assert (np.ptp(shapely.bounds(ll)[:, [0, 2]], axis=1) < 1).all()
    out = split_antimeridian(ll)
    assert shapely.is_valid(out).all()
    area = ellipsoidal_area(geoms, crs)
    ref = np.array([abs(GEOD.geometry_area_perimeter(g)[0]) for g in out])
    assert np.all(np.abs(area / ref - 1) < 1e-4)


@pytest.mark.parametrize("epsg", [32750, 32633])
def test_interpolated_transform_on_large_extents(epsg):
    # polygons spread over 40 km (beyond the single-polynomial size): bilinear grid interpolation
    rng = np.random.default_rng(1)
    x = 300000 + rng.uniform(0, 40000, 300)
    y = (7500000 if epsg == 32750 else 7800000) + rng.uniform(0, 40000, 300)
    geoms = shapely.box(x, y, x + rng.uniform(10, 500, 300), y + rng.uniform(10, 500, 300))
    ll = transform_geometries(geoms, epsg, 4326)
    tf = Transformer.from_crs(epsg, 4326, always_xy=True)
    c = shapely.get_coordinates(geoms)
    exact = np.column_stack(tf.transform(c[:, 0], c[:, 1]))
    assert np.abs(shapely.get_coordinates(ll) - exact).max() < 2e-8  # degrees (~2 mm)
    area = ellipsoidal_area(geoms, epsg)
    ref = np.array([abs(GEOD.geometry_area_perimeter(g)[0]) for g in shapely.orient_polygons(ll)])
    assert np.all(np.abs(area / ref - 1) < 1e-4)


@pytest.mark.parametrize(("epsg", "what"), [(2263, "US survey feet"), (3857, "a spherical projection"),
                                            (32650, "UTM metres")])
def test_fast_areas_in_any_projected_crs_are_wgs84_square_metres(epsg, what):
    """Polygons in a CRS in US feet had their area in square feet (x10.76, labelled m²); in EPSG:3857 PROJ's
    factors are the sphere's (+0.26 %). Every projected CRS now agrees with pyproj.Geod."""
    from minescape.geo.vector import geodesic_area
    from minescape.publish.geodesy import ellipsoidal_area

    lon0, lat0 = {2263: (-73.95, 40.75), 3857: (10.0, 45.0), 32650: (117.0, -22.6)}[epsg]
    to_crs = Transformer.from_crs(4326, epsg, always_xy=True)
    x0, y0 = to_crs.transform(lon0, lat0)
    size = 400.0 / (0.3048006096 if epsg == 2263 else 1.0)  # about 400 m in the CRS's units
    geoms = np.array([shapely.box(x0, y0, x0 + size, y0 + 0.7 * size), shapely.box(x0 - size, y0, x0, y0 + size)],
                     dtype=object)
    exact = geodesic_area(geoms, f"EPSG:{epsg}")  # the contract: Geod on the same vertices
    assert exact.min() > 4e4  # 0.06-0.16 km², in m² whatever the CRS's unit
    np.testing.assert_allclose(ellipsoidal_area(geoms, f"EPSG:{epsg}"), exact, rtol=1e-6, err_msg=what)

"""Polygonize: one polygon per 4-connected patch, holes kept, safe simplification."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from minescape.errors import ConfigError, InputError
from minescape.geo.polygonize import polygonize
from minescape.geo.raster import Raster

T = Affine(10, 0, 500000, 0, -10, 7000000)


def _raster(data, crs=32750, nodata=0):
    return Raster(np.asarray(data, dtype=np.uint8), CRS.from_epsg(crs), T, nodata)


def _smooth_map(n=120, m=90, seed=3):
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.standard_normal((n, m)), 3)
    q = np.quantile(f, np.linspace(0, 1, 8)[1:-1])
    return (np.digitize(f, q) + 1).astype(np.uint8)


def test_patches_holes_and_nodata():
    a = np.full((9, 11), 7, dtype=np.uint8)
    a[2:7, 2:7] = 1  # a pit ...
    a[4, 4] = 4  # ... with a lake inside: a hole in the pit polygon
    a[0, 10] = 0  # nodata pixel
    ps = polygonize(_raster(a))
    by_code = {int(c): g for c, g in zip(ps.codes, ps.geometries, strict=True)}
    assert sorted(by_code) == [1, 4, 7]
    assert len(by_code[1].interiors) == 1
    assert len(by_code[7].interiors) == 1
    assert by_code[1].area == pytest.approx(24 * 100)
    assert by_code[4].area == pytest.approx(100)
    assert by_code[7].area == pytest.approx((99 - 25 - 1) * 100)
    assert shapely.is_valid(ps.geometries).all()
    assert ps.crs == CRS.from_epsg(32750)


def test_connectivity_choice():
    a = np.full((4, 4), 6, dtype=np.uint8)
    a[1, 1] = a[2, 2] = 1  # two pixels touching at a corner
    four = polygonize(_raster(a))
    eight = polygonize(_raster(a), connectivity=8)
    assert (four.codes == 1).sum() == 2
    assert (eight.codes == 1).sum() == 1
    assert shapely.is_valid(four.geometries).all() and shapely.is_valid(eight.geometries).all()
    with pytest.raises(ConfigError, match="choose one of: 4, 8"):
        polygonize(_raster(a), connectivity=6)


def test_polygons_cover_the_map_exactly():
    a = _smooth_map()
    a[:5, :7] = 0
    ps = polygonize(_raster(a))
    assert shapely.is_valid(ps.geometries).all()
    for code in range(1, 8):
        assert shapely.area(ps.geometries[ps.codes == code]).sum() == pytest.approx((a == code).sum() * 100)
    assert shapely.area(shapely.union_all(ps.geometries)) == pytest.approx((a != 0).sum() * 100)


@pytest.mark.parametrize("tol", [15.0, 60.0, 250.0])
def test_simplify_never_invalid_or_empty(tol):
    a = _smooth_map(seed=11)
    a[40:44, 40:44] = 4  # small enclosed patches -> holes
    a[10, 10] = 5
    exact = polygonize(_raster(a))
    simple = polygonize(_raster(a), simplify=tol)
    assert len(simple) == len(exact)
    assert shapely.is_valid(simple.geometries).all()
    assert not shapely.is_empty(simple.geometries).any()
    assert (shapely.get_num_interior_rings(simple.geometries) >= shapely.get_num_interior_rings(exact.geometries)).all()
    assert shapely.get_num_coordinates(simple.geometries).sum() < shapely.get_num_coordinates(exact.geometries).sum()
    # a coverage stays a coverage: total area is preserved closely, no big overlaps
    total = shapely.area(shapely.union_all(simple.geometries))
    assert total == pytest.approx(shapely.area(exact.geometries).sum(), rel=0.02)


def test_bad_inputs():
    a = _smooth_map(20, 30)
    with pytest.raises(ConfigError, match="projected"):
        polygonize(Raster(a, CRS.from_epsg(4326), Affine(0.001, 0, 0, 0, -0.001, 0), 0), simplify=10)
    with pytest.raises(ConfigError):
        polygonize(_raster(a), simplify=-1)
    with pytest.raises(InputError, match="integer"):
        polygonize(Raster(a.astype(np.float32), CRS.from_epsg(32750), T, 0))
    empty = polygonize(_raster(np.zeros((5, 6))))
    assert len(empty) == 0


@pytest.mark.parametrize("data", [np.array([[2**40, 1, 1]], np.int64), np.array([[2**31 + 5, 1, 1]], np.uint32),
                                  np.array([[2**32 + 1, 1, 1]], np.int64)])
def test_large_codes_keep_their_value_with_either_connectivity(data):
    """GDAL's polygonize (8-connectivity) takes int32 at most: a cast wrapped 2**31 + 5 negative and merged
    2**32 + 1 with 1. Both connectivities give the codes as they are."""
    raster = Raster(data, "EPSG:32650", Affine(10, 0, 500000, 0, -10, 7000000))
    for connectivity in (4, 8):
        assert sorted(polygonize(raster, connectivity=connectivity).codes.tolist()) == sorted([int(data[0, 0]), 1])

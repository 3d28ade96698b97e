"""Pixel areas on the WGS84 ellipsoid (minescape.geo.pixel_area) and the LULC per-site areas that use them."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box

from minescape.geo.grid import Grid
from minescape.geo.pixel_area import centre_pixel_area_m2, code_areas_m2, pixel_areas_m2
from minescape.geo.vector import geodesic_area


def _utm_grid(x0: float, rows: int = 300, cols: int = 200) -> Grid:
    return Grid(CRS.from_epsg(32633), Affine(10, 0, x0, 0, -10, 5_000_000), cols, rows)


@pytest.mark.parametrize("x0", [500_000.0, 800_000.0])
def test_code_areas_match_geodesic_polygons_not_nominal(x0):
    grid = _utm_grid(x0)
    codes = np.zeros(grid.shape, dtype=np.uint8)
    codes[:100, :] = 1
    codes[100:, 50:120] = 2
    codes[0, 0] = 9  # outside n_codes: not counted
    got = code_areas_m2(codes, grid, n_codes=3)
    t = grid.transform
    # independent: geodesic area of the class-1 rectangle and of the class-2 rectangle, as polygons
    r1 = box(t.c, t.f - 1000, t.c + 2000, t.f)
    r2 = box(t.c + 500, t.f - 3000, t.c + 1200, t.f - 1000)
    want1, want2 = geodesic_area([r1, r2], grid.crs)
    pixel = geodesic_area([box(t.c, t.f - 10, t.c + 10, t.f)], grid.crs)[0]
    assert got[1] == pytest.approx(want1 - pixel, rel=1e-6)
    assert got[2] == pytest.approx(want2, rel=1e-5)
    nominal = 100.0 * (codes == 2).sum()
    # the test is only meaningful where the ellipsoid differs from the nominal pixel by more than the tolerance
    assert abs(want2 / nominal - 1) > 1e-4
    assert got[2] != pytest.approx(nominal, rel=1e-5)


def test_code_areas_geographic_rows_shrink_with_latitude():
    grid = Grid(CRS.from_epsg(4326), Affine(0.001, 0, 10.0, 0, -0.001, 61.0), 10, 1000)
    got = code_areas_m2(np.ones(grid.shape, dtype=np.uint8), grid, n_codes=2)
    assert got[1] == pytest.approx(geodesic_area([box(10.0, 60.0, 10.01, 61.0)], "EPSG:4326")[0], rel=1e-4)
    rows = pixel_areas_m2(grid.transform, grid.crs, rows=grid.height, cols=grid.width)
    assert rows.shape == (1000, 1) and rows[0, 0] < rows[-1, 0]


def test_centre_pixel_area_is_the_centre_pixel():
    grid = _utm_grid(800_000.0)
    t = grid.transform
    x, y = t @ (grid.width // 2, grid.height // 2)
    want = geodesic_area([box(x, y - 10, x + 10, y)], grid.crs)[0]
    assert centre_pixel_area_m2(grid) == pytest.approx(want, rel=1e-9)


def test_code_areas_refuse_an_array_off_the_grid():
    with pytest.raises(ValueError, match="not on the grid"):
        code_areas_m2(np.zeros((3, 3), dtype=np.uint8), _utm_grid(500_000.0), n_codes=2)

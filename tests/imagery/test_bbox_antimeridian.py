"""A change-pair bbox across the antimeridian, written as STAC writes it (RFC 7946: ``west > east``)."""

from __future__ import annotations

import math

import pytest
import shapely
from pyproj import Geod, Transformer

from minescape.errors import InputError
from minescape.imagery.pair import grid_for_bbox

FIJI = (179.8, -17.0, -179.9, -16.8)  # 0.3° wide across 180°, over Vanua Levu / Taveuni


def test_bbox_across_180_gets_the_grid_of_the_small_box():
    grid = grid_for_bbox(FIJI)
    # the centre is 179.95°E, 16.9°S: UTM zone 60 south
    assert grid.crs.to_epsg() == 32760
    # the box's true width (~0.3° of longitude at 16.9°S, ~32 km), not a band round the globe
    width_m = grid.width * grid.res[0]
    expected = 0.3 * 111_320.0 * math.cos(math.radians(16.9))
    assert width_m == pytest.approx(expected, rel=0.03)
    assert grid.height * grid.res[1] == pytest.approx(0.2 * 110_700.0, rel=0.03)
    # the grid covers the whole box: each corner (and edge midpoint, 180° included) lies inside it
    to_grid = Transformer.from_crs(4326, grid.crs, always_xy=True)
    footprint = shapely.box(*grid.bounds)
    w, s, e, n = FIJI
    for lon in (w, 180.0, e):
        for lat in (s, (s + n) / 2, n):
            assert footprint.covers(shapely.Point(*to_grid.transform(lon, lat))), (lon, lat)
    # and no more than a pixel-snapped margin around it
    inv = Transformer.from_crs(grid.crs, 4326, always_xy=True)
    left, _, right, _ = grid.bounds
    lon_left, _ = inv.transform(left, (grid.bounds[1] + grid.bounds[3]) / 2)
    lon_right, _ = inv.transform(right, (grid.bounds[1] + grid.bounds[3]) / 2)
    assert 179.7 < lon_left <= 179.8 and -179.9 <= lon_right < -179.8


def test_bbox_across_180_south_of_zone_1_centre():
    # centre at 179.8 + 0.5 = 180.3°E, i.e. -179.7°: UTM zone 1 south
    grid = grid_for_bbox((179.5, -17.0, -178.9, -16.8))
    assert grid.crs.to_epsg() == 32701
    width = Geod(ellps="WGS84").inv(179.5, -16.9, -178.9, -16.9)[2]
    assert grid.width * grid.res[0] == pytest.approx(width, rel=0.03)


@pytest.mark.parametrize("bbox", [(10.0, 50.0, 10.0, 50.1), (10.0, 50.1, 10.1, 50.0), (179.8, -17.0, -181.0, -16.8),
                                  (190.0, -17.0, -179.9, -16.8), (10.0, -91.0, 10.1, 50.0),
                                  (float("nan"), 50.0, 10.1, 50.1)])
def test_empty_or_out_of_range_bbox_is_refused(bbox):
    with pytest.raises(InputError, match=r"invalid bbox .*west,south,east,north"):
        grid_for_bbox(bbox)

"""A class map's footprint (the report's stand-in for a site polygon) across the antimeridian."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer

from minescape.geo.raster import Raster, write_raster
from minescape.legend import MINING_LULC
from minescape.webreport.lulc_part import _footprint


def _map(path, crs: str, lon: float, lat: float):
    """A 2 x 1 km class map centred on ``(lon, lat)`` on a 10 m grid in ``crs``."""
    x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat)
    t = Affine(10, 0, round(x) - 1000, 0, -10, round(y) + 500)
    return write_raster(Raster(np.full((100, 200), 6, np.uint8), CRS.from_user_input(crs), t, 0), path,
                        legend=MINING_LULC)


def test_footprint_across_180_is_split_at_180(tmp_path):
    path = _map(tmp_path / "chukotka.tif", "EPSG:32660", 180.0, 66.0)
    g = _footprint(path)
    assert g is not None and g.is_valid
    # two boxes, one each side of 180°, together about the map's 2 km x 1 km (not a band round the globe)
    assert g.geom_type == "MultiPolygon" and len(g.geoms) == 2
    west, east = sorted(g.geoms, key=lambda p: p.bounds[0])
    assert west.bounds[0] == -180.0 and -180.0 < west.bounds[2] < -179.97
    assert east.bounds[2] == 180.0 and 179.97 < east.bounds[0] < 180.0
    area = abs(Geod(ellps="WGS84").geometry_area_perimeter(shapely.orient_polygons(g))[0])
    assert 2e6 <= area < 2.6e6  # the lon/lat box holds the map (2e6 m²) and a little more
    assert g.area < 0.01


def test_footprint_away_from_180_is_one_box(tmp_path):
    path = _map(tmp_path / "map.tif", "EPSG:32633", 15.0, 50.0)
    g = _footprint(path)
    assert g.geom_type == "Polygon" and g.is_valid
    assert g.bounds[0] == pytest.approx(14.986, abs=1e-3) and g.bounds[2] == pytest.approx(15.014, abs=1e-3)

"""World regions of a release: which ZIP a site goes into.

Three ways, chosen with ``regions=``:

``"world9"`` (default)
    Nine regions derived offline from the site's location (the centre of its class map, in lon/lat).
    Rules are tried in order and the first match wins (lon in [-180, 180), lat in degrees):

    ===================  =====================================================================
    region               rule
    ===================  =====================================================================
    north_asia           lon < -168.977 and lat >= 64 (Chukotka and Wrangel Island east of 180°,
                         west of the Bering Strait line 168°58'37"W)
    north_america        lon >= 170 and 50 <= lat < 56 (the Aleutians west of 180°)
    north_america        lon < -30 and lat >= 15, except lon < -169 south of 50° N
    latin_america        -169 <= lon < -30 (lat < 15)
    europe               lon < 40 and lat >= 36
    north_asia           lat >= 50 (lon >= 40: Russia east of 40° E, northern Kazakhstan)
    africa               lon < 52 and lat < 36, except lon >= 34 and lat >= 12 (Arabia, Levant)
    west_central_asia    lon < 75 (Arabia, Levant, Turkey east of 40° E, Iran, Central Asia)
    south_asia           lon < 92 and lat < 28
    east_southeast_asia  lon < 150 and lat >= -10
    oceania              everything else (Australia, New Guinea, Pacific, both sides of ±180°)
    ===================  =====================================================================

``"tag"``
    The class map's ``REGION`` GeoTIFF tag (letters, digits, ``_`` and ``-``).

a path to a vector layer
    A user regions layer (any CRS) with a ``region`` text column; a site belongs to the region
    polygon containing its centre (the first in file order when several do). A site outside every
    region is an input error.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import shapely

from minescape.errors import InputError

WORLD9 = (
    "north_america",
    "latin_america",
    "europe",
    "north_asia",
    "africa",
    "west_central_asia",
    "south_asia",
    "east_southeast_asia",
    "oceania",
)
# the Russia-US boundary through the Bering Strait (the 1867 convention line, 168°58'37"W), between the Diomedes
BERING_LINE_LON = -(168 + 58 / 60 + 37 / 3600)
REGION_MODES = ("world9", "tag", "<path to a regions layer>")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def world9_region(lon: float, lat: float) -> str:
    """The default world region of a point (degrees; longitudes are wrapped to [-180, 180))."""
    lon = ((float(lon) + 180.0) % 360.0) - 180.0
    lat = float(lat)
    if lon < BERING_LINE_LON and lat >= 64:
        return "north_asia"  # Chukotka and Wrangel Island east of 180°, with the rest of Russia's far east
    if lon >= 170 and 50 <= lat < 56:
        return "north_america"  # the Aleutians west of 180° (Rat and Near Islands), with the rest of Alaska
    if lon < -30 and lat >= 15 and (lon >= -169 or lat >= 50):
        return "north_america"
    if -169 <= lon < -30:
        return "latin_america"
    if lon < 40 and lat >= 36 and lon >= -30:
        return "europe"
    if lat >= 50 and lon >= 40:
        return "north_asia"
    if -30 <= lon < 52 and lat < 36 and not (lon >= 34 and lat >= 12):
        return "africa"
    if -30 <= lon < 75:
        return "west_central_asia"
    if 0 <= lon < 92 and lat < 28:
        return "south_asia"
    if 0 <= lon < 150 and lat >= -10:
        return "east_southeast_asia"
    return "oceania"


def check_region_name(name: str, *, source: str) -> str:
    """Return ``name`` if usable in file names, else InputError naming ``source``."""
    if not _NAME.match(name or ""):
        raise InputError(f"region {name!r} must be 1-64 letters, digits, '_' or '-'", path=source)
    return name


class RegionsLayer:
    """A user regions layer: polygons with a ``region`` column, looked up by point (lon/lat).

    A projected layer is searched in its own CRS (the site's point goes there): a Pacific region drawn in a
    Pacific-centred projection (EPSG:3832) crosses 180°, and in lon/lat it would become a band round the rest of
    the world. A geographic layer is searched in EPSG:4326 at the point's longitude and at it ± 360° (rings
    written with longitudes past 180°)."""

    def __init__(self, path: str | Path) -> None:
        from pyproj import Transformer

        from minescape.geo.vector import read_vector

        gdf = read_vector(path)
        if "region" not in gdf.columns:
            raise InputError(f"regions layer needs a 'region' column (columns: {list(gdf.columns)})", path=path)
        self._to_layer = None
        if gdf.crs is None or gdf.crs.is_geographic:
            gdf = gdf.to_crs(4326) if gdf.crs is not None else gdf
        else:
            self._to_layer = Transformer.from_crs(4326, gdf.crs, always_xy=True)
        self.path = Path(path)
        self.names = [check_region_name(str(n), source=str(path)) for n in gdf["region"]]
        self.geoms = np.asarray(gdf.geometry.values, dtype=object)
        shapely.prepare(self.geoms)

    def _points(self, lon: float, lat: float) -> list[shapely.Point]:
        """Where the point may lie in the layer's coordinates, in order of preference."""
        if self._to_layer is not None:
            return [shapely.Point(*self._to_layer.transform(lon, lat))]
        lon = ((lon + 180.0) % 360.0) - 180.0
        return [shapely.Point(lon + shift, lat) for shift in (0.0, 360.0, -360.0)]

    def region_of(self, lon: float, lat: float, *, site: str) -> str:
        """The first region containing the point, else InputError."""
        for pt in self._points(lon, lat):
            hits = np.nonzero(shapely.covers(self.geoms, pt))[0]
            if len(hits):
                return self.names[int(hits[0])]
        raise InputError(f"site at lon {lon:.4f}, lat {lat:.4f} is outside every region of {self.path}", path=site)


def make_region_resolver(regions: str | Path):
    """A function ``(lon, lat, tags, source) -> region`` for a ``regions`` choice."""
    if str(regions) == "world9":
        return lambda lon, lat, tags, source: world9_region(lon, lat)
    if str(regions) == "tag":
        def from_tag(lon, lat, tags, source):
            if "REGION" not in tags:
                raise InputError("regions='tag' but the class map has no REGION tag", path=source)
            return check_region_name(tags["REGION"], source=source)
        return from_tag
    path = Path(regions)
    if not path.exists():
        raise InputError(f"invalid regions {str(regions)!r}; choose one of: {', '.join(REGION_MODES)}")
    layer = RegionsLayer(path)
    return lambda lon, lat, tags, source: layer.region_of(lon, lat, site=source)

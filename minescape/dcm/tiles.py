"""TanDEM-X 1° x 1° tile names: ``S23E116`` names the tile whose south-west corner is 23°S, 116°E.

The tile spans latitudes ``[lat, lat + 1]`` and longitudes ``[lon, lon + 1]`` (degrees, EPSG:4326), so
``S23E116`` covers 23°S-22°S and 116°E-117°E and ``N28W076`` covers 28°N-29°N and 76°W-75°W. DLR's DCM products
(``TDM1_DCM__10_<tile>_<KIND>1622_V01_C``) use the same naming as the TanDEM-X DEM tiles.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from minescape.errors import InputError

TILE_NAME = re.compile(r"(?P<ns>[NS])(?P<lat>\d{2})(?P<ew>[EW])(?P<lon>\d{3})")


@dataclass(frozen=True, order=True)
class TileName:
    """A 1° tile by its south-west corner: ``lat`` in [-90, 89], ``lon`` in [-180, 179] (integer degrees)."""

    lat: int
    lon: int

    def __post_init__(self) -> None:
        if not (-90 <= self.lat <= 89 and -180 <= self.lon <= 179):
            raise InputError(f"tile corner ({self.lat}, {self.lon}) outside lat [-90, 89], lon [-180, 179]")

    @property
    def name(self) -> str:
        """``S23E116`` style name."""
        ns = "N" if self.lat >= 0 else "S"
        ew = "E" if self.lon >= 0 else "W"
        return f"{ns}{abs(self.lat):02d}{ew}{abs(self.lon):03d}"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` in degrees (EPSG:4326)."""
        return float(self.lon), float(self.lat), float(self.lon + 1), float(self.lat + 1)

    @classmethod
    def parse(cls, text: str) -> TileName:
        """Parse ``S23E116`` (InputError for anything else).

        Each tile has one name, the one :attr:`name` writes: latitude 0 is ``N00`` and longitude 0 is ``E000``
        (DLR's spelling), so ``S00E010`` and ``N00W000`` are refused (they would be a second name for ``N00E010``
        and ``N00E000``), as are corners outside lat [-90, 89], lon [-180, 179] (``N90``, ``E180``)."""
        m = TILE_NAME.fullmatch(text)
        if m is None:
            raise InputError(f"{text!r} is not a tile name (expected e.g. S23E116: hemisphere, 2-digit latitude, "
                             "E/W, 3-digit longitude of the south-west corner)")
        lat = int(m["lat"]) * (1 if m["ns"] == "N" else -1)
        lon = int(m["lon"]) * (1 if m["ew"] == "E" else -1)
        if not (-90 <= lat <= 89 and -180 <= lon <= 179):
            raise InputError(f"{text!r} is not a tile name: its south-west corner ({lat}, {lon}) is outside "
                             "lat [-90, 89], lon [-180, 179] (expected N89 at most, S90 at least, W180 to E179)")
        tile = cls(lat, lon)
        if tile.name != text:  # 0 written S00 or W000: the same corner as N00 / E000
            raise InputError(f"{text!r} is not a tile name: latitude 0 is written N00 and longitude 0 E000 "
                             f"(expected {tile.name}, the same south-west corner)")
        return tile

    @classmethod
    def containing(cls, lon: float, lat: float) -> TileName:
        """The tile holding the point ``(lon, lat)`` in degrees."""
        return cls(min(89, int(math.floor(lat))), int(math.floor(((lon + 180.0) % 360.0) - 180.0)))

    def __str__(self) -> str:
        return self.name


def lon_ranges(west: float, east: float) -> list[tuple[float, float]]:
    """``[west, east]`` (degrees) as one or two ranges inside [-180, 180], split at the antimeridian.

    ``west > east`` is a range across the antimeridian (as ``rasterio.warp.transform_bounds`` returns it for an
    area across 180°), and so is a range reaching past ±180° (longitudes unwrapped around a site); a range of
    360° or more is the whole circle.
    """
    if east - west >= 360.0:
        return [(-180.0, 180.0)]
    w, e = (v if -180.0 <= v <= 180.0 else ((v + 180.0) % 360.0) - 180.0 for v in (west, east))
    return [(w, e)] if w <= e else [(w, 180.0), (-180.0, e)]


def tiles_covering(bounds: tuple[float, float, float, float]) -> list[TileName]:
    """Tiles touching ``(west, south, east, north)`` in degrees, south to north then west to east.

    ``west > east`` (or a range past ±180°) crosses the antimeridian: the tiles on both sides are returned
    (``N65E179`` and ``N65W180`` for ``(179.9, 65.1, -179.9, 65.2)``).
    """
    west, south, east, north = bounds
    lats = range(max(-90, math.floor(south)), min(89, math.floor(north)) + 1)
    lons: list[int] = []
    for w, e in lon_ranges(west, east):
        lons.extend(lo for lo in range(max(-180, math.floor(w)), min(179, math.floor(e)) + 1) if lo not in lons)
    return [TileName(la, lo) for la in lats for lo in lons]

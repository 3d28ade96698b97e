"""A spatial index of raster footprints in longitude/latitude, so a site only looks at the rasters near it.

Footprints are the rasters' grid bounds transformed to WGS84 (densified edges) and grown by a margin; the
index (a shapely STRtree over their boxes) answers "which footprints may touch these bounds" in
O(log n). It is a *pre-filter*: callers confirm each candidate with their exact test in the raster's own CRS,
so results never differ from testing every raster, only the number of tests does. Footprints that cross the
antimeridian (or are wider than 180°) are always candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from rasterio.crs import CRS

from minescape.geo.grid import Grid, bounds_in

WGS84 = CRS.from_epsg(4326)
MARGIN_DEG = 0.01  # about 1 km: covers densification error of the transformed bounds


def lonlat_box(bounds: tuple[float, float, float, float], crs) -> tuple[float, float, float, float] | None:
    """``bounds`` (in ``crs``) as a lon/lat box ``(west, south, east, north)`` in degrees, or None when it
    crosses the antimeridian or spans more than 180° of longitude (no simple box)."""
    crs = CRS.from_user_input(crs)
    w, s, e, n = bounds if crs == WGS84 else bounds_in(bounds, crs, WGS84)
    if not all(np.isfinite((w, s, e, n))) or e < w or e - w > 180.0:
        return None
    return (w, s, e, n)


class FootprintIndex:
    """Lon/lat footprints of ``n`` rasters; :meth:`candidates` gives the ones that may touch some bounds.

    Args:
        grids: the rasters' grids (any CRSs), in the order the caller indexes them.
    """

    def __init__(self, grids: Sequence[Grid]) -> None:
        boxes = [lonlat_box(g.bounds, g.crs) for g in grids]
        self.size = len(boxes)
        self._always = np.array([i for i, b in enumerate(boxes) if b is None], dtype=np.int64)
        self._ids = np.array([i for i, b in enumerate(boxes) if b is not None], dtype=np.int64)
        polys = [shapely.box(b[0] - MARGIN_DEG, b[1] - MARGIN_DEG, b[2] + MARGIN_DEG, b[3] + MARGIN_DEG)
                 for b in boxes if b is not None]
        self._tree = shapely.STRtree(polys)

    def candidates(self, bounds: tuple[float, float, float, float], crs) -> list[int]:
        """Indexes (ascending) of the footprints that may intersect ``bounds`` given in ``crs``."""
        box = lonlat_box(bounds, crs)
        if box is None:
            return list(range(self.size))
        hits = self._tree.query(shapely.box(*box))
        return sorted(set(self._ids[hits].tolist()) | set(self._always.tolist()))

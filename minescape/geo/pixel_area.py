"""Pixel areas in m² on the WGS84 ellipsoid, for any grid (geographic or projected).

One mechanism for every area a raster reports (class areas of map products and of LULC sites, changed areas):
a pixel's nominal area in CRS units² is not its area on the ground (a UTM pixel of 10 m is 99.92-100.16 m² on the
ellipsoid across its zone; a 0.0001° pixel shrinks with the cosine of latitude).
"""

from __future__ import annotations

import math

import numpy as np
from affine import Affine
from pyproj import CRS, Geod

from minescape.geo.crs import transformer
from minescape.geo.grid import Grid

WGS84_GEOD = Geod(ellps="WGS84")
_A = 6378137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_E = math.sqrt(_E2)
_LONLAT = CRS.from_epsg(4326)


def _q(lat_rad: np.ndarray) -> np.ndarray:
    s = np.sin(lat_rad)
    return (1 - _E2) * (s / (1 - _E2 * s * s) - 1 / (2 * _E) * np.log((1 - _E * s) / (1 + _E * s)))


def latband_area_m2(lat_top: np.ndarray, lat_bottom: np.ndarray, dlon_deg: float) -> np.ndarray:
    """Exact area in m² of WGS84 cells between two latitudes (degrees) and ``dlon_deg`` wide (Snyder 1987,
    authalic latitude: ``A = a² dλ (q(φ2) - q(φ1)) / 2``)."""
    q2 = _q(np.radians(np.asarray(lat_top, dtype=np.float64)))
    q1 = _q(np.radians(np.asarray(lat_bottom, dtype=np.float64)))
    return np.abs(_A**2 * np.radians(dlon_deg) * (q2 - q1) / 2)


def pixel_areas_m2(transform: Affine, crs: CRS | str | int, *, rows: int, cols: int, step: int = 64) -> np.ndarray:
    """Area in m² of each pixel of a ``rows`` x ``cols`` block with ``transform`` in ``crs`` on WGS84.

    Geographic grids (lon/lat degrees): exact per-row areas, shape ``(rows, 1)``. Projected grids: the
    geodesic area of ``step`` x ``step`` pixel blocks (corners transformed to lon/lat, ``pyproj.Geod``)
    divided among their pixels, shape ``(rows, cols)``.
    """
    crs = CRS.from_user_input(crs)
    if crs.is_geographic:
        lat_edges = transform.f + transform.e * np.arange(rows + 1)
        return latband_area_m2(lat_edges[:-1], lat_edges[1:], abs(transform.a))[:, None]
    to_ll = transformer(crs, _LONLAT)
    out = np.empty((rows, cols), dtype=np.float64)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        for c0 in range(0, cols, step):
            c1 = min(cols, c0 + step)
            cc = np.array([c0, c1, c1, c0], dtype=np.float64)
            rr = np.array([r0, r0, r1, r1], dtype=np.float64)
            px = transform.a * cc + transform.b * rr + transform.c
            py = transform.d * cc + transform.e * rr + transform.f
            lon, lat = to_ll.transform(px, py)
            area = abs(WGS84_GEOD.polygon_area_perimeter(lon, lat)[0])
            out[r0:r1, c0:c1] = area / ((r1 - r0) * (c1 - c0))
    return out


def centre_pixel_area_m2(grid: Grid) -> float:
    """Area in m² on WGS84 of the pixel at the centre of ``grid`` (for thresholds given in m²)."""
    row, col = grid.height // 2, grid.width // 2
    t = grid.transform @ Affine.translation(col, row)
    return float(pixel_areas_m2(t, grid.crs, rows=1, cols=1)[0, 0])


def code_areas_m2(codes: np.ndarray, grid: Grid, *, n_codes: int, step: int = 64) -> np.ndarray:
    """Area in m² on WGS84 covered by each integer code ``0..n_codes-1`` of ``codes`` (a 2-D array on ``grid``);
    codes outside that range are not counted. Per-pixel areas from :func:`pixel_areas_m2` with ``step`` x
    ``step`` pixel blocks (a 640 m block at the edge of a UTM zone: pixel areas within 1e-5 of exact)."""
    if codes.shape != grid.shape:
        raise ValueError(f"codes of shape {codes.shape} are not on the grid's {grid.shape}")
    areas = np.broadcast_to(pixel_areas_m2(grid.transform, grid.crs, rows=grid.height, cols=grid.width,
                                           step=step), codes.shape)
    keep = (codes >= 0) & (codes < n_codes)
    return np.bincount(codes[keep].astype(np.int64), weights=areas[keep], minlength=n_codes)

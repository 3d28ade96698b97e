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


def _block_pixel_areas(transform: Affine, crs: CRS, *, rows: int, cols: int, step: int) -> np.ndarray:
    """Pixel area in m² of each ``step`` x ``step`` block of a projected grid (the geodesic area of the block's
    corners transformed to lon/lat, ``pyproj.Geod``, divided among its pixels), shape ``(ceil(rows/step),
    ceil(cols/step))``."""
    to_ll = transformer(crs, _LONLAT)
    r_edges = np.append(np.arange(0, rows, step), rows)
    c_edges = np.append(np.arange(0, cols, step), cols)
    cc, rr = np.meshgrid(c_edges.astype(np.float64), r_edges.astype(np.float64))
    lon, lat = to_ll.transform(transform.a * cc + transform.b * rr + transform.c,
                               transform.d * cc + transform.e * rr + transform.f)
    out = np.empty((len(r_edges) - 1, len(c_edges) - 1), dtype=np.float64)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            ring = (i, i, i + 1, i + 1), (j, j + 1, j + 1, j)
            area = abs(WGS84_GEOD.polygon_area_perimeter(lon[ring], lat[ring])[0])
            out[i, j] = area / ((r_edges[i + 1] - r_edges[i]) * (c_edges[j + 1] - c_edges[j]))
    return out


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
    blocks = _block_pixel_areas(transform, crs, rows=rows, cols=cols, step=step)
    return np.repeat(np.repeat(blocks, step, axis=0)[:rows], step, axis=1)[:, :cols]


def centre_pixel_area_m2(grid: Grid) -> float:
    """Area in m² on WGS84 of the pixel at the centre of ``grid`` (for thresholds given in m²)."""
    row, col = grid.height // 2, grid.width // 2
    t = grid.transform @ Affine.translation(col, row)
    return float(pixel_areas_m2(t, grid.crs, rows=1, cols=1)[0, 0])


def code_areas_m2(codes: np.ndarray, grid: Grid, *, n_codes: int, step: int = 64) -> np.ndarray:
    """Area in m² on WGS84 covered by each integer code ``0..n_codes-1`` of ``codes`` (a 2-D array on ``grid``);
    codes outside that range are not counted. Pixel areas as :func:`pixel_areas_m2` gives them, with ``step`` x
    ``step`` pixel blocks on a projected grid (a 640 m block at the edge of a UTM zone: within 1e-5 of exact);
    the codes are counted per block, so no per-pixel area array is made."""
    if codes.shape != grid.shape:
        raise ValueError(f"codes of shape {codes.shape} are not on the grid's {grid.shape}")
    crs = CRS.from_user_input(grid.crs)
    rows, cols = grid.shape
    if crs.is_geographic:  # areas per row
        step = 1
        blocks = pixel_areas_m2(grid.transform, crs, rows=rows, cols=cols)  # (rows, 1)
    else:
        blocks = _block_pixel_areas(grid.transform, crs, rows=rows, cols=cols, step=step)
    col_step = cols if crs.is_geographic else step
    total = np.zeros(n_codes, dtype=np.float64)
    for i in range(blocks.shape[0]):
        for j in range(blocks.shape[1]):
            block = codes[i * step:(i + 1) * step, j * col_step:(j + 1) * col_step].ravel()
            if block.dtype.kind == "i":
                block = block[block >= 0]
            total += blocks[i, j] * np.bincount(block, minlength=n_codes)[:n_codes]
    return total

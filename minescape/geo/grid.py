"""Grids (CRS + transform + shape), UTM choice per site, reprojection onto a grid, and tiling.

A :class:`Grid` describes where pixels are without holding any; rasters are aligned by
reprojecting them onto a grid. Tiles are pixel windows with an optional overlap ("halo") and the
core window each tile is responsible for, so tiled outputs have no seams and no double counting.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from minescape.errors import ConfigError, CRSMismatchError, NoOverlapError
from minescape.geo.raster import Raster

#: Bounds within this many pixels of a pixel edge are taken as on it (floating-point noise of ``from_bounds``).
EDGE_TOLERANCE_PX = 1e-6

@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: ``crs``, ``transform`` (pixel corners), ``width`` x ``height`` pixels."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"grid must have positive size, got {self.width}x{self.height}")
        if self.crs is not None and not isinstance(self.crs, CRS):
            object.__setattr__(self, "crs", CRS.from_user_input(self.crs))

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return self.height, self.width

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units."""
        return _grid_bounds(self)

    @classmethod
    def from_bounds(
        cls, bounds: tuple[float, float, float, float], res: float, crs: CRS | str | int
    ) -> Grid:
        """Grid covering ``bounds`` (snapped outwards to multiples of ``res``) at pixel size ``res``."""
        left, bottom, right, top = bounds
        left = math.floor(left / res) * res
        top = math.ceil(top / res) * res
        right = math.ceil(right / res) * res
        bottom = math.floor(bottom / res) * res
        width = max(1, round((right - left) / res))
        height = max(1, round((top - bottom) / res))
        return cls(CRS.from_user_input(crs), Affine(res, 0, left, 0, -res, top), width, height)

    def window_grid(self, window: Window) -> Grid:
        """The sub-grid of ``window`` (pixel offsets in this grid)."""
        w = window.round_offsets().round_lengths()
        return Grid(self.crs, rasterio.windows.transform(w, self.transform), int(w.width), int(w.height))

    def window_of_bounds(self, bounds: tuple[float, float, float, float]) -> Window:
        """Pixel window covering ``bounds`` (in this grid's CRS), clipped to the grid: every pixel the bounds touch
        (edges within 1e-6 px of a pixel edge count as on it).

        Rounded here, not by ``Window.round_offsets``/``round_lengths``: rasterio 1.4 ignores their ``op`` and
        rounds the length to the nearest integer, which loses the last row and column of a window whose bounds
        fall inside pixels."""
        if not all(math.isfinite(v) for v in bounds):  # e.g. a site transformed far outside the CRS's area of use
            raise NoOverlapError(f"bounds {bounds} do not overlap the grid {self.bounds}")
        bounds = self._across_antimeridian(bounds)
        win = rasterio.windows.from_bounds(*bounds, transform=self.transform)
        col0, row0 = math.floor(win.col_off + EDGE_TOLERANCE_PX), math.floor(win.row_off + EDGE_TOLERANCE_PX)
        col1 = math.ceil(win.col_off + win.width - EDGE_TOLERANCE_PX)
        row1 = math.ceil(win.row_off + win.height - EDGE_TOLERANCE_PX)
        win = Window(col0, row0, max(col1 - col0, 0), max(row1 - row0, 0))
        full = Window(0, 0, self.width, self.height)
        try:
            return win.intersection(full)
        except rasterio.errors.WindowError:
            raise NoOverlapError(f"bounds {bounds} do not overlap the grid {self.bounds}") from None

    def _across_antimeridian(self, bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """``bounds`` as this grid spells them when they cross 180 degrees: ``transform_bounds`` writes a box
        across the antimeridian west > east (179.97, ..., -179.96, ...), as STAC does. On a geographic grid whose
        longitudes run past 180 (or below -180) that box is one window (east + 360, or west - 360); on one that
        stops at +-180 the box would be two windows at opposite edges, refused in one line."""
        west, south, east, north = bounds
        if west <= east or self.crs is None or not self.crs.is_geographic:
            return bounds
        grid_west, _, grid_east, _ = self.bounds
        if grid_east > 180.0:
            return west, south, east + 360.0, north
        if grid_west < -180.0:
            return west - 360.0, south, east, north
        raise NoOverlapError(f"the area ({west:g} to {east:g} degrees east) crosses the antimeridian and this "
                             f"raster stops at it ({grid_west:g} to {grid_east:g}); give one whose longitudes run "
                             "past 180 (e.g. 179 to 181) for sites there")

    def xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of pixel centres."""
        xs, ys = rasterio.transform.xy(self.transform, rows, cols, offset="center")
        return np.asarray(xs), np.asarray(ys)

    def rowcol(self, xs, ys) -> tuple[np.ndarray, np.ndarray]:
        """Pixel indexes (row, col) containing CRS coordinates (may fall outside the grid)."""
        rows, cols = rasterio.transform.rowcol(self.transform, xs, ys, op=math.floor)
        return np.asarray(rows), np.asarray(cols)

    def pixel_area(self) -> float:
        """Nominal pixel area in CRS units squared (m² for projected metric CRSs); rotated grids too (the
        transform's determinant, not ``a * e``)."""
        return abs(self.transform.determinant)


def _grid_bounds(grid: Grid) -> tuple[float, float, float, float]:
    t = grid.transform
    xs = [t.c, t.c + t.a * grid.width]
    ys = [t.f, t.f + t.e * grid.height]
    return min(xs), min(ys), max(xs), max(ys)


def utm_crs(lon: float, lat: float) -> CRS:
    """Metric working CRS for a point: its WGS84 UTM zone, or UPS beyond 84°N / 80°S.

    Longitudes are wrapped to [-180, 180) first, so sites across the antimeridian get a valid zone.
    The Norway and Svalbard zone exceptions are applied.
    """
    lon = ((float(lon) + 180.0) % 360.0) - 180.0
    lat = float(lat)
    if not -90 <= lat <= 90:
        raise ConfigError(f"latitude {lat} outside [-90, 90]")
    if lat >= 84.0:
        return _epsg(32661)  # UPS North
    if lat < -80.0:
        return _epsg(32761)  # UPS South
    zone = int((lon + 180) // 6) + 1
    if 56 <= lat < 64 and 3 <= lon < 12:
        zone = 32
    if 72 <= lat < 84:
        if 0 <= lon < 9:
            zone = 31
        elif 9 <= lon < 21:
            zone = 33
        elif 21 <= lon < 33:
            zone = 35
        elif 33 <= lon < 42:
            zone = 37
    zone = min(max(zone, 1), 60)
    return _epsg((32600 if lat >= 0 else 32700) + zone)


@functools.lru_cache(maxsize=128)
def _epsg(code: int) -> CRS:
    """``CRS.from_epsg`` cached (a CRS is immutable; parsing one costs ~0.2 ms per site)."""
    return CRS.from_epsg(code)


def reproject_to_grid(
    raster: Raster,
    grid: Grid,
    *,
    resampling: str = "nearest",
    dst_nodata: float | int | None = None,
) -> Raster:
    """Reproject/resample ``raster`` onto ``grid``; pixels it does not cover become nodata.

    Args:
        raster: source (must carry a CRS).
        grid: target grid.
        resampling: a rasterio resampling name (``nearest`` for classes, ``bilinear`` for reflectance).
        dst_nodata: output nodata (default: the source nodata, or NaN for floats, or 0).
    """
    if raster.crs is None or grid.crs is None:
        raise CRSMismatchError("cannot reproject a raster without a CRS")
    try:
        method = Resampling[resampling]
    except KeyError:
        raise ConfigError(
            f"invalid resampling {resampling!r}; choose one of: {', '.join(r.name for r in Resampling)}"
        ) from None
    if dst_nodata is None:
        dst_nodata = raster.nodata
    if dst_nodata is None:
        dst_nodata = np.nan if np.issubdtype(raster.data.dtype, np.floating) else 0
    out = np.full((raster.count, grid.height, grid.width), dst_nodata, dtype=raster.data.dtype)
    reproject(
        source=raster.data,
        destination=out,
        src_transform=raster.transform,
        src_crs=raster.crs,
        src_nodata=raster.nodata,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=dst_nodata,
        resampling=method,
    )
    return Raster(out, grid.crs, grid.transform, dst_nodata, raster.band_names)


def bounds_in(bounds: tuple[float, float, float, float], src_crs: CRS, dst_crs: CRS):
    """Transform ``bounds`` between CRSs (densified edges)."""
    return transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21)


def overlap_grid(reference: Grid, other_bounds, other_crs: CRS) -> Grid:
    """The part of ``reference`` that ``other_bounds`` (in ``other_crs``) covers; NoOverlapError if none."""
    b = bounds_in(other_bounds, other_crs, reference.crs) if other_crs != reference.crs else other_bounds
    return reference.window_grid(reference.window_of_bounds(b))


@dataclass(frozen=True)
class Tile:
    """One tile: ``read`` is the pixel window to read (core plus halo, clipped to the grid);
    ``core`` the window this tile writes; ``core_in_read`` the core's position inside ``read``."""

    index: tuple[int, int]
    read: Window
    core: Window
    core_in_read: Window


def iter_tiles(
    width: int, height: int, *, size: int, overlap: int = 0
) -> Iterator[Tile]:
    """Cover a ``width`` x ``height`` pixel grid with non-overlapping core tiles of ``size`` pixels,
    each read with an ``overlap``-pixel halo (clipped at the edges). Sizes are in pixels."""
    if size <= 0 or overlap < 0:
        raise ConfigError(f"tile size must be > 0 and overlap >= 0 (got size={size}, overlap={overlap})")
    for ti, row in enumerate(range(0, height, size)):
        for tj, col in enumerate(range(0, width, size)):
            h = min(size, height - row)
            w = min(size, width - col)
            r0 = max(0, row - overlap)
            c0 = max(0, col - overlap)
            r1 = min(height, row + h + overlap)
            c1 = min(width, col + w + overlap)
            yield Tile(
                index=(ti, tj),
                read=Window(c0, r0, c1 - c0, r1 - r0),
                core=Window(col, row, w, h),
                core_in_read=Window(col - c0, row - r0, w, h),
            )


def sliding_windows(
    width: int, height: int, *, size: int, stride: int
) -> Iterator[Window]:
    """Windows of ``size`` x ``size`` pixels every ``stride`` pixels, the last one flush with the
    edge so the whole grid is covered (grids smaller than ``size`` give one clipped window)."""
    if size <= 0 or stride <= 0:
        raise ConfigError(f"window size and stride must be > 0 (got {size}, {stride})")

    for r in window_starts(height, size=size, stride=stride):
        for c in window_starts(width, size=size, stride=stride):
            yield Window(c, r, min(size, width - c), min(size, height - r))


def window_starts(n: int, *, size: int, stride: int) -> list[int]:
    """Window origins along one axis of ``n`` pixels (:func:`minescape.geo.blend.window_origins`)."""
    from minescape.geo.blend import window_origins

    return window_origins(n, size=size, stride=stride)


def aligned_window(src_crs: CRS | None, src_transform: Affine, target: Grid) -> Window | None:
    """The window of a raster (``src_crs``, ``src_transform``) that matches ``target`` pixel for pixel, or None
    when a warp is needed (other CRS, pixel size, rotation, or a sub-pixel shift). The window may extend
    beyond the raster (read it boundless)."""
    if src_crs != target.crs:
        return None
    st, tt = src_transform, target.transform
    if not (np.isclose(st.a, tt.a, rtol=1e-9) and np.isclose(st.e, tt.e, rtol=1e-9) and st.b == tt.b == 0):
        return None
    col = (tt.c - st.c) / st.a
    row = (tt.f - st.f) / st.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return Window(round(col), round(row), target.width, target.height)


def scaled_window(src_crs: CRS | None, src_transform: Affine, src_shape: tuple[int, int],
                  target: Grid) -> Window | None:
    """The fractional window of a raster (``src_crs``, ``src_transform``, ``(rows, cols)``) that covers
    ``target`` exactly when only a scale and a shift separate them (same CRS, north-up, no rotation), for a
    resampled read (GDAL's RasterIO with a floating window and an output shape). None when a warp is needed or
    the window reaches past the raster by more than 1e-6 of its pixels (GDAL would refuse it)."""
    if src_crs is None or src_crs != target.crs:
        return None
    st, tt = src_transform, target.transform
    if st.b != 0 or st.d != 0 or tt.b != 0 or tt.d != 0 or st.a <= 0 or st.e >= 0 or tt.a <= 0 or tt.e >= 0:
        return None
    col0, row0 = (tt.c - st.c) / st.a, (tt.f - st.f) / st.e
    width, height = target.width * tt.a / st.a, target.height * tt.e / st.e
    rows, cols = src_shape
    eps = 1e-6
    if col0 < -eps or row0 < -eps or col0 + width > cols + eps or row0 + height > rows + eps:
        return None
    col0, row0 = max(col0, 0.0), max(row0, 0.0)
    return Window(col0, row0, min(width, cols - col0), min(height, rows - row0))

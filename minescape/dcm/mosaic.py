"""Mosaic DCM tiles onto any grid: windowed reads of every tile the grid touches, quality masks applied on
the tiles' own 1 arcsec grid, then each window sampled at the target grid's pixel centres (transformed exactly
with pyproj) and the windows combined.

Sites straddle tile edges, so a grid may need several tiles; only the window of each tile that covers the
grid (plus a margin) is read, through ``/vsizip/`` for ZIPs. ``DATE`` is read as int32 and sampled
nearest-neighbour, so YYYYMMDD values survive exactly (float32 holds integers exactly only up to
2**24 = 16777216, below any date). The change itself is sampled bilinearly with voids left out. Sampling is
per point, so a grid read in windows (whole-scene classification) gets the same values as read whole.

Per-pixel :data:`STATE` codes on the target grid say why a pixel has no change value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from minescape.dcm.discover import TileSource
from minescape.dcm.index import DcmIndex
from minescape.dcm.layers import DCM_VOID, Layer
from minescape.dcm.options import DcmOptions
from minescape.dcm.tiles import TileName, tiles_covering
from minescape.errors import CRSMismatchError, InputError, NoOverlapError
from minescape.geo.grid import Grid, bounds_in
from minescape.geo.raster import Raster, open_by_name

WGS84 = CRS.from_epsg(4326)
OUTSIDE, VALID, VOID, MASKED_HAI, MASKED_CIM, NO_DATE = range(6)
STATE = {OUTSIDE: "outside every tile", VALID: "valid", VOID: "void (-32767)", MASKED_HAI: "masked: HAI too high",
         MASKED_CIM: "masked: CIM class excluded", NO_DATE: "void: DATE <= 0"}
MAX_TILE_PIXELS = 12_000 * 12_000  # a 1 arcsec tile is 3601 x 3601; refuse absurd headers before reading
MARGIN_PX = 6


@dataclass(frozen=True)
class DcmWindow:
    """The DCM on a target grid.

    Attributes:
        dh: elevation change in metres (float32, NaN where not :data:`VALID`), on the target grid and CRS.
        date: acquisition date ``YYYYMMDD`` (int32, 0 where void, undated or outside every tile).
        state: uint8 :data:`STATE` code per pixel.
        tiles: labels of the tiles read.
    """

    dh: Raster
    date: np.ndarray
    state: np.ndarray
    tiles: tuple[str, ...]


@dataclass(frozen=True)
class _Header:
    source: TileSource
    crs: CRS
    transform: rasterio.Affine
    width: int
    height: int
    nodata: float | None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f


def _open(source: TileSource, layer: Layer, what: str):
    try:
        return open_by_name(source.path(layer))  # a VRT member dressed as .tif is not followed
    except RasterioIOError as exc:
        raise InputError(f"{what}: {source.label}: {layer.value.rstrip('_')} layer is not a readable raster "
                         f"({str(exc).splitlines()[0][:100]})") from None


def _header(source: TileSource, what: str) -> _Header:
    with _open(source, Layer.DCM, what) as src:
        if src.crs is None:
            raise InputError(f"{what}: {source.label}: the DCM layer has no CRS")
        if src.width * src.height > MAX_TILE_PIXELS:
            raise InputError(f"{what}: {source.label}: {src.width} x {src.height} pixels is not a 1° DCM tile")
        return _Header(source, src.crs, src.transform, src.width, src.height, src.nodata)


def _check_aligned(a: _Header, b: _Header, what: str) -> None:
    """Two sources of the same 1° tile (e.g. two deliveries of it) that overlap must share one pixel lattice
    (same CRS, pixel size and whole-pixel offsets). Neighbouring tiles need not: their longitude spacing changes
    at 50°, 60°, 70°, 80° and 85° latitude, and each is sampled on its own lattice."""
    ax0, ay0, ax1, ay1 = a.bounds
    bx0, by0, bx1, by1 = b.bounds
    tol_x, tol_y = 0.5 * abs(a.transform.a), 0.5 * abs(a.transform.e)
    if min(ax1, bx1) - max(ax0, bx0) <= tol_x or min(ay1, by1) - max(ay0, by0) <= tol_y:
        return
    ta, tb = a.transform, b.transform
    same = a.crs == b.crs and np.isclose(ta.a, tb.a, rtol=1e-9) and np.isclose(ta.e, tb.e, rtol=1e-9)
    if same:
        col, row = (tb.c - ta.c) / ta.a, (tb.f - ta.f) / ta.e
        same = abs(col - round(col)) < 1e-3 and abs(row - round(row)) < 1e-3
    if not same:
        raise CRSMismatchError(
            f"{what}: {a.source.label} and {b.source.label} overlap with different grids (pixel "
            f"{abs(ta.a):.3g} x {abs(ta.e):.3g} at ({ta.c:.6f}, {ta.f:.6f}) vs {abs(tb.a):.3g} x {abs(tb.e):.3g} at "
            f"({tb.c:.6f}, {tb.f:.6f})); keep one of them")


def _read(source: TileSource, layer: Layer, window: Window, hdr: _Header, what: str) -> np.ndarray:
    with _open(source, layer, what) as src:
        if src.transform != hdr.transform or (src.width, src.height) != (hdr.width, hdr.height):
            raise CRSMismatchError(f"{what}: {source.label}: the {layer.value.rstrip('_')} layer's grid differs "
                                   "from the DCM layer's")
        try:
            return src.read(1, window=window)
        except RasterioIOError as exc:
            raise InputError(f"{what}: {source.label}: corrupt {layer.value.rstrip('_')} layer "
                             f"({str(exc).splitlines()[0][:100]})") from None


def _as_date(raw: np.ndarray) -> np.ndarray:
    """int32 YYYYMMDD; a float DATE layer (not DLR's int) is rounded, negatives and NaN become 0."""
    if np.issubdtype(raw.dtype, np.integer):
        return np.clip(raw, 0, 99_991_231).astype(np.int32)
    return np.where(np.isfinite(raw) & (raw > 0), np.rint(np.nan_to_num(raw)), 0).astype(np.int32)


def _tile_on_grid(hdr: _Header, points: tuple[np.ndarray, np.ndarray], options: DcmOptions, what: str):
    """The tile's change, date and state at the target grid's pixel centres (``points``: their coordinates in
    the tile's CRS), or None when no pixel centre falls in the tile.

    The window read is the tile's pixels under those centres plus :data:`MARGIN_PX` (found from the points
    themselves, so a grid across the antimeridian, whose bounds in degrees have west > east, reads the right
    window); each value depends only on the pixels next to its point, so a grid read in windows equals it read
    whole."""
    x, y = points
    if hdr.crs.is_geographic:  # longitudes within 180° of the tile's centre: 180.0001 and -179.9999 alike
        cx = hdr.transform.c + hdr.transform.a * hdr.width / 2
        x = np.mod(x - cx + 180.0, 360.0) - 180.0 + cx
    # fractional pixel coordinates (pixel corners at whole numbers) of the target pixel centres in the tile
    inv = ~hdr.transform
    col = inv.a * x + inv.b * y + inv.c
    row = inv.d * x + inv.e * y + inv.f
    inside = (col >= 0) & (col < hdr.width) & (row >= 0) & (row < hdr.height)
    if not inside.any():
        return None
    c0, r0 = max(0, int(col[inside].min()) - MARGIN_PX), max(0, int(row[inside].min()) - MARGIN_PX)
    c1 = min(hdr.width, int(col[inside].max()) + 1 + MARGIN_PX)
    r1 = min(hdr.height, int(row[inside].max()) + 1 + MARGIN_PX)
    window = Window(c0, r0, c1 - c0, r1 - r0)
    s = hdr.source
    dcm = _read(s, Layer.DCM, window, hdr, what).astype(np.float32)
    date = _as_date(_read(s, Layer.DATE, window, hdr, what))
    hai = _read(s, Layer.HAI, window, hdr, what).astype(np.float32)
    cim = _read(s, Layer.CIM, window, hdr, what)
    void = ~np.isfinite(dcm) | (dcm == np.float32(DCM_VOID))
    if hdr.nodata is not None and np.isfinite(hdr.nodata):
        void |= dcm == np.float32(hdr.nodata)
    no_date = ~void & (date <= 0)
    bad_hai = ~void & ~no_date & (~np.isfinite(hai) | (hai == np.float32(DCM_VOID)) | (hai > options.max_hai))
    bad_cim = ~void & ~no_date & ~bad_hai & ~np.isin(cim, options.keep_cim)
    state = np.full(dcm.shape, VALID, dtype=np.uint8)
    state[bad_cim] = MASKED_CIM
    state[bad_hai] = MASKED_HAI
    state[no_date] = NO_DATE
    state[void] = VOID
    col, row = col - c0, row - r0
    dh = _bilinear(np.where(state == VALID, dcm, np.nan).astype(np.float32), col, row)
    ci = np.clip(np.floor(col).astype(np.int64), 0, dcm.shape[1] - 1)
    ri = np.clip(np.floor(row).astype(np.int64), 0, dcm.shape[0] - 1)
    st = np.where(inside, state[ri, ci], OUTSIDE).astype(np.uint8)
    dt = np.where(inside & ~np.isin(st, (VOID, NO_DATE)), date[ri, ci], 0).astype(np.int32)
    return np.where(inside, dh, np.nan).astype(np.float32), dt, st


def _bilinear(src: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``src`` at fractional pixel coordinates; NaN neighbours are left out and the weights
    of the others renormalised (as GDAL does with nodata). Computed per point from the point alone, so a grid
    read in windows gets exactly the values it gets read whole (GDAL's warper does not: its results shift by
    ~1e-3 of the value with the destination window)."""
    fx, fy = col - 0.5, row - 0.5
    x0, y0 = np.floor(fx), np.floor(fy)
    dx, dy = fx - x0, fy - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    acc = np.zeros(col.shape, dtype=np.float64)
    wsum = np.zeros(col.shape, dtype=np.float64)
    h, w = src.shape
    for ox, oy, weight in ((0, 0, (1 - dx) * (1 - dy)), (1, 0, dx * (1 - dy)), (0, 1, (1 - dx) * dy),
                           (1, 1, dx * dy)):
        xi, yi = x0 + ox, y0 + oy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        v = src[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
        ok &= np.isfinite(v)
        acc += np.where(ok, v * weight, 0.0)
        wsum += np.where(ok, weight, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(wsum > 1e-12, acc / wsum, np.nan).astype(np.float32)


def read_dcm_on_grid(index: DcmIndex, grid: Grid, options: DcmOptions | None = None, *,
                     what: str = "the area") -> DcmWindow:
    """The DCM of ``index`` on ``grid`` (any CRS): change, date and per-pixel state.

    Each tile is sampled on its own lattice, so neighbours with different longitude spacings (the TanDEM-X
    bands at 50°, 60°, 70°, 80° and 85° latitude) mosaic as any other neighbours. A target pixel centre is taken
    from the tile whose 1° cell holds it (``N50E013`` from 50°N up), and from a neighbour's shared edge pixels
    only where that tile has not been delivered. A grid across the antimeridian reads the tiles on both sides.

    Raises:
        NoOverlapError: no tile of the chosen kind touches the grid.
        InputError: a tile the grid needs is unusable (missing layer, unreadable) or two overlapping sources
            of the same tile have different grids (CRSMismatchError); the message names the tile(s) and
            ``what``.
    """
    options = options or DcmOptions()
    b = bounds_in(grid.bounds, grid.crs, WGS84) if grid.crs != WGS84 else grid.bounds
    pad = (MARGIN_PX + 1) / 3600.0
    sources = index.lookup((b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad), options.kind)
    if not sources:
        n = len(index.tiles(options.kind))
        raise NoOverlapError(f"{what} lies outside every DCM tile ({n} {options.kind.value} tiles in "
                             f"{index.root}; it needs {', '.join(_needed(b))})")
    usable = {s.tile for s in sources if not s.problem}
    for s in sources:  # a tile with a usable source is read from it; one with none is refused, naming why
        if s.problem and s.tile not in usable:
            raise InputError(f"{what}: {s.source}: {s.problem}")
    sources = [s for s in sources if not s.problem]
    headers = [_header(s, what) for s in sources]
    for i, a in enumerate(headers):
        for other in headers[i + 1:]:
            if other.source.tile == a.source.tile:
                _check_aligned(a, other, what)
    rows, cols = np.indices(grid.shape)
    xs, ys = grid.xy(rows.ravel(), cols.ravel())
    lonlat = _points_in(xs, ys, grid.crs, WGS84, grid.shape)
    by_crs: dict = {WGS84: lonlat}
    dh = np.full(grid.shape, np.nan, dtype=np.float32)
    date = np.zeros(grid.shape, dtype=np.int32)
    state = np.zeros(grid.shape, dtype=np.uint8)
    from_own = np.zeros(grid.shape, dtype=bool)  # taken from the tile whose 1° cell holds the pixel centre
    used = []
    for hdr in headers:
        if hdr.crs not in by_crs:
            by_crs[hdr.crs] = _points_in(xs, ys, grid.crs, hdr.crs, grid.shape)
        part = _tile_on_grid(hdr, by_crs[hdr.crs], options, what)
        if part is None:
            continue
        used.append(hdr.source.label)
        t_dh, t_date, t_state = part
        own = _in_cell(lonlat, hdr.source.tile)
        has = t_state != OUTSIDE
        take = has & ((state == OUTSIDE) | (own & ~from_own))
        state[take] = t_state[take]
        date[take] = t_date[take]
        dh[take] = t_dh[take]
        from_own[take] = own[take]
        fill = ~take & has & (state == VALID) & ~np.isfinite(dh) & np.isfinite(t_dh)
        dh[fill] = t_dh[fill]
    dh[state != VALID] = np.nan
    return DcmWindow(Raster(dh, grid.crs, grid.transform, np.nan, ("DH",)), date, state, tuple(used))


def _in_cell(lonlat: tuple[np.ndarray, np.ndarray], tile: TileName) -> np.ndarray:
    """Whether each ``(lon, lat)`` point (degrees) lies in ``tile``'s 1° cell (west and south edges included;
    longitudes taken modulo 360°)."""
    lon, lat = lonlat
    with np.errstate(invalid="ignore"):
        lon = np.mod(lon - tile.lon, 360.0)
        return (lon < 1.0) & (lat >= tile.lat) & (lat < tile.lat + 1)


def cells_of(grid: Grid, mask: np.ndarray) -> list[TileName]:
    """The 1° tiles holding the centres of ``grid``'s pixels where ``mask`` is True, sorted."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return []
    xs, ys = grid.xy(rows, cols)
    lon, lat = _points_in(xs, ys, grid.crs, WGS84, rows.shape)
    ok = np.isfinite(lon) & np.isfinite(lat)
    return sorted({TileName.containing(lo, la) for lo, la in zip(lon[ok].tolist(), lat[ok].tolist(), strict=True)})


def _points_in(xs, ys, src_crs, dst_crs, shape) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates transformed exactly (pyproj, per point) to ``dst_crs``, as ``shape`` arrays."""
    if src_crs == dst_crs:
        return np.asarray(xs).reshape(shape), np.asarray(ys).reshape(shape)
    from pyproj import Transformer

    tx, ty = Transformer.from_crs(src_crs, dst_crs, always_xy=True).transform(xs, ys)
    return np.asarray(tx).reshape(shape), np.asarray(ty).reshape(shape)


def _needed(bounds) -> list[str]:
    return [t.name for t in tiles_covering(bounds)][:6]

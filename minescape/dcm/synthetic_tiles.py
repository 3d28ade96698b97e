"""Synthetic TanDEM-X DCM deliveries in DLR's exact layout, for the demo, tests and benchmarks.

One ZIP per tile and map kind, ``TDM1_DCM__10_<tile>_<KIND>1622_V01_C.zip``, holding the product folder
``TDM1_DCM__10_<tile>_<KIND>1622_V01_C/`` with ``DCM/`` (change in metres, float32, void -32767),
``DCM_AUXFILES/`` (``DATE`` int32 YYYYMMDD with 0 = none, ``HAI`` float32 metres, ``CIM`` uint8 classes) and a
small XML. Tiles are full 1° tiles on the TanDEM-X lattice: pixel centres on whole arcseconds, the tile edges'
pixels shared by neighbours (3601 x 3601 pixels at 1 arcsec below 50° latitude; the longitude spacing widens
towards the poles as for the TanDEM-X DEM). Values come from a *field* function evaluated only over the part
of each tile covering the requested bounds; the rest of the tile is void. ZIP bytes are reproducible.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from affine import Affine
from rasterio.io import MemoryFile

from minescape.atomic import atomic_path
from minescape.dcm.layers import DCM_VOID, Layer, MapKind, layer_file_name, product_name
from minescape.dcm.tiles import TileName, tiles_covering

if TYPE_CHECKING:
    from minescape.synthetic import Region

ARCSEC = 1.0 / 3600.0
# TanDEM-X DEM longitude spacing (arcsec) by absolute latitude band: (upper bound, spacing)
LON_SPACING: tuple[tuple[float, float], ...] = ((50, 1), (60, 1.5), (70, 2), (80, 3), (85, 5), (90, 10))


@dataclass(frozen=True)
class TileLayers:
    """Layer values over a block of pixel centres: dh (m, NaN = void), date (YYYYMMDD, 0 = none), hai (m),
    cim (class)."""

    dh: np.ndarray
    date: np.ndarray
    hai: np.ndarray
    cim: np.ndarray


Field = Callable[[np.ndarray, np.ndarray, MapKind], TileLayers]


def lon_spacing(tile: TileName) -> float:
    """Longitude pixel spacing in degrees for ``tile`` (1 arcsec below 50° latitude)."""
    lat = min(abs(tile.lat), abs(tile.lat + 1))  # the tile's edge nearer the equator
    for upper, sec in LON_SPACING:
        if lat < upper:
            return sec * ARCSEC
    return LON_SPACING[-1][1] * ARCSEC


def tile_grid(tile: TileName) -> tuple[Affine, int, int]:
    """``(transform, width, height)`` of ``tile`` in EPSG:4326: edge pixels centred on the tile edges."""
    dx = lon_spacing(tile)
    width = int(round(1.0 / dx)) + 1
    height = 3601
    return Affine(dx, 0, tile.lon - dx / 2, 0, -ARCSEC, tile.lat + 1 + ARCSEC / 2), width, height


def _tif_bytes(data: np.ndarray, transform: Affine, nodata, dtype: str) -> bytes:
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": dtype,
               "crs": "EPSG:4326", "transform": transform, "nodata": nodata, "compress": "deflate", "zlevel": 1,
               "sparse_ok": True, "tiled": True,
               "blockxsize": 256, "blockysize": 256}
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data.astype(dtype), 1)
        return mem.read()


def _xml(tile: TileName, kind: MapKind) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<!-- synthetic minescape DCM tile, not a DLR product -->\n'
            f"<product><name>{product_name(tile, kind)}</name><tile>{tile.name}</tile><map>{kind.value}</map>"
            "<layers>DCM DATE HAI CIM</layers></product>\n")


def tile_layers(tile: TileName, kind: MapKind, field: Field, boxes: Sequence[tuple[float, float, float, float]]
                ) -> dict[Layer, np.ndarray]:
    """Full-tile arrays of the four layers: ``field`` inside ``boxes`` (lon/lat degrees), void elsewhere."""
    transform, width, height = tile_grid(tile)
    dcm = np.full((height, width), DCM_VOID, dtype=np.float32)
    date = np.zeros((height, width), dtype=np.int32)
    hai = np.full((height, width), DCM_VOID, dtype=np.float32)
    cim = np.zeros((height, width), dtype=np.uint8)
    inv = ~transform
    for west, south, east, north in boxes:
        c0, r0 = inv @ (west, north)
        c1, r1 = inv @ (east, south)
        c0, r0 = max(0, int(np.floor(c0)) - 2), max(0, int(np.floor(r0)) - 2)
        c1, r1 = min(width, int(np.ceil(c1)) + 2), min(height, int(np.ceil(r1)) + 2)
        if c1 <= c0 or r1 <= r0:
            continue
        cols = np.arange(c0, c1)
        rows = np.arange(r0, r1)
        lon = transform.c + (cols + 0.5) * transform.a
        lat = transform.f + (rows + 0.5) * transform.e
        lon2, lat2 = np.meshgrid(lon, lat)
        v = field(lon2, lat2, kind)
        ok = np.isfinite(v.dh)
        sl = (slice(r0, r1), slice(c0, c1))
        dcm[sl] = np.where(ok, v.dh, dcm[sl])
        date[sl] = np.where(ok, v.date, date[sl])
        hai[sl] = np.where(ok, v.hai, hai[sl])
        cim[sl] = np.where(ok, v.cim, cim[sl])
    return {Layer.DCM: dcm, Layer.DATE: date, Layer.HAI: hai, Layer.CIM: cim}


def write_tile_zip(path: str | Path, tile: TileName, kind: MapKind, layers: dict[Layer, np.ndarray], *,
                   transform: Affine | None = None) -> Path:
    """Write one tile ZIP in DLR's layout (members stored uncompressed: the GeoTIFFs are DEFLATE-compressed,
    and stored members let GDAL seek inside the ZIP). Layers absent from ``layers`` are left out."""
    transform = transform or tile_grid(tile)[0]
    prod = product_name(tile, kind)
    spec = {Layer.DCM: ("DCM", DCM_VOID, "float32"), Layer.DATE: ("DCM_AUXFILES", 0, "int32"),
            Layer.HAI: ("DCM_AUXFILES", DCM_VOID, "float32"), Layer.CIM: ("DCM_AUXFILES", 0, "uint8")}
    members: list[tuple[str, bytes]] = [(f"{prod}/{prod}.xml", _xml(tile, kind).encode())]
    for layer, (folder, nodata, dtype) in spec.items():
        if layer in layers:
            members.append((f"{prod}/{folder}/{layer_file_name(tile, kind, layer)}",
                            _tif_bytes(layers[layer], transform, nodata, dtype)))
    path = Path(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(2023, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def write_dcm_tiles(folder: str | Path, boxes: Sequence[tuple[float, float, float, float]], field: Field, *,
                    kinds: Sequence[MapKind] = (MapKind.LAST, MapKind.FIRST)) -> list[Path]:
    """Write every tile touching ``boxes`` (lon/lat degrees) for each kind into ``folder``; returns the ZIPs."""
    tiles = sorted({t for b in boxes for t in tiles_covering(b)})
    out = []
    for tile in tiles:
        for kind in kinds:
            layers = tile_layers(tile, kind, field, boxes)
            out.append(write_tile_zip(Path(folder) / f"{product_name(tile, kind)}.zip", tile, kind, layers))
    return out


def analytic_field(years: tuple[int, int] = (2018, 2019), *, split_lon: float | None = None,
                   amplitude: float = 5.0) -> Field:
    """A smooth change field known everywhere: ``dh = amplitude * sin(200 lon) * cos(200 lat)`` metres (lon,
    lat in degrees); DATE in ``years[0]`` west of ``split_lon`` and ``years[1]`` east of it (odd days, which
    float32 cannot hold); HAI 2 m; CIM 1. FIRST maps date one year earlier where the LAST year is the later
    one and carry 70 % of the change there."""

    def field(lon: np.ndarray, lat: np.ndarray, kind: MapKind) -> TileLayers:
        dh = (amplitude * np.sin(np.radians(200 * lon)) * np.cos(np.radians(200 * lat))).astype(np.float32)
        east = np.zeros(lon.shape, bool) if split_lon is None else lon >= split_lon
        year = np.where(east, years[1], years[0]).astype(np.int32)
        date = year * 10000 + 7 * 100 + 17
        if kind == MapKind.FIRST:
            later = year > min(years)
            date = np.where(later, (year - 1) * 10000 + 3 * 100 + 9, date)
            dh = np.where(later, 0.7 * dh, dh).astype(np.float32)
        return TileLayers(dh, date.astype(np.int32), np.full(lon.shape, 2.0, np.float32),
                          np.ones(lon.shape, np.uint8))

    return field


def region_field(region: Region) -> Field:
    """The synthetic region's DCM as a field: its 10 m change (3 x 3 mean, about the 30 m DCM footprint) and
    later-acquisition year sampled at each DCM pixel centre; void outside the region and at its voids.

    DATE is the region's year with a day that changes by acquisition strip (odd YYYYMMDD values). HAI is
    1-3 m with patches above 5 m; CIM is class 1, class 4 where the change exceeds 2 m, and patches of the
    classes 2 and 3 that the default masks exclude. FIRST maps carry the year before and 70 % of the change
    where the LAST year is not the region's first.
    """
    from pyproj import Transformer
    from scipy import ndimage

    grid = region.grid
    valid = np.isfinite(region.dh)
    num = ndimage.uniform_filter(np.where(valid, region.dh, 0).astype(np.float64), size=3, mode="nearest")
    den = ndimage.uniform_filter(valid.astype(np.float64), size=3, mode="nearest")
    dh30 = np.where(valid & (den > 0), num / np.maximum(den, 1e-9), np.nan).astype(np.float32)
    rng = np.random.default_rng(region.config.seed + 15)
    h, w = grid.shape
    hai_noise = ndimage.gaussian_filter(rng.standard_normal((h, w)), 12)
    hai_noise /= hai_noise.std() + 1e-12
    cim_noise = ndimage.gaussian_filter(rng.standard_normal((h, w)), 10)
    cim_noise /= cim_noise.std() + 1e-12
    years = np.asarray(region.config.dcm_years)
    to_region = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    t = grid.transform

    def field(lon: np.ndarray, lat: np.ndarray, kind: MapKind) -> TileLayers:
        x, y = to_region.transform(lon, lat)
        col = np.floor((np.asarray(x) - t.c) / t.a).astype(np.int64)
        row = np.floor((np.asarray(y) - t.f) / t.e).astype(np.int64)
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        r, c = np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)
        dh = np.where(inside, dh30[r, c], np.nan).astype(np.float32)
        year = np.where(inside, region.dcm_year[r, c], 0).astype(np.int32)
        dh[year <= 0] = np.nan
        day = 11 + 2 * np.searchsorted(years, np.maximum(year, years[0]))
        date = np.where(year > 0, year * 10000 + 6 * 100 + day, 0).astype(np.int32)
        hai = (2.0 + 0.6 * hai_noise[r, c]).clip(0.5, None).astype(np.float32)
        hai[hai_noise[r, c] > 1.9] = 7.5
        cim = np.where(np.abs(np.nan_to_num(dh)) > 2.0, 4, 1).astype(np.uint8)
        cim[cim_noise[r, c] > 2.1] = 2
        cim[cim_noise[r, c] < -2.2] = 3
        if kind == MapKind.FIRST:
            later = year > years.min()
            date = np.where(later, (year - 1) * 10000 + 3 * 100 + 9, date).astype(np.int32)
            dh = np.where(later, 0.7 * dh, dh).astype(np.float32)
        return TileLayers(dh, date, hai, cim)

    return field


def region_lonlat_bounds(region: Region) -> tuple[float, float, float, float]:
    """The region's bounds in degrees (EPSG:4326)."""
    from minescape.geo.grid import bounds_in

    return tuple(bounds_in(region.grid.bounds, region.grid.crs, rasterio.crs.CRS.from_epsg(4326)))


def write_region_tiles(region: Region, folder: str | Path) -> list[Path]:
    """The region's DCM as DLR tile ZIPs (LAST and FIRST) in ``folder``."""
    return write_dcm_tiles(folder, [region_lonlat_bounds(region)], region_field(region))

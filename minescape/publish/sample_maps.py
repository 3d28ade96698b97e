"""Per-site class maps for publishing before (or without) the LULC pipeline.

Both functions write the publish input contract: ``<out>/<site_id>.tif``, uint8 MINING_LULC codes,
nodata 0 outside the site polygon, on a UTM grid, with GeoTIFF tags ``SITE_ID`` and ``YEAR``.

* :func:`make_site_maps` draws plausible mining patterns (open pits with pit lakes, waste dumps, ponds,
  plant buildings, haul roads, disturbed land over a vegetation/bare soil background) inside real
  site outlines of any CRS, on each site's UTM zone at 10 m. Multipolygons and holes are honoured
  (pixels in holes are nodata); sites across the antimeridian are unwrapped before choosing the zone.
* :func:`clip_truth_to_sites` cuts a truth class raster (e.g. the synthetic region's
  ``truth/lulc.tif``) to each site polygon on the raster's own grid.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from pyproj import Transformer
from scipy import ndimage

from minescape.errors import InputError
from minescape.geo.grid import Grid, utm_crs
from minescape.geo.raster import Raster, open_raster, write_raster
from minescape.legend import MINING_LULC

PIT, DUMP, DISTURBED, WATER, FACILITY, BARE, VEG = range(1, 8)


def site_ids(sites: gpd.GeoDataFrame, id_column: str | None) -> list[str]:
    """Site ids from ``id_column`` (made file-name safe), or ``site_0001``... in row order."""
    if id_column is None:
        return [f"site_{k + 1:04d}" for k in range(len(sites))]
    if id_column not in sites.columns:
        raise InputError(f"no column {id_column!r} in the sites layer (columns: {list(sites.columns)})")
    ids = ["".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(v)) for v in sites[id_column]]
    if len(set(ids)) != len(ids):
        raise InputError(f"column {id_column!r} has duplicate site ids")
    return ids


def unwrap_antimeridian(geom):
    """A lon/lat geometry spanning more than 180° of longitude, with western longitudes shifted by +360°."""
    left, _, right, _ = geom.bounds
    if right - left <= 180:
        return geom
    return shapely.transform(geom, lambda c: np.where(c[:, :1] < 0, c + [360.0, 0.0], c))


def _site_grid(geom_ll, res: float) -> tuple[Grid, object]:
    """The site's UTM grid at ``res`` metres and the site geometry in that CRS."""
    pt = geom_ll.representative_point()
    crs = utm_crs(pt.x, pt.y)
    tf = Transformer.from_crs(4326, crs, always_xy=True)
    geom = shapely.transform(geom_ll, lambda c: np.column_stack(tf.transform(c[:, 0], c[:, 1])))
    return Grid.from_bounds(geom.bounds, res, crs), geom


def _burn(grid: Grid, geom, *, all_touched: bool = False) -> np.ndarray:
    return rasterio.features.rasterize([(geom, 1)], out_shape=grid.shape, transform=grid.transform, fill=0,
                                       dtype="uint8", all_touched=all_touched).astype(bool)


def draw_mine(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Plausible mining land use/land cover inside ``mask`` (uint8 codes, 0 outside)."""
    h, w = mask.shape
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), max(2.0, min(h, w) / 25))
    out = np.where(field > np.quantile(field, 0.45), VEG, BARE).astype(np.uint8)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return np.zeros_like(out)
    radius = max(3.0, np.sqrt(rows.size / np.pi))
    yy, xx = np.ogrid[:h, :w]

    def centre():
        k = rng.integers(rows.size)
        return cols[k] + 0.5, rows[k] + 0.5

    def ellipse(cx, cy, rx, ry, angle):
        ca, sa = np.cos(angle), np.sin(angle)
        u = ((xx + 0.5 - cx) * ca + (yy + 0.5 - cy) * sa) / rx
        v = (-(xx + 0.5 - cx) * sa + (yy + 0.5 - cy) * ca) / ry
        return np.sqrt(u * u + v * v)

    anchors = []
    for _ in range(rng.integers(1, 4)):  # disturbed land
        cx, cy = centre()
        out[ellipse(cx, cy, radius * rng.uniform(0.1, 0.3), radius * rng.uniform(0.1, 0.2),
                    rng.uniform(0, np.pi)) < 1 + 0.2 * field] = DISTURBED
    for _ in range(rng.integers(1, 3)):  # waste dumps
        cx, cy = centre()
        out[ellipse(cx, cy, radius * rng.uniform(0.15, 0.3), radius * rng.uniform(0.1, 0.2),
                    rng.uniform(0, np.pi)) < 1] = DUMP
        anchors.append((cx, cy))
    for p in range(rng.integers(1, 3)):  # open pits, the first one often with a pit lake
        cx, cy = centre()
        r = ellipse(cx, cy, radius * rng.uniform(0.15, 0.3), radius * rng.uniform(0.1, 0.22), rng.uniform(0, np.pi))
        out[r < 1] = PIT
        if p == 0 and rng.random() < 0.6:
            out[r < rng.uniform(0.25, 0.45)] = WATER
        anchors.append((cx, cy))
    if rng.random() < 0.7:  # tailings pond
        cx, cy = centre()
        pw, ph = radius * rng.uniform(0.05, 0.12), radius * rng.uniform(0.04, 0.09)
        out[(np.abs(xx + 0.5 - cx) < pw) & (np.abs(yy + 0.5 - cy) < ph)] = WATER
    plant = []
    for _ in range(rng.integers(1, 4)):  # facilities
        cx, cy = centre()
        fw, fh = rng.uniform(2, 7), rng.uniform(2, 5)
        plant.append(((np.abs(xx + 0.5 - cx) < fw) & (np.abs(yy + 0.5 - cy) < fh), (cx, cy)))
    pts = anchors + [c for _, c in plant]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):  # haul roads
        n = int(np.hypot(x1 - x0, y1 - y0)) + 2
        rr = np.clip(np.round(np.linspace(y0, y1, n)).astype(int), 0, h - 1)
        cc = np.clip(np.round(np.linspace(x0, x1, n)).astype(int), 0, w - 1)
        road = np.zeros((h, w), dtype=bool)
        road[rr, cc] = True
        road = ndimage.binary_dilation(road, iterations=1) & ~np.isin(out, (PIT, WATER, DUMP))
        out[road] = DISTURBED
    for m, _ in plant:
        out[m] = FACILITY
    out[~mask] = 0
    return out


def make_site_maps(
    sites: gpd.GeoDataFrame,
    out_dir: str | Path,
    *,
    seed: int = 0,
    year: int = 2020,
    res: float = 10.0,
    id_column: str | None = None,
    max_pixels: int = 25_000_000,
) -> list[Path]:
    """Write one synthetic class map per site outline (see module docstring).

    Args:
        sites: site polygons/multipolygons in any CRS (empty or null geometries are skipped; invalid
            ones repaired with ``make_valid``).
        out_dir: output folder (``<site_id>.tif`` per site, written atomically).
        seed: base seed; each site's pattern depends only on ``seed`` and its id.
        year: value of the ``YEAR`` tag.
        res: pixel size in metres on the site's UTM grid.
        id_column: column with site ids (default: ``site_0001``... in row order).
        max_pixels: refuse sites whose grid would exceed this many pixels.
    """
    out_dir = Path(out_dir)
    ids = site_ids(sites, id_column)
    ll = sites.to_crs(4326).geometry.values
    paths = []
    for sid, geom in zip(ids, ll, strict=True):
        if geom is None or geom.is_empty:
            continue
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        grid, local = _site_grid(unwrap_antimeridian(geom), res)
        if grid.width * grid.height > max_pixels:
            raise InputError(f"site {sid} needs {grid.width} x {grid.height} pixels at {res} m (> {max_pixels})")
        mask = _burn(grid, local)
        if not mask.any():
            mask = _burn(grid, local, all_touched=True)
        rng = np.random.default_rng([seed, zlib.crc32(sid.encode())])
        codes = draw_mine(rng, mask)
        path = out_dir / f"{sid}.tif"
        write_raster(Raster(codes, grid.crs, grid.transform, MINING_LULC.nodata), path, legend=MINING_LULC,
                     tags={"SITE_ID": sid, "YEAR": str(int(year))})
        paths.append(path)
    return paths


def clip_truth_to_sites(
    truth: str | Path,
    sites: gpd.GeoDataFrame,
    out_dir: str | Path,
    *,
    year: int,
    id_column: str | None = "site_id",
) -> list[Path]:
    """Cut a class raster to each site polygon (on the raster's grid, nodata outside the polygon)."""
    out_dir = Path(out_dir)
    ids = site_ids(sites, id_column)
    with open_raster(truth) as src:
        grid = Grid(src.crs, src.transform, src.width, src.height)
        geoms = sites.to_crs(src.crs).geometry.values
        paths = []
        for sid, geom in zip(ids, geoms, strict=True):
            if geom is None or geom.is_empty:
                continue
            win = grid.window_of_bounds(geom.bounds)
            sub = grid.window_grid(win)
            data = src.read(1, window=win)
            data = np.where(_burn(sub, geom), data, MINING_LULC.nodata).astype(np.uint8)
            path = out_dir / f"{sid}.tif"
            write_raster(Raster(data, sub.crs, sub.transform, MINING_LULC.nodata), path, legend=MINING_LULC,
                         tags={"SITE_ID": sid, "YEAR": str(int(year))})
            paths.append(path)
    return paths

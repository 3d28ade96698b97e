"""Manual refinement: change candidates as polygons an analyst edits in QGIS, burnt back into the mask.

1. :func:`export_candidates` polygonizes the change pixels (value 1) of a mask into a GeoPackage layer
   ``candidates`` in the mask's CRS: one feature per 4-connected change region (GDAL's polygonize
   rule), with ``cand_id``, ``status`` (``candidate``), ``area_m2`` (WGS84 ellipsoid),
   ``pixels`` and, when the difference raster is given, ``mean_diff`` and ``direction`` (``loss`` /
   ``gain`` / ``mixed``; index decrease / increase).
2. The analyst edits the layer in QGIS: **delete** false alarms (or set ``status`` to ``reject``),
   **keep** the rest, **redraw** outlines with the vertex tool, **add** missed changes as new polygons
   (any attributes; ``status`` empty counts as kept).
3. :func:`burn_edits` rasterizes the kept polygons (pixels whose centre is inside) onto the mask's
   grid, window by window: 1 inside, 0 elsewhere, 255 where the original mask is nodata.

Masks are polygonized tile by tile (memory bounded by the tile); parts of a region split by tile edges
are merged again, so each feature is one connected change region whatever the tiling.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from rasterio.enums import Resampling
from rasterio.windows import Window

from minescape.atomic import atomic_path
from minescape.errors import InputError
from minescape.geo.gpkg_style import Category, LayerStyle, add_layer_style
from minescape.geo.grid import Grid, iter_tiles
from minescape.geo.raster import open_raster, open_writer, read_raster, scan_reads
from minescape.geo.raster_style import write_legend_style
from minescape.geo.trace import trace_polygons
from minescape.geo.vector import geodesic_area, read_vector, repair_geometries, write_gpkg
from minescape.legend import CHANGE

REJECT = ("reject", "rejected", "delete", "deleted", "no", "false", "0")
LAYER = "candidates"

#: the candidates' default QGIS style: outlines over the imagery, loss red and gain blue as in the difference's ramp
#: (RdBu, as ``difference.qml`` and the report)
DIRECTION_STYLE = LayerStyle("direction", (
    Category("loss", "loss (index decrease)", (178, 24, 43)),
    Category("gain", "gain (index increase)", (33, 102, 172)),
    Category("mixed", "mixed", (120, 120, 120)),
    Category("unknown", "unknown (no difference under it)", (120, 120, 120)),
), "change candidates by direction (outlines)", outline_only=True)
#: without a difference: every candidate in one colour
CANDIDATE_STYLE = LayerStyle("status", (Category("candidate", "candidate", (255, 127, 0)),),
                             "change candidates (outlines)", outline_only=True)


def _grid_of(path: Path) -> Grid:
    with open_raster(path) as src:
        if src.crs is None:
            raise InputError("mask has no CRS: cannot export polygons", path=path)
        return Grid(src.crs, src.transform, src.width, src.height)


def export_candidates(mask: str | Path, out: str | Path, *, difference: str | Path | None = None,
                      tile: int = 2048, min_pixels: int = 1) -> Path:
    """Polygonize the change pixels of a CHANGE mask into an editable GPKG layer (atomic write).

    Args:
        mask: uint8 mask (0/1/255) from :func:`~minescape.change.difference.detect_files`.
        out: GeoPackage to write (layer ``candidates``, the mask's CRS).
        difference: the difference raster on the mask's grid; adds ``mean_diff`` and ``direction``.
        tile: polygonize tile side (pixels); memory scales with it.
        min_pixels: skip candidate regions smaller than this.

    Returns:
        ``out``. An empty layer is written when there is no change.
    """
    mask, out = Path(mask), Path(out)
    grid = _grid_of(mask)
    interior_parts, parts = [], []
    with scan_reads():  # one pass: each block read once
        for t in iter_tiles(grid.width, grid.height, size=tile):
            data = read_raster(mask, window=t.core).data[0]
            bad = sorted(set(np.unique(data).tolist()) - {0, 1, CHANGE.nodata})
            if bad:
                raise InputError(f"unexpected mask values {bad[:10]} (expected 0, 1, 255)", path=mask)
            change = data == 1
            if not change.any():
                continue
            transform = rasterio.windows.transform(t.core, grid.transform)
            tile_polys = trace_polygons(change.view(np.uint8), transform, nodata=0).to_shapely()
            for poly in tile_polys:
                parts.append(poly)
                interior_parts.append(_touches_tile_edge(poly, t.core, grid, transform))
    polys = [p for p, e in zip(parts, interior_parts, strict=True) if not e]
    edge_parts = [p for p, e in zip(parts, interior_parts, strict=True) if e]
    if edge_parts:  # merge regions cut by tile edges (they share an edge after polygonizing)
        merged = shapely.union_all(edge_parts)
        polys.extend(list(getattr(merged, "geoms", [merged])))
    polys.sort(key=lambda g: (-g.bounds[3], g.bounds[0]))  # deterministic order: north to south, west to east
    px_area = abs(grid.transform.a * grid.transform.e)
    pixels = [int(round(p.area / px_area)) for p in polys]
    keep = [i for i, n in enumerate(pixels) if n >= min_pixels]
    polys = [polys[i] for i in keep]
    pixels = [pixels[i] for i in keep]
    gdf = gpd.GeoDataFrame({"cand_id": np.arange(1, len(polys) + 1, dtype=np.int64),
                            "status": ["candidate"] * len(polys),
                            "pixels": np.asarray(pixels, dtype=np.int64),
                            "area_m2": geodesic_area(polys, grid.crs) if polys else np.zeros(0)},
                           geometry=gpd.GeoSeries(polys, crs=grid.crs), crs=grid.crs)
    if difference is not None:
        means = _mean_in_polygons(Path(difference), gdf, grid)
        gdf["mean_diff"] = means
        gdf["direction"] = [_direction(m) for m in means]
    with atomic_path(out) as tmp:  # the layer and its default QGIS style appear together
        write_gpkg(gdf, tmp, layer=LAYER)
        add_layer_style(tmp, LAYER, CANDIDATE_STYLE if difference is None else DIRECTION_STYLE)
    return out


def _touches_tile_edge(poly, core: Window, grid: Grid, transform) -> bool:
    """True if ``poly`` reaches a tile edge that is not the raster edge."""
    minx, miny, maxx, maxy = poly.bounds
    left, top = transform.c, transform.f
    right = left + transform.a * core.width
    bottom = top + transform.e * core.height
    eps = abs(transform.a) * 1e-6
    return bool((minx <= left + eps and core.col_off > 0)
                or (maxx >= right - eps and core.col_off + core.width < grid.width)
                or (maxy >= top - eps and core.row_off > 0)
                or (miny <= bottom + eps and core.row_off + core.height < grid.height))


def _mean_in_polygons(diff_path: Path, gdf: gpd.GeoDataFrame, grid: Grid) -> np.ndarray:
    """Mean difference under each polygon (windowed per polygon bounding box); the raster's nodata (NaN, or a
    declared value such as -9999 of a converted raster) is left out."""
    out = np.full(len(gdf), np.nan)
    with open_raster(diff_path) as src:
        if (src.height, src.width) != grid.shape or src.transform != grid.transform:
            raise InputError("difference raster is not on the mask's grid", path=diff_path)
        nodata = src.nodata
    for i, geom in enumerate(gdf.geometry):
        win = grid.window_of_bounds(geom.bounds)
        d = read_raster(diff_path, window=win).data[0].astype(np.float64)
        inside = rasterio.features.geometry_mask([geom], out_shape=d.shape, invert=True,
                                                 transform=rasterio.windows.transform(win, grid.transform))
        valid = np.isfinite(d) if nodata is None or np.isnan(nodata) else np.isfinite(d) & (d != nodata)
        vals = d[inside & valid]
        if vals.size:
            out[i] = float(vals.mean())
    return out


def _direction(mean: float) -> str:
    if not np.isfinite(mean):
        return "unknown"
    return "loss" if mean < 0 else ("gain" if mean > 0 else "mixed")


def kept_polygons(edited: str | Path, *, layer: str | None = None) -> gpd.GeoDataFrame:
    """The edited layer's features to burn: repaired, with ``status`` not in the reject words."""
    edited = Path(edited)
    gdf = read_vector(edited, layer=layer if layer is not None else _default_layer(edited))
    gdf, _ = repair_geometries(gdf, source=str(edited))
    if "status" in gdf.columns:
        status = gdf["status"].fillna("").astype(str).str.strip().str.lower()
        gdf = gdf[~status.isin(REJECT)]
    polygonal = gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    if (~polygonal).any():
        raise InputError(f"{int((~polygonal).sum())} features are not polygons "
                         f"({sorted(set(gdf.geometry.geom_type[~polygonal]))}); draw areas, not lines or points",
                         path=edited)
    return gdf


def _default_layer(path: Path) -> str | None:
    import pyogrio

    try:
        layers = [n for n, _ in pyogrio.list_layers(path)]
    except Exception:
        return None
    return LAYER if LAYER in layers else None


def burn_edits(edited: str | Path, mask: str | Path, out: str | Path, *, layer: str | None = None,
               tile: int = 2048) -> dict:
    """Burn the kept polygons of an edited GPKG into a new mask on ``mask``'s grid (atomic, windowed).

    Pixels whose centre lies in a kept polygon become 1, other valid pixels 0, and pixels that are
    nodata (255) in ``mask`` stay 255. Polygons in another CRS are reprojected to the mask's CRS.

    Returns:
        ``{"features": n, "changed_pixels": n, "changed_area_m2": a}``.
    """
    from minescape.geo.pixel_area import centre_pixel_area_m2

    mask, out = Path(mask), Path(out)
    grid = _grid_of(mask)
    gdf = kept_polygons(edited, layer=layer)
    if len(gdf) and gdf.crs != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    geoms = list(gdf.geometry)
    tree = shapely.STRtree(geoms) if geoms else None
    changed = 0
    with scan_reads(), open_writer(out, grid, count=1, dtype="uint8", nodata=CHANGE.nodata, legend=CHANGE,
                                   overviews=Resampling.nearest) as dst:
        for t in iter_tiles(grid.width, grid.height, size=tile):
            original = read_raster(mask, window=t.core).data[0]
            transform = rasterio.windows.transform(t.core, grid.transform)
            burnt = np.zeros(original.shape, dtype=np.uint8)
            if tree is not None:
                left, top = transform.c, transform.f
                box = shapely.box(left, top + transform.e * t.core.height, left + transform.a * t.core.width, top)
                hits = [geoms[i] for i in tree.query(box, predicate="intersects")]
                if hits:
                    burnt = rasterio.features.rasterize([(g, 1) for g in hits], out_shape=original.shape,
                                                        transform=transform, fill=0, dtype="uint8")
            burnt[original == CHANGE.nodata] = CHANGE.nodata
            changed += int((burnt == 1).sum())
            dst.write(burnt, 1, window=t.core)
    write_legend_style(out, CHANGE)
    return {"features": len(geoms), "changed_pixels": changed, "changed_area_m2": changed * centre_pixel_area_m2(grid)}

"""Training and reference labels on a site's grid: from a label raster, labelled polygons or labelled points.

Labels are MINING_LULC codes (1..7; 0 = unlabelled). A vector's class field may hold codes or class names
(case-insensitive).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio.features
from rasterio.crs import CRS
from rasterio.windows import Window

from minescape.errors import InputError, NoOverlapError
from minescape.geo.grid import Grid, bounds_in, reproject_to_grid
from minescape.geo.raster import Raster, open_raster, read_raster
from minescape.geo.vector import read_vector
from minescape.legend import MINING_LULC, Legend

VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb")
CLASS_FIELDS = ("class", "class_code", "code", "label", "lulc")


def is_vector(path: str | Path) -> bool:
    """True for a vector file (by suffix)."""
    return Path(path).suffix.lower() in VECTOR_SUFFIXES


def raster_labels_on(path: str | Path, grid: Grid, *, legend: Legend = MINING_LULC) -> np.ndarray:
    """A label raster resampled (nearest) onto ``grid``; reads only the covering window. 0 = unlabelled."""
    with open_raster(path) as src:
        if src.crs is None:
            raise InputError("label raster has no CRS", path=path)
        lgrid = Grid(src.crs, src.transform, src.width, src.height)
        nodata = src.nodata
    b = bounds_in(grid.bounds, grid.crs, CRS.from_user_input(lgrid.crs))
    try:
        win = lgrid.window_of_bounds(b)
    except NoOverlapError:
        return np.zeros(grid.shape, dtype=np.uint8)
    c0, r0 = max(0, int(win.col_off) - 1), max(0, int(win.row_off) - 1)
    c1 = min(lgrid.width, int(win.col_off + win.width) + 1)
    r1 = min(lgrid.height, int(win.row_off + win.height) + 1)
    part = read_raster(path, bands=[1], window=Window(c0, r0, c1 - c0, r1 - r0))
    raw = legend.with_legend_nodata(part.data, nodata)  # a float label's NaN is nodata too
    legend.check_codes(raw, source=str(path))  # before the cast to uint8: 257 must not pass as class 1
    data = raw.astype(np.uint8)
    return reproject_to_grid(Raster(data, part.crs, part.transform, legend.nodata), grid, resampling="nearest",
                             dst_nodata=legend.nodata).data[0]


def _codes_of(values, legend: Legend, path) -> np.ndarray:
    lower = {n.lower(): c.code for n, c in zip(legend.names, legend.classes, strict=True)}
    out = np.zeros(len(values), dtype=np.uint8)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        if isinstance(v, str) and not v.strip().lstrip("-").isdigit():
            code = lower.get(v.strip().lower())
            if code is None:
                raise InputError(f"class {v!r} is not in the {legend.name} legend ({', '.join(legend.names)})",
                                 path=path)
        else:
            code = int(float(v))
            legend.by_code(code)
        out[i] = code
    return out


def read_vector_labels(path: str | Path, *, class_field: str | None = None, layer: str | None = None,
                       legend: Legend = MINING_LULC) -> gpd.GeoDataFrame:
    """Labelled polygons or points with a ``code`` column of legend codes (other columns dropped)."""
    gdf = read_vector(path, layer=layer)
    field_ = class_field or next((f for f in CLASS_FIELDS if f in gdf.columns), None)
    if field_ is None or field_ not in gdf.columns:
        raise InputError(f"no class field {class_field or CLASS_FIELDS!r}; fields are "
                         f"{[c for c in gdf.columns if c != gdf.geometry.name]} (use --class-field)", path=path)
    codes = _codes_of(list(gdf[field_]), legend, path)
    out = gpd.GeoDataFrame({"code": codes}, geometry=gdf.geometry.values, crs=gdf.crs)
    return out[(out["code"] > 0) & out.geometry.notna() & ~out.geometry.is_empty]


def vector_labels_on(labels: gpd.GeoDataFrame, grid: Grid) -> np.ndarray:
    """Rasterize labelled polygons (pixel centres) and points (their pixel) onto ``grid``; 0 = unlabelled."""
    from pyproj import CRS as ProjCRS

    same = ProjCRS.from_user_input(labels.crs).equals(ProjCRS.from_user_input(grid.crs.to_wkt()))
    gdf = labels if same else labels.to_crs(grid.crs.to_wkt())
    out = np.zeros(grid.shape, dtype=np.uint8)
    polys = gdf[gdf.geom_type.isin(["Polygon", "MultiPolygon"])]
    if len(polys):
        out = rasterio.features.rasterize(
            [(g, int(c)) for g, c in zip(polys.geometry, polys["code"], strict=True)],
            out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8")
    pts = gdf[gdf.geom_type == "Point"]
    if len(pts):
        rows, cols = grid.rowcol(pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy())
        inside = (rows >= 0) & (rows < grid.height) & (cols >= 0) & (cols < grid.width)
        out[rows[inside], cols[inside]] = pts["code"].to_numpy()[inside]
    return out


def labels_on(source: str | Path | gpd.GeoDataFrame, grid: Grid, *, class_field: str | None = None,
              layer: str | None = None) -> np.ndarray:
    """Labels from a raster path, a vector path or an already read label frame, on ``grid``."""
    if isinstance(source, gpd.GeoDataFrame):
        return vector_labels_on(source, grid)
    if is_vector(source):
        return vector_labels_on(read_vector_labels(source, class_field=class_field, layer=layer), grid)
    return raster_labels_on(source, grid)

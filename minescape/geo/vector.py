"""Vectors: read and repair geometries, write GPKG atomically, areas on the WGS84 ellipsoid."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from pyproj import CRS, Geod

from minescape.atomic import atomic_path
from minescape.errors import InputError, MissingInputError
from minescape.geo.gpkg_style import FIXED_DATE

if TYPE_CHECKING:  # geopandas and pyogrio are imported where a layer is read or written (~0.4 s)
    import geopandas as gpd

WGS84_GEOD = Geod(ellps="WGS84")
# GDAL stamps the write time into ``gpkg_contents.last_change``; pinning it makes GPKG bytes reproducible (the date
# the layer styles carry too: one date for every GeoPackage minescape writes)
GPKG_FIXED_DATE = FIXED_DATE


@contextlib.contextmanager
def gdal_config(**options: str) -> Iterator[None]:
    """Set GDAL config options for pyogrio's GDAL inside the block and restore them after."""
    import pyogrio

    old = {k: pyogrio.get_gdal_config_option(k) for k in options}
    pyogrio.set_gdal_config_options(options)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(old)


def read_vector(path: str | Path, *, layer: str | int | None = None) -> gpd.GeoDataFrame:
    """Read a GPKG, GeoJSON or Shapefile layer with a one-line InputError on failure.

    Without ``layer``, the first layer with geometries: a GeoPackage's attribute tables (the ``layer_styles`` a
    QGIS style lives in, which minescape writes beside its own layers) are not candidates. When the file has
    other layers with geometries, a warning line names the layer read and the others.

    Geometries are converted one by one (``shapely.from_wkb(..., on_invalid="fix")``): a ring left unclosed
    is closed, and a geometry that cannot be parsed even so is read as missing (None), so one bad feature never
    makes the layer unreadable (the callers' repair drops it with a line naming it).

    The frame's index numbers the features as QGIS shows them (what every ``feature N`` line names): a
    GeoPackage's ``fid``, else the position in the file counted from 1.

    Raises InputError if the file is unreadable (truncated, not a vector format), has no CRS or the
    layer does not exist (the message lists the layers).
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError("file not found", path=path)
    import pyogrio  # (it imports geopandas and pandas: ~0.4 s, paid only where a layer is read)

    try:
        listed = [(str(name), kind) for name, kind in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise InputError(f"not a readable vector file ({_first_line(exc)})", path=path) from None
    layers = [name for name, _ in listed]
    if layer is not None and isinstance(layer, str) and layer not in layers:
        raise InputError(f"no layer {layer!r}; layers are {layers}", path=path)
    if layer is None and len(listed) > 1:
        spatial = [name for name, kind in listed if kind is not None]
        layer = spatial[0] if spatial else None
        if len(spatial) > 1:
            warnings.warn(f"{path.name}: read layer {layer!r}, the first of its layers {spatial} (a command's "
                          "--layer, where it has one, reads another)", stacklevel=2)
    try:
        import geopandas as gpd

        # fid_as_index: a GeoPackage's own feature ids; on_invalid="fix": one unclosed ring does not fail the layer
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio", fid_as_index=True, on_invalid="fix")
    except Exception as exc:
        raise InputError(f"cannot read vector layer ({_first_line(exc)})", path=path) from None
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.active_geometry_name is None:  # a CSV, a table
        raise InputError(f"layer {layer or (layers[0] if layers else '')!r} has no geometry column (a table of "
                         "attributes only: give a GeoPackage, GeoJSON or Shapefile with geometries)", path=path)
    if gdf.crs is None:
        raise InputError("layer has no CRS; assign one (e.g. EPSG:4326) before use", path=path)
    # the numbers QGIS shows: a GeoPackage's fid; other formats' fids start at 0 (or are whatever a GeoJSON
    # feature's "id" says), so their features are numbered by position from 1. Unnamed, so never written back.
    import pandas as pd

    fids = gdf.index.to_numpy() if path.suffix.lower() == ".gpkg" else np.arange(1, len(gdf) + 1)
    gdf.index = pd.Index(np.asarray(fids, dtype=np.int64))
    return gdf


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


@dataclass(frozen=True)
class FeatureNote:
    """What reading a vector layer did to one feature, as a value: ``feature`` (how a user finds it in ``source``,
    the file and layer: the number QGIS shows, :func:`read_vector`'s index, and for sites the id value, e.g.
    ``3 (site_id 'GC')``), ``what`` (e.g. ``has empty geometry``), and whether it was ``dropped``. ``str()`` is the
    warning line: ``sites.gpkg: feature 3 (site_id 'GC') has empty geometry; dropped``."""

    source: str
    feature: str
    what: str
    dropped: bool = True

    def __str__(self) -> str:
        return f"{self.source}: feature {self.feature} {self.what}" + ("; dropped" if self.dropped else "")


def repair_geometries(gdf: gpd.GeoDataFrame, *,
                      source: str = "layer") -> tuple[gpd.GeoDataFrame, list[FeatureNote]]:
    """Make geometries valid (``shapely.make_valid``, keeping polygonal parts) and drop empty ones.

    Returns the repaired frame (index preserved) and a note per dropped feature.
    """
    geoms = gdf.geometry.values
    dropped: list[FeatureNote] = []
    fixed = []
    keep = np.ones(len(gdf), dtype=bool)
    for i, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            keep[i] = False
            dropped.append(FeatureNote(source, str(gdf.index[i]), "has empty geometry"))
            fixed.append(geom)
            continue
        if not geom.is_valid:
            geom = polygonal_parts(shapely.make_valid(geom))
            if geom.is_empty:
                keep[i] = False
                dropped.append(FeatureNote(source, str(gdf.index[i]), "has no area after repair"))
        fixed.append(geom)
    out = gdf.copy()
    import geopandas as gpd

    out = out.set_geometry(gpd.GeoSeries(fixed, index=gdf.index, crs=gdf.crs))
    return out[keep], dropped


def polygonal_parts(geom: shapely.Geometry) -> shapely.Geometry:
    """The polygonal parts of a geometry (a collection's polygons unioned; make_valid may return collections),
    an empty Polygon when it has none."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    if geom.geom_type == "GeometryCollection":
        polys = [g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")]
        if polys:
            return shapely.union_all(polys)
    return shapely.Polygon()


def geodesic_area(geometries, crs: CRS | str | int = "EPSG:4326") -> np.ndarray:
    """Area in m² of each polygonal geometry on the WGS84 ellipsoid (``pyproj.Geod``), holes subtracted whatever
    the orientation of the rings.

    Geometries in another CRS are transformed to EPSG:4326 first.
    """
    import geopandas as gpd

    geoms = gpd.GeoSeries(list(geometries), crs=crs)
    if geoms.crs is not None and not geoms.crs.equals(CRS.from_epsg(4326)):
        geoms = geoms.to_crs(4326)
    # Geod adds each ring's signed area: shells counter-clockwise and holes clockwise first, or a file whose
    # rings all turn one way would have its holes added instead of subtracted. Orientation is judged in the plane
    # of degrees, so a ring whose longitudes jump across 180° (a polygon in a projected CRS across the
    # antimeridian, transformed to lon/lat) is made continuous first (a hole's area was added: +2.5 %)
    values = np.asarray(geoms.values, dtype=object)
    b = shapely.bounds(values)
    across = (b[:, 2] - b[:, 0]) > 180.0
    if across.any():
        values = values.copy()
        values[across] = shapely.transform(
            values[across], lambda xy: np.c_[np.where(xy[:, 0] < 0, xy[:, 0] + 360.0, xy[:, 0]), xy[:, 1]])
    oriented = shapely.orient_polygons(values)
    return np.array([abs(WGS84_GEOD.geometry_area_perimeter(g)[0]) if g is not None else 0.0 for g in oriented])


def write_gpkg(gdf: gpd.GeoDataFrame, path: str | Path, *, layer: str | None = None) -> Path:
    """Write a GeoPackage atomically (temporary file, then rename); same frame, same bytes."""
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings(), gdal_config(OGR_CURRENT_DATE=GPKG_FIXED_DATE):
        warnings.simplefilter("ignore", RuntimeWarning)
        gdf.to_file(tmp, layer=layer or path.stem, driver="GPKG", engine="pyogrio")
    return path


def split_antimeridian(geoms: np.ndarray) -> np.ndarray:
    """Bring lon/lat polygons with longitudes beyond 180° back into [-180, 180].

    Polygons entirely east of 180° are shifted by -360°; polygons across it are cut along the
    meridian into a MultiPolygon with parts on both sides (as RFC 7946 recommends). Others are
    returned unchanged.
    """
    geoms = np.asarray(geoms, dtype=object).copy()
    if len(geoms) == 0:
        return geoms
    b = shapely.bounds(geoms)
    shift = b[:, 0] >= 180.0
    if shift.any():
        geoms[shift] = shapely.transform(geoms[shift], lambda c: c - [360.0, 0.0])
    cross = (b[:, 2] > 180.0) & ~shift
    if cross.any():
        west = shapely.box(-180.0, -90.0, 180.0, 90.0)
        east = shapely.box(180.0, -90.0, 540.0, 90.0)
        for k in np.nonzero(cross)[0]:
            g = geoms[k]
            w = shapely.intersection(g, west)
            e = shapely.transform(shapely.intersection(g, east), lambda c: c - [360.0, 0.0])
            parts = [p for part in (w, e) for p in getattr(part, "geoms", [part])
                     if p.geom_type == "Polygon" and not p.is_empty]
            geoms[k] = shapely.MultiPolygon(parts)
    return geoms

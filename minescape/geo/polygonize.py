"""Class raster -> polygons: one feature per connected patch of one class.

Connectivity
------------
Patches are **4-connected** by default: two pixels of a class belong to the same patch only when they
share an edge. This is GDAL's default and the choice of the published dataset because every patch is
then a simple polygon (its rings never cross, two diagonal pixels become two features instead of one
polygon pinched at a vertex, which OGC validity rules reject or tools repair differently). Holes are
kept: a patch enclosing other classes has interior rings. ``connectivity=8`` joins diagonal pixels
(fewer, larger features) and the output is then made valid with ``shapely.make_valid``.

Vertices are pixel corners in the raster's CRS, only where the boundary turns, so a rectangle of pixels
has 5 (closed) coordinates. Shells are counter-clockwise and holes clockwise (the orientation
``pyproj.Geod`` and RFC 7946 expect).

Engines
-------
4-connectivity is traced by :mod:`minescape.geo.trace` (vectorised numpy; the same polygons as GDAL,
tested on random maps, returned as flat arrays: :func:`polygonize_ragged`); 8-connectivity uses GDAL's
polygonize through ``rasterio.features.shapes``.

Simplification
--------------
``simplify`` is a tolerance in metres (projected CRS only). The class map's polygons form a coverage,
so they are simplified together with ``shapely.coverage_simplify`` (shared edges stay shared: no gaps or
overlaps appear between neighbouring patches). A simplified polygon that is invalid, empty or lost a hole is
replaced by its unsimplified self (it may then overlap a simplified neighbour slightly), so
simplification never yields invalid or empty geometry. Tolerances below half a pixel change nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import rasterio.features
import shapely
from rasterio.crs import CRS

from minescape.errors import ConfigError, InputError
from minescape.geo.ragged import RaggedPolygons
from minescape.geo.raster import Raster
from minescape.geo.trace import trace_polygons

CONNECTIVITIES = (4, 8)
SHAPES_DTYPES = ("uint8", "int16", "uint16", "int32", "float32")


@dataclass(frozen=True)
class PolygonSet:
    """Polygons of a class raster in the raster's CRS.

    Attributes:
        geometries: shapely Polygon array (one per patch), in ``crs`` (order: see :func:`polygonize`).
        codes: ``int64`` class code of each polygon.
        crs: the raster's CRS.
    """

    geometries: np.ndarray
    codes: np.ndarray
    crs: CRS | None

    def __len__(self) -> int:
        return len(self.codes)


def polygonize(
    raster: Raster,
    *,
    connectivity: int = 4,
    simplify: float = 0.0,
    band: int = 0,
) -> PolygonSet:
    """Vectorise a single-band class raster: one polygon per connected patch of one value.

    Pixels equal to ``raster.nodata`` are skipped. Polygons come in raster-scan order of their first
    pixel (4-connectivity) or GDAL's order (8-connectivity).

    Args:
        raster: integer class raster (``nodata`` marks pixels outside the map).
        connectivity: 4 (edge neighbours, default) or 8 (edge and corner neighbours).
        simplify: coverage simplification tolerance in metres (0 = none); needs a projected CRS.
        band: band index (0-based) to vectorise.

    Returns:
        A :class:`PolygonSet` (geometries in the raster CRS, class codes).
    """
    if connectivity not in CONNECTIVITIES:
        raise ConfigError(f"invalid connectivity {connectivity!r}; choose one of: 4, 8")
    if simplify < 0:
        raise ConfigError(f"simplify tolerance must be >= 0 metres (got {simplify})")
    if simplify > 0 and (raster.crs is None or not raster.crs.is_projected):
        raise ConfigError("simplify needs a projected CRS in metres (e.g. the site's UTM zone)")
    if connectivity == 4:  # traced polygons are valid and already oriented
        ragged = polygonize_ragged(raster, band=band)
        geoms, codes = ragged.to_shapely(), ragged.codes
    else:
        geoms, codes = _gdal_polygons(raster, band, connectivity)
    if simplify > 0 and len(geoms):
        geoms = shapely.orient_polygons(simplify_coverage(geoms, simplify))
    return PolygonSet(geoms, codes, raster.crs)


def polygonize_ragged(raster: Raster, *, band: int = 0, by_code: bool = False) -> RaggedPolygons:
    """Vectorise a class raster (4-connectivity, exact pixel outlines) into flat coordinate arrays.

    Same polygons as :func:`polygonize` (in the raster's CRS, raster-scan order of each patch's first
    pixel, or by class code first with ``by_code``; shells counter-clockwise), without making one
    shapely object per polygon.
    """
    data = _class_band(raster, band)
    nodata = raster.nodata
    if nodata is not None:
        info = np.iinfo(data.dtype)
        if isinstance(nodata, float) and not (np.isfinite(nodata) and nodata.is_integer()):
            nodata = None  # a fractional or NaN nodata matches no integer pixel
        elif not info.min <= int(nodata) <= info.max:
            nodata = None
        else:
            nodata = int(nodata)
    if raster.data.shape[0] > 1 and nodata is not None:  # nodata in any band hides the pixel
        data = np.where(raster.valid_mask(), data, data.dtype.type(nodata))
    return trace_polygons(data, raster.transform, nodata, by_code=by_code)


def _gdal_polygons(raster: Raster, band: int, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """GDAL's polygonize (through rasterio), repaired with ``make_valid`` where diagonal joins make a
    polygon invalid, shells counter-clockwise."""
    data = _class_band(raster, band)
    lookup = None
    if data.dtype.name not in SHAPES_DTYPES:  # (u)int64, uint32: codes as dense int32 ids (a cast would wrap)
        lookup, data = np.unique(data, return_inverse=True)
        data = data.reshape(raster.data.shape[1:]).astype(np.int32)
    mask = raster.valid_mask() if raster.nodata is not None else None
    geoms, codes = _shapes_to_polygons(data, mask, raster.transform, connectivity)
    if lookup is not None:
        codes = lookup[np.asarray(codes, dtype=np.int64)]
    if len(geoms):
        bad = ~shapely.is_valid(geoms)
        if bad.any():
            geoms[bad] = [_largest_polygonal(shapely.make_valid(g)) for g in geoms[bad]]
        geoms = shapely.orient_polygons(geoms)
    return geoms, codes


def _class_band(raster: Raster, band: int) -> np.ndarray:
    data = raster.data[band]
    if not np.issubdtype(data.dtype, np.integer):
        raise InputError(f"class maps must be integer, got {data.dtype}")
    return data


def _shapes_to_polygons(data, mask, transform, connectivity, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Run GDAL polygonize (via rasterio) and build shapely polygons from flat coordinate arrays.

    GDAL's output is consumed ``chunk`` polygons at a time, so the Python objects rasterio makes for
    each vertex (about 100 bytes each) never exist for the whole map at once.
    """
    stream = rasterio.features.shapes(data, mask=mask, connectivity=connectivity, transform=transform)
    geoms, codes = [], []
    while batch := list(itertools.islice(stream, chunk)):
        g, c = _batch_to_polygons(batch)
        geoms.append(g)
        codes.append(c)
    if not geoms:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    return np.concatenate(geoms), np.concatenate(codes)


def _batch_to_polygons(shapes: list) -> tuple[np.ndarray, np.ndarray]:
    n = len(shapes)
    codes = np.fromiter((int(v) for _, v in shapes), np.int64, n)
    rings = [ring for geom, _ in shapes for ring in geom["coordinates"]]
    n_rings = np.fromiter((len(geom["coordinates"]) for geom, _ in shapes), np.int64, n)
    ring_len = np.fromiter(map(len, rings), np.int64, len(rings))
    chain = itertools.chain.from_iterable
    xy = np.fromiter(chain(chain(rings)), np.float64, 2 * int(ring_len.sum())).reshape(-1, 2)
    ring_offsets = np.concatenate([[0], np.cumsum(ring_len)])
    geom_offsets = np.concatenate([[0], np.cumsum(n_rings)])
    geoms = shapely.from_ragged_array(shapely.GeometryType.POLYGON, xy, (ring_offsets, geom_offsets))
    return geoms, codes


def _largest_polygonal(geom):
    """Polygonal part of ``make_valid`` output (a MultiPolygon if it splits)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else geom


def simplify_coverage(geoms: np.ndarray, tolerance: float) -> np.ndarray:
    """Simplify polygons that form a coverage (tolerance in CRS units), never returning invalid,
    empty or hole-losing geometries: such results fall back to the original polygon."""
    geoms = np.asarray(geoms, dtype=object)
    try:
        simple = shapely.coverage_simplify(geoms, tolerance, simplify_boundary=True)
    except shapely.errors.GEOSException:  # not a valid coverage: simplify one by one
        simple = shapely.simplify(geoms, tolerance, preserve_topology=True)
    ok = (
        ~shapely.is_empty(simple)
        & shapely.is_valid(simple)
        & np.isin(shapely.get_type_id(simple), (3, 6))
        & (shapely.get_num_interior_rings(simple) >= shapely.get_num_interior_rings(geoms))
        & (shapely.area(simple) > 0)
    )
    return np.where(ok, simple, geoms)

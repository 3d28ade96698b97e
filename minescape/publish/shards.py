"""GeoPackage shards: at most N features each, exact published schema, reproducible bytes.

A shard holds one polygon layer named like its file (without ``.gpkg``) with the fields, in order,
``index_n`` (int64), ``class_name`` (text), ``area_m2`` (real), ``year`` (int32) and optionally extra
text columns, plus the GeoPackage ``fid`` (assigned 1..n in ``index_n`` order). GDAL writes the current
time into ``gpkg_contents.last_change``; it is pinned with the ``OGR_CURRENT_DATE`` config option,
scoped to the write, so the same features always give the same bytes.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from pyproj import CRS

from minescape.geo.gpkg_style import LayerStyle, add_layer_style
from minescape.geo.vector import GPKG_FIXED_DATE, gdal_config
from minescape.legend import Legend

FIELDS = ("index_n", "class_name", "area_m2", "year")
GPKG_VERSION = "1.2"  # readable without warnings by the GDAL of older QGIS releases (3.22 LTR: GDAL 3.6)
MULTI_ONE = struct.pack("<BII", 1, 6, 1)  # little-endian WKB header of a MultiPolygon with one part


def _polygonal_wkb(geoms: np.ndarray) -> np.ndarray:
    """Little-endian 2-D WKB of shapely geometries (WKB bytes are passed through)."""
    if len(geoms) and not isinstance(geoms[0], bytes | bytearray):
        return shapely.to_wkb(geoms, output_dimension=2, byte_order=1)
    if any(g[0] != 1 for g in geoms):
        return shapely.to_wkb(shapely.from_wkb(geoms), output_dimension=2, byte_order=1)
    return geoms


def write_shard(
    path: str | Path,
    geometries: np.ndarray,
    *,
    index_n: np.ndarray,
    class_name: np.ndarray,
    area_m2: np.ndarray,
    year: np.ndarray,
    crs: CRS | str | int,
    legend: Legend,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write one GPKG shard (not atomically: it is built inside the release's temporary folder).

    Args:
        path: output ``.gpkg`` (must not exist); the layer is named after its stem.
        geometries: Polygon/MultiPolygon array in ``crs``: shapely geometries or little-endian WKB bytes.
        index_n, class_name, area_m2, year: the published attributes, one per geometry.
        crs: the output CRS (EPSG:4326 by default in releases).
        legend: colours of the QGIS default style.
        extra: optional extra text columns (e.g. ``site_id``, ``region``).
    """
    path = Path(path)
    layer = path.stem
    wkb = _polygonal_wkb(np.asarray(geometries, dtype=object))
    multi = any(g[1] == 6 for g in wkb)
    if multi:  # one layer type: wrap Polygons as one-part MultiPolygons
        wkb = np.array([g if g[1] == 6 else MULTI_ONE + g for g in wkb], dtype=object)
    fields = list(FIELDS)
    data = [
        np.asarray(index_n, dtype=np.int64),
        np.asarray(class_name, dtype=object),
        np.asarray(area_m2, dtype=np.float64),
        np.asarray(year, dtype=np.int32),
    ]
    for name, values in (extra or {}).items():
        fields.append(name)
        data.append(np.asarray(values, dtype=object))
    crs_wkt = CRS.from_user_input(crs).to_wkt()
    with gdal_config(OGR_CURRENT_DATE=GPKG_FIXED_DATE), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pyogrio.raw.write(
            path, wkb, data, fields, layer=layer, driver="GPKG",
            geometry_type="MultiPolygon" if multi else "Polygon", crs=crs_wkt,
            dataset_options={"VERSION": GPKG_VERSION},
            layer_options={"FID": "fid", "GEOMETRY_NAME": "geom", "SPATIAL_INDEX": "YES"},
        )
    add_layer_style(path, layer, LayerStyle.from_legend(legend))
    return path

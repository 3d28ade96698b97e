"""Geometries as compact GeoJSON for the page: coordinates rounded to 1e-6 degrees (about 0.1 m)."""

from __future__ import annotations

import json

import numpy as np
import shapely

PRECISION_DEG = 1e-6


def geometries_geojson(geoms) -> list[dict]:
    """GeoJSON geometry dicts of EPSG:4326 shapely geometries, snapped to a 1e-6 degree grid.

    Snapping keeps valid polygons valid (``shapely.set_precision``); a geometry that vanishes at that
    precision (smaller than about 0.1 m) keeps its full coordinates.
    """
    arr = np.asarray(geoms, dtype=object)
    snapped = shapely.set_precision(arr, PRECISION_DEG)
    empty = shapely.is_empty(snapped)
    snapped[empty] = arr[empty]
    return [json.loads(text) for text in shapely.to_geojson(snapped)]

"""Cached CRS parsing and coordinate transformers (building either costs about a millisecond; a run uses few).

Transformers are pyproj's ``always_xy`` ones (x = longitude / easting first); pyproj makes them safe to share
between threads.
"""

from __future__ import annotations

from functools import lru_cache

from pyproj import CRS, Transformer


def as_crs(crs) -> CRS:
    """A pyproj CRS from a pyproj/rasterio CRS or user input, cached (parsing costs ~1 ms per call)."""
    if isinstance(crs, CRS):
        return crs
    if hasattr(crs, "to_wkt"):
        return _crs_from_wkt(crs.to_wkt())
    return _crs_from_input(crs)


@lru_cache(maxsize=256)
def _crs_from_wkt(wkt: str) -> CRS:
    return CRS.from_wkt(wkt)


@lru_cache(maxsize=256)
def _crs_from_input(value) -> CRS:
    return CRS.from_user_input(value)


_TRANSFORMERS: dict[tuple[str, str], Transformer] = {}


def transformer(src: CRS, dst: CRS) -> Transformer:
    """A cached ``always_xy`` Transformer from ``src`` to ``dst`` (pyproj or rasterio CRSs)."""
    src, dst = as_crs(src), as_crs(dst)
    key = (src.srs, dst.srs)
    found = _TRANSFORMERS.get(key)
    if found is None:
        if len(_TRANSFORMERS) > 256:
            _TRANSFORMERS.clear()
        found = _TRANSFORMERS[key] = Transformer.from_crs(src, dst, always_xy=True)
    return found

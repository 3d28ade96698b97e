"""Per-pixel features for mining LULC: bands, spectral indices, elevation change, neighbourhood statistics.

Input is a reflectance stack (Sentinel-2 band names, unitless, NaN = nodata) and a DEM-change band (metres,
NaN = void) on the same grid. Output is a float32 :class:`~minescape.geo.raster.Raster` with one named band per
feature (:data:`FEATURES`). Neighbourhood statistics are NaN-aware box-filter means/standard deviations over
``window`` x ``window`` pixels, so a tile read with a halo of ``window // 2`` pixels gives seamless results.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from minescape.errors import InputError
from minescape.geo.raster import Raster
from minescape.indices import INDICES

SPECTRAL_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
INDEX_NAMES: tuple[str, ...] = ("NDVI", "NDWI", "MNDWI", "NDBI", "BSI")
# BRIGHT: mean visible reflectance (B02, B03, B04); IRON: iron-oxide ratio B04 / B02 (Segal 1982).
EXTRA_NAMES: tuple[str, ...] = ("BRIGHT", "IRON")
DH_NAMES: tuple[str, ...] = ("DH", "DH_VOID")
NEIGHBOUR_NAMES: tuple[str, ...] = ("DH_MEAN", "DH_STD", "NDVI_MEAN", "MNDWI_MEAN", "BRIGHT_MEAN", "BRIGHT_STD")
FEATURES: tuple[str, ...] = SPECTRAL_BANDS + INDEX_NAMES + EXTRA_NAMES + DH_NAMES + NEIGHBOUR_NAMES
DEFAULT_WINDOW = 5  # pixels (50 m at 10 m)


def fill_voids(dh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN voids of a 2-D array with the nearest valid value; returns ``(filled, void_mask)``.

    An array without any valid value is returned as zeros (all void).
    """
    void = ~np.isfinite(dh)
    if not void.any():
        return dh.astype(np.float32, copy=True), void
    if void.all():
        return np.zeros_like(dh, dtype=np.float32), void
    # nearest valid pixel (chessboard distance: much faster than Euclidean, same purpose)
    idx = ndimage.distance_transform_cdt(void, metric="chessboard", return_distances=False, return_indices=True)
    return dh[tuple(idx)].astype(np.float32), void


def box_stats(values: np.ndarray, *, size: int, valid: np.ndarray | None = None, count: np.ndarray | None = None,
              std: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """NaN-aware ``size`` x ``size`` moving mean and standard deviation (float32; NaN where no valid value).

    ``count`` (the box mean of ``valid``) may be passed when several bands share one mask; ``std=False``
    skips the standard deviation (returned as None).
    """
    if valid is None:
        valid = np.isfinite(values)
    x = np.where(valid, values, np.float32(0)).astype(np.float32, copy=False)
    n = count if count is not None else ndimage.uniform_filter(valid.astype(np.float32), size=size, mode="nearest")
    s1 = ndimage.uniform_filter(x, size=size, mode="nearest")
    empty = n < 1e-6
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        mean[empty] = np.nan
        if not std:
            return mean, None
        s2 = ndimage.uniform_filter(x * x, size=size, mode="nearest")
        sd = np.sqrt(np.maximum(s2 / n - mean * mean, 0))
    sd[empty] = np.nan
    return mean, sd.astype(np.float32, copy=False)


def compute_features(stack: Raster, dh: Raster, *, window: int = DEFAULT_WINDOW) -> Raster:
    """The feature stack (:data:`FEATURES` order) for a reflectance stack and a DEM-change band.

    Args:
        stack: reflectance with (at least) the bands :data:`SPECTRAL_BANDS`, NaN = nodata.
        dh: one band, elevation change in metres, NaN = void, on the same grid as ``stack``. Voids are filled
            with the nearest valid value and flagged in ``DH_VOID`` (1 = void).
        window: neighbourhood size in pixels (odd).

    Returns:
        float32 Raster named by feature; pixels where any band is NaN are NaN in every feature.
    """
    if stack.shape != dh.shape:
        raise InputError(f"stack {stack.shape} and elevation change {dh.shape} are not on one grid")
    if window < 1 or window % 2 == 0:
        raise InputError(f"neighbourhood window must be an odd number of pixels >= 1 (got {window})")
    bands = stack.select(SPECTRAL_BANDS).data.astype(np.float32, copy=False)
    nodata = ~np.isfinite(bands).all(axis=0)
    out = np.empty((len(FEATURES), *stack.shape), dtype=np.float32)
    out[: len(SPECTRAL_BANDS)] = bands
    k = len(SPECTRAL_BANDS)
    named = dict(zip(SPECTRAL_BANDS, bands, strict=True))
    for name in INDEX_NAMES:
        func, args = INDICES[name]
        out[k] = func(*(named[b] for b in args))
        k += 1
    bright = (named["B02"] + named["B03"] + named["B04"]) / np.float32(3)
    out[k] = bright
    with np.errstate(invalid="ignore", divide="ignore"):
        out[k + 1] = named["B04"] / np.maximum(named["B02"], np.float32(1e-4))
    k += 2
    filled, void = fill_voids(dh.data[0].astype(np.float32))
    out[k] = filled
    out[k + 1] = void.astype(np.float32)
    k += 2
    ok = ~nodata
    count = ndimage.uniform_filter(ok.astype(np.float32), size=window, mode="nearest")
    ndvi = out[FEATURES.index("NDVI")]
    mndwi = out[FEATURES.index("MNDWI")]
    dh_mean, dh_std = box_stats(filled, size=window, valid=ok, count=count)
    ndvi_ok = ok & np.isfinite(ndvi)
    ndvi_mean, _ = box_stats(ndvi, size=window, valid=ndvi_ok, std=False,
                             count=count if ndvi_ok.sum() == ok.sum() else None)
    mndwi_ok = ok & np.isfinite(mndwi)
    mndwi_mean, _ = box_stats(mndwi, size=window, valid=mndwi_ok, std=False,
                              count=count if mndwi_ok.sum() == ok.sum() else None)
    bright_mean, bright_std = box_stats(bright, size=window, valid=ok, count=count)
    for arr in (dh_mean, dh_std, ndvi_mean, mndwi_mean, bright_mean, bright_std):
        out[k] = arr
        k += 1
    out[:, nodata] = np.nan
    return Raster(out, stack.crs, stack.transform, np.nan, FEATURES)


def feature_matrix(features: Raster, mask: np.ndarray | None = None, *,
                   names: tuple[str, ...] | list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(n_pixels, n_features)`` float32 rows for pixels in ``mask`` with all features finite, and the
    ``(rows, cols)`` bool mask of those pixels."""
    data = features.data if names is None else features.select(list(names)).data
    keep = np.isfinite(data).all(axis=0)
    if mask is not None:
        keep &= mask
    return data[:, keep].T.copy(), keep

"""Post-processing of class maps: minimum mapping unit (sieve, in m²) and an optional majority filter.

Both keep nodata (code 0) where it is and never assign it to a class pixel.
"""

from __future__ import annotations

import math

import numpy as np
import rasterio.features
from scipy import ndimage

from minescape.errors import ConfigError


def mmu_pixels(mmu_m2: float, pixel_area_m2: float) -> int:
    """Minimum mapping unit in pixels (rounded up) for ``mmu_m2`` square metres."""
    if mmu_m2 < 0 or pixel_area_m2 <= 0:
        raise ConfigError(f"minimum mapping unit must be >= 0 m² (got {mmu_m2}) and pixel area > 0")
    return max(1, math.ceil(mmu_m2 / pixel_area_m2 - 1e-9))


def sieve(classes: np.ndarray, *, mmu_m2: float, pixel_area_m2: float, nodata: int = 0,
          connectivity: int = 4) -> np.ndarray:
    """Merge patches smaller than ``mmu_m2`` into their largest neighbouring patch (GDAL sieve).

    Args:
        classes: 2-D integer class map.
        mmu_m2: minimum mapping unit in m² (0 disables).
        pixel_area_m2: area of one pixel in m² (100 for 10 m).
        nodata: code left untouched and never grown into.
        connectivity: 4 or 8.
    """
    size = mmu_pixels(mmu_m2, pixel_area_m2)
    if size <= 1:
        return classes.copy()
    if connectivity not in (4, 8):
        raise ConfigError(f"invalid connectivity {connectivity}; choose one of: 4, 8")
    mask = classes != nodata
    out = rasterio.features.sieve(classes.astype(np.uint8, copy=False), size=size, mask=mask,
                                  connectivity=connectivity)
    out[~mask] = nodata
    # a small patch touching only nodata stays as it is (GDAL leaves it); nothing becomes nodata
    return out.astype(classes.dtype, copy=False)


def majority_filter(classes: np.ndarray, *, size: int = 3, codes=None, nodata: int = 0) -> np.ndarray:
    """Replace each class pixel by the most frequent class in its ``size`` x ``size`` window (ties keep
    the pixel's own class; nodata pixels neither vote nor change)."""
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"majority window must be an odd number of pixels >= 1 (got {size})")
    if size == 1:
        return classes.copy()
    codes = [int(c) for c in (codes if codes is not None else np.unique(classes)) if int(c) != nodata]
    best = np.zeros(classes.shape, dtype=np.float32)
    out = classes.copy()
    own = np.zeros(classes.shape, dtype=np.float32)
    counts = []
    for code in codes:
        c = ndimage.uniform_filter((classes == code).astype(np.float32), size=size, mode="constant")
        counts.append(c)
        own = np.where(classes == code, c, own)
    for code, c in zip(codes, counts, strict=True):
        better = c > best + 1e-6
        out = np.where(better, code, out)
        best = np.maximum(best, c)
    keep_own = own >= best - 1e-6
    out = np.where(keep_own, classes, out)
    out[classes == nodata] = nodata
    return out.astype(classes.dtype, copy=False)


def postprocess(classes: np.ndarray, *, mmu_m2: float = 0.0, pixel_area_m2: float = 100.0,
                majority: int = 1, nodata: int = 0) -> np.ndarray:
    """Majority filter (``majority`` pixels, 1 = off) then sieve to ``mmu_m2`` (0 = off)."""
    out = majority_filter(classes, size=majority, nodata=nodata) if majority > 1 else classes
    if mmu_m2 > 0:
        out = sieve(out, mmu_m2=mmu_m2, pixel_area_m2=pixel_area_m2, nodata=nodata)
    return out

"""Spectral indices (NDVI, SAVI, NDWI, MNDWI, NDBI, BSI), vectorised, nodata- and division-safe.

Inputs are reflectance arrays (unitless, any shape, NaN = nodata). Outputs are float32 with NaN where
an input is NaN or the denominator is zero. Band formulas use Sentinel-2 band names.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from minescape.errors import ConfigError
from minescape.geo.raster import Raster

SAVI_L = 0.5  # Huete (1988) soil-brightness correction for intermediate vegetation cover
#: Reflectance below which NDVI, NDBI and BSI carry no signal: where the two sides of the ratio sum to less (after
#: negative reflectance, which the baseline-04.00 offset gives very dark pixels, is taken as 0), the index is 0.
#: Sentinel-2's noise is ~0.001-0.002 a band, so the ratio of a pit-wall shadow (red -0.002, NIR 0.004) read
#: NDVI 3.0, "confident vegetation". Vegetation, built-up and bare ground are all far brighter than this; water
#: indices (NDWI, MNDWI) keep no floor: dark water is still water.
DARK_SUM = 0.02


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float32)
    den = np.asarray(den, dtype=np.float32)
    out = np.full(np.broadcast(num, den).shape, np.nan, dtype=np.float32)
    np.divide(num, den, out=out, where=(den != 0) & np.isfinite(den) & np.isfinite(num))
    return out


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` with NaN where undefined."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, masked by _ratio, no warning
        return _ratio(a - b, a + b)


def _bright_difference(*sides: tuple[np.ndarray, ...]) -> np.ndarray:
    """:func:`normalized_difference` of two sides, each the sum of its bands clipped at 0; 0 where the two sum to
    less than :data:`DARK_SUM` (no signal: neither side of the index); NaN where a band is not finite."""
    bands = [[np.asarray(x, dtype=np.float32) for x in side] for side in sides]
    a, b = (sum(np.maximum(x, np.float32(0)) for x in side) for side in bands)
    finite = np.logical_and.reduce([np.isfinite(x) for side in bands for x in side])
    with np.errstate(invalid="ignore", over="ignore"):
        out = normalized_difference(a, b)
        out[(a + b) < DARK_SUM] = 0.0
    out[~finite] = np.nan
    return out


def ndvi(nir: np.ndarray, red: np.ndarray) -> np.ndarray:
    """NDVI = (NIR - Red) / (NIR + Red) (Rouse et al. 1974); S2: (B08 - B04) / (B08 + B04); 0 where NIR + Red
    < :data:`DARK_SUM` (a shadow: no signal)."""
    return _bright_difference((nir,), (red,))


def savi(nir: np.ndarray, red: np.ndarray, *, soil_factor: float = SAVI_L) -> np.ndarray:
    """SAVI = (1 + L) (NIR - Red) / (NIR + Red + L), L = 0.5 (Huete 1988)."""
    nir = np.asarray(nir, dtype=np.float32)
    red = np.asarray(red, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        return _ratio((1 + soil_factor) * (nir - red), nir + red + np.float32(soil_factor))


def ndwi(green: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """NDWI = (Green - NIR) / (Green + NIR) (McFeeters 1996); S2: (B03 - B08) / (B03 + B08)."""
    return normalized_difference(green, nir)


def mndwi(green: np.ndarray, swir1: np.ndarray) -> np.ndarray:
    """MNDWI = (Green - SWIR1) / (Green + SWIR1) (Xu 2006); S2: (B03 - B11) / (B03 + B11)."""
    return normalized_difference(green, swir1)


def ndbi(swir1: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """NDBI = (SWIR1 - NIR) / (SWIR1 + NIR) (Zha et al. 2003); S2: (B11 - B08) / (B11 + B08); 0 where SWIR1 +
    NIR < :data:`DARK_SUM`."""
    return _bright_difference((swir1,), (nir,))


def bsi(swir1: np.ndarray, red: np.ndarray, nir: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """BSI = ((SWIR1 + Red) - (NIR + Blue)) / ((SWIR1 + Red) + (NIR + Blue)) (Rikimaru et al. 2002); 0 where the
    four sum to less than :data:`DARK_SUM`."""
    return _bright_difference((swir1, red), (nir, blue))


# name -> (function, Sentinel-2 bands in argument order)
INDICES: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...]]] = {
    "NDVI": (ndvi, ("B08", "B04")),
    "SAVI": (savi, ("B08", "B04")),
    "NDWI": (ndwi, ("B03", "B08")),
    "MNDWI": (mndwi, ("B03", "B11")),
    "NDBI": (ndbi, ("B11", "B08")),
    "BSI": (bsi, ("B11", "B04", "B08", "B02")),
}


def index_bands(name: str) -> tuple[str, ...]:
    """Sentinel-2 bands an index needs."""
    return _lookup(name)[1]


def _lookup(name: str):
    try:
        return INDICES[name.upper()]
    except KeyError:
        raise ConfigError(f"unknown index {name!r}; choose one of: {', '.join(INDICES)}") from None


def compute_index(stack: Raster, name: str) -> Raster:
    """Compute an index from a reflectance stack with named bands; a one-band float32 Raster (NaN nodata)."""
    func, bands = _lookup(name)
    value = func(*(stack.band(b) for b in bands))
    return Raster(value[np.newaxis], stack.crs, stack.transform, np.nan, (name.upper(),))

"""Per-pixel cloud masks: Sentinel-2 L2A Scene Classification (SCL) classes, or a spectral test where a scene
has no SCL (local stacks).

SCL classes (ESA L2A product definition): 0 no data, 1 saturated/defective, 2 dark area, 3 cloud shadow,
4 vegetation, 5 not vegetated, 6 water, 7 unclassified, 8 cloud medium probability, 9 cloud high probability,
10 thin cirrus, 11 snow/ice. The default mask {0, 1, 3, 8, 9, 10} is the published method's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minescape.errors import ConfigError

SCL_CLASSES: dict[int, str] = {0: "no data", 1: "saturated or defective", 2: "dark area pixels", 3: "cloud shadows",
                               4: "vegetation", 5: "not vegetated", 6: "water", 7: "unclassified",
                               8: "cloud medium probability", 9: "cloud high probability", 10: "thin cirrus",
                               11: "snow or ice"}
DEFAULT_SCL_MASK: tuple[int, ...] = (0, 1, 3, 8, 9, 10)


def check_scl_classes(classes: Sequence[int]) -> tuple[int, ...]:
    """``classes`` as a sorted tuple; ConfigError listing the valid SCL codes for an unknown one."""
    out = tuple(sorted({int(c) for c in classes}))
    bad = [c for c in out if c not in SCL_CLASSES]
    if bad:
        raise ConfigError(f"invalid SCL classes {bad}; choose from "
                          + ", ".join(f"{k} ({v})" for k, v in SCL_CLASSES.items()))
    return out


def scl_clear(scl: np.ndarray, *, masked: Sequence[int] = DEFAULT_SCL_MASK) -> np.ndarray:
    """``(rows, cols)`` bool: True where the SCL class is not in ``masked``."""
    return ~np.isin(scl, np.asarray(masked, dtype=scl.dtype))


def spectral_clear(blue: np.ndarray, swir16: np.ndarray, *, blue_min: float = 0.3,
                   swir_max_ratio: float = 1.0) -> np.ndarray:
    """Clear pixels of a scene without SCL: not bright in the blue with SWIR1 no brighter than blue, and finite
    (:func:`minescape.lulc.inputs.estimate_cloud` ranks local scenes by it). Reflectance in, bool out."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cloud = (blue > blue_min) & (swir16 / np.maximum(blue, 1e-4) < swir_max_ratio)
    return np.isfinite(blue) & np.isfinite(swir16) & ~cloud

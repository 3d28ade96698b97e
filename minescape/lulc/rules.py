"""Knowledge-based mining LULC classifier: the published class definitions as thresholds, no training data.

Decisions, applied in order (the first that holds wins):

1. **Water body**: MNDWI > ``water.mndwi_min`` (Xu 2006).
2. **Facility**: built-up surfaces are bright and spectrally flat: mean visible reflectance
   (``BRIGHT``) > ``facility.bright_min``, NDVI < ``facility.ndvi_max``, BSI < ``facility.bsi_max``, and
   brighter in SWIR1 than in blue (B11 / B02 > ``facility.swir1_blue_min``; clouds are not).
3. **Open pit**: elevation loss, dh < ``open_pit.dh_max`` metres.
4. **Waste dumping site**: elevation gain, dh > ``waste_dump.dh_min`` metres.
5. **Vegetation**: NDVI > ``vegetation.ndvi_min``.
6. **General disturbed land**: minimal elevation change (|dh| < ``disturbed.abs_dh_max`` m), little vegetation
   (NDVI < ``disturbed.ndvi_max``) and fresh, grey ground (iron-oxide ratio B04/B02 < ``disturbed.iron_max``;
   weathered natural soils are redder).
7. **Bare soil**: the rest.

The thresholds live in ``minescape/config/lulc_rules.json`` (defaults, documented in ``docs/lulc.md``); a
user config overrides any subset of them. ``confident_*`` margins mark pixels far from every threshold that,
after a homogeneity check and away from cloud-like pixels (B02 > ``cloud.blue_min`` and
B11 / B02 < ``cloud.swir1_blue_max``), serve as weak labels (:mod:`minescape.lulc.weak`).
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from minescape.errors import ConfigError
from minescape.geo.raster import Raster
from minescape.jsonfile import read_json
from minescape.legend import MINING_LULC

PIT, DUMP, DISTURBED, WATER, FACILITY, BARE, VEG = (MINING_LULC.code_of(n) for n in MINING_LULC.names)
NODATA = MINING_LULC.nodata


def default_rules() -> dict:
    """The packaged default thresholds (a fresh copy)."""
    text = resources.files("minescape").joinpath("config/lulc_rules.json").read_text(encoding="utf-8")
    return json.loads(text)


def load_rules(config: dict | str | Path | None = None) -> dict:
    """Defaults updated with ``config`` (a dict or a JSON file); unknown sections or keys raise ConfigError."""
    rules = default_rules()
    if config is None:
        return rules
    source = None
    if isinstance(config, (str, Path)):
        source, config = config, read_json(config, "rules file")
    try:
        return _merged(copy.deepcopy(rules), config)
    except ConfigError as exc:
        raise (ConfigError(str(exc), path=source) if source is not None else exc) from None


def _merged(rules: dict, config: dict) -> dict:
    """``rules`` updated with the sections and thresholds of ``config``, each checked."""
    if not isinstance(config, dict):
        raise ConfigError("rules must be an object of sections")
    for section, values in config.items():
        if section.startswith("_"):
            continue
        if section not in rules:
            raise ConfigError(f"unknown rules section {section!r}; choose one of: "
                              f"{', '.join(k for k in rules if not k.startswith('_'))}")
        if not isinstance(values, dict):
            raise ConfigError(f"rules section {section!r} must be an object of thresholds")
        for key, value in values.items():
            if key not in rules[section]:
                raise ConfigError(f"unknown threshold {section}.{key}; choose one of: {', '.join(rules[section])}")
            rules[section][key] = _checked_value(f"{section}.{key}", value, rules[section][key])
    return rules


def _checked_value(name: str, value, default):
    """``value`` if it is of the kind of the packaged ``default``: a finite number for a threshold, a whole number
    >= 1 for a window size, text for a feature name; else ConfigError (a threshold given as "0.2" would only fail
    inside every site's classification)."""
    import math

    if isinstance(default, str):
        ok = isinstance(value, str)
        kind = "a feature name (text)"
    elif isinstance(default, int) and not isinstance(default, bool):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        kind = "a whole number >= 1"
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    if not ok:
        raise ConfigError(f"threshold {name} must be {kind} (got {value!r})")
    return value


def classify_rules(features: Raster, *, rules: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply the knowledge-based rules to a feature raster (:mod:`minescape.lulc.features`).

    Args:
        features: float32 feature raster with named bands (NaN = nodata).
        rules: thresholds (default :func:`default_rules`).

    Returns:
        ``(classes, confident)``: uint8 MINING_LULC codes (0 where a feature is NaN) and a bool mask of
        pixels whose decision clears the ``confident_*`` margins and whose 3x3 neighbourhood agrees.
    """
    r = rules or default_rules()
    f = features.band
    dh_name = r["elevation"]["feature"]
    if dh_name not in (features.band_names or ()):
        raise ConfigError(f"elevation.feature {dh_name!r} is not a feature; choose one of: {features.band_names}")
    mndwi, ndvi, bsi, bright, iron, dh = f("MNDWI"), f("NDVI"), f("BSI"), f("BRIGHT"), f("IRON"), f(dh_name)
    valid = np.isfinite(features.data).all(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        swir_blue = f("B11") / np.maximum(f("B02"), np.float32(1e-4))
        cloud = (f("B02") > r["cloud"]["blue_min"]) & (swir_blue < r["cloud"]["swir1_blue_max"])
        tests = [
            (WATER, mndwi > r["water"]["mndwi_min"], mndwi > r["water"]["confident_mndwi_min"]),
            (FACILITY,
             (bright > r["facility"]["bright_min"]) & (ndvi < r["facility"]["ndvi_max"])
             & (bsi < r["facility"]["bsi_max"]) & (swir_blue > r["facility"]["swir1_blue_min"]),
             bright > r["facility"]["confident_bright_min"]),
            (PIT, dh < r["open_pit"]["dh_max"], dh < r["open_pit"]["confident_dh_max"]),
            (DUMP, dh > r["waste_dump"]["dh_min"], dh > r["waste_dump"]["confident_dh_min"]),
            (VEG, ndvi > r["vegetation"]["ndvi_min"], ndvi > r["vegetation"]["confident_ndvi_min"]),
            (DISTURBED,
             (np.abs(dh) < r["disturbed"]["abs_dh_max"]) & (ndvi < r["disturbed"]["ndvi_max"])
             & (iron < r["disturbed"]["iron_max"]),
             (np.abs(dh) < r["disturbed"]["confident_abs_dh_max"]) & (ndvi < r["disturbed"]["confident_ndvi_max"])
             & (iron < r["disturbed"]["confident_iron_max"])),
        ]
        bare_conf = (iron > r["bare_soil"]["confident_iron_min"]) & (ndvi < r["bare_soil"]["confident_ndvi_max"]) \
            & (np.abs(dh) < r["disturbed"]["confident_abs_dh_max"])
    classes = np.full(features.shape, BARE, dtype=np.uint8)
    confident = bare_conf.copy()
    decided = np.zeros(features.shape, dtype=bool)
    for code, test, strong in tests:
        hit = test & ~decided
        classes[hit] = code
        confident[hit] = strong[hit]
        decided |= test
    classes[~valid] = NODATA
    confident &= valid & ~cloud
    size = int(r["confidence"]["homogeneous_window"])
    if size > 1:
        confident &= _homogeneous(classes, size)
    return classes, confident


def _homogeneous(classes: np.ndarray, size: int) -> np.ndarray:
    """True where every pixel of the ``size`` x ``size`` neighbourhood has the same class."""
    lo = ndimage.minimum_filter(classes, size=size, mode="nearest")
    hi = ndimage.maximum_filter(classes, size=size, mode="nearest")
    return lo == hi

"""The published method as a preset (``--method published``): Cheng et al.'s global mining LULC dataset
(Zenodo 10.5281/zenodo.15726306), as issue 15 states it.

* Imagery: a median composite of the site year (``composite="median"``, honoured once the composite engine
  is merged; until then the clearest scene of the year, as the default method).
* Features: the ten Sentinel-2 bands B2-B8, B8A, B11, B12 and the DCM elevation change (:data:`FEATURES`).
* Training samples: labelled pixels kept only where they meet the published thresholds
  (:data:`THRESHOLDS`; bare soil has none and is kept as labelled).
* Classifier: scikit-learn random forest, 100 trees, 4 candidate features per split, seeded.
* Post-processing: majority filter over the 48 nearest samples. Our reading: on a regular 10 m grid the 48
  nearest neighbours of a pixel are exactly the other pixels of its 7 x 7 window (7² - 1 = 48, up to ties at
  the window's corners), so the filter is the 7 x 7 majority with the pixel's own vote breaking ties
  (:func:`minescape.lulc.postprocess.majority_filter`), and no minimum mapping unit.
* Outputs: the per-site class maps carry the published class names (MINING_LULC) and the site year; ``minescape
  publish`` writes them in the published schema (``fid``, ``index_n``, ``class_name``, ``area_m2``, ``year``).
"""

from __future__ import annotations

import numpy as np

from minescape.geo.raster import Raster
from minescape.legend import MINING_LULC

FEATURES: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12", "DH")
N_TREES = 100
MAX_FEATURES = 4
MAJORITY_WINDOW = 7  # pixels: the pixel and its 48 nearest neighbours
PRESET_CONFIG: dict = {"method": "published", "majority": MAJORITY_WINDOW, "mmu_m2": 0.0, "composite": "median"}

# class name -> human-readable rule (docs and reports); the code is in :func:`sample_mask`
THRESHOLDS: dict[str, str] = {
    "Open pit": "dh < 0 m",
    "Waste dumping site": "dh > 1 m",
    "General disturbed land": "0 <= dh <= 1 m and BSI < 0.2",
    "Facility": "NDBI > 0.28",
    "Water body": "MNDWI > 0",
    "Vegetation": "NDVI > 0.3",
    "Bare soil": "(no threshold)",
}


def sample_mask(features: Raster, labels: np.ndarray) -> np.ndarray:
    """True where a labelled pixel meets its class's published threshold (:data:`THRESHOLDS`).

    Thresholds on the elevation change need a measured change: void-filled DCM pixels (``DH_VOID``) never pass.

    Args:
        features: the feature raster of :func:`minescape.lulc.features.compute_features` (DH in metres,
            indices unitless).
        labels: MINING_LULC codes on the same grid (0 = unlabelled).
    """
    f = {n: features.band(n) for n in ("DH", "DH_VOID", "BSI", "NDBI", "MNDWI", "NDVI")}
    dh, measured = f["DH"], f["DH_VOID"] < 0.5
    code = MINING_LULC.code_of
    with np.errstate(invalid="ignore"):
        rules = {
            code("Open pit"): measured & (dh < 0),
            code("Waste dumping site"): measured & (dh > 1),
            code("General disturbed land"): measured & (dh >= 0) & (dh <= 1) & (f["BSI"] < 0.2),
            code("Facility"): f["NDBI"] > 0.28,
            code("Water body"): f["MNDWI"] > 0,
            code("Vegetation"): f["NDVI"] > 0.3,
            code("Bare soil"): np.ones(labels.shape, dtype=bool),
        }
    keep = np.zeros(labels.shape, dtype=bool)
    for c, ok in rules.items():
        keep |= (labels == c) & ok
    return keep

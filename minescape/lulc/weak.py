"""Weak labels: the knowledge-based rules' confident pixels, to train a model when no labels are given.

A pixel is a weak label when its rule decision clears the ``confident_*`` margins of
``minescape/config/lulc_rules.json``, its 3 x 3 neighbourhood has the same rule class and it does not look
like cloud (:func:`minescape.lulc.rules.classify_rules`). Training on them (``minescape lulc train`` without
``--labels``) lets the model smooth the rules' hard thresholds with every feature; it inherits the rules'
systematic errors where those are confident.
"""

from __future__ import annotations

import numpy as np

from minescape.geo.raster import Raster
from minescape.legend import MINING_LULC
from minescape.lulc.rules import classify_rules


def weak_labels(features: Raster, *, rules: dict | None = None, min_per_class: int = 0) -> np.ndarray:
    """uint8 MINING_LULC codes at confident pixels, 0 elsewhere.

    Args:
        features: feature raster (:func:`minescape.lulc.features.compute_features`).
        rules: thresholds (default the packaged ones).
        min_per_class: drop classes with fewer confident pixels than this (too few to learn from).
    """
    classes, confident = classify_rules(features, rules=rules)
    labels = np.where(confident, classes, MINING_LULC.nodata).astype(np.uint8)
    if min_per_class > 0:
        counts = np.bincount(labels.ravel(), minlength=max(MINING_LULC.codes) + 1)
        for code in MINING_LULC.codes:
            if 0 < counts[code] < min_per_class:
                labels[labels == code] = MINING_LULC.nodata
    return labels

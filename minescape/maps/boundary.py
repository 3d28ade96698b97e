"""Boundary F1: how well class boundaries of a map match those of the truth, within a pixel tolerance.

A pixel is a boundary pixel when one of its 4-neighbours has another class. Boundary precision is the share
of predicted boundary pixels lying within ``tolerance`` pixels (Chebyshev distance, i.e. a
``(2k+1) x (2k+1)`` square) of a true boundary pixel; boundary recall the share of true boundary pixels
within ``tolerance`` of a predicted one; boundary F1 their harmonic mean (the BF score of Csurka et al. 2013,
"What is a good evaluation measure for semantic segmentation?", with a square tolerance). Pixels outside
``valid`` are neither counted nor used as boundaries.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def boundaries(classes: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Bool mask of pixels with a 4-neighbour of a different class (inside ``valid``)."""
    c = np.asarray(classes)
    edge = np.zeros(c.shape, dtype=bool)
    diff_v = c[1:, :] != c[:-1, :]
    diff_h = c[:, 1:] != c[:, :-1]
    if valid is not None:
        diff_v &= valid[1:, :] & valid[:-1, :]
        diff_h &= valid[:, 1:] & valid[:, :-1]
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    return edge


def boundary_f1(truth: np.ndarray, pred: np.ndarray, *, tolerance: int = 2,
                valid: np.ndarray | None = None) -> dict[str, float]:
    """Boundary precision, recall and F1 of ``pred`` against ``truth`` with a tolerance in pixels."""
    valid = np.ones(np.shape(truth), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    bt = boundaries(truth, valid)
    bp = boundaries(pred, valid)
    size = 2 * tolerance + 1
    near_t = ndimage.maximum_filter(bt, size=size)
    near_p = ndimage.maximum_filter(bp, size=size)
    precision = float((bp & near_t).sum() / bp.sum()) if bp.any() else float("nan")
    recall = float((bt & near_p).sum() / bt.sum()) if bt.any() else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": float(f1), "tolerance_px": tolerance}

"""Confusion-matrix metrics: overall accuracy, kappa, producer's/user's accuracy, F1, IoU.

Rows of a confusion matrix are the reference (truth) classes, columns the mapped (predicted) ones,
in the order of ``codes``. Pixels whose truth or prediction is nodata are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, codes: Sequence[int], *,
                     valid: np.ndarray | None = None) -> np.ndarray:
    """Counts ``cm[i, j]`` of pixels with truth ``codes[i]`` mapped as ``codes[j]`` (int64).

    Pixels whose truth or prediction is not in ``codes`` (nodata) or outside ``valid`` are ignored.
    """
    truth = np.asarray(truth).ravel()
    pred = np.asarray(pred).ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"truth and prediction differ in size: {truth.size} vs {pred.size}")
    codes = np.asarray(list(codes), dtype=np.int64)
    lut = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    lut[codes] = np.arange(codes.size)
    ti, pi = _code_index(truth, lut), _code_index(pred, lut)
    keep = (ti >= 0) & (pi >= 0)
    if valid is not None:
        keep &= np.asarray(valid).ravel()
    n = codes.size
    return np.bincount(ti[keep] * n + pi[keep], minlength=n * n).reshape(n, n).astype(np.int64)


def _code_index(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Position in ``codes`` of each value through ``lut`` (code -> position, -1 elsewhere); -1 for values that
    are no code: negative (an int16 nodata of -1 must not wrap round to the last code), beyond the table,
    fractional or NaN."""
    inside = (values >= 0) & (values < lut.size)
    if values.dtype.kind == "f":
        inside &= values == np.floor(values)  # NaN compares False
    out = np.full(values.shape, -1, dtype=np.int64)
    out[inside] = lut[values[inside].astype(np.int64)]
    return out


@dataclass(frozen=True)
class Metrics:
    """Scores from a confusion matrix (NaN where undefined, e.g. a class never mapped)."""

    codes: tuple[int, ...]
    matrix: np.ndarray
    overall_accuracy: float
    kappa: float
    producers_accuracy: np.ndarray  # recall per class
    users_accuracy: np.ndarray  # precision per class
    f1: np.ndarray
    iou: np.ndarray

    @property
    def n(self) -> int:
        """Number of samples counted."""
        return int(self.matrix.sum())

    def to_dict(self, names: Sequence[str] | None = None) -> dict:
        """JSON-ready dict (per-class values keyed by name or code)."""
        keys = list(names) if names is not None else [str(c) for c in self.codes]

        def per(a):
            return {k: (None if np.isnan(v) else float(v)) for k, v in zip(keys, a, strict=True)}

        return {
            "n": self.n,
            "overall_accuracy": self.overall_accuracy,
            "kappa": self.kappa,
            "producers_accuracy": per(self.producers_accuracy),
            "users_accuracy": per(self.users_accuracy),
            "f1": per(self.f1),
            "iou": per(self.iou),
            "classes": keys,
            "confusion_matrix": self.matrix.tolist(),
        }


def metrics_from_matrix(matrix: np.ndarray, codes: Sequence[int]) -> Metrics:
    """All scores from a square confusion matrix (rows truth, columns prediction)."""
    cm = np.asarray(matrix, dtype=np.float64)
    total = cm.sum()
    diag = np.diag(cm)
    rows = cm.sum(axis=1)
    cols = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        oa = diag.sum() / total if total else np.nan
        pe = (rows * cols).sum() / total**2 if total else np.nan
        kappa = (oa - pe) / (1 - pe) if total and pe != 1 else (1.0 if total and oa == 1 else np.nan)
        pa = diag / rows
        ua = diag / cols
        f1 = 2 * diag / (rows + cols)
        iou = diag / (rows + cols - diag)
    return Metrics(tuple(int(c) for c in codes), np.asarray(matrix, dtype=np.int64), float(oa), float(kappa),
                   pa, ua, f1, iou)


def evaluate(truth: np.ndarray, pred: np.ndarray, codes: Sequence[int], *,
             valid: np.ndarray | None = None) -> Metrics:
    """Confusion matrix and scores of ``pred`` against ``truth`` over ``codes``."""
    return metrics_from_matrix(confusion_matrix(truth, pred, codes, valid=valid), codes)

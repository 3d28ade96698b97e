"""A random-forest pixel classifier (scikit-learn) stored as plain JSON arrays, for the published-method preset.

Training uses :class:`sklearn.ensemble.RandomForestClassifier`; the fitted trees are written as arrays (children,
split feature, threshold, class distribution per node), never pickled, so loading a model file runs no code.
Prediction walks the arrays with numpy and averages the trees' class distributions as scikit-learn does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minescape.atomic import atomic_write_text
from minescape.errors import InputError
from minescape.jsonfile import read_json
from minescape.legend import MINING_LULC, Legend

FORMAT = "minescape-lulc-randomforest"
VERSION = 1
MAX_NODES = 2_000_000  # per tree, checked before allocating


@dataclass(frozen=True)
class Tree:
    """One fitted tree: ``left``/``right`` child indexes (-1 at leaves), split ``feature`` and ``threshold``,
    ``value`` the class distribution per node ``(n_nodes, n_classes)`` (rows sum to 1)."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """Leaf index of each row of float32 ``x`` (a row goes left when ``x[feature] <= threshold``)."""
        node = np.zeros(x.shape[0], dtype=np.int64)
        rows = np.arange(x.shape[0])
        while True:
            left = self.left[node]
            active = left >= 0
            if not active.any():
                return node
            go_left = x[rows, np.maximum(self.feature[node], 0)] <= self.threshold[node]
            node = np.where(active, np.where(go_left, left, self.right[node]), node)


@dataclass(frozen=True)
class ForestModel:
    """A trained random forest with what is needed to apply it (same roles as
    :class:`~minescape.lulc.model.LulcModel`: ``features``, ``legend``, ``classes``, ``importance``, ``meta``)."""

    trees: tuple[Tree, ...]
    features: tuple[str, ...]
    legend: Legend
    classes: tuple[int, ...]
    importance: dict[str, float]
    meta: dict = field(default_factory=dict)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Mean class distribution of the trees ``(n, n_classes)`` for raw feature rows."""
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise InputError(f"model expects {len(self.features)} features, got rows of shape {x.shape}")
        x = np.asarray(x, dtype=np.float32)
        out = np.zeros((x.shape[0], len(self.classes)), dtype=np.float64)
        for tree in self.trees:
            out += tree.value[tree.leaves(x)]
        return out / len(self.trees)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Legend codes (uint8) for raw feature rows."""
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.uint8)
        return np.asarray(self.classes, dtype=np.uint8)[np.argmax(self.predict_proba(x), axis=1)]


def train_forest(x: np.ndarray, y: np.ndarray, *, features: Sequence[str], n_trees: int = 100,
                 max_features: int = 4, seed: int = 0, legend: Legend = MINING_LULC, meta: dict | None = None
                 ) -> ForestModel:
    """Fit ``n_trees`` trees with ``max_features`` candidate features per split (seeded, one thread)."""
    from sklearn.ensemble import RandomForestClassifier

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != len(features):
        raise InputError(f"training rows {x.shape} do not match {y.shape[0]} labels and {len(features)} features")
    legend.check_codes(y, source="training labels", allow_nodata=False)
    classes = tuple(int(c) for c in np.unique(y))
    if len(classes) < 2:
        raise InputError(f"training needs at least 2 classes; the samples hold only {classes}")
    rf = RandomForestClassifier(n_estimators=n_trees, max_features=min(max_features, x.shape[1]),
                                random_state=seed, n_jobs=1)
    rf.fit(x, y)
    trees = []
    for est in rf.estimators_:
        t = est.tree_
        value = t.value[:, 0, :].astype(np.float64)
        value /= np.maximum(value.sum(axis=1, keepdims=True), 1e-12)
        trees.append(Tree(t.children_left.astype(np.int64), t.children_right.astype(np.int64),
                          t.feature.astype(np.int64), t.threshold.astype(np.float64), value))
    importance = {f: float(v) for f, v in zip(features, rf.feature_importances_, strict=True)}
    counts = {legend.name_of(c): int((y == c).sum()) for c in classes}
    info = {"samples": counts, "n_trees": n_trees, "max_features": max_features, "seed": seed, **(meta or {})}
    return ForestModel(tuple(trees), tuple(features), legend, classes, importance, info)


def save_forest(model: ForestModel, path: str | Path) -> Path:
    """Write the model JSON atomically (same model -> same bytes)."""
    doc = {"format": FORMAT, "version": VERSION, "features": list(model.features), "legend": model.legend.to_dict(),
           "classes": list(model.classes), "importance": model.importance, "meta": model.meta,
           "trees": [{"left": t.left.tolist(), "right": t.right.tolist(), "feature": t.feature.tolist(),
                      "threshold": [float(v) for v in t.threshold],
                      "value": t.value.tolist()} for t in model.trees]}  # exact: floats round-trip in JSON
    return atomic_write_text(path, json.dumps(doc, separators=(",", ":"), default=str))


def _tree(doc: dict, n_features: int, n_classes: int, path: Path) -> Tree:
    try:
        left = np.asarray(doc["left"], dtype=np.int64)
        n = left.size
        if not 0 < n <= MAX_NODES:
            raise ValueError(f"{n} nodes")
        right = np.asarray(doc["right"], dtype=np.int64)
        feature = np.asarray(doc["feature"], dtype=np.int64)
        threshold = np.asarray(doc["threshold"], dtype=np.float64)
        value = np.asarray(doc["value"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"corrupt forest model ({exc})", path=path) from None
    idx = np.arange(n)
    internal = left >= 0
    ok = (right.shape == feature.shape == threshold.shape == (n,) and value.shape == (n, n_classes)
          and np.array_equal(internal, right >= 0)
          and bool(np.all(left[internal] > idx[internal])) and bool(np.all(right[internal] > idx[internal]))
          and bool(np.all(left < n)) and bool(np.all(right < n))
          and bool(np.all((feature[internal] >= 0) & (feature[internal] < n_features))))
    if not ok:
        raise InputError("corrupt forest model (inconsistent tree arrays)", path=path)
    return Tree(left, right, feature, threshold, value)


def load_forest(path: str | Path) -> ForestModel:
    """Read a model written by :func:`save_forest` (InputError for other files, versions or broken trees)."""
    path = Path(path)
    doc = read_json(path, "model file")
    if doc.get("format") != FORMAT:
        raise InputError(f"not a minescape random-forest model (format is not {FORMAT!r})", path=path)
    if doc.get("version") != VERSION:
        raise InputError(f"model version {doc.get('version')} is not supported (expected {VERSION})", path=path)
    from minescape.lulc.model import model_header

    features, classes, legend = model_header(doc, path)  # the checks of every LULC model file
    trees_doc, importance, meta = doc.get("trees"), doc.get("importance", {}), doc.get("meta", {})
    if not isinstance(trees_doc, list) or not all(isinstance(t, dict) for t in trees_doc):
        raise InputError("malformed model file: 'trees' must be a list of tree objects", path=path)
    if not isinstance(importance, dict) or not isinstance(meta, dict):
        raise InputError("malformed model file: 'importance' and 'meta' must be JSON objects", path=path)
    trees = tuple(_tree(t, len(features), len(classes), path) for t in trees_doc)
    if not trees:
        raise InputError("forest model holds no trees", path=path)
    return ForestModel(trees, tuple(features), legend, tuple(classes), dict(importance), dict(meta))


def model_format(path: str | Path) -> str:
    """The ``format`` field of a model JSON (to pick its loader)."""
    return str(read_json(path, "model file").get("format"))

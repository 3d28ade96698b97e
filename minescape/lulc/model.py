"""Trained pixel classifier (LightGBM) for mining LULC: train, predict, save/load, feature importance.

A model file is one JSON document: the LightGBM model text, the feature list (names and order), the legend,
the class codes in output order, the z-score normalisation (mean and standard deviation per feature, applied
before prediction), the gain importance of each feature and the training metadata. Loading checks the format
and version, so a model is never applied to features it was not trained on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minescape.atomic import atomic_write_text
from minescape.errors import ConfigError, InputError
from minescape.jsonfile import read_json
from minescape.legend import MINING_LULC, Legend

FORMAT = "minescape-lulc-lightgbm"
VERSION = 1
DEFAULT_PARAMS: dict = {
    "objective": "multiclass",
    "learning_rate": 0.15,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
DEFAULT_ROUNDS = 60
#: Class maps stop adding trees for a pixel once its best class leads the second by this raw-score margin
#: (checked every 10 rounds; LightGBM's ``pred_early_stop``). On the 1.4 million pixels of the 100 real mine
#: polygons it changed no pixel's class and made prediction 3.2x faster (bench/bench_runner.py --only project);
#: probabilities (:meth:`LulcModel.predict_proba`) are always computed with every tree.
EARLY_STOP: dict = {"pred_early_stop": True, "pred_early_stop_freq": 10, "pred_early_stop_margin": 4.0}
PREDICT_BATCH = 262144  # feature rows per LightGBM call (memory stays bounded for any site size)


@dataclass(frozen=True)
class LulcModel:
    """A trained LightGBM classifier with everything needed to apply it.

    Attributes:
        booster: the LightGBM Booster.
        features: feature names in column order.
        legend: class legend (MINING_LULC by default).
        classes: legend codes in the booster's class-index order.
        mean: per-feature mean used for z-score normalisation.
        std: per-feature standard deviation (>= 1e-6).
        importance: feature -> share of total split gain (sums to 1).
        meta: training metadata (samples per class, sites, parameters, seed).
    """

    booster: object
    features: tuple[str, ...]
    legend: Legend
    classes: tuple[int, ...]
    mean: np.ndarray
    std: np.ndarray
    importance: dict[str, float]
    meta: dict = field(default_factory=dict)

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Z-score ``(n, n_features)`` rows with the training mean and std (float32)."""
        return ((x - self.mean) / self.std).astype(np.float32)

    def predict_proba(self, x: np.ndarray, *, batch: int = PREDICT_BATCH) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` for raw (un-normalised) feature rows, in batches."""
        return self._scores(x, batch=batch, early_stop=False)

    def _scores(self, x: np.ndarray, *, batch: int, early_stop: bool) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise InputError(f"model expects {len(self.features)} features, got rows of shape {x.shape}")
        out = np.empty((x.shape[0], len(self.classes)), dtype=np.float32)
        extra = EARLY_STOP if early_stop else {}
        for i in range(0, x.shape[0], batch):
            out[i:i + batch] = self.booster.predict(self.normalise(x[i:i + batch]),
                                                    num_threads=DEFAULT_PARAMS["num_threads"], **extra)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Legend codes (uint8) for raw feature rows: the most probable class, with prediction early stopping
        (:data:`EARLY_STOP`)."""
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.uint8)
        codes = np.asarray(self.classes, dtype=np.uint8)
        return codes[np.argmax(self._scores(x, batch=PREDICT_BATCH, early_stop=True), axis=1)]


def train_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    features: Sequence[str],
    legend: Legend = MINING_LULC,
    params: dict | None = None,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    meta: dict | None = None,
) -> LulcModel:
    """Train a LightGBM multiclass model on feature rows ``x`` and legend codes ``y``.

    Args:
        x: ``(n, n_features)`` raw features (NaN-free).
        y: ``(n,)`` legend codes; classes absent from ``y`` are never predicted.
        features: names of the columns of ``x``.
        legend: the legend ``y`` uses.
        params: LightGBM parameters overriding :data:`DEFAULT_PARAMS`.
        rounds: boosting rounds.
        seed: random seed (bagging, feature fraction).
        meta: extra metadata stored with the model.
    """
    import lightgbm as lgb

    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ConfigError(f"rounds must be a whole number of boosting rounds >= 1 (got {rounds!r})")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != len(features):
        raise InputError(f"training rows {x.shape} do not match {y.shape[0]} labels and {len(features)} features")
    if x.shape[0] == 0:
        raise InputError("no training samples (no labelled pixels inside the training sites)")
    legend.check_codes(y, source="training labels", allow_nodata=False)
    classes = tuple(int(c) for c in np.unique(y))
    if len(classes) < 2:
        raise InputError(f"training needs at least 2 classes; the labels hold only {classes}")
    mean = x.mean(axis=0).astype(np.float32)
    std = np.maximum(x.std(axis=0), 1e-6).astype(np.float32)
    target = np.searchsorted(np.asarray(classes), y).astype(np.int32)
    p = {**DEFAULT_PARAMS, **(params or {}), "num_class": len(classes), "seed": seed}
    dataset = lgb.Dataset(((x - mean) / std).astype(np.float32), label=target, feature_name=list(features),
                          free_raw_data=True)
    booster = lgb.train(p, dataset, num_boost_round=rounds)
    gain = booster.feature_importance(importance_type="gain")
    total = float(gain.sum()) or 1.0
    importance = {f: float(g) / total for f, g in zip(features, gain, strict=True)}
    counts = {legend.name_of(c): int((y == c).sum()) for c in classes}
    info = {"samples": counts, "rounds": rounds, "seed": seed, "params": p, **(meta or {})}
    return LulcModel(booster, tuple(features), legend, classes, mean, std, importance, info)


def save_model(model: LulcModel, path: str | Path) -> Path:
    """Write the model JSON atomically (same model -> same bytes)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "features": list(model.features),
        "legend": model.legend.to_dict(),
        "classes": list(model.classes),
        "normalisation": {"method": "zscore", "mean": [float(v) for v in model.mean],
                          "std": [float(v) for v in model.std]},
        "importance": model.importance,
        "meta": model.meta,
        "booster": model.booster.model_to_string(),
    }
    return atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=False, default=str))


def model_header(doc: dict, path: Path) -> tuple[list[str], list[int], Legend]:
    """The fields every LULC model file (LightGBM or forest) carries, checked: ``features`` (distinct names),
    ``classes`` (at least 2 distinct codes of ``legend``) and the ``legend``.

    Raises:
        InputError: ``malformed model file: ...`` naming ``path`` and the field.
    """
    def bad(what: str) -> InputError:
        return InputError(f"malformed model file: {what}", path=path)

    features, classes = doc.get("features"), doc.get("classes")
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise bad("'features' must be a non-empty list of feature names")
    if len(set(features)) != len(features):
        raise bad(f"'features' repeats names {sorted({f for f in features if features.count(f) > 1})}")
    if not isinstance(classes, list) or len(classes) < 2 or not all(type(c) is int for c in classes):
        raise bad("'classes' must be a list of at least 2 integer class codes")
    try:
        legend = Legend.from_dict(doc["legend"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"legend unreadable ({type(exc).__name__}: {exc})") from None
    if sorted(set(classes) - set(legend.codes)) or len(set(classes)) != len(classes):
        raise bad(f"'classes' {classes} must be distinct codes of the {legend.name} legend {list(legend.codes)}")
    return features, classes, legend


def load_model(path: str | Path) -> LulcModel:
    """Read a model written by :func:`save_model`.

    The file is plain JSON (never unpickled or evaluated); every field is checked where it enters: the feature
    list (unique names, as many as the booster's features, in the booster's order), the classes (legend codes,
    as many as the booster's classes), the normalisation (one finite mean and one finite standard deviation
    > 0 per feature) and the booster text.

    Raises:
        InputError: another file, another version, or a malformed or inconsistent model (one line naming the
            file and the field).
    """
    import lightgbm as lgb

    path = Path(path)
    doc = read_json(path, "model file")
    if doc.get("format") != FORMAT:
        raise InputError(f"not a minescape LULC model (format is not {FORMAT!r})", path=path)
    if doc.get("version") != VERSION:
        raise InputError(f"model version {doc.get('version')} is not supported (expected {VERSION})", path=path)

    def bad(what: str) -> InputError:
        return InputError(f"malformed model file: {what}", path=path)

    features, classes, legend = model_header(doc, path)
    norm = doc.get("normalisation")
    if not isinstance(norm, dict) or norm.get("method") != "zscore":
        raise bad("'normalisation' must be {\"method\": \"zscore\", \"mean\": [...], \"std\": [...]}")
    try:
        mean = np.asarray(norm["mean"], dtype=np.float64)
        std = np.asarray(norm["std"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"normalisation unreadable ({type(exc).__name__}: {exc})") from None
    for name, arr in (("mean", mean), ("std", std)):
        if arr.shape != (len(features),):
            raise bad(f"normalisation {name} has {arr.size} values for {len(features)} features")
        if not np.isfinite(arr).all():
            raise bad(f"normalisation {name} of {features[int(np.flatnonzero(~np.isfinite(arr))[0])]!r} "
                      "is not finite")
    if (std <= 0).any():
        zero = [f for f, v in zip(features, std, strict=True) if v <= 0]
        raise bad(f"standard deviation of features {zero} is {std.min():g} (must be > 0; the features would "
                  "divide by zero)")
    text = doc.get("booster")
    if not isinstance(text, str) or not text.startswith("tree"):
        raise bad("'booster' must be the LightGBM model text (starting with 'tree')")
    try:
        booster = lgb.Booster(model_str=text)
    except Exception as exc:  # LightGBMError and others for damaged model text
        raise bad(f"the booster text cannot be read ({str(exc).splitlines()[0][:100]})") from None
    names = list(booster.feature_name())
    if names != list(features):
        i = next((i for i, (a, b) in enumerate(zip(features, names)) if a != b), min(len(features), len(names)))
        raise bad(f"'features' ({len(features)}) do not match the booster's features ({len(names)}): first "
                  f"difference at position {i}: {features[i] if i < len(features) else None!r} vs "
                  f"{names[i] if i < len(names) else None!r}")
    n_class = int(booster.params.get("num_class", 0) or 0) if hasattr(booster, "params") else 0
    n_trees_class = booster.num_model_per_iteration()
    if n_trees_class != len(classes) or (n_class and n_class != len(classes)):
        raise bad(f"'classes' lists {len(classes)} classes but the booster predicts {n_trees_class}")
    importance, meta = doc.get("importance", {}), doc.get("meta", {})
    if not isinstance(importance, dict) or not isinstance(meta, dict):
        raise bad("'importance' and 'meta' must be JSON objects")
    return LulcModel(booster, tuple(features), legend, tuple(classes), mean.astype(np.float32),
                     std.astype(np.float32), dict(importance), dict(meta))


def sample_pixels(labels: np.ndarray, valid: np.ndarray, *, per_class: int, rng: np.random.Generator
                  ) -> np.ndarray:
    """Flat indexes of up to ``per_class`` pixels per label code (> 0) inside ``valid``, seeded and sorted."""
    chosen = []
    flat = labels.ravel()
    ok = valid.ravel() & (flat > 0)
    for code in np.unique(flat[ok]):
        idx = np.flatnonzero(ok & (flat == code))
        if idx.size > per_class:
            idx = rng.choice(idx, per_class, replace=False)
        chosen.append(idx)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def importance_table(model: LulcModel, *, top: int | None = None) -> list[tuple[str, float]]:
    """``(feature, gain share)`` sorted by decreasing importance."""
    items = sorted(model.importance.items(), key=lambda kv: (-kv[1], kv[0]))
    return items[:top] if top else items

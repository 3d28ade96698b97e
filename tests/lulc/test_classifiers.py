"""Features, knowledge-based rules, LightGBM model files, weak labels and post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine

from minescape.errors import ConfigError, InputError
from minescape.geo.raster import Raster
from minescape.legend import MINING_LULC
from minescape.lulc.features import FEATURES, box_stats, compute_features, feature_matrix, fill_voids
from minescape.lulc.model import importance_table, load_model, sample_pixels, save_model, train_model
from minescape.lulc.postprocess import majority_filter, mmu_pixels, sieve
from minescape.lulc.rules import classify_rules, default_rules, load_rules
from minescape.lulc.weak import weak_labels
from minescape.sentinel2 import TEN_BANDS
from minescape.synthetic import SPECTRA

T = Affine(10, 0, 500000, 0, -10, 4100000)
DH = {1: -40.0, 2: 25.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.0}


def _class_rows(rng, n=300, noise=0.008):
    """``n`` pixels per class (rows of a 7n x 9 raster band-wise) from the synthetic SPECTRA with noise."""
    rows = []
    for code in MINING_LULC.codes:
        spec = np.asarray(SPECTRA[code], dtype=np.float32)
        px = spec[:, None] * (1 + 0.03 * rng.standard_normal(n)) + noise * rng.standard_normal((10, n))
        rows.append(px)
    refl = np.concatenate(rows, axis=1).reshape(10, 7 * n // 20, 20).astype(np.float32)
    dh = np.repeat([DH[c] for c in MINING_LULC.codes], n).reshape(1, 7 * n // 20, 20).astype(np.float32)
    dh += rng.normal(0, 0.3, dh.shape).astype(np.float32)
    truth = np.repeat(MINING_LULC.codes, n).reshape(7 * n // 20, 20).astype(np.uint8)
    return (Raster(np.clip(refl, 1e-4, 1), "EPSG:32633", T, np.nan, TEN_BANDS),
            Raster(dh, "EPSG:32633", T, np.nan, ("DH",)), truth)


def test_features_nan_and_names():
    rng = np.random.default_rng(0)
    stack, dh, _ = _class_rows(rng, n=40)
    stack.data[:, 0, 0] = np.nan
    dh.data[0, 3, 3] = np.nan
    f = compute_features(stack, dh)
    assert f.band_names == FEATURES and f.data.dtype == np.float32
    assert np.isnan(f.data[:, 0, 0]).all()
    assert f.band("DH_VOID")[3, 3] == 1 and np.isfinite(f.band("DH")[3, 3])
    x, keep = feature_matrix(f)
    assert x.shape == (keep.sum(), len(FEATURES)) and not keep[0, 0]
    with pytest.raises(InputError, match="odd"):
        compute_features(stack, dh, window=4)


def test_box_stats_and_fill():
    a = np.arange(25, dtype=np.float32).reshape(5, 5)
    a[2, 2] = np.nan
    mean, std = box_stats(a, size=3)
    assert mean[2, 2] == pytest.approx(np.nanmean(a[1:4, 1:4]))
    assert std[2, 2] == pytest.approx(np.nanstd(a[1:4, 1:4]), rel=1e-5)
    filled, void = fill_voids(a)
    assert (void.sum() == 1 and np.isfinite(filled).all()
            and filled[2, 2] in (6, 7, 8, 11, 13, 16, 17, 18))  # a chessboard neighbour


def test_rules_recover_each_class_from_definitions():
    rng = np.random.default_rng(1)
    stack, dh, truth = _class_rows(rng)
    classes, confident = classify_rules(compute_features(stack, dh, window=1))
    for code in MINING_LULC.codes:
        assert (classes[truth == code] == code).mean() > 0.9, MINING_LULC.name_of(code)
    assert confident.mean() > 0.5
    assert (classes[confident] == truth[confident]).mean() > 0.97


def test_rule_thresholds_from_config(tmp_path):
    rules = load_rules({"open_pit": {"dh_max": -50.0}})
    assert rules["open_pit"]["dh_max"] == -50.0 and rules["water"] == default_rules()["water"]
    rng = np.random.default_rng(2)
    stack, dh, truth = _class_rows(rng, n=100)
    classes, _ = classify_rules(compute_features(stack, dh, window=1), rules=rules)
    assert (classes[truth == 1] == 1).mean() < 0.1  # pits at -40 m are no longer deep enough
    with pytest.raises(ConfigError, match="choose one of"):
        load_rules({"open_pit": {"depth": 3}})
    with pytest.raises(ConfigError, match="unknown rules section"):
        load_rules({"mine": {}})
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"vegetation": {"ndvi_min": 0.5}}))
    assert load_rules(path)["vegetation"]["ndvi_min"] == 0.5


@pytest.mark.parametrize(("override", "problem"), [
    ({"water": {"mndwi_min": "0.2"}}, "threshold water.mndwi_min must be a finite number (got '0.2')"),
    ({"water": {"mndwi_min": True}}, "threshold water.mndwi_min must be a finite number (got True)"),
    ({"confidence": {"homogeneous_window": 2.5}}, "confidence.homogeneous_window must be a whole number >= 1"),
    ({"elevation": {"feature": 3}}, "threshold elevation.feature must be a feature name (text) (got 3)"),
])
def test_rule_values_of_the_wrong_kind_name_the_file(tmp_path, override, problem):
    """A threshold given as text would pass the key check and fail inside every site: refused up front, in one
    line naming the rules file; the same values of the right kind load."""
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(override))
    with pytest.raises(ConfigError) as err:
        load_rules(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)
    assert load_rules({"water": {"mndwi_min": 0.25}, "confidence": {"homogeneous_window": 5}})["water"] \
        == {**default_rules()["water"], "mndwi_min": 0.25}


def test_model_train_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    stack, dh, truth = _class_rows(rng, n=200)
    f = compute_features(stack, dh)
    x, keep = feature_matrix(f)
    model = train_model(x, truth[keep], features=FEATURES, rounds=30, seed=5)
    assert sum(model.importance.values()) == pytest.approx(1.0)
    assert importance_table(model, top=3)[0][1] >= importance_table(model)[-1][1]
    pred = model.predict(x)
    assert (pred == truth[keep]).mean() > 0.97
    p1 = save_model(model, tmp_path / "m.json")
    again = train_model(x, truth[keep], features=FEATURES, rounds=30, seed=5)
    p2 = save_model(again, tmp_path / "m2.json")
    assert p1.read_bytes() == p2.read_bytes()  # deterministic training and file
    other = save_model(train_model(x, truth[keep], features=FEATURES, rounds=30, seed=6), tmp_path / "m3.json")
    assert other.read_bytes() != p1.read_bytes()  # the bytes follow the seed: not a constant writer
    loaded = load_model(p1)
    assert loaded.features == FEATURES and loaded.legend == MINING_LULC and loaded.classes == model.classes
    np.testing.assert_array_equal(loaded.predict(x), pred)
    np.testing.assert_allclose(loaded.mean, model.mean)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a minescape LULC model"):
        load_model(tmp_path / "bad.json")
    with pytest.raises(InputError, match="at least 2 classes"):
        train_model(x[:5], np.full(5, 3), features=FEATURES)
    with pytest.raises(InputError, match="not in the mining_lulc legend"):
        train_model(x[:5], np.array([1, 2, 9, 1, 2]), features=FEATURES)


def test_weak_labels_and_sampling():
    rng = np.random.default_rng(4)
    stack, dh, truth = _class_rows(rng, n=200)
    labels = weak_labels(compute_features(stack, dh))
    lab = labels > 0
    assert lab.mean() > 0.3 and (labels[lab] == truth[lab]).mean() > 0.97
    idx = sample_pixels(labels, np.ones_like(lab), per_class=20, rng=np.random.default_rng(0))
    counts = np.bincount(labels.ravel()[idx])
    assert counts.max() <= 20 and (counts[1:] > 0).sum() >= 5
    np.testing.assert_array_equal(idx, sample_pixels(labels, np.ones_like(lab), per_class=20,
                                                     rng=np.random.default_rng(0)))


def test_sieve_in_square_metres_and_majority():
    classes = np.full((20, 20), 6, dtype=np.uint8)
    classes[2:4, 2:4] = 1  # 4 px = 400 m² at 10 m
    classes[10:16, 10:16] = 2  # 36 px
    classes[:, 19] = 0  # nodata column
    assert mmu_pixels(500, 100) == 5 and mmu_pixels(400, 100) == 4
    out = sieve(classes, mmu_m2=500, pixel_area_m2=100)
    assert (out[2:4, 2:4] == 6).all() and (out[10:16, 10:16] == 2).all() and (out[:, 19] == 0).all()
    kept = sieve(classes, mmu_m2=400, pixel_area_m2=100)
    assert (kept[2:4, 2:4] == 1).all()
    noisy = classes.copy()
    noisy[12, 12] = 7  # a lone pixel inside the dump
    maj = majority_filter(noisy, size=3)
    assert maj[12, 12] == 2 and (maj[:, 19] == 0).all() and maj[0, 0] == 6
    with pytest.raises(ConfigError):
        majority_filter(noisy, size=2)


def test_class_maps_stop_early_but_keep_every_class():
    """Prediction early stopping really skips trees (the raw scores of confident pixels differ from the full
    model's) and gives the same class as every tree on every one of these pixels, noisy ones included."""
    from minescape.lulc.model import EARLY_STOP

    rng = np.random.default_rng(8)
    stack, dh, truth = _class_rows(rng, n=400, noise=0.12)
    f = compute_features(stack, dh)
    x, keep = feature_matrix(f)
    model = train_model(x, truth[keep], features=FEATURES, rounds=60, seed=1)
    xn = model.normalise(x)
    full = model.booster.predict(xn, raw_score=True, num_threads=1)
    early = model.booster.predict(xn, raw_score=True, num_threads=1, **EARLY_STOP)
    assert np.mean(np.abs(full - early).max(axis=1) > 1e-6) > 0.5  # most pixels stopped before the last tree
    codes = np.asarray(model.classes, dtype=np.uint8)
    np.testing.assert_array_equal(model.predict(x), codes[np.argmax(model.predict_proba(x), axis=1)])
    top2 = np.sort(full, axis=1)[:, -2:]
    assert np.sum(top2[:, 1] - top2[:, 0] < EARLY_STOP["pred_early_stop_margin"]) > 10  # hard pixels are here too

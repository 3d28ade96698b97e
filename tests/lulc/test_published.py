"""The published-method preset: threshold-filtered samples, the JSON random forest, and preset vs default on
held-out synthetic sites through the DLR tile path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from minescape.errors import ConfigError, InputError
from minescape.geo.raster import Raster
from minescape.legend import MINING_LULC
from minescape.lulc.forest import load_forest, save_forest, train_forest
from minescape.lulc.published import FEATURES, PRESET_CONFIG, THRESHOLDS, sample_mask

C = MINING_LULC.code_of


def _features(**bands):
    names = ("DH", "DH_VOID", "BSI", "NDBI", "MNDWI", "NDVI")
    data = np.stack([np.asarray(bands.get(n, np.zeros(2)), dtype=np.float32)[None] for n in names])
    return Raster(data, CRS.from_epsg(32750), Affine(10, 0, 0, 0, -10, 0), np.nan, names)


@pytest.mark.parametrize("cls, good, bad", [
    ("Open pit", {"DH": -0.5}, {"DH": 0.0}),
    ("Waste dumping site", {"DH": 1.5}, {"DH": 1.0}),
    ("General disturbed land", {"DH": 0.5, "BSI": 0.1}, {"DH": 0.5, "BSI": 0.2}),
    ("Facility", {"NDBI": 0.3}, {"NDBI": 0.28}),
    ("Water body", {"MNDWI": 0.01}, {"MNDWI": 0.0}),
    ("Vegetation", {"NDVI": 0.31}, {"NDVI": 0.3}),
])
def test_sample_thresholds(cls, good, bad):
    """Each published threshold keeps the sample that meets it and drops the one at the boundary."""
    cols = {k: [good.get(k, 0.0), bad.get(k, 0.0)] for k in set(good) | set(bad)}
    keep = sample_mask(_features(**cols), np.full((1, 2), C(cls), np.uint8))
    assert keep.tolist() == [[True, False]]
    assert cls in THRESHOLDS


def test_void_filled_change_never_passes_a_change_threshold():
    keep = sample_mask(_features(DH=[-5.0, -5.0], DH_VOID=[0.0, 1.0]), np.full((1, 2), C("Open pit"), np.uint8))
    assert keep.tolist() == [[True, False]]
    bare = sample_mask(_features(), np.full((1, 2), C("Bare soil"), np.uint8))
    assert bare.all()  # no published threshold for bare soil


def test_forest_json_matches_sklearn_and_is_reproducible(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, len(FEATURES))).astype(np.float32)
    y = np.where(x[:, 0] + 0.5 * x[:, 10] > 0, C("Open pit"), C("Vegetation")).astype(np.uint8)
    y[x[:, 3] > 1.2] = C("Water body")
    model = train_forest(x, y, features=FEATURES, seed=5)
    assert len(model.trees) == 100 and model.meta["max_features"] == 4
    ref = RandomForestClassifier(n_estimators=100, max_features=4, random_state=5, n_jobs=1).fit(x, y)
    xt = rng.normal(size=(2000, len(FEATURES))).astype(np.float32)
    expected = ref.predict(xt)
    assert len(np.unique(expected)) == 3
    np.testing.assert_array_equal(model.predict(xt), expected)
    a, b = save_forest(model, tmp_path / "a.json"), save_forest(train_forest(x, y, features=FEATURES, seed=5),
                                                                tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
    np.testing.assert_array_equal(load_forest(a).predict(xt), expected)


def test_corrupt_forest_is_refused(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, len(FEATURES))).astype(np.float32)
    y = np.where(x[:, 0] > 0, C("Open pit"), C("Vegetation")).astype(np.uint8)
    path = save_forest(train_forest(x, y, features=FEATURES, seed=0), tmp_path / "m.json")
    doc = json.loads(path.read_text())
    doc["trees"][0]["left"][0] = 0  # a loop back to the root would never end
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="inconsistent tree arrays"):
        load_forest(path)


def test_saved_forest_predicts_what_was_trained_on_ties(tmp_path):
    """Coarse features make impure leaves whose class shares tie closely: rounding the leaf values to 6 decimals
    when saving changed a prediction (1 in 20,000) and the probabilities (3e-8). Saved and loaded, the model gives
    the same probabilities exactly, and the sklearn forest's classes."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(3000, len(FEATURES))).astype(np.float32)
    y = rng.choice([1, 2, 3, 5, 6, 7], size=3000)
    model = train_forest(x, y, features=FEATURES, n_trees=100, max_features=4, seed=0)
    back = load_forest(save_forest(model, tmp_path / "m.json"))
    xt = rng.integers(0, 3, size=(20000, len(FEATURES))).astype(np.float32)
    assert not np.isclose(np.round(model.trees[0].value, 6), model.trees[0].value, rtol=0, atol=1e-12).all()
    np.testing.assert_array_equal(back.predict_proba(xt), model.predict_proba(xt))
    ref = RandomForestClassifier(n_estimators=100, max_features=4, random_state=0, n_jobs=1).fit(x, y)
    np.testing.assert_array_equal(back.predict(xt), ref.predict(xt))


@pytest.mark.parametrize(("change", "problem"), [
    ({"classes": None}, "'classes' must be a list of at least 2 integer class codes"),
    ({"trees": None}, "'trees' must be a list of tree objects"),
    ({"features": 3}, "'features' must be a non-empty list of feature names"),
    ({"classes": [1, 300]}, "'classes' [1, 300] must be distinct codes of the mining_lulc legend"),
    ({"legend": {"classes": []}}, "legend unreadable"),
])
def test_malformed_forest_fields_are_one_line(tmp_path, change, problem):
    """The fields every LULC model carries are checked as the LightGBM model's are (a KeyError or a uint8
    overflow inside every site before)."""
    x = np.random.default_rng(0).normal(size=(200, len(FEATURES))).astype(np.float32)
    y = np.where(x[:, 0] > 0, C("Open pit"), C("Vegetation")).astype(np.uint8)
    path = save_forest(train_forest(x, y, features=FEATURES, seed=0), tmp_path / "m.json")
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, **change}))
    with pytest.raises(InputError) as err:
        load_forest(path)
    assert str(err.value).startswith(f"{path}: malformed model file: ") and problem in str(err.value)


def test_preset_config_values():
    from minescape.lulc.pipeline import make_config

    cfg = make_config(PRESET_CONFIG)
    assert cfg["majority"] == 7 and cfg["mmu_m2"] == 0 and cfg["composite"] == "median"
    with pytest.raises(ConfigError, match="default, published"):
        make_config({"method": "paper"})
    with pytest.raises(ConfigError, match="last, first"):
        make_config({"dcm_map": "newest"})


def test_preset_vs_default_on_held_out_site(small_region, tmp_path):
    """Both methods trained on S01's truth, scored on S02, through the DLR tile path."""
    from minescape.lulc.method_comparison import compare_methods, comparison_table

    r = small_region
    assert r.dcm is not None and any(r.dcm.glob("TDM1_DCM__10_*_LAST1622_V01_C.zip"))
    res = compare_methods(r.sites, [r.scene_dir], r.dcm, r.truth_lulc, tmp_path, train_ids=["S01"],
                          test_ids=["S02"], seed=0, per_class=800)
    for m in ("default", "published"):
        assert res[m]["n"] > 1000 and res[m]["failed"] == {}
    assert res["default"]["overall_accuracy"] >= 0.9
    assert res["published"]["overall_accuracy"] >= 0.75 and res["published"]["kappa"] >= 0.6
    # the published NDBI > 0.28 threshold drops every synthetic facility sample (their NDBI is ~0.06)
    assert "Facility" not in res["published"]["samples"] and "Facility" in res["default"]["samples"]
    table = comparison_table(res)
    assert table.count("\n") >= 3 + len(MINING_LULC.names) - 1 and "kappa" in table

"""Validation: boundary F1, OA per unit, area comparison, census agreement, written outputs."""

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from minescape.errors import InputError
from minescape.geo.raster import Raster, write_raster
from minescape.legend import WORLDCOVER
from minescape.maps.boundary import boundary_f1
from minescape.maps.validate import (
    census_agreement,
    compare_areas,
    map_class_areas,
    oa_per_unit,
    validate_sample,
    write_validation,
)
from minescape.sampling import read_reference_at, stratified_points


def test_boundary_f1_tolerance():
    truth = np.zeros((40, 40), dtype=np.uint8)
    truth[:, 20:] = 1
    shifted = np.zeros_like(truth)
    shifted[:, 22:] = 1  # the edge moved by 2 px: boundary pixels in columns 21-22 instead of 19-20
    assert boundary_f1(truth, truth)["f1"] == 1.0
    assert boundary_f1(truth, shifted, tolerance=0)["f1"] == 0.0
    assert boundary_f1(truth, shifted, tolerance=1)["f1"] == pytest.approx(0.5)  # one of two edge columns
    assert boundary_f1(truth, shifted, tolerance=2)["f1"] == 1.0
    blob = truth.copy()
    blob[5:8, 5:8] = 1  # a spurious object: precision drops, recall stays
    r = boundary_f1(truth, blob, tolerance=1)
    assert r["recall"] == 1.0 and r["precision"] < 1.0


def _maps(tmp_path):
    rng = np.random.default_rng(2)
    ref = rng.choice([10, 30, 80], size=(120, 150), p=[0.5, 0.3, 0.2]).astype(np.uint8)
    ref = np.kron(ref[::5, ::5], np.ones((5, 5), np.uint8))[:120, :150]
    mapped = ref.copy()
    flip = rng.random(ref.shape) < 0.15
    mapped[flip] = 30
    t = Affine(10, 0, 500000, 0, -10, 4100000)
    m = write_raster(Raster(mapped, CRS.from_epsg(32633), t, 0), tmp_path / "map.tif", legend=WORLDCOVER)
    r = write_raster(Raster(ref, CRS.from_epsg(32633), t, 0), tmp_path / "ref.tif", legend=WORLDCOVER)
    return m, r


def test_sampled_estimates_bracket_the_census(tmp_path):
    m, r = _maps(tmp_path)
    census = census_agreement(m, r, WORLDCOVER)
    pts, _ = stratified_points(m, 300, WORLDCOVER, allocation="olofsson", min_per_class=60, seed=0)
    pts["ref_code"] = read_reference_at(pts, r)
    areas = map_class_areas(m, WORLDCOVER)
    assert areas.sum() == pytest.approx(120 * 150 * 100 / 1e6 / 0.9996**2, rel=3e-3)
    v = validate_sample(pts, WORLDCOVER, areas)
    e = v.estimates
    assert abs(e.overall_accuracy - census.overall_accuracy) < e.overall_accuracy_ci
    ref_px = census.matrix.sum(axis=1)  # reference pixels per class
    for k, code in enumerate(WORLDCOVER.codes):
        if ref_px[k]:
            assert abs(e.area[k] - ref_px[k] * areas.sum() / census.n) < e.area_ci[k] + 1e-9, code
    units = gpd.GeoDataFrame({"unit": ["west", "east", "far"]},
                             geometry=[shapely.box(500000, 4098800, 500750, 4100000),
                                       shapely.box(500750, 4098800, 501500, 4100000),
                                       shapely.box(600000, 4000000, 600100, 4000100)], crs=32633)
    per = oa_per_unit(pts, units)
    assert per["n"].tolist()[:2] == [int((pts.geometry.x < 500750).sum()), int((pts.geometry.x >= 500750).sum())]
    assert per["n"].iloc[2] == 0 and np.isnan(per["oa"].iloc[2])
    assert ((per["oa_low"] <= per["oa"]) & (per["oa"] <= per["oa_high"]))[:2].all()
    written = write_validation(v, WORLDCOVER, tmp_path / "val", per_unit=per)
    assert {p.name for p in written} == {"validation.json", "estimates.csv", "confusion_matrix.png",
                                         "oa_per_unit.csv", "oa_per_unit.png"}
    doc = json.loads((tmp_path / "val" / "validation.json").read_text())
    assert doc["sample"]["n"] == 300 and doc["area_weighted"]["overall_accuracy_ci95"] > 0


def test_compare_areas():
    mapped = pd.DataFrame({"unit": ["a", "b"], "Tree cover": [10.0, 4.0], "Cropland": [1.0, 0.0]})
    ref = pd.DataFrame({"unit": ["a", "b"], "Tree cover": [8.0, 4.0], "Cropland": [2.0, 0.0], "other": [1, 1]})
    t = compare_areas(mapped, ref, WORLDCOVER).set_index(["unit", "class"])
    assert t.loc[("a", "Tree cover"), "relative_difference"] == pytest.approx(0.25)
    assert t.loc[("a", "Cropland"), "relative_difference"] == pytest.approx(-0.5)
    assert np.isnan(t.loc[("b", "Cropland"), "relative_difference"])
    with pytest.raises(InputError, match="no 'unit' column"):
        compare_areas(mapped.rename(columns={"unit": "name"}), ref, WORLDCOVER)


def test_a_point_on_a_shared_border_counts_once():
    """Three points, one on the border of two units: it counts in the first unit of the layer (with 'within' it
    counted in none), and the units hold three points together."""
    pts = gpd.GeoDataFrame({"map_code": [10, 10, 30], "ref_code": [10, 30, 30]},
                           geometry=[shapely.Point(5, 5), shapely.Point(10, 5), shapely.Point(15, 5)], crs=32633)
    units = gpd.GeoDataFrame({"unit": ["west", "east"]},
                             geometry=[shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)], crs=32633)
    per = oa_per_unit(pts, units)
    assert per["n"].tolist() == [2, 1] and per["oa"].tolist() == [0.5, 1.0]


def test_area_tables_with_repeated_units_or_text_are_one_line():
    """A reference table listing a unit twice, or an area written '1,100.5': one line naming the table, the unit
    and the value (pandas' non-unique index error and a str - float TypeError before)."""
    mapped = pd.DataFrame({"unit": ["a", "b"], "Tree cover": [10.0, 4.0]})
    twice = pd.DataFrame({"unit": ["a", "a"], "Tree cover": [8.0, 9.0]})
    with pytest.raises(InputError, match=r"reference area table lists unit \['a'\] more than once"):
        compare_areas(mapped, twice, WORLDCOVER)
    text = pd.DataFrame({"unit": ["a", "b"], "Tree cover": ["1,100.5", "4"]})
    with pytest.raises(InputError, match=r"reference area table: '1,100.5' \(unit a, Tree cover\) is not a number"):
        compare_areas(mapped, text, WORLDCOVER)
    ok = compare_areas(mapped, pd.DataFrame({"unit": ["a", "b"], "Tree cover": ["8", 4]}), WORLDCOVER)
    assert ok["relative_difference"].tolist() == pytest.approx([0.25, 0.0])


def test_census_needs_one_grid_crs_included(tmp_path):
    """Two maps with one transform in UTM 33N and 34N lie 600 km apart: comparing them pixel by pixel gave OA 1.0;
    now one line saying the grids differ."""
    from minescape.maps.validate import census_agreement

    data = np.full((1, 10, 12), 10, np.uint8)
    transform = Affine(10, 0, 500000, 0, -10, 4100000)
    a = write_raster(Raster(data, CRS.from_epsg(32633), transform, 0), tmp_path / "a.tif", legend=WORLDCOVER)
    b = write_raster(Raster(data, CRS.from_epsg(32634), transform, 0), tmp_path / "b.tif", legend=WORLDCOVER)
    assert census_agreement(a, a, WORLDCOVER).overall_accuracy == 1.0
    with pytest.raises(InputError, match=r"b.tif: reference grid .*EPSG:32634.* differs from the map's"):
        census_agreement(a, b, WORLDCOVER)

"""The per-site chain on the small synthetic region: output contract, accuracy floors (split by site),
bad inputs (each a one-line reason, the run goes on), reproducibility and the windowed whole-scene path."""

from __future__ import annotations

import json
import shutil
import warnings

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window

from minescape.geo.raster import read_raster
from minescape.legend import MINING_LULC
from minescape.lulc.evaluate import evaluate_maps
from minescape.lulc.model import save_model
from minescape.lulc.pipeline import classify_scene, classify_sites, train_from_sites
from minescape.sites import read_sites, site_year

QUIET = {"quicklook": False}


@pytest.fixture(scope="module")
def rules_run(small_region, tmp_path_factory):
    out = tmp_path_factory.mktemp("rules")
    summary = classify_sites(small_region.sites, [small_region.scene_dir], small_region.dcm_dh,
                             small_region.dcm_year, out)
    return out, summary


@pytest.fixture(scope="module")
def trained(small_region, tmp_path_factory):
    """LightGBM trained on the truth of S01 only (S02 held out)."""
    out = tmp_path_factory.mktemp("model")
    res = train_from_sites(small_region.sites, [small_region.scene_dir], small_region.dcm_dh, small_region.dcm_year,
                           labels=small_region.truth_lulc, site_ids=["S01"], seed=3)
    return save_model(res.model, out / "model.json"), res


def test_class_map_contract(rules_run, small_region):
    out, summary = rules_run
    assert summary.ok and sorted(summary.results) == ["S01", "S02"]
    sites, _ = read_sites(small_region.sites)
    for site in sites:
        path = out / "maps" / f"{site.id}.tif"
        with rasterio.open(path) as src:
            tags = src.tags()
            assert src.dtypes[0] == "uint8" and src.nodata == 0 and src.crs == site.crs
            assert src.res == (10.0, 10.0)
            assert tags["SITE_ID"] == site.id and tags["YEAR_RULE"] in ("centroid", "nearest-valid")
            assert int(tags["YEAR"]) == site_year(site, small_region.dcm_year).year
            assert src.colormap(1)[1][:3] == MINING_LULC.by_code(1).color
            data = src.read(1)
        inside = site.mask()
        assert set(np.unique(data[~inside])) == {0}
        assert set(np.unique(data[inside])) <= set(range(1, 8)) | {0}
        assert (data[inside] > 0).mean() > 0.97  # only a few cloud/void pixels are unmapped
        assert (out / "report" / "quicklooks" / f"{site.id}.png").stat().st_size > 10_000
    rows = json.loads((out / "sites.json").read_text())
    assert {r["id"]: r["status"] for r in rows} == {"S01": "ok", "S02": "ok"}
    assert all(r["year"] in (2018, 2019, 2020) for r in rows)


def test_accuracy_floors_split_by_site(rules_run, trained, small_region, tmp_path):
    """Scored on S02 only (the model never saw it): model OA >= 0.90, kappa >= 0.85; rules OA >= 0.75."""
    out, _ = rules_run
    model_path, res = trained
    assert res.sites_used == ["S01"]
    classify_sites(small_region.sites, [small_region.scene_dir], small_region.dcm_dh, small_region.dcm_year,
                   tmp_path, classifier=model_path, site_ids=["S02"], config=QUIET)
    rules = evaluate_maps(out, small_region.truth_lulc, site_ids=["S02"], out_dir=tmp_path / "rules_report")
    model = evaluate_maps(tmp_path, small_region.truth_lulc, site_ids=["S02"], out_dir=tmp_path / "report")
    assert rules["overall_accuracy"] >= 0.75
    assert model["overall_accuracy"] >= 0.90 and model["kappa"] >= 0.85
    assert model["n"] > 2000 and model["sites"] == ["S02"]
    assert (tmp_path / "report" / "confusion_matrix.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["kappa"] == pytest.approx(model["kappa"])
    assert set(saved["f1"]) == set(MINING_LULC.names)


def test_weak_labels_model(small_region, tmp_path):
    res = train_from_sites(small_region.sites, [small_region.scene_dir], small_region.dcm_dh, small_region.dcm_year,
                           site_ids=["S01"], seed=1)
    assert "weak" in res.model.meta["labels"]
    path = save_model(res.model, tmp_path / "weak.json")
    classify_sites(small_region.sites, [small_region.scene_dir], small_region.dcm_dh, small_region.dcm_year,
                   tmp_path / "run", classifier=path, site_ids=["S02"], config=QUIET)
    score = evaluate_maps(tmp_path / "run", small_region.truth_lulc, site_ids=["S02"])
    assert score["overall_accuracy"] >= 0.85


def test_reproducible_bytes(small_region, tmp_path, trained):
    model_path, _ = trained
    for name in ("a", "b"):
        classify_sites(small_region.sites, [small_region.scene_dir], small_region.dcm_dh, small_region.dcm_year,
                       tmp_path / name, classifier=model_path, config=QUIET)
    for sid in ("S01", "S02"):
        assert (tmp_path / "a" / "maps" / f"{sid}.tif").read_bytes() == \
            (tmp_path / "b" / "maps" / f"{sid}.tif").read_bytes()
    # a constant writer would pass the loop above: the two sites' maps differ and hold several classes
    s01, s02 = (read_raster(tmp_path / "a" / "maps" / f"{sid}.tif").data[0] for sid in ("S01", "S02"))
    assert s01.shape != s02.shape or not np.array_equal(s01, s02)
    assert all(len(np.unique(m[m > 0])) >= 3 for m in (s01, s02))


def _crop_scene(src_path, dst_path, window: Window):
    with rasterio.open(src_path) as src:
        profile = src.profile.copy()
        profile.update(width=int(window.width), height=int(window.height),
                       transform=src.window_transform(window), tiled=False)
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        data = src.read(window=window)
        tags = src.tags()
        desc = src.descriptions
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
        for i, d in enumerate(desc, 1):
            dst.set_band_description(i, d)
    return dst_path


def _scene_of(region, year):
    return next(p for p in region.scenes if f"_{year}07" in p.name)


def test_bad_inputs_reported_run_goes_on(small_region, tmp_path):
    """A site outside all scenes, an empty and an unrepairable geometry: one-line reasons, others classified."""
    sites, _ = read_sites(small_region.sites)
    years = {s.id: site_year(s, small_region.dcm_year).year for s in sites}
    scenes = tmp_path / "scenes"
    with rasterio.open(small_region.scenes[0]) as src:
        w = src.width
    left = Window(0, 0, w // 2, 220)
    for year in set(years.values()):
        src = _scene_of(small_region, year)
        _crop_scene(src, scenes / src.name, left)  # only the left half: S02 (right) is outside every scene
    gdf = gpd.read_file(small_region.sites)
    extra = gpd.GeoDataFrame({"site_id": ["EMPTY", "FLAT"], "name": ["e", "f"]},
                             geometry=[shapely.Polygon(), shapely.Polygon([(6e5, 7.4995e6), (6.001e5, 7.4995e6),
                                                                           (6.002e5, 7.4995e6)])], crs=gdf.crs)
    bad_sites = tmp_path / "sites.gpkg"
    gpd.GeoDataFrame(list(gdf.to_dict("records")) + list(extra.to_dict("records")), crs=gdf.crs).to_file(bad_sites)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = classify_sites(bad_sites, [scenes], small_region.dcm_dh, small_region.dcm_year, tmp_path / "out",
                                 config=QUIET)
    assert "S01" in summary.results
    assert "outside all" in summary.failed["S02"]
    dropped = [k for k in summary.failed if k.startswith("feature ")]
    assert len(dropped) == 2
    for reason in summary.failed.values():
        assert "\n" not in reason
    rows = {r["id"]: r for r in json.loads((tmp_path / "out" / "sites.json").read_text())}
    assert rows["S01"]["status"] == "ok" and rows["S02"]["status"] == "failed"
    assert sum(r["status"] == "failed" for r in rows.values()) == 3


def test_all_nodata_window_and_missing_dcm(small_region, tmp_path):
    sites, _ = read_sites(small_region.sites)
    s2_year = site_year(sites[1], small_region.dcm_year).year
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for p in small_region.scenes:
        shutil.copy(p, scenes / p.name)
    target = scenes / _scene_of(small_region, s2_year).name
    with rasterio.open(target, "r+") as dst:
        data = dst.read()
        data[:, :, data.shape[2] // 2:] = 0  # the right half (S02) is nodata
        dst.write(data)
    summary = classify_sites(small_region.sites, [scenes], small_region.dcm_dh, small_region.dcm_year,
                             tmp_path / "out", config=QUIET)
    assert "nodata" in summary.failed["S02"] and "S01" in summary.results
    summary = classify_sites(small_region.sites, [small_region.scene_dir], tmp_path / "missing.tif",
                             small_region.dcm_year, tmp_path / "out2", config=QUIET)
    assert set(summary.failed) == {"S01", "S02"}
    assert all("missing.tif" in r and "not found" in r for r in summary.failed.values())


def test_scene_in_another_crs_is_reprojected(small_region, tmp_path, rules_run):
    out, summary = rules_run
    year = summary.results["S01"]["year"]
    src_path = _scene_of(small_region, year)
    dst_crs = "EPSG:32751"  # the neighbouring UTM zone
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds,
                                                               resolution=10)
        profile = src.profile.copy()
        profile.update(crs=dst_crs, transform=transform, width=width, height=height)
        dst_path = tmp_path / "scenes" / src_path.name
        dst_path.parent.mkdir()
        with rasterio.open(dst_path, "w", **profile) as dst:
            for i in range(1, src.count + 1):
                reproject(rasterio.band(src, i), rasterio.band(dst, i), resampling=rasterio.enums.Resampling.nearest)
            dst.update_tags(**src.tags())
            for i, d in enumerate(src.descriptions, 1):
                dst.set_band_description(i, d)
    res = classify_sites(small_region.sites, [tmp_path / "scenes"], small_region.dcm_dh, small_region.dcm_year,
                         tmp_path / "out", site_ids=["S01"], config=QUIET)
    assert res.ok
    a = read_raster(out / "maps" / "S01.tif").data[0]
    b = read_raster(tmp_path / "out" / "maps" / "S01.tif").data[0]
    inside = (a > 0) & (b > 0)
    assert inside.sum() > 0.9 * (a > 0).sum()
    assert (a[inside] == b[inside]).mean() > 0.85


def test_windowed_scene_matches_whole(small_region, tmp_path):
    scene = _scene_of(small_region, 2019)
    whole = classify_scene(scene, small_region.dcm_dh, tmp_path / "whole.tif", tile=1024, progress=False)
    tiled = classify_scene(scene, small_region.dcm_dh, tmp_path / "tiled.tif", tile=64, progress=False)
    assert tiled["tiles"] > whole["tiles"] == 1
    a = read_raster(tmp_path / "whole.tif").data[0]
    b = read_raster(tmp_path / "tiled.tif").data[0]
    assert a.shape == (220, 260) and (a > 0).mean() > 0.95
    assert (a == b).mean() > 0.995


def test_train_from_points_and_polygons_evaluate_on_points(small_region, tmp_path):
    """Labels as class-named points (EPSG:4326) and as polygons with codes; reference as points."""
    import rasterio.features

    truth = read_raster(small_region.truth_lulc)
    sites, _ = read_sites(small_region.sites)
    rng = np.random.default_rng(0)
    grid = truth.grid
    pts = {}
    for site in sites:
        inside = np.argwhere(site.mask(grid) & (truth.data[0] > 0))
        pick = inside[rng.choice(len(inside), 1500, replace=False)]
        xs, ys = grid.xy(pick[:, 0], pick[:, 1])
        names = [MINING_LULC.name_of(int(c)) for c in truth.data[0][pick[:, 0], pick[:, 1]]]
        pts[site.id] = gpd.GeoDataFrame({"class": names}, geometry=gpd.points_from_xy(xs, ys), crs=grid.crs)
    p_train = tmp_path / "train_points.geojson"
    pts["S01"].to_crs(4326).to_file(p_train)
    p_test = tmp_path / "test_points.gpkg"
    pts["S02"].to_file(p_test)
    res = train_from_sites(small_region.sites, [small_region.scene_dir], small_region.dcm_dh, small_region.dcm_year,
                           labels=p_train, site_ids=["S01"])
    model = save_model(res.model, tmp_path / "points.json")
    classify_sites(small_region.sites, [small_region.scene_dir], small_region.dcm_dh, small_region.dcm_year,
                   tmp_path / "run", classifier=model, site_ids=["S02"], config=QUIET)
    score = evaluate_maps(tmp_path / "run", p_test, site_ids=["S02"])
    assert 1200 < score["n"] <= 1500 and score["overall_accuracy"] >= 0.85
    # polygons with integer codes in a field named 'code'
    s1 = sites[0].mask(grid)
    shapes = [(shapely.geometry.shape(g), int(v)) for g, v in rasterio.features.shapes(
        truth.data[0], mask=s1 & (truth.data[0] > 0), transform=grid.transform)]
    polys = gpd.GeoDataFrame({"code": [v for _, v in shapes]}, geometry=[g for g, _ in shapes], crs=grid.crs)
    p_poly = tmp_path / "polys.gpkg"
    polys.to_file(p_poly)
    res = train_from_sites(small_region.sites, [small_region.scene_dir], small_region.dcm_dh, small_region.dcm_year,
                           labels=p_poly, site_ids=["S01"])
    assert set(res.model.meta["samples"]) >= {"Open pit", "Vegetation", "Bare soil"}


def test_resume_with_run_dir(small_region, tmp_path):
    from minescape.runner import Executor

    ex = Executor(mode="inprocess", run_dir=tmp_path / "state")
    args = (small_region.sites, [small_region.scene_dir], small_region.dcm_dh, small_region.dcm_year, tmp_path / "o")
    first = classify_sites(*args, executor=ex, config=QUIET)
    assert first.ok and not first.skipped
    (tmp_path / "o" / "maps" / "S02.tif").unlink()  # a lost output is redone, the other site is skipped
    again = classify_sites(*args, executor=ex, config=QUIET)
    assert again.skipped == ["S01"] and (tmp_path / "o" / "maps" / "S02.tif").exists()
    rows = json.loads((tmp_path / "o" / "sites.json").read_text())
    assert [r["status"] for r in rows] == ["ok", "ok"]


def test_long_and_reserved_ids_get_short_hashed_stems(tmp_path):
    """A file-name-safe id too long for a file name keeps a readable prefix plus the hash suffix unsafe ids get
    (two long ids with one prefix never share a stem); Windows' reserved device names (also with an extension)
    get the hashed form. Each stem is a file this file system can create."""
    from minescape.lulc.pipeline import site_stem

    long_a, long_b = "L" * 300, "L" * 299 + "M"
    stems = [site_stem(long_a), site_stem(long_b)]
    assert stems[0] != stems[1]
    for stem in stems:
        assert stem.startswith("L" * 40) and len(stem) <= 120 and stem == site_stem(stem)
        (tmp_path / f"{stem}.tif").write_bytes(b"")  # 'File name too long' for the id itself
    for name in ("CON", "prn", "AUX", "NUL", "COM1", "lpt9", "NUL.txt", "con.tar.gz"):
        stem = site_stem(name)
        assert stem != name and stem.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT9"}, stem
        assert stem.lower().startswith(name.split(".")[0].lower()), stem
    assert site_stem("S01") == "S01" and site_stem("CONSOLE") == "CONSOLE" and site_stem("COM10") == "COM10"
    assert site_stem("a" * 120) == "a" * 120  # short enough: as it is

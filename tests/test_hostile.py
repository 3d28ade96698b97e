"""Hostile and careless use (issue 17): files that would run code, outputs that cannot be written, sizes that
cannot be held, inputs that would leave stale or missing results. Real files, real file systems, no mocks;
each test first proves that what it checks is there (a live payload, a real full disk)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hostile import one_error_line, plant_pickle, plant_torch, small_fs
from minescape.cli.app import app


def _cli(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def _lulc_args(region, out: Path, *extra, sites: Path | None = None) -> list:
    args = ["lulc", "classify", sites or region.sites, out, "--dcm", region.dcm_dh, "--dcm-year", region.dcm_year,
            "--no-quicklook"]
    for s in region.scenes:
        args += ["-s", s]
    return args + list(extra)


# ------------------------------------------------------------------------- 1. no code from exchanged files

@pytest.fixture
def image(tmp_path, utm_raster) -> Path:
    """A small 3-band GeoTIFF (UTM 33N)."""
    from minescape.geo.raster import write_raster

    return write_raster(utm_raster, tmp_path / "image.tif")


def test_map_checkpoint_pickle_never_runs(image, tmp_path):
    """A checkpoint whose pickle would create a marker: ``map predict`` refuses it in one line, no marker."""
    marker = tmp_path / "PWNED"
    for path in (plant_torch(tmp_path / "evil.pt", marker, {"format": "minescape-unet-1"}),
                 plant_pickle(tmp_path / "bare.pt", marker)):
        res = _cli("map", "predict", image, path, tmp_path / "out.tif")
        assert res.exit_code == 2, res.output
        line = one_error_line(res.output)
        assert str(path) in line and "checkpoint" in line
        assert not marker.exists()
        assert not (tmp_path / "out.tif").exists()


def test_lulc_model_pickle_never_runs(small_region, tmp_path):
    """A pickle given as the LULC model JSON, and a JSON model whose booster field holds pickle bytes."""
    from hostile import pickle_bytes

    marker = tmp_path / "PWNED"
    bare = plant_pickle(tmp_path / "model.json", marker)
    inner = tmp_path / "inner.json"
    inner.write_text(json.dumps({"format": "minescape-lulc-lightgbm", "version": 1, "features": ["NDVI"],
                                 "classes": [1, 2], "normalisation": {"method": "zscore", "mean": [0], "std": [1]},
                                 "legend": {}, "booster": pickle_bytes(marker).decode("latin-1")}))
    for path, phrase in ((bare, "not valid JSON"), (inner, "malformed model file")):
        res = _cli(*_lulc_args(small_region, tmp_path / "out", "--model", path))
        assert res.exit_code == 2, res.output
        line = one_error_line(res.output)
        assert str(path) in line and phrase in line, line
        assert not marker.exists()
        assert not (tmp_path / "out" / "maps").exists()


# --------------------------------------------------------------------------------- 2. nothing lost or stale

def _sites_with_ids(region, tmp_path: Path, ids: list[str], name: str = "sites.gpkg") -> Path:
    """The region's site polygons (repeated as needed) under the given ids."""
    import geopandas as gpd

    from minescape.geo.vector import write_gpkg

    src = gpd.read_file(region.sites)
    rows = src.iloc[[i % len(src) for i in range(len(ids))]].copy()
    rows["site_id"] = ids
    return write_gpkg(rows.reset_index(drop=True), tmp_path / name)


def test_site_ids_that_collide_once_file_safe_keep_one_map_each(small_region, tmp_path):
    ids = ["a/b", "a_b", "矿区一", "矿区二"]  # a/b and a_b; two CJK ids whose safe names are both "_"
    from minescape.lulc.pipeline import safe_name

    assert safe_name("a/b") == safe_name("a_b") and safe_name(ids[2]) == safe_name(ids[3])  # they do collide
    sites = _sites_with_ids(small_region, tmp_path, ids)
    out = tmp_path / "out"
    res = _cli(*_lulc_args(small_region, out, sites=sites))
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "sites.json").read_text())
    assert sorted(r["id"] for r in rows) == sorted(ids) and all(r["status"] == "ok" for r in rows)
    maps = sorted((out / "maps").glob("*.tif"))
    assert len(maps) == 4 == len({r["map"] for r in rows})
    assert {(out / r["map"]).name for r in rows} == {p.name for p in maps}
    assert "a_b.tif" in {p.name for p in maps}  # a safe id keeps its own name
    # names that differ only in case would be one file on a case-insensitive disk: refused before any unit runs
    clash = _sites_with_ids(small_region, tmp_path, ["S1", "s1"], "clash.gpkg")
    res = _cli(*_lulc_args(small_region, tmp_path / "clash", sites=clash))
    assert res.exit_code == 2
    assert "'S1' and 's1' would write the same file" in one_error_line(res.output)
    assert not (tmp_path / "clash" / "maps").exists()


def test_rerun_after_sites_changed_keeps_no_old_map_and_publish_follows_sites_json(small_region, tmp_path):
    out = tmp_path / "out"
    two = _sites_with_ids(small_region, tmp_path, ["S01", "S02"], "two.gpkg")
    assert _cli(*_lulc_args(small_region, out, sites=two)).exit_code == 0
    assert sorted(p.name for p in (out / "maps").glob("*.tif")) == ["S01.tif", "S02.tif"]
    one = _sites_with_ids(small_region, tmp_path, ["S01"], "one.gpkg")
    assert _cli(*_lulc_args(small_region, out, sites=one)).exit_code == 0
    assert sorted(p.name for p in (out / "maps").glob("*.tif")) == ["S01.tif"]  # S02's old map removed
    res = _cli("publish", out / "maps", tmp_path / "release")
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "release" / "manifest.json").read_text())
    assert manifest["sites"] == 1
    # a map the run did not produce (copied in by hand) makes publish refuse: sites.json and maps/ disagree
    (out / "maps" / "S09.tif").write_bytes((out / "maps" / "S01.tif").read_bytes())
    res = _cli("publish", out / "maps", tmp_path / "release2")
    assert res.exit_code == 2
    assert "not listed in" in one_error_line(res.output) and "S09.tif" in res.output
    assert not (tmp_path / "release2").exists()


def test_output_folder_that_is_the_scene_folder_reruns_safely(small_region, tmp_path):
    import shutil

    scenes = tmp_path / "scenes"
    shutil.copytree(small_region.scenes[0].parent, scenes)
    before = sorted(p.name for p in scenes.iterdir())
    args = ["lulc", "classify", small_region.sites, scenes, "--dcm", small_region.dcm_dh, "--dcm-year",
            small_region.dcm_year, "-s", scenes]
    first = _cli(*args)
    assert first.exit_code == 0, first.output
    maps = {p.name: p.read_bytes() for p in (scenes / "maps").glob("*.tif")}
    assert len(maps) == 2
    second = _cli(*args)  # its own sites.json, maps/ and report/ are not read as scenes
    assert second.exit_code == 0, second.output
    assert {p.name: p.read_bytes() for p in (scenes / "maps").glob("*.tif")} == maps
    assert set(before) <= {p.name for p in scenes.iterdir()}  # no scene removed


def test_resume_verifies_a_finished_units_output_before_skipping_it(small_region, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    assert _cli(*_lulc_args(small_region, out, "--run-dir", run)).exit_code == 0
    s01, s02 = out / "maps" / "S01.tif", out / "maps" / "S02.tif"
    good, mtime2 = s01.read_bytes(), s02.stat().st_mtime_ns
    s01.write_bytes(good[: len(good) // 2])  # truncated after the run finished
    res = _cli(*_lulc_args(small_region, out, "--run-dir", run))
    assert res.exit_code == 0, res.output
    assert s01.read_bytes() == good  # redone
    assert s02.stat().st_mtime_ns == mtime2  # the intact unit was skipped
    # same size, other bytes: the checksum catches it too
    s01.write_bytes(bytes(len(good)))
    assert _cli(*_lulc_args(small_region, out, "--run-dir", run)).exit_code == 0
    assert s01.read_bytes() == good

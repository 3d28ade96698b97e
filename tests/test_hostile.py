"""Hostile and careless use (issue 17): files that would run code, outputs that cannot be written, sizes that
cannot be held, inputs that would leave stale or missing results. Real files, real file systems, no mocks;
each test first proves that what it checks is there (a live payload, a real full disk)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hostile import one_error_line, plant_pickle, plant_torch, small_fs
from typer.testing import CliRunner

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


def test_map_products_rerun_after_units_changed_keeps_no_old_tile(small_region, tmp_path):
    import geopandas as gpd

    from minescape.geo.vector import write_gpkg

    admin = gpd.read_file(small_region.sites).assign(region="R", province=["P", "Q"], city=["A", "B"])
    two, one = write_gpkg(admin, tmp_path / "two.gpkg"), write_gpkg(admin.iloc[:1], tmp_path / "one.gpkg")
    out = tmp_path / "prod"
    for admin_file, tiles, zips in ((two, ["R_P_A.tif", "R_Q_B.tif"], ["R_P.zip", "R_Q.zip"]),
                                    (one, ["R_P_A.tif"], ["R_P.zip"])):
        res = _cli("map", "products", small_region.truth_lulc, admin_file, out, "--legend", "mining_lulc")
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in (out / "tiles").iterdir()) == tiles
        assert sorted(p.name for p in (out / "zips").iterdir()) == zips


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


# ----------------------------------------------------------------------------- 3. wrong output never exit 0

@pytest.fixture(scope="module")
def classified(small_region, tmp_path_factory) -> Path:
    """A lulc classify output folder of the small region (maps/ and sites.json)."""
    out = tmp_path_factory.mktemp("classified") / "out"
    res = _cli(*_lulc_args(small_region, out))
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize("crs, kind", [("EPSG:4978", "geocentric"), ("EPSG:4979", "3D"),
                                       ("EPSG:9518", "compound"), ("EPSG:5773", "vertical")])
def test_publish_refuses_a_crs_that_is_not_2d_geographic_or_projected(classified, tmp_path, crs, kind):
    res = _cli("publish", classified / "maps", tmp_path / "rel", "--crs", crs)
    assert res.exit_code == 2
    line = one_error_line(res.output)
    assert f"is {kind}" in line and "EPSG:4326" in line and "projected" in line
    assert not (tmp_path / "rel").exists()
    ok = _cli("publish", classified / "maps", tmp_path / "rel", "--crs", "EPSG:32750")  # the valid kind works
    assert ok.exit_code == 0, ok.output


@pytest.fixture(scope="module")
def lulc_model(small_region, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.json"
    res = _cli("lulc", "train", small_region.sites, path, "-s", small_region.scenes[0].parent, "--dcm",
               small_region.dcm_dh, "--dcm-year", small_region.dcm_year, "--rounds", "3")
    assert res.exit_code == 0, res.output
    return path


def _edited(model: Path, tmp_path: Path, name: str, edit) -> Path:
    doc = json.loads(model.read_text())
    edit(doc)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("name, edit, phrase", [
    ("zero_std.json", lambda d: d["normalisation"]["std"].__setitem__(3, 0.0), "standard deviation of features"),
    ("swapped.json", lambda d: d["features"].insert(0, d["features"].pop(1)), "do not match the booster"),
    ("short.json", lambda d: d["features"].pop(), "normalisation mean has"),
    ("unknown.json", lambda d: d.__setitem__("features", [f + "_X" for f in d["features"]]), "do not match"),
    ("no_booster.json", lambda d: d.pop("booster"), "'booster' must be"),
    ("bad_norm.json", lambda d: d.__setitem__("normalisation", "zscore"), "'normalisation' must be"),
])
def test_lulc_model_that_does_not_fit_is_refused_where_it_enters(small_region, lulc_model, tmp_path, name, edit,
                                                                  phrase):
    path = _edited(lulc_model, tmp_path, name, edit)
    res = _cli(*_lulc_args(small_region, tmp_path / "out", "--model", path))
    assert res.exit_code == 2, res.output
    line = one_error_line(res.output)
    assert str(path) in line and phrase in line, line
    assert not list((tmp_path / "out").glob("maps/*.tif"))
    good = _cli(*_lulc_args(small_region, tmp_path / "good", "--model", lulc_model))  # the unedited model works
    assert good.exit_code == 0 and len(list((tmp_path / "good").glob("maps/*.tif"))) == 2


# ------------------------------------------------------------------------------ 4. every user error one line

def test_disk_full_is_one_line_naming_the_users_path(small_region, classified, tmp_path):
    with small_fs(tmp_path / "full", kib=64) as full:
        _fill(full / "filler")
        res = _cli("lulc", "train", small_region.sites, full / "model.json", "-s", small_region.scenes[0].parent,
                   "--dcm", small_region.dcm_dh, "--dcm-year", small_region.dcm_year, "--rounds", "3")
        assert res.exit_code == 2, res.output
        line = one_error_line(res.output)
        assert f"{full / 'model.json'}: cannot write (no space left on the device)" in line
        assert sorted(p.name for p in full.iterdir()) == ["filler"]  # nothing half-written left
        res = _cli("synth", full / "region")  # a GDAL/SQLite writer (GeoPackage) that loses the OS error
        assert res.exit_code == 2 and "no space left on the device" in one_error_line(res.output)
        res = _cli("publish", classified / "maps", full / "release")  # a folder built under a temporary name
        assert res.exit_code == 2
        assert one_error_line(res.output) == f"error: {full / 'release'}: cannot write (no space left on the device)"
        assert sorted(p.name for p in full.iterdir() if p.name != "region") == ["filler"]


def test_a_full_disk_stops_a_multi_unit_run_with_one_line(small_region, tmp_path):
    with small_fs(tmp_path / "full", kib=64) as full:
        _fill(full / "filler")
        os.truncate(full / "filler", os.path.getsize(full / "filler") - 4096)  # one page: the run's marker
        res = _cli(*_lulc_args(small_region, full / "out"))
        assert res.exit_code == 2, res.output  # the run stops: not 3 (every site "bad")
        line = one_error_line(res.output)
        assert line.startswith(f"error: {full / 'out' / 'maps'}/")  # a site's class map, written by a unit
        assert line.endswith("cannot write (no space left on the device)")
        assert "failed:" not in res.output  # no site is blamed for the disk
        assert "warning" not in res.output


def _noise_raster(side: int):
    """A ``side`` x ``side`` float32 raster of noise (DEFLATE cannot shrink it), UTM 33N, 10 m."""
    import numpy as np
    from affine import Affine
    from rasterio.crs import CRS

    from minescape.geo.raster import Raster

    data = np.random.default_rng(0).random((1, side, side), dtype=np.float32)
    return Raster(data, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4100000), np.nan)


def test_a_geotiff_gdal_fails_to_close_on_a_full_disk_never_gets_its_final_name(tmp_path):
    import rasterio

    from minescape.errors import OutputError
    from minescape.geo.grid import Grid
    from minescape.geo.raster import open_writer, write_raster

    raster = _noise_raster(120)  # 57.6 kB: fits GDAL's block cache, so the write fails only when it is closed
    with small_fs(tmp_path / "full", kib=40) as full:
        # the condition: rasterio's close() returns normally and leaves a file that cannot be read
        profile = dict(driver="GTiff", width=120, height=120, count=1, dtype="float32", crs=raster.crs,
                       transform=raster.transform, tiled=True, blockxsize=64, blockysize=64, compress="deflate")
        with rasterio.open(full / "plain.tif", "w", **profile) as dst:
            dst.write(raster.data)
        with pytest.raises(rasterio.errors.RasterioIOError), rasterio.open(full / "plain.tif") as src:
            src.read(1)
        (full / "plain.tif").unlink()

        with pytest.raises(OutputError) as err:
            write_raster(raster, full / "map.tif", blocksize=64)
        assert str(err.value) == f"{full / 'map.tif'}: cannot write (no space left on the device)"
        with pytest.raises(OutputError, match="no space left"):
            with open_writer(full / "streamed.tif", Grid(raster.crs, raster.transform, 120, 120), count=1,
                             dtype="float32", nodata=None, blocksize=64) as dst:
                dst.write(raster.data)
        assert list(full.iterdir()) == []  # nothing under a final name, no temporary file left


def test_check_complete_names_a_geotiff_that_ends_before_its_blocks(tmp_path):
    import os

    from minescape.errors import OutputError
    from minescape.geo.raster import check_complete, read_raster, write_raster

    path = write_raster(_noise_raster(300), tmp_path / "map.tif", blocksize=64)
    check_complete(path)  # a whole file passes
    assert read_raster(path).data.shape == (1, 300, 300)
    with open(path, "r+b") as f:  # the last blocks lost, as a failed close leaves them
        f.truncate(os.path.getsize(path) - 4096)
    with pytest.raises(OutputError) as err:
        check_complete(path)
    assert str(err.value).startswith(f"{path}: was left incomplete by GDAL")


def _fill(path: Path) -> None:
    """Write ``path`` until the file system is full (a real ENOSPC)."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == 28  # ENOSPC: the disk really is full
    finally:
        os.close(fd)


def test_read_only_file_system_is_one_line(small_region, tmp_path):
    with small_fs(tmp_path / "ro", readonly=True) as ro:
        assert not _writable(ro)  # really read-only (root ignores chmod, not a read-only mount)
        res = _cli(*_lulc_args(small_region, ro / "out"))
        assert res.exit_code == 2
        assert "read-only file system" in one_error_line(res.output) and str(ro / "out") in res.output
        res = _cli("synth", ro / "region")
        assert res.exit_code == 2 and "read-only file system" in one_error_line(res.output)


def _writable(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return False
    return True


def test_output_path_of_the_wrong_kind(small_region, image, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    res = _cli(*_lulc_args(small_region, afile))
    assert res.exit_code == 2 and one_error_line(res.output) == f"error: {afile}: exists and is a file; give a folder"
    assert afile.read_text() == "not a folder"
    res = _cli("synth", afile / "region")  # a parent that is a file
    assert res.exit_code == 2 and str(afile) in one_error_line(res.output)
    folder = tmp_path / "model_dir"
    folder.mkdir()
    res = _cli("lulc", "train", small_region.sites, folder, "-s", small_region.scenes[0].parent, "--dcm",
               small_region.dcm_dh, "--dcm-year", small_region.dcm_year, "--rounds", "3")
    assert res.exit_code == 2
    assert one_error_line(res.output) == f"error: {folder}: is a folder; give a file name"


def test_malformed_release_manifest_given_to_inspect(classified, tmp_path):
    rel = tmp_path / "rel"
    assert _cli("publish", classified / "maps", rel).exit_code == 0
    good = (rel / "manifest.json").read_text()
    cases = {
        '{"sha256": ': "release manifest is not valid JSON",
        json.dumps({**json.loads(good), "max_features_per_file": "many"}): "'max_features_per_file' must be",
        json.dumps({**json.loads(good), "sha256": ["a"]}): "'sha256' must be an object",
        json.dumps({**json.loads(good), "sha256": {"../../etc/passwd": "0" * 64}}): "leaves the release folder",
        json.dumps({**json.loads(good), "extra_columns": 5}): "'extra_columns' must be",
    }
    for text, phrase in cases.items():
        (rel / "manifest.json").write_text(text)
        res = _cli("inspect", rel)
        assert res.exit_code == 2, res.output
        line = one_error_line(res.output)
        assert str(rel / "manifest.json") in line and phrase in line, line
    (rel / "manifest.json").write_text(good)
    assert _cli("inspect", rel).exit_code == 0


def test_points_csv_empty_binary_or_not_numbers(small_region, tmp_path):
    cases = {"empty.csv": b"", "binary.csv": bytes(range(256)) * 4,
             "letters.csv": b"point_id,map_code,ref_code,x,y,crs\n1,2,2,abc,7500000,EPSG:32750\n"}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        res = _cli("map", "validate", small_region.truth_lulc, path, tmp_path / "v", "--legend", "mining_lulc")
        assert res.exit_code == 2, res.output
        assert str(path) in one_error_line(res.output)
    assert not (tmp_path / "v").exists()


def test_stac_catalogue_that_lists_itself_as_a_child(small_region, tmp_path):
    cat = tmp_path / "catalog.json"
    links = [{"rel": "self", "href": "./catalog.json"}, {"rel": "child", "href": "./catalog.json"},
             {"rel": "child", "href": "./sub/catalog.json"}]
    cat.write_text(json.dumps({"type": "Catalog", "id": "loop", "stac_version": "1.0.0", "description": "d",
                               "links": links}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "catalog.json").write_text(json.dumps(  # and a cycle through a sub-catalogue
        {"type": "Catalog", "id": "sub", "stac_version": "1.0.0", "description": "d",
         "links": [{"rel": "child", "href": "../catalog.json"}]}))
    res = _cli("lulc", "classify", small_region.sites, tmp_path / "out", "-s", cat, "--dcm", small_region.dcm_dh,
               "--dcm-year", small_region.dcm_year)
    assert res.exit_code == 2 and "no Sentinel-2 scenes found" in one_error_line(res.output)
    outside = tmp_path / "out.json"
    outside.write_text(json.dumps({"type": "Catalog", "id": "x", "stac_version": "1.0.0", "description": "d",
                                   "links": [{"rel": "child", "href": "../../etc/catalog.json"}]}))
    res = _cli("lulc", "classify", small_region.sites, tmp_path / "out", "-s", outside, "--dcm",
               small_region.dcm_dh, "--dcm-year", small_region.dcm_year)
    assert res.exit_code == 2 and "leaves the catalogue's folder" in one_error_line(res.output)


def test_lulc_train_rounds_zero(small_region, tmp_path):
    res = _cli("lulc", "train", small_region.sites, tmp_path / "m.json", "-s", small_region.scenes[0].parent,
               "--dcm", small_region.dcm_dh, "--dcm-year", small_region.dcm_year, "--rounds", "0")
    assert res.exit_code == 2 and "--rounds" in one_error_line(res.output)
    assert not (tmp_path / "m.json").exists()


def test_change_detect_all_nodata_date_names_the_file_and_leaves_nothing(small_region, tmp_path):
    import rasterio

    from minescape.geo.raster import read_raster, write_raster

    t2 = read_raster(small_region.t2)
    empty = write_raster(t2.with_data(np.full(t2.data.shape, np.nan, np.float32), nodata=np.nan,
                                      band_names=t2.band_names), tmp_path / small_region.t2.name)
    with rasterio.open(empty) as src:
        assert not src.read_masks().any() or not np.isfinite(src.read()).any()  # really all nodata
    out = tmp_path / "cd"
    out.mkdir()
    (out / "difference.tif").write_bytes(b"from an earlier run")
    res = _cli("change", "detect", small_region.t1, empty, out)
    assert res.exit_code == 2, res.output
    line = one_error_line(res.output)
    assert str(empty) in line and "every pixel is nodata" in line
    assert list(out.iterdir()) == []  # no output, not even an earlier run's


def test_map_products_tile_zero_is_a_bad_option_before_any_unit(small_region, tmp_path):
    import geopandas as gpd

    from minescape.geo.vector import write_gpkg

    admin = gpd.read_file(small_region.sites).assign(region="R", province="P", city=["A", "B"])
    path = write_gpkg(admin, tmp_path / "admin.gpkg")
    res = _cli("map", "products", small_region.truth_lulc, path, tmp_path / "prod", "--legend", "mining_lulc",
               "--tile", "0")
    assert res.exit_code == 2
    assert "--tile" in one_error_line(res.output) and "failed" not in res.output
    assert not (tmp_path / "prod").exists()


# ------------------------------------------------------------------------------------- 5. bounded resources

def test_sizes_users_type_are_checked_before_allocating(small_region, tmp_path):
    res = _cli("change", "patches", small_region.t1, small_region.t2, small_region.truth_change, tmp_path / "p",
               "--size", "100000")
    assert res.exit_code == 2
    line = one_error_line(res.output)
    assert "100,000 px patch needs" in line and "GiB of memory, above the limit of" in line
    res = _cli("synth", tmp_path / "s", "--width", "200000", "--height", "200000")
    assert res.exit_code == 2
    assert "200,000 x 200,000 px synthetic region needs" in one_error_line(res.output)
    assert not (tmp_path / "p").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize("source", ["/dev/zero", "fifo", "huge"])
def test_user_json_is_read_only_from_a_regular_file_under_a_cap(small_region, tmp_path, source):
    import os

    from minescape import jsonfile

    if source == "fifo":
        path = tmp_path / "rules.json"
        os.mkfifo(path)  # a reader that opened it would wait forever
    elif source == "huge":
        path = tmp_path / "rules.json"
        with open(path, "wb") as fh:  # sparse: declares more than the cap without using the disk
            fh.truncate(jsonfile.MAX_JSON_BYTES + 1)
    else:
        path = Path(source)
    res = _cli(*_lulc_args(small_region, tmp_path / "out", "--rules", path))
    assert res.exit_code == 2
    line = one_error_line(res.output)
    assert str(path) in line and ("not a regular file" in line or "larger than the limit" in line), line


def test_inspect_refuses_a_zip_bomb_before_extracting(tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("mining_lulc_africa_001.gpkg", "w", force_zip64=True) as member:
            for _ in range(16):
                member.write(b"\0" * (16 << 20))  # 256 MiB of zeros: ~250 KiB compressed
    info = zipfile.ZipFile(bomb).infolist()[0]
    assert info.file_size == 256 << 20 and info.file_size / info.compress_size > 500  # really a bomb
    res = _cli("inspect", bomb)
    assert res.exit_code == 2
    line = one_error_line(res.output)
    assert str(bomb) in line and "expands" in line and "not extracted" in line


def test_inspect_refuses_a_member_declaring_more_than_the_limit(tmp_path, monkeypatch):
    import zipfile

    from minescape.publish import inspect as insp

    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("a.gpkg", b"x" * 4096)
    monkeypatch.setattr(insp, "MAX_MEMBER_BYTES", 1024)  # the limit, lowered to a size a test can write
    res = _cli("inspect", path)
    assert res.exit_code == 2 and "declares 4,096 bytes uncompressed, above the limit" in one_error_line(res.output)


def test_raster_declaring_a_million_by_a_million_pixels(image, tmp_path):
    """A VRT declares 10^6 x 10^6 px in a few hundred bytes: the size and the estimate are given before
    anything starts, and the run is refused above 24 h unless --force."""
    vrt = tmp_path / "huge.vrt"
    bands = "".join(f'<VRTRasterBand dataType="Float32" band="{i}"><NoDataValue>0</NoDataValue></VRTRasterBand>'
                    for i in (1, 2, 3))
    vrt.write_text(f'<VRTDataset rasterXSize="1000000" rasterYSize="1000000"><SRS>EPSG:32650</SRS>'
                   f"<GeoTransform>500000, 10, 0, 7500000, 0, -10</GeoTransform>{bands}</VRTDataset>")
    ckpt = tmp_path / "none.pt"
    ckpt.write_bytes(b"not read before the plan")
    res = _cli("map", "predict", vrt, ckpt, tmp_path / "out.tif")
    assert res.exit_code == 2
    line = one_error_line(res.output)
    assert "1,000,000 x 1,000,000 px" in line and "estimated" in line and "days" in line and "--force" in line
    forced = _cli("map", "predict", vrt, ckpt, tmp_path / "out.tif", "--force")  # past the plan: the next check
    assert forced.exit_code == 2 and "1,000,000 x 1,000,000 px" in forced.output
    assert "not a readable torch checkpoint" in one_error_line(forced.output)
    small = _cli("map", "predict", image, ckpt, tmp_path / "out.tif")  # a small image: the plan line, then on
    assert "17 px" in small.output and "estimated" in small.output
    assert not (tmp_path / "out.tif").exists()


# ----------------------------------------------------------------------------------- 6. same bytes, always

def test_lulc_classify_outputs_hold_no_wall_time(small_region, tmp_path):
    for name in ("a", "b"):
        assert _cli(*_lulc_args(small_region, tmp_path / name)).exit_code == 0
    for rel in ("sites.json", "report/run.json"):
        a, b = (tmp_path / "a" / rel).read_text(), (tmp_path / "b" / rel).read_text()
        assert a.replace(str(tmp_path / "a"), "OUT") == b.replace(str(tmp_path / "b"), "OUT"), rel
        assert '"seconds"' not in a
    assert "seconds" in json.loads((tmp_path / "a" / "report" / "timings.json").read_text())


def _huge_vrt(path: Path, *, bands: list[str] | None = None, dtype: str = "Float32", side: int = 1_000_000) -> Path:
    """A VRT declaring ``side`` x ``side`` px (a few hundred bytes on disk)."""
    names = bands or ["", "", ""]
    body = "".join(f'<VRTRasterBand dataType="{dtype}" band="{i}">' + (f"<Description>{n}</Description>" if n else "")
                   + "<NoDataValue>0</NoDataValue></VRTRasterBand>" for i, n in enumerate(names, start=1))
    path.write_text(f'<VRTDataset rasterXSize="{side}" rasterYSize="{side}"><SRS>EPSG:32650</SRS>'
                    f"<GeoTransform>500000, 10, 0, 7500000, 0, -10</GeoTransform>{body}</VRTDataset>")
    return path


def test_huge_pair_and_huge_map_are_planned_before_anything_runs(small_region, tmp_path):
    from minescape.sentinel2 import TEN_BANDS

    t1 = _huge_vrt(tmp_path / "S2A_MSIL2A_20190715T022551_N0213_R046_T50KQB_20190715T061234.vrt",
                   bands=list(TEN_BANDS), dtype="UInt16")
    t2 = _huge_vrt(tmp_path / "S2A_MSIL2A_20200715T022551_N0213_R046_T50KQB_20200715T061234.vrt",
                   bands=list(TEN_BANDS), dtype="UInt16")
    for args in (["change", "detect", t1, t2, tmp_path / "cd"],
                 ["change", "patches", t1, t2, small_region.truth_change, tmp_path / "p"]):
        res = _cli(*args)
        assert res.exit_code == 2, res.output
        line = one_error_line(res.output)
        assert "1,000,000 x 1,000,000 px" in line and "days" in line and "--force" in line
    huge_map = _huge_vrt(tmp_path / "map.vrt", dtype="Byte", bands=[""], side=10_000_000)
    res = _cli("map", "sample", huge_map, tmp_path / "pts", "--legend", "mining_lulc")
    assert res.exit_code == 2 and "10,000,000 x 10,000,000 px" in one_error_line(res.output)
    float_map = _huge_vrt(tmp_path / "float.vrt", bands=[""], side=1000)  # imagery given as a class map
    res = _cli("map", "sample", float_map, tmp_path / "pts", "--legend", "mining_lulc")
    assert res.exit_code == 2 and "not a class map: band 1 is float32" in one_error_line(res.output)
    assert not list(tmp_path.glob("pts*")) and not (tmp_path / "cd").exists() and not (tmp_path / "p").exists()

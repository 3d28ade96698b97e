"""``lulc scenes``: the plan of a classify run, before it runs. Per site its year and the scenes a run would
consider, the same as the run then uses: a real STAC server on loopback (the run's median composites), the same
items from disk, and local scenes (the clearest-scene choice); sites without a year or a scene are listed with
their reason. No pixel of imagery is read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import rasterio
from typer.testing import CliRunner

from minescape.cli.app import app

runner = CliRunner()


def _dcm(files) -> list[str]:
    return ["--dcm", str(files.dcm_dh), "--dcm-year", str(files.dcm_year)]


def _plan(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["site_id"]: r for r in csv.DictReader(f)}


def test_plan_over_a_catalogue_is_what_the_run_reads(stac_region, loopback, tmp_path, monkeypatch):
    from tests.imagery.test_window_reader import _log

    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    _, files, stac = stac_region
    res = runner.invoke(app, ["lulc", "scenes", str(files.sites), str(tmp_path / "plan.csv"), "--stac",
                              loopback.stac_url, "--collection", "sentinel-2-l2a", *_dcm(files)])
    assert res.exit_code == 0, res.output
    assets = [e for e in _log(loopback.log) if e["range"] is not None or e["path"].endswith(".tif")]
    assert assets == []  # no asset requested: catalogue searches only
    plan = _plan(tmp_path / "plan.csv")
    assert sorted(plan) == ["S01", "S02"] and all(r["problem"] == "" for r in plan.values())
    assert "2 sites: 2 with scenes of their year" in res.output
    disk = tmp_path / "disk.csv"  # the same items saved to disk: the same plan
    res = runner.invoke(app, ["lulc", "scenes", str(files.sites), str(disk), "--stac", str(stac.earth_search),
                              *_dcm(files)])
    assert res.exit_code == 0 and _plan(disk) == plan
    out = tmp_path / "run"
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(out), "--stac", loopback.stac_url,
                              "--collection", "sentinel-2-l2a", *_dcm(files), "--no-quicklook", "--no-report"])
    assert res.exit_code == 0, res.output
    assert any(e["range"] is not None for e in _log(loopback.log))  # the run read assets: the log records them
    results = json.loads((out / "report" / "run.json").read_text())["results"]
    for sid, row in plan.items():
        with rasterio.open(out / "maps" / f"{sid}.tif") as src:
            used = src.tags()["SCENES"].split(",")
        assert int(row["year"]) == results[sid]["year"] and row["year_rule"] == results[sid]["year_rule"]
        assert sorted(row["scenes"].split()) == sorted(used) and int(row["n_scenes"]) == len(used) >= 2
        assert row["first_date"] < row["last_date"] and float(row["min_cloud"]) <= 20


def test_plan_of_local_scenes_and_sites_that_would_fail(stac_region, tmp_path, monkeypatch):
    import geopandas as gpd
    import shapely

    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    _, files, _ = stac_region
    sites = gpd.read_file(files.sites)
    far = gpd.GeoDataFrame({"site_id": ["FAR"]}, geometry=[shapely.box(10.0, 50.0, 10.01, 50.01)], crs="EPSG:4326")
    mixed = gpd.GeoDataFrame(gpd.pd.concat([sites[["site_id", "geometry"]], far.to_crs(sites.crs)]), crs=sites.crs)
    mixed.to_file(tmp_path / "sites.gpkg")
    res = runner.invoke(app, ["lulc", "scenes", str(tmp_path / "sites.gpkg"), str(tmp_path / "plan.csv"), "-s",
                              str(files.scene_dir), *_dcm(files)])
    assert res.exit_code == 0, res.output
    plan = _plan(tmp_path / "plan.csv")
    assert plan["FAR"]["year"] == "" and "outside the DCM year raster" in plan["FAR"]["problem"]
    assert "3 sites: 2 with scenes of their year" in res.output and "1 without (1 no year, 0 no scene)" in res.output
    assert "no imagery: " in res.output and "site FAR" in res.output
    out = tmp_path / "run"
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(out), "-s", str(files.scene_dir),
                              *_dcm(files), "--no-quicklook", "--no-report"])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "report" / "run.json").read_text())["results"]
    for sid, r in results.items():  # the clearest scene the run chose is among the plan's
        assert r["scene"] in plan[sid]["scenes"].split() and int(plan[sid]["year"]) == r["year"]

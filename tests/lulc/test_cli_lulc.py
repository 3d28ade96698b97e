"""``minescape lulc ...`` through Typer's runner on real files: classify, train, evaluate, exit codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.cli.common import EXIT_PARTIAL, EXIT_USER_ERROR

runner = CliRunner()


def _inputs(region):
    return [str(region.sites), "-s", str(region.scene_dir), "--dcm", str(region.dcm_dh),
            "--dcm-year", str(region.dcm_year)]


def test_train_classify_evaluate(small_region, tmp_path, monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    r = small_region
    model = tmp_path / "model.json"
    res = runner.invoke(app, ["lulc", "train", str(r.sites), str(model), *_inputs(r)[1:], "--labels",
                              str(r.truth_lulc), "--site", "S01", "--rounds", "30"])
    assert res.exit_code == 0, res.output
    assert "feature importance" in res.output and model.exists()
    out = tmp_path / "run"
    res = runner.invoke(app, ["lulc", "classify", str(r.sites), str(out), *_inputs(r)[1:], "--model", str(model),
                              "--site", "S02", "--no-quicklook", "--majority", "3"])
    assert res.exit_code == 0, res.output
    assert (out / "maps" / "S02.tif").exists() and not (out / "maps" / "S01.tif").exists()
    res = runner.invoke(app, ["lulc", "evaluate", str(out), str(r.truth_lulc), "--site", "S02"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["overall_accuracy"] >= 0.9 and "OA" in res.output
    assert (out / "report" / "confusion_matrix.png").is_file()
    # classifying again into the folder makes that accuracy stale (it was of the old maps): it is removed
    res = runner.invoke(app, ["lulc", "classify", str(r.sites), str(out), *_inputs(r)[1:], "--site", "S01",
                              "--no-quicklook", "--no-report"])
    assert res.exit_code == 0, res.output
    assert (out / "maps" / "S01.tif").exists() and not (out / "maps" / "S02.tif").exists()
    assert not (out / "report" / "metrics.json").exists() and not (out / "report" / "confusion_matrix.png").exists()


def test_exit_codes(small_region, tmp_path, monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    r = small_region
    args = _inputs(r)
    args[args.index("--dcm") + 1] = str(tmp_path / "no_dcm.tif")
    res = runner.invoke(app, ["lulc", "classify", args[0], str(tmp_path / "o"), *args[1:], "--no-quicklook"])
    assert res.exit_code == EXIT_PARTIAL
    assert "no_dcm.tif: file not found" in res.output
    rows = json.loads((tmp_path / "o" / "sites.json").read_text())
    assert all(row["status"] == "failed" and "no_dcm.tif" in row["reason"] for row in rows)
    res = runner.invoke(app, ["lulc", "classify", str(tmp_path / "nope.gpkg"), str(tmp_path / "o2"), *args[1:]])
    assert res.exit_code == EXIT_USER_ERROR and "nope.gpkg" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["lulc", "classify", *_inputs(r)[:1], str(tmp_path / "o3"), *_inputs(r)[1:],
                              "--model", str(tmp_path / "missing_model.json")])
    assert res.exit_code == EXIT_USER_ERROR and "model file not found" in res.output
    res = runner.invoke(app, ["lulc", "rules"])
    assert res.exit_code == 0 and json.loads(res.output)["water"]["mndwi_min"] > 0


def test_a_site_too_large_for_memory_fails_alone(small_region, tmp_path, monkeypatch):
    """A MultiPolygon whose parts lie 5,000 km apart: its grid (2 x 10^11 px) is refused before anything is
    allocated, in one line naming the site, its extent, pixels and memory; the other site is classified (exit 3)."""
    import geopandas as gpd
    import shapely

    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    r = small_region
    g = gpd.read_file(r.sites).to_crs(4326)
    far = shapely.MultiPolygon([g.geometry.iloc[0], shapely.box(160.0, 20.0, 160.005, 20.005)])
    sites = tmp_path / "far.gpkg"
    gpd.GeoDataFrame({"site_id": ["FAR", "S02"]}, geometry=[far, g.geometry.iloc[1]], crs=4326).to_file(sites)
    out = tmp_path / "o"
    res = runner.invoke(app, ["lulc", "classify", str(sites), str(out), *_inputs(r)[1:], "--no-quicklook",
                              "--no-report"])
    assert res.exit_code == EXIT_PARTIAL, res.output
    rows = {row["id"]: row for row in json.loads((out / "sites.json").read_text())}
    assert rows["S02"]["status"] == "ok" and (out / "maps" / "S02.tif").is_file()
    reason = rows["FAR"]["reason"]
    assert reason.startswith("site FAR: its ") and " km extent is a " in reason and " px grid (" in reason, reason
    assert "GiB of memory, above the limit of" in reason and "MemoryError" not in reason, reason

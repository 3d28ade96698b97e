"""``lulc classify/train`` with a DLR delivery: folder, one ZIP, --dcm-map first, the preset; the two-raster
form still works."""

from __future__ import annotations

import json

import pytest
import rasterio
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.cli.common import EXIT_USER_ERROR

runner = CliRunner()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")


def _run(args):
    return runner.invoke(app, ["lulc", *map(str, args)])


def test_classify_with_delivery_first_and_last(dcm_region, tmp_path):
    r = dcm_region
    base = [r.sites, None, "-s", r.scene_dir, "--dcm", r.dcm, "--no-quicklook"]
    years = {}
    for kind in ("last", "first"):
        out = tmp_path / kind
        res = _run(["classify", r.sites, out, *base[2:], "--dcm-map", kind])
        assert res.exit_code == 0, res.output
        rows = {x["id"]: x for x in json.loads((out / "sites.json").read_text())}
        years[kind] = {k: v["year"] for k, v in rows.items()}
        with rasterio.open(out / "maps" / "S01.tif") as src:
            assert src.tags()["YEAR"] == str(rows["S01"]["year"]) and (src.read(1) > 0).any()
        run = json.loads((out / "report" / "run.json").read_text())
        assert all(kind.upper() in t for t in run["results"]["S01"]["dcm_tiles"])
    assert any(years["first"][k] < years["last"][k] for k in years["last"])  # FIRST dates are earlier
    legacy = tmp_path / "legacy"
    res = _run(["classify", r.sites, legacy, "-s", r.scene_dir, "--dcm", r.dcm_dh, "--dcm-year", r.dcm_year,
                "--no-quicklook"])
    assert res.exit_code == 0, res.output
    res = _run(["classify", r.sites, tmp_path / "bad", "-s", r.scene_dir, "--dcm", r.dcm, "--dcm-map", "middle"])
    assert res.exit_code == EXIT_USER_ERROR and "last, first" in res.output
    res = _run(["classify", r.sites, tmp_path / "bad2", "-s", r.scene_dir, "--dcm", r.dcm_dh])
    assert res.exit_code == EXIT_USER_ERROR and "needs --dcm-year" in res.output
    res = _run(["classify", r.sites, tmp_path / "bad3", "-s", r.scene_dir, "--dcm", tmp_path / "nowhere.zip"])
    assert res.exit_code == EXIT_USER_ERROR and "DCM delivery not found" in res.output


def test_one_zip_and_published_train(dcm_region, tmp_path):
    r = dcm_region
    one = next(r.dcm.glob("*S23E118_LAST*.zip"))
    out = tmp_path / "one"
    res = _run(["classify", r.sites, out, "-s", r.scene_dir, "--dcm", one, "--site", "S02", "--no-quicklook"])
    assert res.exit_code == 0, res.output
    model = tmp_path / "rf.json"
    res = _run(["train", r.sites, model, "-s", r.scene_dir, "--dcm", r.dcm, "--labels", r.truth_lulc,
                "--site", "S01", "--method", "published", "--per-class", "500"])
    assert res.exit_code == 0, res.output
    doc = json.loads(model.read_text())
    assert doc["format"] == "minescape-lulc-randomforest" and len(doc["trees"]) == 100
    assert doc["features"][-1] == "DH" and len(doc["features"]) == 11
    out = tmp_path / "pub"
    res = _run(["classify", r.sites, out, "-s", r.scene_dir, "--dcm", r.dcm, "--model", model, "--method",
                "published", "--site", "S02", "--no-quicklook"])
    assert res.exit_code == 0, res.output
    run = json.loads((out / "report" / "run.json").read_text())
    assert run["config"]["majority"] == 7 and run["config"]["composite"] == "median"


def test_whole_scene_with_a_delivery_is_seamless(dcm_region, tmp_path):
    """classify_scene reads the tiles per window. The DCM read in 64-px windows (with halo) equals the DCM read
    whole, exactly; the class maps then differ only where the chain itself does with a prepared raster."""
    import numpy as np

    from minescape.dcm.index import dcm_index
    from minescape.dcm.mosaic import read_dcm_on_grid
    from minescape.geo.grid import iter_tiles
    from minescape.imagery.local_scenes import discover_scenes
    from minescape.lulc.pipeline import classify_scene

    scene = dcm_region.scenes[0]
    grid = discover_scenes([scene])[0].open().grid
    index = dcm_index(dcm_region.dcm)
    whole = read_dcm_on_grid(index, grid)
    compared = 0
    for t in iter_tiles(grid.width, grid.height, size=64, overlap=10):
        part = read_dcm_on_grid(index, grid.window_grid(t.read))
        r0, c0 = int(t.read.row_off), int(t.read.col_off)
        sl = (slice(r0, r0 + int(t.read.height)), slice(c0, c0 + int(t.read.width)))
        np.testing.assert_array_equal(part.dh.data[0], whole.dh.data[0][sl])
        np.testing.assert_array_equal(part.date, whole.date[sl])
        np.testing.assert_array_equal(part.state, whole.state[sl])
        compared += int(np.isfinite(part.dh.data[0]).sum())
    assert compared > 50_000 and len(whole.tiles) == 2
    maps = {}
    for name, dcm in (("tiles", dcm_region.dcm), ("raster", dcm_region.dcm_dh)):
        for tile in (1024, 64):
            res = classify_scene(scene, dcm, tmp_path / f"{name}{tile}.tif", tile=tile, progress=False)
            with rasterio.open(res["path"]) as src:
                maps[name, tile] = src.read(1)
    assert (maps["tiles", 1024] > 0).sum() > 10_000
    differ = maps["tiles", 1024] != maps["tiles", 64]
    assert differ.sum() <= (maps["raster", 1024] != maps["raster", 64]).sum() + 0

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

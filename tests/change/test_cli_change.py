"""``minescape change detect | refine export/burn | patches | evaluate`` on real temporary files."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.geo.raster import read_raster, write_raster

runner = CliRunner()


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. pyogrio's "More than one layer" on the styled candidates
def test_detect_refine_patches_evaluate(small_region, tmp_path):
    det = tmp_path / "det"
    res = runner.invoke(app, ["change", "detect", str(small_region.t1), str(small_region.t2), str(det),
                              "--min-area", "500", "--tile", "100", "--truth", str(small_region.truth_change)])
    assert res.exit_code == 0, res.output
    assert "vs truth: F1 0.9" in res.output
    assert (det / "change_mask.tif").exists() and (det / "difference.tif").exists()
    summary = json.loads((det / "detect.json").read_text())
    assert summary["options"]["min_area_m2"] == 500 and summary["min_component_pixels"] == 5

    res = runner.invoke(app, ["change", "refine", "export", str(det / "change_mask.tif"), str(tmp_path / "c.gpkg"),
                              "--difference", str(det / "difference.tif")])
    assert res.exit_code == 0, res.output
    assert "candidate polygons" in res.output
    res = runner.invoke(app, ["change", "refine", "burn", str(tmp_path / "c.gpkg"), str(det / "change_mask.tif"),
                              str(tmp_path / "final.tif")])
    assert res.exit_code == 0, res.output
    assert np.array_equal(read_raster(tmp_path / "final.tif").data, read_raster(det / "change_mask.tif").data)

    res = runner.invoke(app, ["change", "patches", str(small_region.t1), str(small_region.t2),
                              str(det / "change_mask.tif"), str(tmp_path / "p"), "--size", "64", "--balance",
                              "--fractions", "0.6,0.2,0.2", "--bands", "B04,B08"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["bands"] == ["B04", "B08"] and manifest["counts"]["changed"] == manifest["counts"]["unchanged"]

    res = runner.invoke(app, ["change", "evaluate", str(tmp_path / "p" / "Change"), str(tmp_path / "p" / "Change"),
                              "--out", str(tmp_path / "scores.json")])
    assert res.exit_code == 0, res.output
    assert "pooled: F1 1.000" in res.output
    assert json.loads((tmp_path / "scores.json").read_text())["pooled"]["f1"] == 1.0


def test_bad_input_is_one_line_exit_2(small_region, tmp_path):
    truth = read_raster(small_region.truth_change)
    bad = truth.data.copy()
    bad[0, 5, 5] = 3
    bad_path = write_raster(truth.with_data(bad), tmp_path / "odd.tif")
    cases = [
        ["change", "detect", str(small_region.t1), str(tmp_path / "missing.tif"), str(tmp_path / "o")],
        ["change", "detect", str(small_region.t1), str(small_region.t2), str(tmp_path / "o"), "--method", "EVI"],
        ["change", "evaluate", str(bad_path), str(small_region.truth_change)],
        ["change", "patches", str(small_region.t1), str(small_region.t2), str(bad_path), str(tmp_path / "p"),
         "--padding", "wrap"],
    ]
    for args in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), res.output
        assert "Traceback" not in res.output
    assert not (tmp_path / "p").exists()

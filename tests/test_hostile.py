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


def _lulc_args(region, out: Path, *extra) -> list:
    args = ["lulc", "classify", region.sites, out, "--dcm", region.dcm_dh, "--dcm-year", region.dcm_year,
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

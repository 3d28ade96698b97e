"""`change detect` on both cores: window processes give the same bytes as one process."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from minescape.change.difference import DetectOptions, detect_files
from minescape.cli.app import app
from minescape.threads import available_cores


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("options,coregister", [
    (DetectOptions(min_area_m2=500), False),
    (DetectOptions(method="CVA", threshold="percentile", value=97, opening=0, closing=2), True),
])
def test_two_workers_write_the_same_bytes(small_region, tmp_path, options, coregister):
    one = detect_files(small_region.t1, small_region.t2, tmp_path / "one", options=options, window=96,
                       coregister=coregister)
    two = detect_files(small_region.t1, small_region.t2, tmp_path / "two", options=options, window=96,
                       coregister=coregister, workers=2)
    with rasterio.open(one.mask) as src:
        mask = src.read(1)
        assert src.width > 2 * 96 and src.height > 2 * 96  # several windows each way: the pool had work
        assert src.overviews(1) == [2]  # built by default (260 px: one level), in one and two GDAL threads
    with rasterio.open(two.difference) as src:
        assert src.overviews(1) == [2]
        assert src.compression.name == "deflate"  # without the float predictor (bench/bench_float_deflate.py)
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", "1") == "1"
    assert (mask == 1).sum() > 100 and (mask == 0).sum() > 100  # change and no change were both written
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")
    for out in ("one", "two"):  # the scratch copy of the difference is gone with the run
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == ["change_mask.qml", "change_mask.tif",
                                                                       "detect.json", "difference.qml",
                                                                       "difference.tif"]
    assert one.stats == two.stats
    assert json.loads(one.summary.read_text())["changed_pixels"] == int((mask == 1).sum())


def test_cli_workers_option(small_region, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["change", "detect", str(small_region.t1), str(small_region.t2), str(out),
                              "--tile", "128", "--workers", "2" if available_cores() >= 2 else "1"])
    assert res.exit_code == 0, res.output
    ref = detect_files(small_region.t1, small_region.t2, tmp_path / "ref", options=DetectOptions(), window=128)
    with rasterio.open(out / "change_mask.tif") as a, rasterio.open(ref.mask) as b:
        assert np.array_equal(a.read(1), b.read(1)) and (a.read(1) == 1).any()
        assert a.overviews(1) == b.overviews(1) == [2]
    bare = tmp_path / "bare"
    # the former names (--window, --threads) still work
    res = runner.invoke(app, ["change", "detect", str(small_region.t1), str(small_region.t2), str(bare),
                              "--window", "128", "--threads", "1", "--no-overviews", "--no-report"])
    assert res.exit_code == 0, res.output
    for name in ("change_mask.tif", "difference.tif"):
        with rasterio.open(bare / name) as a, rasterio.open(out / name) as b:
            assert a.overviews(1) == [] and np.array_equal(a.read(1), b.read(1), equal_nan=True)
    for bad in ("0", str(available_cores() + 1)):
        res = runner.invoke(app, ["change", "detect", str(small_region.t1), str(small_region.t2), str(out),
                                  "--workers", bad])
        assert res.exit_code == 2
        assert "--workers" in res.output and len(res.output.strip().splitlines()) == 1

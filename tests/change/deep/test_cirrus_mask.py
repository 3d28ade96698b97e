"""The cirrus-band cloud mask: a cloud in one date is found, a scene-wide offset is not; prediction writes nodata
under it; a pair without B10 is one clear error; on OSCD it finds paris's cumulus and nothing in clear cities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from minescape.change.cirrus_mask import cirrus_change, cirrus_mask
from minescape.errors import ConfigError, InputError
from minescape.geo.raster import Raster, read_raster, write_raster
from tests.change.deep.conftest import BANDS4, CRS_UTM, TRANSFORM, toy_pair

OSCD = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "oscd"
BANDS5 = (*BANDS4, "B10")


def cloudy_pair(tmp_path: Path, *, seed: int = 5, height: int = 150, width: int = 170):
    """Reflectance stacks with B10: date 2's B10 is 0.003 higher everywhere (another offset) and 0.02 higher
    over a 12 x 12 px cumulus at rows/cols 60-72; date 2 has a nodata corner."""
    t1, t2, _ = toy_pair(seed=seed, height=height, width=width)
    rng = np.random.default_rng(seed)
    b10 = (0.0015 + rng.integers(0, 3, (height, width)) * 1e-4).astype(np.float32)
    b10_2 = b10 + np.float32(0.003)
    b10_2[60:72, 60:72] += np.float32(0.02)
    a1 = np.concatenate([t1, b10[None]])
    a2 = np.concatenate([t2, b10_2[None]])
    a2[:, :20, :20] = np.nan
    p1 = write_raster(Raster(a1, CRS_UTM, TRANSFORM, np.nan, BANDS5), tmp_path / "t1.tif")
    p2 = write_raster(Raster(a2, CRS_UTM, TRANSFORM, np.nan, BANDS5), tmp_path / "t2.tif")
    return p1, p2


def test_finds_the_cloud_with_its_buffer_and_ignores_the_offset(tmp_path):
    p1, p2 = cloudy_pair(tmp_path)
    m = cirrus_mask(p1, p2, buffer=10, block=6)
    assert m.blocks.shape == (25, 29)  # ceil(150 / 6), ceil(170 / 6)
    assert abs(cirrus_change(p1, p2)[2] - 0.003) < 2e-4  # the scene-wide offset is the median change, removed
    full = m.window(0, 0, 150, 170)
    assert full[60:72, 60:72].all()  # the cloud
    assert full[50, 66] and full[80, 66]  # its buffer: 10 px rounded up to 2 blocks (12 px)
    assert not full[40, 66] and not full[100, 100] and not full[:20, :20].any()  # clear land, nodata
    assert 0 < m.fraction < 0.06
    assert m.window(-6, -6, 12, 12)[:6].sum() == 0  # outside the grid: False
    assert "masked" in m.describe() and "B10" in m.describe()
    # without the buffer only the cloud's blocks (and the one block it straddles at 72)
    bare = cirrus_mask(p1, p2, buffer=0).window(0, 0, 150, 170)
    assert bare[60:72, 60:72].all() and not bare[50, 66] and bare.sum() <= 18 * 18


def test_a_pair_without_b10_is_one_clear_error(tmp_path):
    t1, t2, _ = toy_pair(seed=6, height=64, width=64)
    p1 = write_raster(Raster(t1, CRS_UTM, TRANSFORM, np.nan, BANDS4), tmp_path / "a.tif")
    p2 = write_raster(Raster(t2, CRS_UTM, TRANSFORM, np.nan, BANDS4), tmp_path / "b.tif")
    with pytest.raises(InputError) as e:
        cirrus_mask(p1, p2)
    text = str(e.value)
    assert text.startswith(str(p1)) and "has no band B10" in text and "L2A" in text and "\n" not in text
    # band folders (an L2A-like scene without B10): the folder is named
    folders = []
    for date, arr in (("fa", t1), ("fb", t2)):
        (tmp_path / date).mkdir()
        for k, band in enumerate(BANDS4):
            dn = np.where(np.isfinite(arr[k]), np.clip(arr[k] * 10000, 1, 65535), 0).astype(np.uint16)
            write_raster(Raster(dn[None], CRS_UTM, TRANSFORM, 0),
                         tmp_path / date / f"T00XXX_20200101T000000_{band}.tif")
        folders.append(tmp_path / date)
    with pytest.raises(InputError, match="has no band B10") as e:
        cirrus_mask(*folders)
    assert "fa" in str(e.value)
    with pytest.raises(ConfigError):
        cirrus_mask(p1, p2, threshold=0)


def test_prediction_writes_nodata_under_the_cloud_and_nothing_else_moves(tiny_model, tmp_path):
    from minescape.change.deep.infer import predict_scene
    from minescape.change.deep.model import load_model
    from minescape.compute import Compute

    m = load_model(tiny_model.model_path)  # a 4-band model: the stacks carry B10 beside its bands
    p1, p2 = cloudy_pair(tmp_path)
    cpu = Compute("cpu", "fp32", 1)
    plain = predict_scene(m, p1, p2, tmp_path / "a" / "p.tif", tmp_path / "a" / "m.tif", tile=64, overlap=16,
                          compute=cpu)
    masked = predict_scene(m, p1, p2, tmp_path / "b" / "p.tif", tmp_path / "b" / "m.tif", tile=64, overlap=16,
                           compute=cpu, mask_clouds=True)
    assert plain.clouds is None and "masked" in masked.clouds
    cloud = cirrus_mask(p1, p2).window(0, 0, 150, 170)
    assert cloud.sum() > 144  # the cloud is there to hide
    pa, pb = read_raster(plain.probability).data[0], read_raster(masked.probability).data[0]
    ma, mb = read_raster(plain.mask).data[0], read_raster(masked.mask).data[0]
    assert np.isnan(pb[cloud]).all() and (mb[cloud] == 255).all()
    assert np.isfinite(pa[cloud]).all()  # the plain run judged those pixels
    assert np.array_equal(pa[~cloud], pb[~cloud], equal_nan=True) and np.array_equal(ma[~cloud], mb[~cloud])
    import rasterio

    with rasterio.open(masked.mask) as src:
        assert "B10" in src.tags()["cloud_mask"]


def test_cli_mask_clouds_without_b10_exits_2(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from minescape.cli.app import app

    t1, t2, _ = toy_pair(seed=7, height=64, width=64)
    p1 = write_raster(Raster(t1, CRS_UTM, TRANSFORM, np.nan, BANDS4), tmp_path / "a.tif")
    p2 = write_raster(Raster(t2, CRS_UTM, TRANSFORM, np.nan, BANDS4), tmp_path / "b.tif")
    r = CliRunner().invoke(app, ["change", "predict", str(tiny_model.model_path), str(p1), str(p2),
                                 str(tmp_path / "out"), "--tile", "64", "--overlap", "16", "--mask-clouds"])
    assert r.exit_code == 2, r.output
    assert "B10" in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.skipif(not (OSCD / "images" / "paris").is_dir(), reason="../shared/data/oscd not present")
def test_oscd_paris_cumulus_is_found_and_clear_cities_are_untouched():
    got = {c: cirrus_mask(OSCD / "images" / c / "imgs_1", OSCD / "images" / c / "imgs_2").fraction
           for c in ("paris", "rennes", "abudhabi", "cupertino")}
    assert got["paris"] > 0.01, got  # two cumulus clouds and their haze in date 2
    assert got["rennes"] == got["abudhabi"] == got["cupertino"] == 0.0, got


def test_index_method_writes_nodata_under_the_cloud_in_one_or_two_processes(tmp_path):
    """`change detect --mask-clouds`: the cloud is nodata in the difference and the mask; with a fixed threshold
    and no clean-up every other pixel is as without the mask; two worker processes give the same bytes."""
    from minescape.change.difference import DetectOptions, detect_files

    p1, p2 = cloudy_pair(tmp_path)
    opts = DetectOptions(threshold="fixed", value=0.02, opening=0, closing=0)
    plain = detect_files(p1, p2, tmp_path / "plain", options=opts, window=64)
    masked = detect_files(p1, p2, tmp_path / "masked", options=opts, window=64, mask_clouds=True)
    cloud = cirrus_mask(p1, p2).window(0, 0, 150, 170)
    da, db = read_raster(plain.difference).data[0], read_raster(masked.difference).data[0]
    ma, mb = read_raster(plain.mask).data[0], read_raster(masked.mask).data[0]
    assert np.isfinite(da[cloud]).all() and cloud.sum() > 144  # there was something to hide
    assert np.isnan(db[cloud]).all() and (mb[cloud] == 255).all()
    assert np.array_equal(da[~cloud], db[~cloud], equal_nan=True) and np.array_equal(ma[~cloud], mb[~cloud])
    assert plain.stats["cloud_mask"] is None and 0 < masked.stats["cloud_mask"]["masked_fraction"] < 0.06
    assert masked.stats["valid_pixels"] == plain.stats["valid_pixels"] - int((cloud & np.isfinite(da)).sum())
    two = detect_files(p1, p2, tmp_path / "two", options=opts, window=64, mask_clouds=True, workers=2)
    assert two.mask.read_bytes() == masked.mask.read_bytes()
    assert two.difference.read_bytes() == masked.difference.read_bytes()


def test_cli_detect_mask_clouds_reports_what_it_masked(tmp_path):
    import json

    from typer.testing import CliRunner

    from minescape.cli.app import app

    p1, p2 = cloudy_pair(tmp_path)
    r = CliRunner().invoke(app, ["change", "detect", str(p1), str(p2), str(tmp_path / "out"), "--mask-clouds",
                                 "--no-report", "--window", "64"])
    assert r.exit_code == 0, r.output
    assert "cloud mask: B10 change > 0.002" in r.output and "masked" in r.output
    stats = json.loads((tmp_path / "out" / "detect.json").read_text())
    assert 0 < stats["cloud_mask"]["masked_fraction"] < 0.06
    assert (read_raster(tmp_path / "out" / "change_mask.tif").data[0][60:72, 60:72] == 255).all()

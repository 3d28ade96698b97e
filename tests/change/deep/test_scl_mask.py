"""The SCL cloud mask (Sentinel-2 L2A, no B10): clouds and shadows of either date are found on the pair grid from
20 m SCL files, prediction and detection write nodata there and nothing else moves, B10 is preferred where both
dates have it, and a pair with neither (or one of each) is one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from minescape.change.pair_cloud_mask import pair_cloud_mask
from minescape.change.scl_mask import find_scl, scl_mask
from minescape.errors import InputError
from minescape.geo.grid import Grid
from minescape.geo.raster import Raster, read_raster, write_raster
from tests.change.deep.conftest import BANDS4, CRS_UTM, TRANSFORM, toy_pair

H, W = 150, 170
GRID = Grid(CRS_UTM, TRANSFORM, W, H)
TRANSFORM_20M = Affine(20, 0, TRANSFORM.c, 0, -20, TRANSFORM.f)


def l2a_folder(folder: Path, refl: np.ndarray, scl: np.ndarray | None, *, name: str = "SCL_20m.jp2") -> Path:
    """An L2A-like band folder: 10 m uint16 DN band files and, unless None, a 20 m SCL file (GeoTIFF bytes)."""
    folder.mkdir()
    for k, band in enumerate(BANDS4):
        dn = np.where(np.isfinite(refl[k]), np.clip(refl[k] * 10000, 1, 65535), 0).astype(np.uint16)
        write_raster(Raster(dn[None], CRS_UTM, TRANSFORM, 0), folder / f"T33XXX_20200101T000000_{band}.tif")
    if scl is not None:
        write_raster(Raster(scl[None].astype(np.uint8), CRS_UTM, TRANSFORM_20M, 0),
                     folder / f"T33XXX_20200101T000000_{name.replace('.jp2', '.tif')}")
    return folder


def scl_pair(tmp_path: Path):
    """Two L2A band folders: vegetation (SCL 4) everywhere; date 1 has a cloud shadow (3) at 10 m rows 20-32,
    cols 120-136; date 2 a cloud (9) at 10 m rows/cols 60-72."""
    t1, t2, _ = toy_pair(seed=8, height=H, width=W)
    s1 = np.full((H // 2 + 1, W // 2 + 1), 4, np.uint8)
    s2 = s1.copy()
    s1[10:16, 60:68] = 3
    s2[30:36, 30:36] = 9
    return l2a_folder(tmp_path / "d1", t1, s1), l2a_folder(tmp_path / "d2", t2, s2)


def test_clouds_and_shadows_of_either_date_with_their_buffer(tmp_path):
    d1, d2 = scl_pair(tmp_path)
    assert find_scl(d1)[0].name.endswith("SCL_20m.tif") and find_scl(tmp_path) is None
    m = pair_cloud_mask(d1, d2, GRID)
    assert m.source == "SCL" and m.block == 2 and m.blocks.shape == (75, 85)
    full = m.window(0, 0, H, W)
    assert full[60:72, 60:72].all() and full[20:32, 120:136].all()  # date 2's cloud, date 1's shadow
    assert full[52, 66] and full[80, 66] and full[26, 112]  # the 10 px buffer
    assert not full[45, 66] and not full[100, 100] and not full[140, 10]  # clear land
    assert 0 < m.fraction < 0.1
    assert "SCL classes 1, 3, 8, 9, 10" in m.describe() and "masked" in m.describe()
    bare = scl_mask(d1, d2, GRID, buffer=0).window(0, 0, H, W)
    assert bare.sum() == 12 * 12 + 12 * 16  # exactly the flagged 20 m pixels, on the 10 m grid
    only_clouds = scl_mask(d1, d2, GRID, classes=(8, 9), buffer=0).window(0, 0, H, W)
    assert only_clouds[60:72, 60:72].all() and not only_clouds[20:32, 120:136].any()


def test_scl_off_the_blocks_grid_is_resampled_to_the_same_mask(tmp_path):
    """SCL stored on the blocks' grid (20 m, the pair's origin) is read as stored; the same classes written at
    10 m (off the blocks' grid: another pixel size) go through resampling; both give the same mask."""
    d1, d2 = scl_pair(tmp_path)
    native = pair_cloud_mask(d1, d2, GRID)
    for d in (d1, d2):
        f = next(d.glob("*SCL_20m.tif"))
        scl = read_raster(f).data[0]
        fine = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)[:H, :W]
        f.unlink()
        write_raster(Raster(fine[None], CRS_UTM, TRANSFORM, 0), d / "T33XXX_20200101T000000_SCL_10m.tif")
    resampled = pair_cloud_mask(d1, d2, GRID)
    assert native.blocks.any() and np.array_equal(native.blocks, resampled.blocks)


def test_b10_is_preferred_and_a_pair_with_neither_or_one_of_each_is_one_clear_error(tmp_path):
    from tests.change.deep.test_cirrus_mask import cloudy_pair

    p1, p2 = cloudy_pair(tmp_path)  # reflectance stacks with B10, no SCL
    assert pair_cloud_mask(p1, p2, GRID).source == "B10"
    d1, d2 = scl_pair(tmp_path)
    with pytest.raises(InputError) as e:  # date 1 L1C-like (B10 only), date 2 L2A (SCL only)
        pair_cloud_mask(p1, d2, GRID)
    assert str(e.value).startswith(str(d2)) and "different cloud layers" in str(e.value)
    t1, _, _ = toy_pair(seed=8, height=H, width=W)
    bare = l2a_folder(tmp_path / "bare", t1, None)
    with pytest.raises(InputError) as e:
        pair_cloud_mask(bare, d2, GRID)
    text = str(e.value)
    assert text.startswith(str(bare)) and "neither B10" in text and "SCL" in text and "\n" not in text
    (d1 / "T33XXX_20200101T000000_SCL_60m.tif").write_bytes((d1 / "T33XXX_20200101T000000_SCL_20m.tif").read_bytes())
    with pytest.raises(InputError, match="two SCL files"):
        find_scl(d1)


def test_a_stack_band_described_scl_is_found(tmp_path):
    t1, _, _ = toy_pair(seed=9, height=32, width=32)
    a = np.concatenate([t1, np.full((1, 32, 32), 9, np.float32)])
    p = write_raster(Raster(a, CRS_UTM, TRANSFORM, np.nan, (*BANDS4, "SCL")), tmp_path / "s.tif")
    assert find_scl(p) == (p, 5)
    q = write_raster(Raster(t1, CRS_UTM, TRANSFORM, np.nan, BANDS4), tmp_path / "q.tif")
    assert find_scl(q) is None


def test_prediction_and_detection_write_nodata_under_scl_clouds_only(tiny_model, tmp_path):
    from minescape.change.deep.infer import predict_scene
    from minescape.change.deep.model import load_model
    from minescape.change.difference import DetectOptions, detect_files
    from minescape.compute import Compute

    d1, d2 = scl_pair(tmp_path)
    cloud = pair_cloud_mask(d1, d2, GRID).window(0, 0, H, W)
    m = load_model(tiny_model.model_path)
    cpu = Compute("cpu", "fp32", 1)
    kw = dict(tile=64, overlap=16, compute=cpu)
    plain = predict_scene(m, d1, d2, tmp_path / "a" / "p.tif", tmp_path / "a" / "m.tif", **kw)
    masked = predict_scene(m, d1, d2, tmp_path / "b" / "p.tif", tmp_path / "b" / "m.tif", mask_clouds=True, **kw)
    assert masked.clouds.startswith("SCL")
    pa, pb = read_raster(plain.probability).data[0], read_raster(masked.probability).data[0]
    assert np.isfinite(pa[cloud]).all() and cloud.sum() > 300  # there was something to hide
    assert np.isnan(pb[cloud]).all()
    assert np.array_equal(pa[~cloud], pb[~cloud], equal_nan=True)
    opts = DetectOptions(threshold="fixed", value=0.02, opening=0, closing=0)
    da = read_raster(detect_files(d1, d2, tmp_path / "da", options=opts, window=64).difference).data[0]
    det = detect_files(d1, d2, tmp_path / "db", options=opts, window=64, mask_clouds=True)
    db = read_raster(det.difference).data[0]
    assert np.isnan(db[cloud]).all() and np.array_equal(da[~cloud], db[~cloud], equal_nan=True)
    assert det.stats["cloud_mask"]["description"].startswith("SCL")


def test_cli_mask_clouds_with_neither_layer_exits_2(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from minescape.cli.app import app

    t1, t2, _ = toy_pair(seed=10, height=64, width=64)
    d1, d2 = l2a_folder(tmp_path / "x1", t1, None), l2a_folder(tmp_path / "x2", t2, None)
    for cmd in (["change", "predict", str(tiny_model.model_path), str(d1), str(d2), str(tmp_path / "o1"),
                 "--tile", "64", "--overlap", "16", "--mask-clouds"],
                ["change", "detect", str(d1), str(d2), str(tmp_path / "o2"), "--mask-clouds"]):
        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 2, r.output
        assert "neither B10" in r.output and str(d1) in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1


def test_tiles_wholly_under_clouds_are_not_run_and_nothing_else_moves(tiny_model, tmp_path):
    """A cloud over the top-left of date 2 covers whole tiles: those are skipped (counted, and the CLI says so),
    and every pixel outside the mask is the same as without the mask, to the bit."""
    from minescape.change.deep.infer import predict_scene
    from minescape.change.deep.model import load_model
    from minescape.compute import Compute
    from minescape.geo.blend import fitted_windows

    t1, t2, _ = toy_pair(seed=11, height=H, width=W)
    s1 = np.full((H // 2 + 1, W // 2 + 1), 4, np.uint8)
    s2 = s1.copy()
    s2[:45, :50] = 8  # 10 m rows 0-90, cols 0-100
    d1, d2 = l2a_folder(tmp_path / "c1", t1, s1), l2a_folder(tmp_path / "c2", t2, s2)
    m = load_model(tiny_model.model_path)
    kw = dict(tile=48, overlap=16, compute=Compute("cpu", "fp32", 1))
    plain = predict_scene(m, d1, d2, tmp_path / "a" / "p.tif", tmp_path / "a" / "m.tif", **kw)
    masked = predict_scene(m, d1, d2, tmp_path / "b" / "p.tif", tmp_path / "b" / "m.tif", mask_clouds=True, **kw)
    cloud = pair_cloud_mask(d1, d2, GRID).window(0, 0, H, W)
    valid = np.isfinite(read_raster(plain.probability).data[0])
    (th, rows), (tw, cols) = fitted_windows(H, size=48, overlap=16), fitted_windows(W, size=48, overlap=16)
    covered = sum(not (valid & ~cloud)[r:r + th, c:c + tw].any() for r in rows for c in cols)
    assert covered >= 2 and plain.tiles_skipped == 0  # whole tiles lie under the cloud
    assert masked.tiles_skipped == covered
    pa, pb = read_raster(plain.probability).data[0], read_raster(masked.probability).data[0]
    assert np.isnan(pb[cloud]).all() and np.isfinite(pa[cloud & valid]).all() and (cloud & valid).sum() > 9000
    assert np.array_equal(pa[~cloud], pb[~cloud], equal_nan=True)


def test_cli_detect_on_two_l2a_safe_products_masks_scl_clouds(tmp_path):
    """`change detect A.SAFE B.SAFE out --mask-clouds` on two L2A products as ESA delivers them (IMG_DATA/R10m,
    R20m with SCL, baseline 04.00 in the product name, so DN carry +1000): exit 0, SCL masks date 2's cloud, and
    outside it the difference is the one the same reflectance gives from plain band folders without the offset."""
    import json

    from typer.testing import CliRunner

    from minescape.cli.app import app

    t1, t2, _ = toy_pair(seed=12, height=H, width=W)
    s1 = np.full((H // 2 + 1, W // 2 + 1), 4, np.uint8)
    s2 = s1.copy()
    s2[30:36, 30:36] = 9  # a cloud in date 2: 10 m rows/cols 60-72
    safes = []
    for k, (refl, scl) in enumerate(((t1, s1), (t2, s2))):
        stamp = f"2024060{k + 1}T100000"
        safe = tmp_path / f"S2A_MSIL2A_{stamp}_N0400_R122_T33XXX_{stamp}.SAFE"
        img = safe / "GRANULE" / f"L2A_T33XXX_A00000{k}_{stamp}" / "IMG_DATA"
        (img / "R10m").mkdir(parents=True)
        (img / "R20m").mkdir()
        for j, band in enumerate(BANDS4):
            dn = np.where(np.isfinite(refl[j]), np.clip(refl[j] * 10000, 1, 65535), 0).astype(np.uint16)
            dn[dn > 0] += 1000  # the same DN as l2a_folder's, plus the offset
            write_raster(Raster(dn[None], CRS_UTM, TRANSFORM, 0), img / "R10m" / f"T33XXX_{stamp}_{band}_10m.tif")
        write_raster(Raster(scl[None], CRS_UTM, TRANSFORM_20M, 0), img / "R20m" / f"T33XXX_{stamp}_SCL_20m.tif")
        safes.append(safe)
    plain = [l2a_folder(tmp_path / f"plain{k}", refl, None) for k, refl in enumerate((t1, t2))]
    run = CliRunner()
    args = ["--threshold", "fixed", "--value", "0.02", "--opening", "0", "--closing", "0"]
    r = run.invoke(app, ["change", "detect", str(safes[0]), str(safes[1]), str(tmp_path / "out"), "--mask-clouds",
                         *args])
    assert r.exit_code == 0, r.output
    r0 = run.invoke(app, ["change", "detect", str(plain[0]), str(plain[1]), str(tmp_path / "ref"), *args])
    assert r0.exit_code == 0, r0.output
    stats = json.loads((tmp_path / "out" / "detect.json").read_text())
    assert "SCL classes" in json.dumps(stats) and "SCL classes" not in (tmp_path / "ref" / "detect.json").read_text()
    cloud = pair_cloud_mask(safes[0], safes[1], GRID).window(0, 0, H, W)
    got = read_raster(tmp_path / "out" / "difference.tif").data[0]
    ref = read_raster(tmp_path / "ref" / "difference.tif").data[0]
    assert cloud[60:72, 60:72].all() and np.isnan(got[cloud]).all() and np.isfinite(ref[cloud]).sum() > 300
    assert np.array_equal(got[~cloud], ref[~cloud], equal_nan=True)
    mask = read_raster(tmp_path / "out" / "change_mask.tif").data[0]
    assert (mask[cloud] == 255).all() and (mask[~cloud & np.isfinite(ref)] != 255).all()

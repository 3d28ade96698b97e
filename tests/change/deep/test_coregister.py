"""Sub-pixel co-registration of date 2: the estimate, the windowed shift, real OSCD misregistration, and
its use in training and prediction."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from minescape.change.coregister import (
    MAX_SHIFT,
    checked_shift,
    coregister_pair,
    estimate_shift,
    estimate_source_shift,
    shift_bands,
    shifted_source,
)
from minescape.errors import InputError

from .conftest import quick_train_args, write_pair

OSCD = Path(__file__).resolve().parents[4] / "shared" / "data" / "oscd"
runner = CliRunner()


def smooth_scene(seed: int = 0, bands: int = 4, h: int = 180, w: int = 210) -> np.ndarray:
    """Seeded texture with structure at several scales (reflectance-like, float32)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (bands, h, w))
    return (0.2 + 0.05 * np.stack([gaussian_filter(b, 1.5) + 0.3 * gaussian_filter(b, 6) for b in noise])
            ).astype(np.float32)


@pytest.mark.parametrize("true", [(0.7, -1.3), (-2.25, 0.4), (0.0, 0.0)])
def test_estimate_shift_recovers_a_known_subpixel_shift(true):
    ref = smooth_scene()
    ref[:, :10, :10] = np.nan  # nodata does not derail the estimate
    mov = shift_bands(ref, true)
    dy, dx = estimate_shift(ref, mov)
    assert abs(dy + true[0]) <= 0.1 and abs(dx + true[1]) <= 0.1
    back = shift_bands(mov, (dy, dx))
    core = (slice(None), slice(20, -20), slice(20, -20))
    if true != (0.0, 0.0):  # bilinear twice smooths, but the scene is back in place
        assert np.nanmean(np.abs(back[core] - ref[core])) < 0.4 * np.nanmean(np.abs(mov[core] - ref[core]))


def test_shift_matches_scipy_and_an_integer_shift_moves_pixels_exactly():
    from scipy.ndimage import shift as nd_shift

    a = smooth_scene(h=40, w=50)
    for shift in ((0.6, -1.4), (-2.25, 0.4)):
        ref = np.stack([nd_shift(b, shift, order=1, mode="constant", cval=np.nan, prefilter=False) for b in a])
        np.testing.assert_allclose(shift_bands(a, shift), ref, rtol=0, atol=3e-7)  # NaN where scipy has NaN
    moved = shift_bands(a, (2.0, -3.0))
    np.testing.assert_array_equal(moved[:, 2:, :-3], a[:, :-2, 3:])
    assert np.isnan(moved[:, :2]).all() and np.isnan(moved[:, :, -3:]).all()
    np.testing.assert_array_equal(shift_bands(a, (0.0, 0.0)), a)


def test_shift_brings_nan_in_from_outside_and_keeps_the_grid():
    a = smooth_scene(h=40, w=50)
    b = shift_bands(a, (1.5, -2.0))
    assert b.shape == a.shape and b.dtype == np.float32
    assert np.isnan(b[:, 0]).all() and np.isnan(b[:, :, -1]).all()  # came from above / from the right
    assert np.isfinite(b[:, 5:-5, 5:-5]).all()


def test_shifted_source_equals_shifting_the_whole_scene(tmp_path):
    from rasterio.windows import Window

    from minescape.change.pairs import open_pair_source as open_pair

    t1 = smooth_scene(seed=1, h=150, w=170)
    t2 = smooth_scene(seed=2, h=150, w=170)
    t2[:, 60:70, 80:90] = np.nan
    p1, p2 = write_pair(tmp_path, t1, t2)
    shift = (0.6, -1.4)
    src = shifted_source(open_pair(p1, p2, ("B02", "B03", "B04", "B08")), shift)
    whole = shift_bands(t2, shift)
    for win in (Window(0, 0, 170, 40), Window(0, 40, 170, 40), Window(0, 120, 170, 30), Window(150, 3, 20, 17),
                Window(0, 0, 170, 150)):
        a1, a2 = src.read(win)
        sl = (slice(None), slice(win.row_off, win.row_off + win.height), slice(win.col_off, win.col_off + win.width))
        np.testing.assert_array_equal(a1, t1[sl])
        np.testing.assert_array_equal(a2, whole[sl])  # bit for bit (NaN where NaN), not to 1 ulp
        assert np.isfinite(a2).any() and np.isnan(a2).any() == bool(np.isnan(whole[sl]).any())
    est = estimate_source_shift(open_pair(p1, p1, ("B02", "B03", "B04", "B08")), ("B02", "B03", "B04", "B08"))
    assert est == (0.0, 0.0)


def test_too_large_a_shift_is_a_one_line_input_error():
    assert checked_shift((4.9, -1.0), "pair 'x'") == (4.9, -1.0)
    with pytest.raises(InputError, match=r"pair 'x': estimated misregistration \(0.00, 6.00\) px exceeds 5 px"):
        checked_shift((0.0, MAX_SHIFT + 1), "pair 'x'")


@pytest.mark.skipif(not OSCD.is_dir(), reason="needs ../shared/data/oscd (real OSCD cities)")
def test_real_oscd_abudhabi_is_misregistered_and_coregistration_fixes_it():
    """Abu Dhabi's dates are > 1 px apart; after co-registration the residual is < 0.15 px and the
    SAVI-difference + Otsu change map scores a higher F1 against the real label."""
    from skimage.filters import threshold_otsu

    from minescape.change.datasets import read_oscd_city
    from minescape.change.deep.train import change_scores
    from minescape.indices import savi

    pair = read_oscd_city(OSCD, "abudhabi", bands=("B02", "B03", "B04", "B08"))
    fixed, (dy, dx) = coregister_pair(pair)
    assert np.hypot(dy, dx) > 1.0
    assert fixed.t1 is pair.t1 and fixed.label is pair.label and fixed.t2.transform == pair.t2.transform
    residual = estimate_shift(fixed.t1.data, fixed.t2.data)
    assert np.hypot(*residual) < 0.15

    def f1(p):
        d = np.abs(savi(p.t2.band("B08"), p.t2.band("B04")) - savi(p.t1.band("B08"), p.t1.band("B04")))
        lab = p.label.data[0]
        ok = np.isfinite(d) & (lab != 255)
        return change_scores(d[ok] >= threshold_otsu(d[ok]), lab[ok] == 1)["f1"]

    assert f1(fixed) > 1.3 * f1(pair)


@pytest.mark.skipif(not OSCD.is_dir(), reason="needs ../shared/data/oscd (real OSCD cities)")
def test_cli_detect_coregister_on_real_abudhabi(tmp_path):
    """`change detect --coregister` on Abu Dhabi's band folders: the shift is printed, tagged and recorded;
    the mask is the same whatever the processing window (the halo read is exact), and it scores a higher F1
    against the real label than without co-registration."""
    import rasterio

    from minescape.change.datasets import read_oscd_city
    from minescape.change.deep.train import change_scores
    from minescape.cli.app import app

    city = OSCD / "images" / "abudhabi"
    masks = {}
    for name, extra in (("plain", []), ("coreg", ["--coregister"]),
                        ("coreg-small", ["--coregister", "--window", "160"])):
        res = runner.invoke(app, ["change", "detect", str(city / "imgs_1"), str(city / "imgs_2"), str(tmp_path / name),
                                  *extra])
        assert res.exit_code == 0, res.output
        with rasterio.open(tmp_path / name / "change_mask.tif") as src:
            masks[name] = src.read(1)
            tag = src.tags().get("coregistration_shift_px")
        summary = json.loads((tmp_path / name / "detect.json").read_text())
        if extra:
            assert "co-registration: date 2 moved by" in res.output
            dy, dx = summary["coregistration_shift_px"]
            assert abs(dy + 1.25) < 0.2 and abs(dx + 0.55) < 0.2  # measured (-1.25, -0.55) px
            assert tag == f"{dy:.2f} {dx:.2f}"
        else:
            assert summary["coregistration_shift_px"] is None and tag is None
    np.testing.assert_array_equal(masks["coreg"], masks["coreg-small"])
    label = read_oscd_city(OSCD, "abudhabi", bands=("B04",)).label.data[0]
    assert label.shape == masks["plain"].shape

    def f1(mask):
        ok = (label != 255) & (mask != 255)
        return change_scores(mask[ok] == 1, label[ok] == 1)["f1"]

    assert f1(masks["coreg"]) > 1.2 * f1(masks["plain"])


def test_predict_coregisters_a_misregistered_pair(tiny_model, tmp_path):
    from minescape.change.deep.infer import predict_scene
    from minescape.change.deep.model import load_model
    from minescape.geo.raster import read_raster

    t1 = smooth_scene(seed=5, h=128, w=144)
    t2 = shift_bands(t1, (1.2, -0.7))
    p1, p2 = write_pair(tmp_path, t1, t2)
    model = replace(load_model(tiny_model.model_path), coregister=True)
    res = predict_scene(model, p1, p2, tmp_path / "p.tif", tmp_path / "m.tif", tile=64, overlap=16)
    assert res.shift is not None and abs(res.shift[0] + 1.2) <= 0.1 and abs(res.shift[1] - 0.7) <= 0.1
    import rasterio

    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.tags()["coregistration_shift_px"] == f"{res.shift[0]:.2f} {res.shift[1]:.2f}"
    off = predict_scene(model, p1, p2, tmp_path / "p0.tif", tmp_path / "m0.tif", tile=64, overlap=16,
                        coregister=False)
    assert off.shift is None
    assert not np.array_equal(read_raster(tmp_path / "p.tif").data, read_raster(tmp_path / "p0.tif").data,
                              equal_nan=True)


def test_cli_train_coregister_is_stored_and_predict_follows(small_region, tmp_path):
    from minescape.cli.app import app

    out = tmp_path / "model"
    r = runner.invoke(app, quick_train_args(small_region, out, "--coregister", "--jitter", "0.1"))
    assert r.exit_code == 0, r.output
    assert "co-registered" in r.output
    card = json.loads((out / "model.json").read_text())
    assert card["coregister"] is True and card["config"]["jitter"] == 0.1
    assert len(card["training_data"]["coregistration_shift_px"]) == 1
    r = runner.invoke(app, ["change", "predict", str(out / "model.pt"), str(small_region.t1),
                            str(small_region.t2), str(tmp_path / "pred"), "--tile", "128", "--overlap", "16",
                            "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "date 2 moved by" in r.output
    r = runner.invoke(app, ["change", "export", str(out / "model.pt")])
    assert r.exit_code == 0, r.output
    from minescape.change.deep.onnx_backend import onnx_metadata

    assert onnx_metadata(out / "model.onnx")["coregister"] is True
    r = runner.invoke(app, ["change", "predict", str(out / "model.pt"), str(small_region.t1),
                            str(small_region.t2), str(tmp_path / "pred2"), "--tile", "128", "--overlap", "16",
                            "--threads", "1", "--no-coregister"])
    assert r.exit_code == 0 and "moved by" not in r.output
    r = runner.invoke(app, ["change", "train", str(tmp_path / "m2"), "--patches", str(tmp_path), "--coregister"])
    assert r.exit_code == 2 and "--coregister works on scenes" in r.output

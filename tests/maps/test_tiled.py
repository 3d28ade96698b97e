"""Tiled inference: no seams, COG with overviews and legend, nodata honoured, pixel and patch models."""

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from minescape.errors import InputError
from minescape.geo.raster import read_raster, write_raster
from minescape.legend import SINOLC1
from minescape.maps.tiled import pixel_predictor, predict_tiled, unet_predictor


def test_unet_tiles_blend_without_seams_and_write_a_cog(tiny_unet, hr_scene, tmp_path):
    img = hr_scene.image
    data = img.data.copy()
    data[:, 10:30, 200:230] = np.nan  # a nodata patch
    path = write_raster(img.with_data(data, band_names=img.band_names), tmp_path / "img.tif")
    pred = unet_predictor(tiny_unet, window=64, stride=40)
    small = predict_tiled(path, pred, tmp_path / "small.tif", legend=SINOLC1, tile=50)
    whole = predict_tiled(path, pred, tmp_path / "whole.tif", legend=SINOLC1, tile=4096)
    a, b = read_raster(small.path).data[0], read_raster(whole.path).data[0]
    assert small.tiles == 20 and whole.tiles == 1
    # a writer of one constant would pass the equality below: first prove the map holds a real prediction
    assert (a[10:30, 200:230] == SINOLC1.nodata).all()  # the nodata patch stays nodata
    assert (a != SINOLC1.nodata).sum() == a.size - 20 * 30 and len(np.unique(a[a != SINOLC1.nodata])) >= 2
    np.testing.assert_array_equal(a, b)  # the blended value of a pixel does not depend on its tile
    assert (a[10:30, 200:230] == SINOLC1.nodata).all() and (a[40:, :] != SINOLC1.nodata).all()
    with rasterio.open(small.path) as src:
        assert src.overviews(1), "COG must have internal overviews"
        assert src.profile["tiled"] and src.nodata == 0
        assert src.tags()["CLASS_2"] == "Tree cover" and "LEGEND" in src.tags()
        assert src.colormap(1)[9][:3] == SINOLC1.by_code(9).color
        assert src.crs == img.crs and src.transform == img.transform
    # same input, same bytes
    again = predict_tiled(path, pred, tmp_path / "again.tif", legend=SINOLC1, tile=50)
    assert again.path.read_bytes() == small.path.read_bytes()


def test_lightgbm_pixel_model_with_neighbourhood_features(hr_scene, hr_files, tmp_path):
    import lightgbm as lgb

    def features(block):  # bands + their 5x5 means: needs a 2-pixel halo
        means = [ndimage.uniform_filter(b, size=5, mode="nearest") for b in block]
        return np.concatenate([block, np.stack(means)])

    img = hr_scene.image.data
    feats = features(img).reshape(8, -1).T
    y = hr_scene.truth.data[0].ravel()
    rng = np.random.default_rng(0)
    idx = rng.choice(y.size, 4000, replace=False)
    model = lgb.LGBMClassifier(n_estimators=25, num_leaves=15, random_state=0, verbose=-1).fit(feats[idx], y[idx])
    pred = pixel_predictor(model, codes=model.classes_, n_bands=4, features=features, halo=2)
    res = predict_tiled(hr_files["image"], pred, tmp_path / "lgb.tif", legend=SINOLC1, tile=64)
    tiled = read_raster(res.path).data[0]
    whole = model.classes_[model.predict_proba(feats).argmax(1)].reshape(tiled.shape)
    np.testing.assert_array_equal(tiled, whole)  # halo tiles reproduce the whole-raster prediction
    assert (tiled == hr_scene.truth.data[0]).mean() > 0.8


def test_bands_that_do_not_match_the_model(tiny_unet, hr_scene, tmp_path):
    three = write_raster(hr_scene.image.select(["blue", "green", "red"]), tmp_path / "rgb.tif")
    with pytest.raises(InputError, match=r"rgb.tif: U-Net expects 4 bands but the imagery has 3"):
        predict_tiled(three, unet_predictor(tiny_unet, window=64), tmp_path / "x.tif", legend=SINOLC1)
    assert not (tmp_path / "x.tif").exists()

    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    five = LogisticRegression().fit(rng.normal(size=(50, 5)), np.repeat([2, 4], 25))  # trained on 5 features
    with pytest.raises(InputError, match="expects 5 features but the imagery gives 3"):
        predict_tiled(three, pixel_predictor(five, codes=[2, 4], n_bands=3), tmp_path / "y.tif", legend=SINOLC1)


def test_padding_past_the_edge_is_nodata_whether_or_not_the_image_declares_one(tiny_unet, hr_scene, tmp_path):
    """Windows reaching past the right and bottom edges are padded. Without a declared nodata the padding was fed
    to the network as 0 (not the training mean), so the edge pixels depended on whether the image declared a
    nodata that never occurs; now the map is the same either way."""
    from dataclasses import replace

    img = hr_scene.image
    plain = write_raster(replace(img, nodata=None), tmp_path / "plain.tif")
    declared = write_raster(replace(img, nodata=-9999.0), tmp_path / "declared.tif")
    with rasterio.open(plain) as a, rasterio.open(declared) as b:
        assert a.nodata is None and b.nodata == -9999.0 and not (b.read() == -9999.0).any()
    pred = unet_predictor(tiny_unet, window=64, stride=40)  # 240 x 180 px: the last windows reach past both edges
    m1 = read_raster(predict_tiled(plain, pred, tmp_path / "m1.tif", legend=SINOLC1, tile=4096).path).data[0]
    m2 = read_raster(predict_tiled(declared, pred, tmp_path / "m2.tif", legend=SINOLC1, tile=4096).path).data[0]
    assert (m1 != SINOLC1.nodata).all() and len(np.unique(m1)) >= 2
    np.testing.assert_array_equal(m1, m2)


def test_unet_class_map_is_the_same_for_any_thread_count(tiny_unet, hr_scene, tmp_path):
    """On a CPU, prediction with 2 threads runs 2 batches of windows at once, each in one thread
    (``resolve_compute``; windows in batches of 2, so a chunk of windows is several batches): the class map is
    the same bytes as with 1 thread (a batch's values do not depend on the thread count)."""
    import os

    import torch

    from minescape.compute import resolve_compute

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one usable core: 2 threads cannot be compared with 1")
    path = write_raster(hr_scene.image, tmp_path / "img.tif")
    before = torch.get_num_threads()
    outs = {}
    try:
        for n in (1, 2):
            compute = resolve_compute("cpu", "fp32", n)
            assert compute.tiles_at_once == n and compute.op_threads == 1
            torch.set_num_threads(2)  # the caller's own setting, which the prediction puts back
            res = predict_tiled(path, unet_predictor(tiny_unet, window=64, stride=40, batch=2, compute=compute),
                                tmp_path / f"t{n}.tif", legend=SINOLC1, tile=100)
            assert torch.get_num_threads() == 2
            outs[n] = res.path.read_bytes()
            assert len(res.class_pixels) >= 2
    finally:
        torch.set_num_threads(before)
    assert outs[1] == outs[2]

"""U-Net training (seeds, checkpoints) and low-to-high weak supervision."""

import numpy as np
import pytest
import torch

from minescape.accuracy import evaluate
from minescape.errors import InputError
from minescape.legend import SINOLC1
from minescape.maps.boundary import boundary_f1
from minescape.maps.train import IGNORE, TrainConfig, load_checkpoint, predict_proba, save_checkpoint, train_unet
from minescape.maps.unet import UNet
from minescape.maps.weak import agreement_labels, train_weak, upsample_labels


def test_unet_any_bands_and_odd_sizes():
    """Shape, and what the shape cannot show: at odd sizes the output stays aligned with the input (shifting
    the input by whole 8-pixel steps shifts the output's interior by the same pixels: skip connections and
    upsampling put each value back where it came from), the output varies with the input, and samples of a
    batch do not leak into one another."""
    torch.manual_seed(0)
    net = UNet(7, 5, base=4, depth=3).eval()
    with torch.inference_mode():
        assert net(torch.zeros(2, 7, 37, 50)).shape == (2, 5, 37, 50)
        x = torch.randn(2, 7, 157, 161)
        y = net(x)
        moved = net(torch.roll(x, shifts=(8, 16), dims=(2, 3)))
        m = 40  # beyond the reach of the zero padding at the borders
        interior, shifted = y[..., m:157 - m - 8, m:161 - m - 16], moved[..., m + 8:157 - m, m + 16:161 - m]
        assert interior.numel() > 5 * 60 * 60 and interior.std() > 0.05  # many values, not a constant
        torch.testing.assert_close(shifted, interior, atol=1e-5, rtol=0)
        assert (shifted - y[..., m + 8:157 - m, m + 16:161 - m]).abs().max() > 1e-3  # the shift is visible
        torch.testing.assert_close(net(x[1:]), y[1:], atol=1e-5, rtol=0)  # batch samples are independent


def test_training_is_deterministic_and_checkpoints_roundtrip(hr_scene, tmp_path):
    labels = agreement_labels([hr_scene.label_10m], hr_scene.image.grid, SINOLC1)
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, batch=2, patch=32, seed=5)
    before = torch.get_num_threads()
    try:  # the caller's torch (a notebook's): its thread count and random stream survive training
        torch.set_num_threads(2)
        torch.manual_seed(11)
        expected = torch.rand(3)
        torch.manual_seed(11)
        a = train_unet(hr_scene.image.data, labels, SINOLC1, config=cfg, band_names=hr_scene.image.band_names)
        assert torch.get_num_threads() == 2 and cfg.threads == 1  # trained on 1 thread, put back
        assert torch.equal(torch.rand(3), expected)
    finally:
        torch.set_num_threads(before)
    b = train_unet(hr_scene.image.data, labels, SINOLC1, config=cfg, band_names=hr_scene.image.band_names)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    path = save_checkpoint(a, tmp_path / "m.pt")
    back = load_checkpoint(path)
    assert back.band_names == ("blue", "green", "red", "nir") and back.codes == SINOLC1.codes
    np.testing.assert_array_equal(predict_proba(back, hr_scene.image.data[:, :64, :64]),
                                  predict_proba(a, hr_scene.image.data[:, :64, :64]))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt: not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_agreement_labels_ignore_disagreement(hr_scene):
    grid = hr_scene.image.grid
    both = agreement_labels([hr_scene.label_10m, hr_scene.label_30m], grid, SINOLC1)
    up10 = upsample_labels(hr_scene.label_10m, grid, SINOLC1).data[0]
    up30 = upsample_labels(hr_scene.label_30m, grid, SINOLC1).data[0]
    assert up10.shape == grid.shape and up10[0, 0] == hr_scene.label_10m.data[0, 0, 0]
    agree = up10 == up30
    assert ((both == IGNORE) == ~agree).all()
    assert 0.4 < agree.mean() < 0.95
    idx = both[agree]
    assert (np.asarray(SINOLC1.codes)[idx] == up10[agree]).all()


def test_labels_outside_the_legend_are_rejected(hr_scene):
    bad = hr_scene.label_30m.with_data(np.where(hr_scene.label_30m.data == 9, 77, hr_scene.label_30m.data))
    with pytest.raises(InputError, match=r"esa30.tif: values \[77\] are not in the sinolc1 legend"):
        agreement_labels([hr_scene.label_10m, bad], hr_scene.image.grid, SINOLC1, names=["lc10.tif", "esa30.tif"])


def test_weak_supervision_beats_the_upsampled_labels():
    from minescape.maps.synthetic_hr import HRConfig, make_scene

    scene = make_scene(HRConfig(seed=0, width=240, height=210))
    res = train_weak(scene.image, [scene.label_10m, scene.label_30m], SINOLC1,
                     config=TrainConfig(epochs=5, steps_per_epoch=20, seed=0), finetune_epochs=2)
    truth = scene.truth.data[0]
    codes = np.asarray(SINOLC1.codes)
    pred = codes[predict_proba(res.model, scene.image.data).argmax(0)]
    low = upsample_labels(scene.label_10m, scene.image.grid, SINOLC1).data[0]
    oa_hr, oa_lr = (evaluate(truth, x, SINOLC1.codes).overall_accuracy for x in (pred, low))
    bf_hr, bf_lr = (boundary_f1(truth, x, tolerance=2)["f1"] for x in (pred, low))
    assert oa_hr > oa_lr, (oa_hr, oa_lr)
    assert bf_hr > bf_lr + 0.1, (bf_hr, bf_lr)
    assert 0.5 < res.agreement_share < 0.9


def test_a_label_product_keeps_its_own_nodata():
    """A 30 m product whose nodata is 255 (not the legend's 0): the 255 pixel is no class, it comes out as the
    legend's nodata on the 10 m grid (3 x 3 pixels), and the other labels are kept."""
    from affine import Affine

    from minescape.geo.grid import Grid
    from minescape.geo.raster import Raster

    lab = np.full((1, 4, 4), 2, np.uint8)
    lab[0, 0, 0] = 255
    labels = Raster(lab, "EPSG:32650", Affine(30, 0, 500000, 0, -30, 7500000), 255)
    grid = Grid("EPSG:32650", Affine(10, 0, 500000, 0, -10, 7500000), 12, 12)
    up = upsample_labels(labels, grid, SINOLC1, name="product_30m.tif")
    assert up.nodata == SINOLC1.nodata and (up.data[0, :3, :3] == SINOLC1.nodata).all()
    assert int((up.data == 2).sum()) == 144 - 9
    lab[0, 1, 1] = 254
    with pytest.raises(InputError, match=r"product_30m.tif: values \[254\] are not in the sinolc1 legend"):
        upsample_labels(Raster(lab, labels.crs, labels.transform, 255), grid, SINOLC1, name="product_30m.tif")


def test_zero_epochs_are_refused_before_any_training():
    from minescape.errors import ConfigError
    from minescape.maps.synthetic_hr import HRConfig, make_scene

    scene = make_scene(HRConfig(seed=3, width=120, height=120))
    with pytest.raises(ConfigError, match="epochs must be a whole number >= 1, not 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="steps_per_epoch must be a whole number >= 1"):
        TrainConfig(steps_per_epoch=-1)
    with pytest.raises(ConfigError, match="finetune_epochs must be >= 1, not 0"):  # was a ZeroDivisionError
        train_weak(scene.image, [scene.label_10m], SINOLC1, config=TrainConfig(epochs=1, steps_per_epoch=1),
                   finetune_epochs=0)

"""Synthetic clouds on training crops: reflectance maths, labels, reproducibility and bad options."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minescape.change.deep.batches import make_batch, to_device  # noqa: E402
from minescape.change.deep.clouds import CLOUD_TOA, CloudDraws, add_clouds, draw_clouds, synthetic_clouds  # noqa: E402
from minescape.change.deep.train import TrainConfig  # noqa: E402
from minescape.errors import ConfigError  # noqa: E402
from minescape.sentinel2 import ALL_BANDS  # noqa: E402

BANDS = list(ALL_BANDS)
MEAN = np.linspace(0.05, 0.3, 13).astype(np.float32)
STD = np.linspace(0.02, 0.1, 13).astype(np.float32)


def _draws(n: int, size: int, *, cover: float, opacity: float, depth: float, shift=(0, 0), dates=None
           ) -> CloudDraws:
    g = max(3, size // 12)
    return CloudDraws(crops=np.arange(n), dates=np.array(dates if dates is not None else [1] * n),
                      grids=np.random.default_rng(0).standard_normal((n, g, g)), cover=np.full(n, cover),
                      edge=np.full(n, 0.3), opacity=np.full(n, opacity), brightness=np.ones((n, 13)),
                      shift=np.tile(np.array(shift), (n, 1)), depth=np.full(n, depth))


def _reflectance(x):
    return x.numpy() * STD[None, :, None, None] + MEAN[None, :, None, None]


def test_a_full_cloud_is_the_cloud_spectrum_and_hides_the_change():
    clouds = synthetic_clouds(0.5, BANDS, MEAN, STD, norm="global")
    x1 = torch.zeros((2, 13, 32, 32))
    x2 = torch.zeros((2, 13, 32, 32))
    lab = torch.ones((2, 32, 32), dtype=torch.uint8)
    before1 = x1.clone()
    add_clouds(x1, x2, lab, _draws(2, 32, cover=-100.0, opacity=1.0, depth=0.0), clouds)
    refl = _reflectance(x2)
    assert np.abs(refl - np.array([CLOUD_TOA[b] for b in BANDS])[None, :, None, None]).max() < 1e-5
    assert torch.equal(x1, before1)  # date 1 untouched
    assert bool((lab == 255).all())  # the change under a full cloud is no longer labelled


def test_a_shadow_darkens_the_surface_by_its_depth_and_spares_b10():
    clouds = synthetic_clouds(0.5, BANDS, MEAN, STD, norm="global")
    x1 = torch.zeros((1, 13, 32, 32))  # surface = the training mean
    x2 = torch.zeros((1, 13, 32, 32))
    lab = torch.zeros((1, 32, 32), dtype=torch.uint8)
    add_clouds(x1, x2, lab, _draws(1, 32, cover=-100.0, opacity=0.0, depth=0.4, dates=[0]), clouds)
    refl = _reflectance(x1)[0, :, 5, 5]
    expect = MEAN * (1 - 0.4 * np.array([{"B01": 0.5, "B02": 0.6, "B03": 0.8, "B10": 0.0}.get(b, 1.0)
                                         for b in BANDS]))
    assert np.abs(refl - expect).max() < 1e-5
    assert refl[BANDS.index("B08")] < MEAN[BANDS.index("B08")] - 0.01
    assert bool((lab == 0).all())  # no change stays no change


def test_a_partial_cloud_covers_part_of_the_crop_and_keeps_labels_elsewhere():
    clouds = synthetic_clouds(0.5, BANDS, MEAN, STD, norm="global")
    x1 = torch.zeros((1, 13, 64, 64))
    x2 = torch.zeros((1, 13, 64, 64))
    lab = torch.ones((1, 64, 64), dtype=torch.uint8)
    add_clouds(x1, x2, lab, _draws(1, 64, cover=0.5, opacity=1.0, depth=0.0), clouds)
    moved = (x2[0].abs().sum(0) > 1e-6).numpy()
    assert 0.05 < moved.mean() < 0.8
    hidden = (lab[0] == 255).numpy()
    assert hidden.any() and (lab[0] == 1).any()
    assert not (hidden & ~moved).any()  # only clouded pixels lose their label


def _scenes():
    rng = np.random.default_rng(1)
    x1 = rng.normal(size=(13, 80, 80)).astype(np.float32)
    x2 = rng.normal(size=(13, 80, 80)).astype(np.float32)
    lab = (rng.random((80, 80)) < 0.1).astype(np.uint8)
    return to_device([(x1, x2, lab)], pad=32)


def test_batches_with_clouds_repeat_and_leave_unclouded_crops_alone():
    scenes = _scenes()
    clouds = synthetic_clouds(0.5, BANDS, MEAN, STD, norm="global")
    kw = dict(size=32, batch=16, focus_change=0.5, swap_dates=True)
    plain = make_batch(scenes, np.ones(1), np.random.default_rng(5), **kw)
    a = make_batch(scenes, np.ones(1), np.random.default_rng(5), clouds=clouds, **kw)
    b = make_batch(scenes, np.ones(1), np.random.default_rng(5), clouds=clouds, **kw)
    for u, v in zip(a, b):
        assert torch.equal(u, v)  # same generator, same batch
    changed = [i for i in range(16) if not (torch.equal(a[0][i], plain[0][i]) and torch.equal(a[1][i], plain[1][i]))]
    assert 2 <= len(changed) <= 14  # about half the crops got a cloud
    for i in set(range(16)) - set(changed):
        assert torch.equal(a[2][i], plain[2][i])
    # a clouded crop changed in exactly one date
    for i in changed:
        assert torch.equal(a[0][i], plain[0][i]) != torch.equal(a[1][i], plain[1][i])


def test_draws_are_within_their_ranges():
    clouds = synthetic_clouds(0.9, BANDS, MEAN, STD, norm="global")
    d = draw_clouds(np.random.default_rng(0), clouds, batch=200, size=64)
    assert 150 < len(d.crops) < 200
    assert set(np.unique(d.dates)) == {0, 1}
    assert d.opacity.min() >= 0.35 and d.opacity.max() <= 1.0
    assert np.abs(d.shift).max() <= 16


@pytest.mark.parametrize("kwargs, message", [
    ({"clouds": 1.0}, "clouds must be a share"),
    ({"clouds": -0.1}, "clouds must be a share"),
    ({"clouds": 0.3, "norm": "per-image"}, "global normalisation"),
])
def test_bad_cloud_options_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_clouds_need_sentinel2_band_names():
    with pytest.raises(ConfigError, match="no cloud spectrum for \\['red'\\]"):
        synthetic_clouds(0.3, ["B02", "red"], MEAN[:2], STD[:2], norm="global")
    assert synthetic_clouds(0.0, ["red"], MEAN[:1], STD[:1], norm="global") is None

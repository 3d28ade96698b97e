"""Fixtures for the deep change tests: a seeded toy pair on a real UTM grid and a tiny trained model."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from minescape.geo.raster import Raster, write_raster

BANDS4 = ("B02", "B03", "B04", "B08")
CRS_UTM = CRS.from_epsg(32633)
TRANSFORM = Affine(10, 0, 500000, 0, -10, 4100000)


def toy_pair(seed: int = 0, height: int = 96, width: int = 112, bands: int = 4):
    """Two dates of smooth 'reflectance' with rectangles that brighten in date 2 (the change)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 0.3, (bands, 1, 1)) + rng.normal(0, 0.02, (bands, height, width))
    t1 = base.astype(np.float32)
    t2 = (base + rng.normal(0, 0.01, base.shape)).astype(np.float32)
    label = np.zeros((height, width), np.uint8)
    for _ in range(6):
        r, c = rng.integers(0, height - 12), rng.integers(0, width - 12)
        h, w = rng.integers(5, 12, 2)
        label[r:r + h, c:c + w] = 1
    t2[:, label == 1] += 0.25
    t1[:, :3, :3] = np.nan  # a nodata corner
    label[:3, :3] = 255
    return t1, t2, label


def write_pair(folder, t1, t2, band_names=BANDS4):
    """Write the toy pair as float32 reflectance GeoTIFF stacks (NaN nodata) with band descriptions."""
    p1 = write_raster(Raster(t1, CRS_UTM, TRANSFORM, np.nan, band_names), folder / "t1.tif")
    p2 = write_raster(Raster(t2, CRS_UTM, TRANSFORM, np.nan, band_names), folder / "t2.tif")
    return p1, p2


def quick_train_args(region, out, *extra: str) -> list[str]:
    """``minescape change train`` arguments for a few-step FC-Siam-diff on the small region's scene pair."""
    return ["change", "train", str(out), "--t1", str(region.t1), "--t2", str(region.t2), "--truth",
            str(region.truth_change), "--bands", "B02,B03,B04,B08", "--arch", "fc-siam-diff", "--epochs", "1",
            "--steps", "2", "--batch-size", "2", "--crop", "32", "--seed", "1", "--threads", "1", *extra]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A FC-Siam-diff trained for a few steps on the toy pair (TrainResult)."""
    import torch

    from minescape.change.deep.train import Sample, TrainConfig, holdout_split, train

    torch.set_num_threads(1)
    t1, t2, label = toy_pair()
    tr, va = holdout_split([Sample("toy", t1, t2, label)], fraction=0.25)
    cfg = TrainConfig(arch="fc-siam-diff", crop=32, batch_size=4, epochs=3, steps_per_epoch=6, lr=3e-3,
                      seed=3, val_tile=64)
    return train(tr, va, tmp_path_factory.mktemp("tiny_model"), bands=BANDS4, config=cfg, progress=False,
                 training_data={"dataset": "toy"})


def saved_model(path, bands=BANDS4, *, arch: str = "fc-siam-diff", seed: int = 0, threshold: float = 0.5,
                **fields):
    """An untrained seeded network saved as a model file at ``path``; returns the loaded ChangeModel."""
    import torch

    from minescape.change.deep.model import ChangeModel, build_model, load_model, save_model

    torch.manual_seed(seed)
    fields.setdefault("mean", np.full(len(bands), 0.1, np.float32))
    fields.setdefault("std", np.full(len(bands), 0.05, np.float32))
    save_model(path, ChangeModel(net=build_model(arch, len(bands)), arch=arch, bands=tuple(bands),
                                 threshold=threshold, **fields))
    return load_model(path)

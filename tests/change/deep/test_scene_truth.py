"""``change train --t1 --t2 --truth``: the change raster is read onto date 1's grid, wherever it lies (it was
compared by shape only, so a truth on another grid of the same size trained the network on misplaced labels)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from minescape.change.deep.train import samples_from_scenes
from minescape.errors import InputError


def _copy(src_path, dst_path, **changes):
    with rasterio.open(src_path) as src:
        profile, data = src.profile, src.read()
    profile.update(**changes)
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data)
    return dst_path


def test_truth_on_another_grid_lands_where_it_belongs(small_region, tmp_path):
    bands = ("B02", "B03", "B04", "B08")
    (base,), _ = samples_from_scenes(small_region.t1, small_region.t2, small_region.truth_change, bands=bands)
    assert int((base.label == 1).sum()) > 100  # the region has change to place
    with rasterio.open(small_region.truth_change) as src:
        shifted = _copy(small_region.truth_change, tmp_path / "shifted.tif",
                        transform=src.transform * Affine.translation(50, 30))
    (moved,), _ = samples_from_scenes(small_region.t1, small_region.t2, shifted, bands=bands)
    # the truth's pixel (r, c) is now date 1's pixel (r + 30, c + 50); outside it: ignored
    np.testing.assert_array_equal(moved.label[30:, 50:][base.label[:-30, :-50] != 255],
                                  base.label[:-30, :-50][base.label[:-30, :-50] != 255])
    assert (moved.label[:30] == 255).all() and (moved.label[:, :50] == 255).all()
    elsewhere = _copy(small_region.truth_change, tmp_path / "elsewhere.tif", crs="EPSG:4326",
                      transform=Affine(0.0001, 0, 10, 0, -0.0001, 50))
    with pytest.raises(InputError, match=r"elsewhere.tif: change raster does not cover date 1"):
        samples_from_scenes(small_region.t1, small_region.t2, elsewhere, bands=bands)

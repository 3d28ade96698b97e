"""One mask encoding per dataset: a patch (or an OSCD city) alone cannot tell its encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from minescape.change.datasets import load_patch_dataset, read_oscd_city, read_patch
from minescape.errors import InputError
from minescape.geo.raster import Raster, write_raster

TR = Affine(10, 0, 500000, 0, -10, 4000000)


def _dataset(root, masks: dict[str, np.ndarray]):
    """A patch dataset (T1/, T2/, Change/) with the given raw masks (no nodata declared), float32 images."""
    for name, m in masks.items():
        big = np.kron(m, np.ones((8, 8), int)).astype(np.uint8)
        for sub in ("T1", "T2"):
            write_raster(Raster(np.full((2, *big.shape), 0.1, np.float32), CRS.from_epsg(32633), TR, None),
                         root / sub / f"{name}.tif")
        write_raster(Raster(big[None], CRS.from_epsg(32633), TR, None), root / "Change" / f"{name}.tif")
    return root


def _decoded(root) -> dict[str, set[int]]:
    return {r.name: set(np.unique(read_patch(r)[2].data).tolist()) for r in load_patch_dataset(root)}


def test_all_no_change_patch_of_a_1_2_dataset_stays_no_change(tmp_path):
    root = _dataset(tmp_path, {"a": np.array([[1, 2], [1, 1]]), "b": np.full((2, 2), 1)})
    with rasterio.open(root / "Change" / "b.tif") as src:
        assert set(np.unique(src.read(1)).tolist()) == {1}  # the patch alone holds only "1"
    assert _decoded(root) == {"a": {0, 1}, "b": {0}}


def test_all_change_patch_of_a_0_255_dataset_stays_change(tmp_path):
    root = _dataset(tmp_path, {"a": np.array([[0, 255], [0, 0]]), "b": np.full((2, 2), 255)})
    with rasterio.open(root / "Change" / "b.tif") as src:
        assert src.nodata is None and set(np.unique(src.read(1)).tolist()) == {255}
    assert _decoded(root) == {"a": {0, 1}, "b": {1}}
    assert {r.mask_encoding for r in load_patch_dataset(root)} == {"0-255"}


def test_minescape_manifest_declares_the_change_legend(tmp_path):
    """minescape's patches are in the CHANGE legend (0/1, nodata 255): its manifest says so, no scan needed."""
    root = _dataset(tmp_path, {"a": np.full((2, 2), 1)})
    assert _decoded(root) == {"a": {1}}
    (root / "manifest.json").write_text(json.dumps({"format": "minescape-change-patches/1"}))
    assert {r.mask_encoding for r in load_patch_dataset(root)} == {"0-1"}


def test_dataset_whose_masks_fit_no_encoding_names_the_folder(tmp_path):
    root = _dataset(tmp_path, {"a": np.array([[0, 1], [2, 2]])})
    with pytest.raises(InputError, match="cannot tell the label encoding") as err:
        load_patch_dataset(root)
    assert str(root) in str(err.value)


def test_oscd_city_without_change_reads_as_no_change(oscd_root, tmp_path):
    """OSCD codes every city 1/2: a city whose label is all 1 (no change) must not become all change."""
    city = "saclay_e"
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / city).symlink_to(oscd_root / "images" / city)
    real = read_oscd_city(oscd_root, city, bands=["B02"])
    assert {0, 1} <= set(np.unique(real.label.data).tolist())
    label = tmp_path / "train_labels" / city / "cm" / f"{city}-cm.tif"
    label.parent.mkdir(parents=True)
    with rasterio.open(label, "w", driver="GTiff", width=real.t1.width, height=real.t1.height, count=1,
                       dtype="uint8") as dst:
        dst.write(np.ones((1, *real.t1.shape), np.uint8))
    pair = read_oscd_city(tmp_path, city, bands=["B02"])
    assert set(np.unique(pair.label.data).tolist()) == {0}

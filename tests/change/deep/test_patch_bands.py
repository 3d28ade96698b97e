"""Training on patches selects bands by the files' band descriptions: a band they lack is an error naming the
file and the missing bands, never the file's bands taken in order under other names."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from minescape.errors import InputError
from minescape.geo.raster import Raster, write_raster

VALUES = (0.02, 0.03, 0.04, 0.08)


def _patches(root, names):
    """One 16 x 16 patch whose four bands hold VALUES, described as ``names`` (None: no descriptions)."""
    tr = Affine(10, 0, 500000, 0, -10, 4000000)
    data = np.stack([np.full((16, 16), v, np.float32) for v in VALUES])
    for sub in ("T1", "T2"):
        write_raster(Raster(data, CRS.from_epsg(32633), tr, np.nan, names), root / sub / "p.tif")
    write_raster(Raster(np.zeros((1, 16, 16), np.uint8), CRS.from_epsg(32633), tr, 255), root / "Change" / "p.tif")
    return root


def test_requested_band_missing_from_the_descriptions_is_refused(tmp_path):
    from minescape.change.deep.train import samples_from_patches

    root = _patches(tmp_path, ("B02", "B03", "B04", "B08"))
    with rasterio.open(root / "T1" / "p.tif") as src:
        assert src.descriptions == ("B02", "B03", "B04", "B08") and src.count == 4  # same count as asked
    with pytest.raises(InputError, match=r"p.tif: patch lacks bands \['B11', 'B12'\]"):
        samples_from_patches(root, bands=["B04", "B08", "B11", "B12"])


def test_bands_are_picked_by_name(tmp_path):
    from minescape.change.deep.train import samples_from_patches

    root = _patches(tmp_path, ("B02", "B03", "B04", "B08"))
    s = samples_from_patches(root, bands=["B08", "B04"])
    assert s[0].t1[:, 0, 0].tolist() == pytest.approx([0.08, 0.04])


def test_files_without_descriptions_fall_back_to_their_order(tmp_path):
    from minescape.change.deep.train import samples_from_patches

    root = _patches(tmp_path, None)
    with rasterio.open(root / "T1" / "p.tif") as src:
        assert not any(src.descriptions)
    s = samples_from_patches(root, bands=["B04", "B08", "B11", "B12"])
    assert s[0].t1[:, 0, 0].tolist() == pytest.approx(list(VALUES))
    with pytest.raises(InputError, match="p.tif: patch has 4 unnamed bands; training asks for 3"):
        samples_from_patches(root, bands=["B04", "B08", "B11"])

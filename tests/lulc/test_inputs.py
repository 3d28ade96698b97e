"""The clearest scene of a site's year and the cloud estimate (discovery: tests/imagery/test_local_scenes.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from minescape.errors import InputError, NoOverlapError
from minescape.geo.raster import Raster
from minescape.lulc.inputs import clearest_scene, discover_scenes, estimate_cloud
from minescape.sites import make_site, read_sites, site_year


def test_clearest_scene_of_the_site_year(small_region):
    refs = discover_scenes([small_region.scene_dir])
    sites, _ = read_sites(small_region.sites)
    for site in sites:
        year = site_year(site, small_region.dcm_year).year
        ref, share, _ = clearest_scene(refs, site, year)
        assert ref.year == year
        if year == 2018:  # two scenes: the July one is clearer than the 35 %-cloud March one
            assert ref.date == dt.date(2018, 7, 15) and share < 0.1
    with pytest.raises(InputError, match="no scene of year 2031"):
        clearest_scene(refs, sites[0], 2031)
    import shapely

    far = make_site("far", shapely.box(10, 10, 10.01, 10.01))
    with pytest.raises(NoOverlapError, match="outside all"):
        clearest_scene(refs, far, 2019)


def test_estimate_cloud():
    from affine import Affine

    stack = np.full((2, 4, 4), 0.1, dtype=np.float32)
    stack[0, :2] = 0.5  # bright blue
    stack[1, :2] = 0.4  # SWIR darker than blue: cloud
    r = Raster(stack, "EPSG:32633", Affine(10, 0, 0, 0, -10, 0), np.nan, ("B02", "B11"))
    assert estimate_cloud(r, np.ones((4, 4), bool)) == 0.5


def test_raster_labels_are_checked_before_the_cast_to_bytes(tmp_path):
    """A uint16 label raster: 257 would become class 1 once cast to uint8, so it is refused naming the file; its
    own nodata (65535) is no class and reads as unlabelled (0)."""
    from affine import Affine
    from rasterio.crs import CRS

    from minescape.geo.grid import Grid
    from minescape.geo.raster import write_raster
    from minescape.lulc.labels import raster_labels_on

    data = np.full((1, 6, 8), 3, np.uint16)
    data[0, 0, :] = 65535
    transform = Affine(10, 0, 500000, 0, -10, 4100000)
    grid = Grid(CRS.from_epsg(32633), transform, 8, 6)
    path = write_raster(Raster(data, CRS.from_epsg(32633), transform, 65535), tmp_path / "labels.tif")
    on = raster_labels_on(path, grid)
    assert (on[0] == 0).all() and (on[1:] == 3).all()
    data[0, 2, 2] = 257
    bad = write_raster(Raster(data, CRS.from_epsg(32633), transform, 65535), tmp_path / "bad.tif")
    with pytest.raises(InputError, match=r"bad.tif: values \[257\] are not in the mining_lulc legend"):
        raster_labels_on(bad, grid)


def test_float_labels_with_nan_nodata_read_as_unlabelled(tmp_path):
    """A float32 label raster whose nodata is NaN: NaN == NaN is never true, so the NaN pixels reached the legend
    check as values and ended in a traceback (int(nan)). They are unlabelled (0); 2.5 is refused in one line."""
    from affine import Affine
    from rasterio.crs import CRS

    from minescape.geo.grid import Grid
    from minescape.geo.raster import write_raster
    from minescape.lulc.labels import raster_labels_on

    data = np.full((1, 6, 8), 3, np.float32)
    data[0, ::2, 0] = np.nan
    transform = Affine(10, 0, 500000, 0, -10, 4100000)
    grid = Grid(CRS.from_epsg(32633), transform, 8, 6)
    path = write_raster(Raster(data, CRS.from_epsg(32633), transform, np.nan), tmp_path / "labels.tif")
    on = raster_labels_on(path, grid)
    assert (on[::2, 0] == 0).all() and int((on == 3).sum()) == 48 - 3
    data[0, 3, 3] = 2.5
    bad = write_raster(Raster(data, CRS.from_epsg(32633), transform, np.nan), tmp_path / "bad.tif")
    with pytest.raises(InputError, match=r"bad.tif: values \[2.5\] are not in the mining_lulc legend"):
        raster_labels_on(bad, grid)

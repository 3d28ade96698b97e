from dataclasses import replace

import numpy as np
import rasterio

from minescape.geo.raster import read_raster
from minescape.geo.vector import read_vector
from minescape.legend import MINING_LULC
from minescape.sentinel2 import open_scene, read_stack
from minescape.synthetic import DCM_NODATA, make_region, write_region


def test_region_has_every_class_and_plausible_dcm(small_region_config):
    r = make_region(small_region_config)
    assert set(np.unique(r.truth)) == set(MINING_LULC.codes)
    pit, dump = r.truth == 1, r.truth == 2
    assert np.nanmean(r.dh[pit]) < -10 and np.nanmean(r.dh[dump]) > 5
    assert abs(np.nanmean(r.dh[r.truth == 7])) < 1
    assert set(np.unique(r.dcm_year)) - {0} <= set(small_region_config.dcm_years)
    assert 0 < r.change.mean() < 0.2
    assert (r.change == (r.truth != r.truth_t2)).all()
    assert r.sites.crs.to_epsg() == 32750 and len(r.sites) == 2


def test_scene_spectra_follow_classes(small_region_config):
    r = make_region(small_region_config)
    refl = r.t1.reflectance
    red, nir = refl[2], refl[6]
    nd = (nir - red) / (nir + red)
    assert np.nanmean(nd[r.truth == 7]) > 0.5 > np.nanmean(nd[r.truth == 1])
    assert np.nanmean(refl[1][r.truth == 4]) > np.nanmean(refl[6][r.truth == 4])  # water: green > nir


def test_written_region_is_deterministic_and_georeferenced(tmp_path, small_region_config):
    a = write_region(make_region(small_region_config), tmp_path / "a")
    b = write_region(make_region(small_region_config), tmp_path / "b")
    for pa, pb in [(a.dcm_dh, b.dcm_dh), (a.t2, b.t2), (a.truth_change, b.truth_change)]:
        assert pa.read_bytes() == pb.read_bytes()
    # the bytes follow the seed (a constant writer would pass the loop above)
    other = replace(small_region_config, seed=small_region_config.seed + 1)
    c = write_region(make_region(other), tmp_path / "c")
    for pa, pc in [(a.dcm_dh, c.dcm_dh), (a.t2, c.t2), (a.truth_change, c.truth_change)]:
        assert pa.read_bytes() != pc.read_bytes()
    with rasterio.open(a.dcm_dh) as src:
        assert src.crs.to_epsg() == 32750 and src.nodata == DCM_NODATA and src.res == (10.0, 10.0)
    sites = read_vector(a.sites)
    assert list(sites["site_id"]) == ["S01", "S02"]
    # T2 scene uses baseline 05.10: the -1000 offset must round-trip to the generator's reflectance
    r = make_region(small_region_config)
    stack = read_stack(open_scene(a.t2))
    valid = np.isfinite(r.t2.reflectance[0])
    np.testing.assert_allclose(stack.data[0][valid], r.t2.reflectance[0][valid], atol=1e-4)
    assert np.isnan(stack.data[0][~valid]).all()
    truth = read_raster(a.truth_lulc)
    np.testing.assert_array_equal(truth.data[0], r.truth)

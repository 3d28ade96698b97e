"""Pairs: T2 aligned onto T1's grid (other CRS, other size), common footprint, one nodata mask, bad input."""

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from minescape.change.pairs import open_pair, read_on_grid, read_pair
from minescape.errors import InputError, NoOverlapError
from minescape.geo.grid import Grid, reproject_to_grid
from minescape.geo.raster import Raster, read_raster, write_raster
from minescape.sentinel2 import read_stack


def test_same_grid_pair_reads_both_dates_with_one_nodata_mask(small_region):
    pair = open_pair(small_region.t1, small_region.t2)
    t1, t2 = read_pair(pair)
    assert pair.grid.shape == (220, 260) and t1.shape == t2.shape == (220, 260)
    assert t1.band_names == t2.band_names == pair.bands and len(pair.bands) == 10
    # T2's nodata corner is nodata in T1 too, nowhere else
    bad1, bad2 = ~t1.valid_mask(), ~t2.valid_mask()
    assert bad1[0, 0] and bad2[0, 0] and np.array_equal(bad1, bad2)
    raw_t1 = read_stack(small_region.t1)
    ok = t1.valid_mask()
    assert np.array_equal(t1.data[:, ok], raw_t1.data[:, ok])


def test_windows_match_the_whole_read(small_region):
    pair = open_pair(small_region.t1, small_region.t2, bands=["B04", "B08"])
    t1, t2 = read_pair(pair)
    for win in (Window(30, 40, 64, 50), Window(-10, 200, 64, 64), Window(250, -5, 32, 32)):
        a, b = read_pair(pair, window=win)
        r0, c0 = win.row_off, win.col_off
        rr = slice(max(r0, 0), min(r0 + win.height, 220))
        cc = slice(max(c0, 0), min(c0 + win.width, 260))
        inner = (slice(None), slice(rr.start - r0, rr.stop - r0), slice(cc.start - c0, cc.stop - c0))
        assert np.array_equal(a.data[inner], t1.data[:, rr, cc], equal_nan=True)
        assert np.array_equal(b.data[inner], t2.data[:, rr, cc], equal_nan=True)
        outside = np.ones(a.shape, bool)
        outside[inner[1:]] = False
        assert np.isnan(a.data[:, outside]).all()


def _reprojected(path, out, crs, res, crop=None):
    """Write a copy of a scene in another CRS/resolution (optionally cropped by pixel offsets)."""
    src = read_raster(path)
    if crop is not None:
        r0, r1, c0, c1 = crop
        src = Raster(src.data[:, r0:r1, c0:c1], src.crs, src.transform @ Affine.translation(c0, r0), src.nodata,
                     src.band_names)
    from rasterio.warp import transform_bounds

    b = transform_bounds(src.crs, crs, *src.bounds)
    grid = Grid.from_bounds(b, res, crs)
    warped = reproject_to_grid(src, grid, resampling="bilinear", dst_nodata=0)
    with __import__("rasterio").open(path) as ds:
        tags = ds.tags()
    write_raster(warped, out, tags=tags)
    return out


def test_t2_in_another_crs_and_size_is_warped_onto_t1(small_region, tmp_path):
    """T2 in UTM 49S at 12 m, cropped: the pair grid is the overlap on T1's 10 m grid in T1's CRS."""
    t2 = _reprojected(small_region.t2, tmp_path / "S2A_MSIL2A_20240812T022551_N0510_R046_T50KQB_x.tif",
                      CRS.from_epsg(32749), 12.0, crop=(20, 200, 40, 250))
    pair = open_pair(small_region.t1, t2)
    assert pair.grid.crs == CRS.from_epsg(32750) and pair.grid.res == (10.0, 10.0)
    assert 180 <= pair.grid.height <= 215 and 210 <= pair.grid.width <= 240  # rotated footprint's bbox
    a, b = read_pair(pair, bands=["B04", "B08"])
    ref = read_pair(open_pair(small_region.t1, small_region.t2), bands=["B04", "B08"])[1]
    win = Window.from_slices(*[slice(0, n) for n in pair.grid.shape])
    row0 = round((ref.transform.f - pair.grid.transform.f) / 10)
    col0 = round((pair.grid.transform.c - ref.transform.c) / 10)
    ref_sub = ref.data[:, row0:row0 + win.height, col0:col0 + win.width]
    ok = np.isfinite(b.data).all(0) & np.isfinite(ref_sub).all(0)
    assert ok.mean() > 0.8
    # warped twice (to 12 m UTM 49S and back): same values up to resampling blur
    corr = np.corrcoef(b.data[1][ok], ref_sub[1][ok])[0, 1]
    assert corr > 0.9
    assert np.array_equal(np.isnan(a.data), np.isnan(b.data))


def test_no_overlap_names_the_file(small_region, tmp_path):
    src = read_raster(small_region.t2)
    far = Raster(src.data, src.crs, src.transform @ Affine.translation(5000, 0), 0, src.band_names)
    path = write_raster(far, tmp_path / "S2A_MSIL2A_20240812T022551_N0510_R046_T50KQB_far.tif")
    with pytest.raises(NoOverlapError, match="far.tif.*does not overlap"):
        open_pair(small_region.t1, path)


def test_missing_band_names_the_file(small_region, tmp_path):
    src = read_raster(small_region.t2).select(["B02", "B03", "B04", "B08"])
    path = write_raster(src, tmp_path / "S2A_MSIL2A_20240812T022551_N0510_R046_T50KQB_4b.tif")
    with pytest.raises(InputError, match=r"4b.tif: missing bands \['B11'\]"):
        open_pair(small_region.t1, path, bands=["B04", "B08", "B11"])
    pair = open_pair(small_region.t1, path)  # default: the bands both dates have
    assert pair.bands == ("B02", "B03", "B04", "B08")


def test_mask_without_crs_must_match_the_grid(small_region, tmp_path):
    pair = open_pair(small_region.t1, small_region.t2)
    import rasterio

    path = tmp_path / "label.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100, height=50, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 50, 100), np.uint8))
    with pytest.raises(InputError, match="label.tif: has no CRS and is 50x100 pixels"):
        read_on_grid(path, pair.grid)


def test_saturated_dn_are_invalid_in_the_dn_fast_path_as_in_the_float_read(tmp_path):
    """``change predict`` reads Sentinel-2 stacks on the pair grid as stored (``read_dn``); SATURATED DN (65535)
    must be invalid there exactly as the float read (``read``, which ``change detect`` uses) makes them NaN."""
    from minescape.change.pairs import open_pair_source

    rng = np.random.default_rng(5)
    transform = Affine(10, 0, 500000, 0, -10, 7600000)
    bands = ("B02", "B03", "B04", "B08")
    paths = []
    for k, date in enumerate(("20230715", "20240719")):
        dn = rng.integers(1100, 4000, (4, 12, 16), dtype=np.uint16)
        if k == 1:
            dn[2, 3, 4] = dn[0, 9, 15] = 65535
        path = tmp_path / f"S2B_MSIL2A_{date}T022549_N0509_R046_T50KQB_{date}T062017.tif"
        write_raster(Raster(dn, "EPSG:32750", transform, 0, bands), path)
        paths.append(path)
    src = open_pair_source(*paths, bands)
    window = Window(0, 0, 16, 12)
    got = src.read_dn(window)
    assert got is not None  # the fast path is taken for these files
    assert int((got.dn2 == 65535).sum()) == 2  # the stored DN are there
    a1, a2 = src.read(window)
    float_invalid = ~(np.isfinite(a1).all(axis=0) & np.isfinite(a2).all(axis=0))
    assert float_invalid[3, 4] and float_invalid[9, 15] and int(float_invalid.sum()) == 2
    np.testing.assert_array_equal(~got.valid, float_invalid)

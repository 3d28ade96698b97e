import datetime as dt

import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window

from minescape.errors import ConfigError, InputError
from minescape.geo.raster import Raster, write_raster
from minescape.sentinel2 import (
    ALL_BANDS,
    baseline_offset,
    dn_to_reflectance,
    find_band_files,
    open_scene,
    parse_scene_name,
    read_stack,
)


def test_parse_names():
    info = parse_scene_name("S2B_MSIL2A_20190715T022549_N0400_R046_T50KQB_20190715T062017.SAFE")
    assert info.date == dt.date(2019, 7, 15) and info.level == "L2A" and info.baseline == "04.00"
    assert info.tile == "50KQB" and info.radiometric_offset == -1000
    old = parse_scene_name("S2A_OPER_MSI_L1C_TL_MTI__20160120T104345_A003020_T39QZG_B01.tif")
    assert old.date == dt.date(2016, 1, 20) and old.level == "L1C" and old.tile == "39QZG"
    gran = parse_scene_name("T40QBM_20180328T065919_B01.tif")
    assert gran.date == dt.date(2018, 3, 28) and gran.tile == "40QBM"
    assert parse_scene_name("scene_20211003.tif").date == dt.date(2021, 10, 3)
    assert parse_scene_name("nothing.tif").date is None


def test_old_tile_names_are_dated_by_their_orbit(oscd_root):
    """The date in an old ("OPER") tile name is the file's creation: OSCD's aguasclaras tile says 2016-12-27 for a
    scene sensed 2015-09-16 (its dates.txt). The absolute orbit gives the sensing date: every OSCD city whose
    date 1 has an old name, to the day (5 of the 10 differ from the creation date, by up to 16 months)."""
    differ = 0
    for city in sorted(p for p in (oscd_root / "images").iterdir() if p.is_dir()):
        name = sorted((city / "imgs_1").iterdir())[0].name
        if "_OPER_" not in name:
            continue
        sensed = dt.datetime.strptime((city / "dates.txt").read_text().split()[1], "%Y%m%d").date()
        created = dt.datetime.strptime(name.split("__")[1][:8], "%Y%m%d").date()
        differ += created != sensed
        assert parse_scene_name(name).date == sensed, city.name
    assert differ >= 5


def test_reflectance_offsets():
    dn = np.array([0, 1000, 2000, 11000], dtype=np.uint16)
    old = dn_to_reflectance(dn, baseline="02.09")
    new = dn_to_reflectance(dn, baseline="04.00")
    assert np.isnan(old[0]) and np.isnan(new[0])
    np.testing.assert_allclose(old[1:], [0.1, 0.2, 1.1])
    np.testing.assert_allclose(new[1:], [0.0, 0.1, 1.0])
    assert baseline_offset("05.10") == -1000 and baseline_offset("0399") == 0
    with pytest.raises(ConfigError):
        baseline_offset("4")


def _band_folder(tmp_path, shape10=(60, 48)):
    """Write an OSCD-like folder: 10/20/60 m band files of a known ramp, UTM 33N."""
    folder = tmp_path / "imgs"
    h, w = shape10
    from minescape.sentinel2 import BANDS

    for name, band in BANDS.items():
        f = band.resolution // 10
        rows, cols = np.indices((h // f, w // f))
        dn = (1000 + 10 * cols * f + int(name[1:].replace("8A", "8").lstrip("0") or 0)).astype(np.uint16)
        r = Raster(dn, "EPSG:32633", Affine(band.resolution, 0, 300000, 0, -band.resolution, 5000000), None)
        write_raster(r, folder / f"T33TWM_20200601T100000_{name}.tif")
    return folder


def test_band_folder_onto_10m_grid(tmp_path):
    folder = _band_folder(tmp_path)
    assert sorted(find_band_files(folder)) == sorted(ALL_BANDS)
    scene = open_scene(folder)
    assert scene.grid.res == (10.0, 10.0) and scene.grid.shape == (60, 48)
    stack = read_stack(scene, reflectance=False, resampling="nearest")
    assert stack.data.shape == (13, 60, 48) and stack.band_names == ALL_BANDS
    # a 60 m pixel covers 6 x 6 10 m pixels: nearest resampling repeats it
    b01 = stack.band("B01")
    assert (b01[:6, :6] == b01[0, 0]).all() and b01[0, 6] != b01[0, 0]
    b02 = stack.band("B02")
    np.testing.assert_array_equal(b02[0, :3], [1002, 1012, 1022])


def test_a_granule_folder_takes_its_baseline_from_the_safe_name_or_its_date(tmp_path):
    """A SAFE granule's band files say no baseline: the product folder above them does (a reprocessed 2017
    scene, N0500, carries the -1000 offset); without one, a scene sensed from 25 Jan 2022 has it, an older one
    not. The offset reaches the reflectance."""
    def granule(folder, stamp):
        folder.mkdir(parents=True)
        write_raster(Raster(np.full((12, 12), 2000, np.uint16), "EPSG:32633",
                            Affine(10, 0, 300000, 0, -10, 5000000), 0), folder / f"T33TWM_{stamp}_B02_10m.tif")
        return folder

    safe = tmp_path / "S2B_MSIL2A_20170601T100000_N0500_R122_T33TWM_20230101T120000.SAFE"
    reproc = open_scene(granule(safe / "GRANULE" / "L2A_T33TWM_A001_20170601T100000" / "IMG_DATA" / "R10m",
                                "20170601T100000"))
    assert reproc.info.baseline == "05.00" and reproc.info.level == "L2A" and reproc.info.radiometric_offset == -1000
    np.testing.assert_allclose(read_stack(reproc, bands=["B02"]).data[0], 0.1)
    recent = open_scene(granule(tmp_path / "loose2024", "20240315T105031"))
    assert recent.info.baseline == "04.00" and recent.info.date == dt.date(2024, 3, 15)
    np.testing.assert_allclose(read_stack(recent, bands=["B02"]).data[0], 0.1)
    old = open_scene(granule(tmp_path / "loose2017", "20170601T100000"))
    assert old.info.baseline is None and old.info.radiometric_offset == 0
    np.testing.assert_allclose(read_stack(old, bands=["B02"]).data[0], 0.2)


def test_an_l2a_safe_product_is_a_scene_each_band_at_its_finest(tmp_path):
    """An L2A SAFE as ESA delivers it: IMG_DATA/R10m, R20m (B02 again at 20 m, SCL) and R60m (SCL again): the
    product folder opens as one scene with the 12 L2A bands, B02 from R10m, the baseline from the SAFE name and
    SCL from R20m."""
    from minescape.change.scl_mask import find_scl
    from minescape.sentinel2 import L2A_BANDS, band_file_folders

    safe = tmp_path / "S2A_MSIL2A_20240601T100000_N0510_R122_T33TWM_20240601T120000.SAFE"
    img = safe / "GRANULE" / "L2A_T33TWM_A046000_20240601T100000" / "IMG_DATA"
    stamp = "T33TWM_20240601T100000"
    for res, bands in (("R10m", ("B02", "B03", "B04", "B08")),
                       ("R20m", ("B02", "B05", "B06", "B07", "B8A", "B11", "B12", "SCL")),
                       ("R60m", ("B01", "B02", "B09", "SCL"))):
        size = int(res[1:3])
        (img / res).mkdir(parents=True)
        for b in bands:
            value = 4 if b == "SCL" else 3000 if res == "R10m" else 2000
            write_raster(Raster(np.full((120 // size, 120 // size), value, np.uint16 if b != "SCL" else np.uint8),
                                "EPSG:32633", Affine(size, 0, 300000, 0, -size, 5000000), 0),
                         img / res / f"{stamp}_{b}_{res[1:]}.tif")
    (safe / "MTD_MSIL2A.xml").write_text("<not read/>")
    assert band_file_folders(safe) == [img / "R10m", img / "R20m", img / "R60m"]
    files = find_band_files(safe)
    assert sorted(files) == sorted(L2A_BANDS) and files["B02"].parent.name == "R10m"
    assert files["B05"].parent.name == "R20m" and files["B01"].parent.name == "R60m"
    scene = open_scene(safe)
    assert scene.grid.res == (10.0, 10.0) and scene.info.baseline == "05.10" and scene.info.level == "L2A"
    np.testing.assert_allclose(read_stack(scene, bands=["B02", "B05"]).data[:, 0, 0], [0.2, 0.1])
    assert find_scl(safe)[0].name.endswith("SCL_20m.tif") and find_scl(img / "R60m")[0].name.endswith("60m.tif")
    (safe / "GRANULE" / "L2A_T33TWM_A046000_20240601T100001").mkdir()
    with pytest.raises(InputError, match="2 granules"):
        open_scene(safe)


def test_windowed_stack_equals_full_read(tmp_path):
    scene = open_scene(_band_folder(tmp_path))
    full = read_stack(scene, bands=["B04", "B8A", "B12"])
    part = read_stack(scene, bands=["B04", "B8A", "B12"], window=Window(12, 18, 24, 30))
    np.testing.assert_allclose(part.data, full.data[:, 18:48, 12:36], rtol=1e-6)
    assert part.band_names == ("B04", "B8A", "B12")


def test_multiband_stack_by_description_and_missing_band(tmp_path):
    data = np.full((4, 5, 6), 1500, np.uint16)
    path = write_raster(Raster(data, "EPSG:32633", Affine(10, 0, 0, 0, -10, 0), 0, ("B02", "B03", "B04", "B08")),
                        tmp_path / "S2A_MSIL2A_20230101T000000_N0509_R001_T33TWM_20230101T000001.tif")
    stack = read_stack(path, bands=["B08", "B04"])
    np.testing.assert_allclose(stack.data, 0.05)  # (1500 - 1000) / 10000
    with pytest.raises(InputError, match="missing bands"):
        read_stack(path, bands=["B11"])


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no Sentinel-2 band files"):
        open_scene(tmp_path)


def _warped(path, grid, *, nodata=None):
    """The band read onto ``grid`` by GDAL's warper (the reference the resampled read must match)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with rasterio.open(path) as src, WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                                               height=grid.height, resampling=Resampling.bilinear,
                                               src_nodata=nodata, nodata=nodata) as vrt:
        return vrt.read(1).astype(np.float32)


def test_coarse_bands_are_upsampled_as_the_warper_does(tmp_path):
    """20 m and 60 m bands onto the 10 m grid by a floating-window resampled read: the warper's values within
    1 DN (its rounding), edges included, for the whole grid and a window."""
    import rasterio

    from minescape.geo.grid import scaled_window

    folder = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    from minescape.sentinel2 import BANDS

    for name, band in BANDS.items():  # smooth random fields, so bilinear weights matter
        f = band.resolution // 10
        dn = (3000 + 1000 * rng.random((60 // f, 48 // f))).astype(np.uint16)
        write_raster(Raster(dn, "EPSG:32633", Affine(band.resolution, 0, 300000, 0, -band.resolution, 5000000), None),
                     folder / f"T33TWM_20200601T100000_{name}.tif")
    scene = open_scene(folder)
    for window in (None, Window(5, 7, 30, 40)):
        grid = scene.grid if window is None else scene.grid.window_grid(window)
        stack = read_stack(scene, bands=["B05", "B01", "B11"], window=window, reflectance=False)
        for k, band in enumerate(("B05", "B01", "B11")):
            path = scene.band_files[band][0]
            with rasterio.open(path) as src:  # the fast path applies: same CRS, a scale and a shift
                assert scaled_window(src.crs, src.transform, src.shape, grid) is not None
            ref = _warped(path, grid)
            assert np.abs(stack.data[k] - ref).max() <= 1.0
            assert np.mean(stack.data[k] != ref) < 0.05


def test_nodata_near_a_coarse_window_keeps_the_warper(tmp_path):
    """A 20 m band with nodata pixels: the warper leaves them out of its bilinear weights, so that read stays."""
    dn = np.full((30, 24), 2000, np.uint16)
    dn[10:14, 8:12] = 0
    dn[10:14, 12:16] = 3000
    f20 = write_raster(Raster(dn, "EPSG:32633", Affine(20, 0, 300000, 0, -20, 5000000), 0),
                       tmp_path / "imgs" / "T33TWM_20200601T100000_B05.tif")
    write_raster(Raster(np.full((60, 48), 1500, np.uint16), "EPSG:32633", Affine(10, 0, 300000, 0, -10, 5000000), 0),
                 tmp_path / "imgs" / "T33TWM_20200601T100000_B02.tif")
    scene = open_scene(tmp_path / "imgs")
    got = read_stack(scene, bands=["B05"], reflectance=False).data[0]
    ref = _warped(f20, scene.grid, nodata=0)
    ref[ref == 0] = np.nan
    assert np.isnan(got).any()  # the hole is there
    np.testing.assert_array_equal(got, ref)
    # next to the hole a plain resampled read would blend the zeros in: the warper's 3000s stay 3000
    assert np.nanmax(got[20:28, 24:32]) == 3000 and np.nanmin(got[20:28, 24:32]) >= 2000


def test_scaled_window_only_for_a_scale_and_a_shift():
    from rasterio.crs import CRS

    from minescape.geo.grid import Grid, scaled_window

    target = Grid(CRS.from_epsg(32633), Affine(10, 0, 300000, 0, -10, 5000000), 48, 60)
    w = scaled_window(CRS.from_epsg(32633), Affine(20, 0, 300000, 0, -20, 5000000), (30, 24), target)
    assert (w.col_off, w.row_off, w.width, w.height) == (0, 0, 24, 30)
    w = scaled_window(CRS.from_epsg(32633), Affine(20, 0, 299990, 0, -20, 5000010), (31, 25), target)
    assert (w.col_off, w.row_off, w.width, w.height) == (0.5, 0.5, 24, 30)
    assert scaled_window(CRS.from_epsg(32634), Affine(20, 0, 300000, 0, -20, 5000000), (30, 24), target) is None
    assert scaled_window(CRS.from_epsg(32633), Affine(20, 1, 300000, 0, -20, 5000000), (30, 24), target) is None
    assert scaled_window(CRS.from_epsg(32633), Affine(20, 0, 300000, 0, -20, 5000000), (29, 24), target) is None


def test_oscd_band_folder_reads_as_the_warper_does(oscd_root):
    """A real OSCD city (EPSG:4326, band files of different sizes over one extent): within 1 DN of the warp."""
    import rasterio

    from minescape.geo.grid import scaled_window

    scene = open_scene(oscd_root / "images" / "abudhabi" / "imgs_1")
    window = Window(0, 383, scene.grid.width, 416)
    grid = scene.grid.window_grid(window)
    stack = read_stack(scene, window=window, reflectance=False)
    for k, band in enumerate(stack.band_names):
        path = scene.band_files[band][0]
        with rasterio.open(path) as src:
            if src.res == scene.grid.res:
                continue
            assert scaled_window(src.crs, src.transform, src.shape, grid) is not None
        assert np.abs(stack.data[k] - _warped(path, grid)).max() <= 1.0, band


def test_saturated_dn_is_invalid_like_nodata():
    """Sentinel-2 L1C/L2A Special_Values: DN 0 is NO_DATA, DN 65535 is SATURATED; both decode to NaN, as reflectance
    and as DN. A floating-point band is reflectance already (not DN): its values are kept as stored."""
    from minescape.sentinel2 import decode_dn

    dn = np.array([0, 65535, 1000, 11000, 65534], dtype=np.uint16)
    assert int((dn == 65535).sum()) == 1
    for refl in (dn_to_reflectance(dn, baseline="04.00"),
                 decode_dn(dn, reflectance=True, offset=-1000, nodata=0),
                 decode_dn(dn, reflectance=False, offset=-1000, nodata=0)):
        assert np.isnan(refl[:2]).all() and np.isfinite(refl[2:]).all()
    as_float = np.array([0.1, 65535.0], dtype=np.float32)  # not DN: never masked as saturated
    np.testing.assert_array_equal(decode_dn(as_float, reflectance=True, offset=-1000, nodata=0), as_float)


def test_saturated_pixels_of_a_band_stack_read_as_nan(tmp_path):
    """A real uint16 L2A stack with a few SATURATED pixels: read_stack (the engine of local scenes and SAFE folders)
    gives NaN there, the same as nodata, and every other pixel unchanged."""
    rng = np.random.default_rng(3)
    dn = rng.integers(1100, 4000, (4, 9, 13), dtype=np.uint16)
    saturated = np.zeros((9, 13), bool)
    saturated[2, 3] = saturated[7, 11] = True
    dn[:, saturated] = 65535
    dn[1, 0, 0] = 0  # nodata in one band
    path = tmp_path / "S2B_MSIL2A_20230715T022549_N0509_R046_T50KQB_20230715T062017.tif"
    write_raster(Raster(dn, "EPSG:32750", Affine(10, 0, 500000, 0, -10, 7600000), 0, ("B02", "B03", "B04", "B08")),
                 path)
    refl = read_stack(path).data
    assert int((dn == 65535).sum()) == 8  # the stack really holds saturated DN
    assert np.isnan(refl[:, saturated]).all()
    assert np.isnan(refl[1, 0, 0]) and np.isfinite(refl).sum() == refl.size - 8 - 1
    keep = ~saturated & (dn[1] != 0)
    np.testing.assert_allclose(refl[:, keep], (dn[:, keep].astype(np.float32) - 1000) / 10000, rtol=1e-6)

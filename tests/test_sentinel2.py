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

"""Floating-point stacks hold reflectance: the index method's pair reader (detect) and the deep reader (predict)
read the same values from them, as stored, while integer stacks are DN / 10000."""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from minescape.change.difference import DetectOptions, detect_files
from minescape.change.pairs import open_pair, open_pair_source, read_pair
from minescape.geo.raster import Raster, read_raster, write_raster

BANDS = ("B02", "B03", "B04", "B08")
UTM = CRS.from_epsg(32633)


def _stacks(folder, dtype: str, *, t2_pixel: float = 10.0):
    """Two 4-band stacks (vegetation cleared in a 20 x 30 px block of date 2), float32 reflectance with NaN
    nodata or uint16 DN (x 10000, nodata 0); date 2 on a ``t2_pixel`` m grid."""
    rng = np.random.default_rng(0)
    h, w = 64, 80
    r1 = (np.array([0.05, 0.08, 0.06, 0.35], np.float32)[:, None, None]
          + rng.normal(0, 0.005, (4, h, w)).astype(np.float32))
    r2 = r1.copy()
    r2[3, 20:40, 20:50], r2[2, 20:40, 20:50] = 0.10, 0.20
    paths = []
    for name, a, px in (("t1", r1, 10.0), ("t2", r2, t2_pixel)):
        if px != 10.0:  # a coarser date 2: each band constant, so its warped values are known
            k = int(px // 10)
            a = np.repeat(np.array([0.05, 0.08, 0.06, 0.35], np.float32)[:, None, None], h // k, 1).repeat(w // k, 2)
        data = a if dtype == "float32" else (a * 10000).round().astype(np.uint16)
        nodata = np.nan if dtype == "float32" else 0
        paths.append(write_raster(Raster(data, UTM, Affine(px, 0, 500000, 0, -px, 4e6), nodata, BANDS),
                                  folder / f"{name}.tif"))
    return paths, r1


def test_float_stacks_are_read_as_stored_by_detect_and_predict(tmp_path):
    (p1, p2), refl = _stacks(tmp_path, "float32")
    stored = read_raster(p1).data
    assert stored.dtype == np.float32 and 0.3 < stored[3, 0, 0] < 0.4  # reflectance, not DN
    win = Window(0, 0, 80, 64)
    detect_t1, _ = read_pair(open_pair(p1, p2), window=win)
    predict_t1, _ = open_pair_source(p1, p2, BANDS).read(win)
    assert np.array_equal(detect_t1.data, stored)
    assert np.array_equal(predict_t1, stored)


def test_float_stack_needing_a_warp_is_not_scaled_either(tmp_path):
    (p1, p2), _ = _stacks(tmp_path, "float32", t2_pixel=20.0)
    _, t2 = read_pair(open_pair(p1, p2), window=Window(8, 8, 16, 16))
    assert np.allclose(t2.data[:, 4, 4], [0.05, 0.08, 0.06, 0.35], atol=1e-6)


def test_float_and_dn_stacks_detect_the_same_change(tmp_path):
    found = {}
    for dtype in ("float32", "uint16"):
        (p1, p2), _ = _stacks(tmp_path / dtype, dtype)
        found[dtype] = detect_files(p1, p2, tmp_path / f"out_{dtype}", options=DetectOptions(),
                                    overviews=False).stats["changed_pixels"]
    assert 550 <= found["uint16"] <= 650  # the 600 px cleared
    assert found["float32"] == found["uint16"]

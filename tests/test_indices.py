import numpy as np
import pytest

from minescape.errors import ConfigError
from minescape.geo.raster import Raster
from minescape.indices import INDICES, bsi, compute_index, mndwi, ndbi, ndvi, ndwi, savi


def test_formulas():
    nir, red, green, blue, swir = (np.float32(v) for v in (0.4, 0.1, 0.08, 0.05, 0.3))
    assert ndvi(nir, red) == pytest.approx(0.6)
    assert savi(nir, red) == pytest.approx(1.5 * 0.3 / 1.0)
    assert ndwi(green, nir) == pytest.approx(-0.32 / 0.48)
    assert mndwi(green, swir) == pytest.approx(-0.22 / 0.38)
    assert ndbi(swir, nir) == pytest.approx(-0.1 / 0.7)
    assert bsi(swir, red, nir, blue) == pytest.approx((0.4 - 0.45) / 0.85)


def test_division_and_nodata_safe():
    a = np.array([0.0, np.nan, 0.2, np.inf], np.float32)
    b = np.array([0.0, 0.1, -0.2, 0.1], np.float32)
    from minescape.indices import normalized_difference

    with np.errstate(all="raise"):
        out = normalized_difference(a, b)
        veg = ndvi(a, b)
    assert np.isnan(out).tolist() == [True, True, True, True]
    assert out.dtype == veg.dtype == np.float32
    # NDVI: no signal at (0, 0), negative red taken as 0, nodata and inf stay undefined
    assert np.isnan(veg).tolist() == [False, True, False, True] and veg[[0, 2]].tolist() == [0.0, 1.0]


def test_compute_index_from_named_stack(utm_raster):
    data = np.stack([np.full((4, 5), v, np.float32) for v in (0.05, 0.08, 0.1, 0.4, 0.3)])
    stack = Raster(data, utm_raster.crs, utm_raster.transform, np.nan, ("B02", "B03", "B04", "B08", "B11"))
    for name in INDICES:
        out = compute_index(stack, name)
        assert out.shape == (4, 5) and out.band_names == (name,) and out.crs == stack.crs
    with pytest.raises(ConfigError, match="NDVI"):
        compute_index(stack, "EVI")


def test_dark_pixels_carry_no_vegetation_built_or_bare_signal():
    """A pit-wall shadow after the baseline-04.00 offset: red -0.002, NIR 0.004 (DN 980 and 1040). The plain ratio
    is 3.0, out of NDVI's range, and read as confident vegetation; below DARK_SUM the index is 0. Vegetation
    (NIR 0.3, red 0.03) keeps its value, and dark water keeps its MNDWI (no floor for water)."""
    from minescape.indices import DARK_SUM, mndwi, ndbi, ndvi, normalized_difference

    red, nir = np.array([-0.002, 0.03], np.float32), np.array([0.004, 0.3], np.float32)
    assert normalized_difference(nir, red)[0] == pytest.approx(3.0)  # what the ratio alone gives
    assert ndvi(nir, red).tolist() == pytest.approx([0.0, 0.27 / 0.33])
    assert 0.004 < DARK_SUM and ndbi(np.float32(0.003), np.float32(0.004)) == 0.0
    assert mndwi(np.float32(0.012), np.float32(0.0005)) == pytest.approx(0.92, abs=0.01)
    assert np.isnan(ndvi(np.float32(np.nan), np.float32(0.1)))  # nodata stays nodata

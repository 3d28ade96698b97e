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
    with np.errstate(all="raise"):
        out = ndvi(a, b)
    assert np.isnan(out).tolist() == [True, True, True, True]
    assert out.dtype == np.float32


def test_compute_index_from_named_stack(utm_raster):
    data = np.stack([np.full((4, 5), v, np.float32) for v in (0.05, 0.08, 0.1, 0.4, 0.3)])
    stack = Raster(data, utm_raster.crs, utm_raster.transform, np.nan, ("B02", "B03", "B04", "B08", "B11"))
    for name in INDICES:
        out = compute_index(stack, name)
        assert out.shape == (4, 5) and out.band_names == (name,) and out.crs == stack.crs
    with pytest.raises(ConfigError, match="NDVI"):
        compute_index(stack, "EVI")

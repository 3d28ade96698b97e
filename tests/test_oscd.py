"""The real OSCD cities in ../shared/data/oscd load with correct bands, grid and labels."""

import numpy as np
import pytest
import rasterio

from minescape.change.datasets import oscd_cities, read_oscd_city
from minescape.change.labels import decode_binary
from minescape.errors import InputError
from minescape.sentinel2 import ALL_BANDS

CITIES = ["abudhabi", "aguasclaras", "beirut", "bercy", "bordeaux", "cupertino", "nantes", "paris", "rennes",
          "saclay_e"]


def test_all_cities_present(oscd_root):
    assert oscd_cities(oscd_root) == CITIES


@pytest.mark.parametrize("city", CITIES)
def test_city_loads_13_bands_on_the_10m_grid(oscd_root, city):
    pair = read_oscd_city(oscd_root, city)
    b02 = next((oscd_root / "images" / city / "imgs_1").glob("*_B02.tif"))
    with rasterio.open(b02) as src:
        shape, transform = src.shape, src.transform
    assert pair.t1.band_names == ALL_BANDS and pair.t1.data.shape == (13, *shape)
    assert pair.t2.data.shape == pair.t1.data.shape and pair.t1.transform == transform == pair.t2.transform
    # reflectance of real L1C scenes: plausible and mostly valid on both dates
    for stack in (pair.t1, pair.t2):
        assert np.isfinite(stack.data).mean() > 0.97
        med = np.nanmedian(stack.data, axis=(1, 2))
        assert ((med > 0.0) & (med < 0.6)).all()
    # the label is coded 1/2 on disk; decoded to 0/1 with a minority of changed pixels
    values, counts = np.unique(pair.label.data, return_counts=True)
    assert set(values.tolist()) == {0, 1} and 0.001 < counts[1] / counts.sum() < 0.1
    assert pair.dates[0] < pair.dates[1]


def test_second_date_aligned_where_sizes_differ(oscd_root):
    """saclay_e's date 2 is 631 x 679 px at 10 m against 639 x 688: it is warped onto date 1's grid."""
    pair = read_oscd_city(oscd_root, "saclay_e", bands=["B02", "B03", "B04", "B08"])
    assert pair.t2.data.shape == (4, 639, 688)
    # co-registration: warped by georeference, the dates correlate far better than stacked from the
    # top-left pixel (their pixel sizes differ by 1.3 %)
    a, b = pair.t1.band("B02"), pair.t2.band("B02")
    ok = np.isfinite(a) & np.isfinite(b)
    geo = np.corrcoef(a[ok], b[ok])[0, 1]
    f2 = next((oscd_root / "images" / "saclay_e" / "imgs_2").glob("*_B02.tif"))
    with rasterio.open(f2) as src:
        raw = src.read(1).astype(float)
    naive = np.corrcoef(a[:631, :679].ravel(), raw.ravel())[0, 1]
    assert geo > 0.6 and geo > naive + 0.2


def test_label_encodings():
    assert decode_binary(np.array([1, 2, 2])).tolist() == [0, 1, 1]
    assert decode_binary(np.array([0, 255])).tolist() == [0, 1]
    assert decode_binary(np.array([0, 1, 255])).tolist() == [0, 1, 255]
    assert decode_binary(np.array([0, 1, 9]), encoding="0-1", nodata=9).tolist() == [0, 1, 255]
    with pytest.raises(InputError, match="unexpected label values"):
        decode_binary(np.array([0, 1, 3]), encoding="0-1")
    with pytest.raises(InputError, match="cannot tell"):
        decode_binary(np.array([3, 7]))

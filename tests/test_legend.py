import numpy as np
import pytest

from minescape.errors import InputError
from minescape.legend import CHANGE, MINING_LULC, SINOLC1, WORLDCOVER, Legend, get_legend


def test_mining_lulc_has_the_seven_published_classes_with_definitions():
    assert MINING_LULC.names == ["Open pit", "Waste dumping site", "General disturbed land", "Water body",
                                 "Facility", "Bare soil", "Vegetation"]
    assert all(c.definition for c in MINING_LULC)
    assert len(set(c.color for c in MINING_LULC)) == 7


def test_sinolc1_values_and_colours():
    expected = {1: ("Traffic route", (255, 0, 0)), 2: ("Tree cover", (0, 100, 0)), 3: ("Shrubland", (255, 190, 35)),
                4: ("Grassland", (233, 255, 190)), 5: ("Cropland", (255, 235, 175)), 6: ("Building", (255, 170, 0)),
                7: ("Barren and sparse vegetation", (180, 180, 180)), 8: ("Snow and ice", (240, 240, 240)),
                9: ("Water", (0, 100, 200)), 10: ("Wetland", (0, 150, 160)), 12: ("Moss and lichen", (250, 230, 160))}
    assert {c.code: (c.name, c.color) for c in SINOLC1} == expected


def test_change_legend_encoding():
    assert CHANGE.codes == [0, 1] and CHANGE.nodata == 255
    cmap = CHANGE.colormap()
    assert cmap[255][3] == 0 and cmap[1] == (255, 255, 255, 255)


def test_lookup_and_errors_list_valid_values():
    assert MINING_LULC.code_of("Water body") == 4
    assert MINING_LULC.name_of(7) == "Vegetation"
    with pytest.raises(InputError, match="Open pit"):
        MINING_LULC.by_name("Pit")
    with pytest.raises(InputError, match="codes"):
        SINOLC1.by_code(11)


def test_check_codes_rejects_unexpected_values():
    MINING_LULC.check_codes(np.array([0, 1, 7]))
    with pytest.raises(InputError, match=r"\[9\]"):
        MINING_LULC.check_codes(np.array([1, 9]), source="x.tif")


def test_roundtrip_dict_and_names():
    for lg in (MINING_LULC, SINOLC1, CHANGE, WORLDCOVER):
        assert Legend.from_dict(lg.to_dict()) == lg
        assert get_legend(lg.name) is lg
    names = MINING_LULC.lookup_names(np.array([[1, 4]]))
    assert names.tolist() == [["Open pit", "Water body"]]


def test_invalid_legend_definition():
    from minescape.legend import LegendClass

    with pytest.raises(ValueError):
        Legend("x", (LegendClass(1, "a", (0, 0, 0)), LegendClass(1, "b", (0, 0, 0))), nodata=0)
    with pytest.raises(ValueError):
        Legend("x", (LegendClass(0, "a", (0, 0, 0)),), nodata=0)

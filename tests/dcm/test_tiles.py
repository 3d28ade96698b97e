"""Tile names and layer-file names."""

from __future__ import annotations

import numpy as np
import pytest

from minescape.dcm.layers import Layer, MapKind, layer_file_name, parse_layer_name, product_name
from minescape.dcm.tiles import TileName, tiles_covering
from minescape.errors import InputError


def test_tile_name_is_the_south_west_corner():
    t = TileName.parse("S23E116")
    assert (t.lat, t.lon) == (-23, 116)
    assert t.bounds == (116.0, -23.0, 117.0, -22.0)  # spans 23°S-22°S, 116°E-117°E
    w = TileName.parse("N28W076")
    assert w.bounds == (-76.0, 28.0, -75.0, 29.0) and w.name == "N28W076"
    assert TileName.containing(116.5, -22.5) == t
    assert TileName.containing(-75.5, 28.2) == w
    assert TileName.containing(0.0, 0.0).name == "N00E000"
    assert TileName.containing(-0.1, -0.1).name == "S01W001"


@pytest.mark.parametrize("bad", ["S23E16", "X23E116", "s23e116x", "S91E116"])
def test_bad_tile_names(bad):
    with pytest.raises(InputError):
        TileName.parse(bad)


@pytest.mark.parametrize(("bad", "written"), [("N00W000", "N00E000"), ("S00E010", "N00E010"), ("S00W000", "N00E000"),
                                              ("S00W045", "N00W045")])
def test_zero_written_with_the_other_hemisphere_is_refused(bad, written):
    """Latitude 0 is N00 and longitude 0 is E000 (DLR's spelling): 'N00W000' or 'S00E010' name the tile of
    'N00E000' / 'N00E010' (the same south-west corner), so two files could register as one tile under two names.
    They are refused in one line naming the name and the spelling expected."""
    same = TileName.parse(written)
    assert (abs(same.lat), abs(same.lon)) == (int(bad[1:3]), int(bad[4:7]))  # the same south-west corner
    with pytest.raises(InputError, match=rf"^'{bad}' is not a tile name: .*{written}") as err:
        TileName.parse(bad)
    assert "\n" not in str(err.value)
    assert TileName.parse(written).name == written  # the canonical spelling still parses and prints back


def test_tiles_covering_bounds_across_a_corner():
    got = tiles_covering((117.9, -23.1, 118.1, -22.9))
    assert [t.name for t in got] == ["S24E117", "S24E118", "S23E117", "S23E118"]


def test_layer_names_match_by_pattern():
    for layer in Layer:
        for kind in MapKind:
            name = layer_file_name(TileName.parse("N28E076"), kind, layer)
            assert parse_layer_name(name) == (TileName(28, 76), kind, layer)
    date_name = layer_file_name(TileName(28, 76), MapKind.LAST, Layer.DATE)
    assert date_name == "TDM1_DCM__10_N28E076_DATE_LAST1622_V01_C.tif"
    # another version suffix and an extra token still match the pattern ..._<CODE>*<KIND>1622_*.tif
    assert parse_layer_name("TDM1_DCM__10_S23E116_HAI_X_FIRST1622_V02_C.tif")[2] == Layer.HAI
    assert parse_layer_name("TDM1_DCM__10_S23E116_LAST1622_V01_C.xml") is None
    assert parse_layer_name("TDM1_EDEM_10_S23E116_EDEM_W84.tif") is None
    assert product_name(TileName(-23, 116), MapKind.LAST) == "TDM1_DCM__10_S23E116_LAST1622_V01_C"


def test_float32_cannot_hold_dates():
    """Why DATE is read as int32: float32 rounds odd YYYYMMDD values above 2**24."""
    assert int(np.float32(20190717)) != 20190717

"""world9 regions at the antimeridian in the north: Chukotka (Russia) lies on both sides of 180°, the Aleutians and
Alaska east of the Bering Strait line (168°58'37"W) are North America."""

from __future__ import annotations

import pytest

from minescape.publish.regions import world9_region


@pytest.mark.parametrize(("lon", "lat", "where"), [
    (179.5, 66.0, "Chukotka west of 180°"),
    (-179.5, 66.0, "Chukotka east of 180°"),
    (-173.2, 64.4, "Provideniya"),
    (-171.0, 67.0, "Chukotka north coast"),
    (-169.7, 66.1, "Cape Dezhnev"),
    (-169.05, 65.78, "Big Diomede"),
    (-179.0, 71.2, "Wrangel Island east of 180°"),
    (178.9, 71.2, "Wrangel Island west of 180°"),
])
def test_russia_across_180_is_north_asia(lon, lat, where):
    assert world9_region(lon, lat) == "north_asia", where


@pytest.mark.parametrize(("lon", "lat", "where"), [
    (-176.0, 52.0, "Aleutians (Adak)"),
    (173.0, 52.8, "Aleutians west of 180° (Attu)"),
    (-170.3, 57.1, "Pribilof Islands"),
    (-170.5, 63.5, "St Lawrence Island"),
    (-168.93, 65.77, "Little Diomede"),
    (-168.0, 65.6, "Cape Prince of Wales"),
    (-165.4, 64.5, "Nome"),
])
def test_alaska_near_180_is_north_america(lon, lat, where):
    assert world9_region(lon, lat) == "north_america", where

"""DCM fixtures: a small synthetic region shifted so one site straddles the 118°E tile edge, written with its
DCM as DLR tile ZIPs (generated once per session)."""

from __future__ import annotations

import pytest

from minescape.synthetic import RegionConfig

# 260 x 220 px at 10 m in UTM 50S; origin shifted 2 km east of the default so site S01 crosses 118°E
STRADDLE_CONFIG = RegionConfig(seed=7, width=260, height=220, n_sites=2, origin=(602000.0, 7500000.0))


@pytest.fixture(scope="session")
def dcm_region(tmp_path_factory):
    """RegionFiles of the straddling region (``.dcm`` = folder of tile ZIPs, LAST and FIRST)."""
    from minescape.synthetic import generate

    return generate(tmp_path_factory.mktemp("dcm_region"), STRADDLE_CONFIG)


@pytest.fixture(scope="session")
def dcm_sites(dcm_region):
    """The region's sites (read through read_sites)."""
    from minescape.sites import read_sites

    sites, _ = read_sites(dcm_region.sites)
    return {s.id: s for s in sites}

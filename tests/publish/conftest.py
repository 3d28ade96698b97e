"""Fixtures: per-site class maps (the small region's truth clipped to its sites) and releases."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely

from minescape.geo.vector import read_vector
from minescape.publish.sample_maps import clip_truth_to_sites, make_site_maps


@pytest.fixture(scope="session")
def site_maps(small_region, tmp_path_factory):
    """Class maps of the small region's 2 sites plus 3 generated sites on other continents."""
    out = tmp_path_factory.mktemp("maps")
    clip_truth_to_sites(small_region.truth_lulc, read_vector(small_region.sites), out, year=2020)
    far = gpd.GeoDataFrame(
        {"site_id": ["CL01", "ZA07", "FJ02"]},
        geometry=[shapely.Point(-69.07, -24.27).buffer(0.012),  # Atacama
                  shapely.Point(27.1, -26.3).buffer(0.01).difference(shapely.Point(27.1, -26.3).buffer(0.003)),
                  shapely.box(179.96, -17.52, 180.03, -17.47)],  # across the antimeridian (lon > 180)
        crs=4326,
    )
    make_site_maps(far, out, seed=5, year=2021, id_column="site_id")
    return out


@pytest.fixture(scope="session")
def release(site_maps, tmp_path_factory):
    """A release of ``site_maps`` with a small cap (several shards per region)."""
    from minescape.publish.release import publish

    out = tmp_path_factory.mktemp("rel") / "release"
    publish(site_maps, out, max_features=40, progress=False)
    return out

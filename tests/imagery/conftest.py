"""Fixtures: the small synthetic region in a STAC layout, and real loopback servers (rustac's STAC API and a
range-request file server) holding it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def stac_region(tmp_path_factory, small_region_config):
    """(Region, RegionFiles, StacRegion): the small region, its files and its STAC layout (4 scenes a year)."""
    from minescape.synthetic import make_region, write_region
    from minescape.synthetic_stac import write_stac_region

    root = tmp_path_factory.mktemp("stac-region")
    region = make_region(small_region_config)
    files = write_region(region, root / "region")
    stac = write_stac_region(region, root / "stac", scenes_per_year=4)
    return region, files, stac


@pytest.fixture
def loopback(stac_region, tmp_path):
    """Earth Search-style items served on 127.0.0.1: ``rustac serve`` + range-request asset server (logged)."""
    from minescape.imagery.loopback import serve_catalogue

    _, _, stac = stac_region
    lb = serve_catalogue(stac.earth_search, stac.assets, tmp_path, log=tmp_path / "requests.jsonl")
    yield lb
    lb.stop()

"""Shared fixtures: the real data folder (skip when absent) and a small synthetic region."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from minescape.geo.raster import Raster

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MINESCAPE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (CI has ../shared/data beside the project)")
    return path


@pytest.fixture(scope="session")
def oscd_root() -> Path:
    """The OSCD root in ../shared/data/oscd."""
    return shared_path("oscd")


@pytest.fixture(scope="session")
def small_region_config():
    """A small, fast synthetic region (2 sites, 260 x 220 px)."""
    from minescape.synthetic import RegionConfig

    return RegionConfig(seed=7, width=260, height=220, n_sites=2)


@pytest.fixture(scope="session")
def small_region(tmp_path_factory, small_region_config):
    """The small synthetic region written to disk once per session (RegionFiles)."""
    from minescape.synthetic import generate

    return generate(tmp_path_factory.mktemp("region"), small_region_config)


@pytest.fixture
def utm_raster() -> Raster:
    """A tiny seeded, non-square float32 raster in UTM 33N (3 bands, 17 x 23 px, 10 m)."""
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (3, 17, 23)).astype(np.float32)
    data[:, 0, 0] = np.nan
    return Raster(data, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4100000), np.nan, ("B02", "B03", "B04"))

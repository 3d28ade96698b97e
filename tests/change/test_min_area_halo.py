"""Pass 2 of streamed detection reads each tile with a halo of 2*opening + 2*closing + n_min pixels: a minimum
area of a few hectares makes every tile the whole of a small scene. The memory check counts that halo (a tile
that does not fit is refused before anything is read, naming --min-area), and the time estimate its reads."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

import minescape.limits
from minescape.change.difference import DetectOptions, detect_files, halo, min_pixels, pass2_reads
from minescape.change.pairs import open_pair
from minescape.errors import ResourceLimitError
from minescape.geo.raster import Raster, write_raster

SIDE = 300  # px, 10 m
FIVE_HA = 50_000.0  # m²: 500 px of 100 m²


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("minarea")
    rng = np.random.default_rng(0)
    paths = []
    for name in ("t1", "t2"):
        dn = (rng.random((4, SIDE, SIDE)) * 3000 + 500).astype(np.uint16)
        paths.append(write_raster(Raster(dn, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4e6), 0,
                                         ("B02", "B03", "B04", "B08")), folder / f"{name}.tif"))
    return paths


def test_the_halo_makes_every_small_window_read_the_whole_scene(pair_files):
    grid = open_pair(*pair_files).grid
    options = DetectOptions(min_area_m2=FIVE_HA)
    pad, _ = halo(options, min_pixels(options, grid))
    assert min_pixels(options, grid) >= 499 and pad > SIDE
    (rows, cols), reads = pass2_reads(grid, window=64, pad=pad)
    assert (rows, cols) == (SIDE, SIDE) and reads == pytest.approx(25.0)  # 5 x 5 tiles, each the whole scene
    (rows, cols), reads = pass2_reads(grid, window=64, pad=halo(DetectOptions(), 0)[0])
    assert (rows, cols) == (72, 72) and reads < 1.3


def test_a_halo_that_does_not_fit_in_memory_is_refused(pair_files, tmp_path, monkeypatch):
    # a memory limit between what 64 px windows take without and with the 5 ha halo (instead of a huge scene)
    monkeypatch.setattr(minescape.limits, "MAX_ALLOC_BYTES", 1 * 2**20)
    ok = detect_files(*pair_files, tmp_path / "ok", window=64, overviews=False)  # fits without the halo
    assert ok.stats["min_component_pixels"] == 0 and ok.mask.exists()
    with pytest.raises(ResourceLimitError, match=r"px clean-up halo .*--min-area, 50000 m² = 500 px"):
        detect_files(*pair_files, tmp_path / "big", window=64, options=DetectOptions(min_area_m2=FIVE_HA),
                     overviews=False)
    assert not (tmp_path / "big" / "change_mask.tif").exists()

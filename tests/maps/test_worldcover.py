"""Products and validation on a window of the real ESA WorldCover tiles (2021 as the map, 2020 as reference)."""

import numpy as np
import pandas as pd
import pytest
from rasterio.windows import Window

from minescape.geo.raster import read_raster, write_raster
from minescape.legend import WORLDCOVER
from minescape.maps.products import grid_units, make_products
from minescape.maps.validate import census_agreement, map_class_areas, validate_sample
from tests.conftest import shared_path

WINDOW = Window(6944, 30720, 1200, 1000)  # São Tomé: forest, grassland, built-up, sea


@pytest.fixture(scope="module")
def worldcover_window(tmp_path_factory):
    folder = shared_path("esa-worldcover")
    out = tmp_path_factory.mktemp("wc")
    paths = {}
    for year, name in ((2020, "ESA_WorldCover_10m_2020_v100_N00E006_Map.tif"),
                       (2021, "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif")):
        paths[year] = write_raster(read_raster(folder / name, window=WINDOW), out / f"wc{year}.tif", legend=WORLDCOVER)
    return paths


def test_products_and_sampled_agreement_on_real_worldcover(worldcover_window, tmp_path):
    from minescape.sampling import read_reference_at, stratified_points

    m, r = worldcover_window[2021], worldcover_window[2020]
    src = read_raster(m)
    units = grid_units(src.bounds, nx=3, ny=2, regions=1, provinces_per_region=3)
    s = make_products(m, units, tmp_path / "prod", legend=WORLDCOVER)
    assert not s.failed and len(s.tiles) == 6 and len(s.zips) == 3
    areas = pd.read_csv(tmp_path / "prod" / "class_areas.csv")
    # 1200 x 1000 px of 1/12000 degree near 0.4°N: about 9.26 m x 9.21 m
    assert areas["total_km2"].sum() == pytest.approx(1200 * 1000 * 9.2766 * 9.2122 / 1e6, rel=2e-3)
    assert areas["Tree cover"].sum() > areas["Built-up"].sum() > 0

    census = census_agreement(m, r, WORLDCOVER)
    assert 0.8 < census.overall_accuracy < 1.0
    class_areas = map_class_areas(m, WORLDCOVER)
    estimates = []
    for seed in range(5):  # 95 % intervals: most of five independent samples must contain the census value
        pts, _ = stratified_points(m, 1000, WORLDCOVER, allocation="olofsson", min_per_class=30, seed=seed)
        pts["ref_code"] = read_reference_at(pts, r)
        pts = pts[np.isin(pts["ref_code"], WORLDCOVER.codes)]
        estimates.append(validate_sample(pts, WORLDCOVER, class_areas).estimates)
    inside = [abs(e.overall_accuracy - census.overall_accuracy) < e.overall_accuracy_ci for e in estimates]
    assert sum(inside) >= 4, [(e.overall_accuracy, e.overall_accuracy_ci) for e in estimates]
    assert np.mean([e.overall_accuracy for e in estimates]) == pytest.approx(census.overall_accuracy, abs=0.01)
    assert all(0 < e.overall_accuracy_ci < 0.05 for e in estimates)

"""Products: per-unit tiles, province ZIPs, versions under a cap, index GPKG, ellipsoidal class areas."""

import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from minescape.errors import InputError
from minescape.geo.pixel_area import latband_area_m2, pixel_areas_m2
from minescape.geo.raster import Raster, read_raster, write_raster
from minescape.geo.vector import geodesic_area
from minescape.legend import WORLDCOVER
from minescape.maps.products import grid_units, group_versions, make_products, unit_stem


@pytest.fixture
def geo_map(tmp_path):
    """A 0.02° x 0.015° WorldCover-like map at 1/1200° (about 9 m) near 45°N, all classes valid."""
    rng = np.random.default_rng(0)
    data = rng.choice([10, 30, 40, 80], size=(18, 24), p=[0.4, 0.3, 0.2, 0.1]).astype(np.uint8)
    data = np.kron(data, np.ones((10, 10), dtype=np.uint8))  # 180 x 240 px
    r = Raster(data, CRS.from_epsg(4326), Affine(1 / 12000, 0, 10.0, 0, -1 / 12000, 45.015), 0)
    return write_raster(r, tmp_path / "map.tif", legend=WORLDCOVER), data


def test_ellipsoidal_pixel_areas():
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    exact = abs(geod.polygon_area_perimeter([6, 6.01, 6.01, 6], [59.99, 59.99, 60, 60])[0])
    assert latband_area_m2(np.array([60.0]), np.array([59.99]), 0.01)[0] == pytest.approx(exact, rel=1e-6)
    utm = pixel_areas_m2(Affine(10, 0, 500000, 0, -10, 5000000), "EPSG:32633", rows=100, cols=100, step=50)
    assert utm.shape == (100, 100) and np.allclose(utm, 100 * 0.9996**-2, rtol=2e-3)  # UTM scale at the meridian


def test_products_tiles_zips_versions_index_and_areas(geo_map, tmp_path):
    path, data = geo_map
    units = grid_units((10.0, 45.0, 10.02, 45.015), nx=4, ny=2, regions=2, provinces_per_region=2)
    units.loc[len(units)] = {"region": "Region3", "province": "Nowhere", "city": "Outside",
                             "geometry": shapely.box(50, 50, 51, 51)}
    s = make_products(path, units, tmp_path / "out", legend=WORLDCOVER, size_cap=1)  # 1 byte: one province each
    assert s.failed == {"Region3_Nowhere_Outside": "unit Region3_Nowhere_Outside lies outside the map "
                        "(bounds (50.0, 50.0, 51.0, 51.0) vs map (10.0, 45.0, 10.02, 45.015))"}
    assert len(s.tiles) == 8 and sorted(p.name for p in (tmp_path / "out" / "tiles").iterdir())[0] == \
        "Region1_Province1_City001.tif"
    tile = read_raster(tmp_path / "out" / "tiles" / "Region1_Province1_City001.tif")
    np.testing.assert_array_equal(tile.data[0], data[:90, :60])  # units align with pixel edges here
    with zipfile.ZipFile(tmp_path / "out" / "zips" / "Region1_Province1.zip") as zf:
        assert sorted(zf.namelist()) == ["Region1_Province1_City001.tif", "Region1_Province1_City005.tif"]
    assert s.versions == {"Region1_v1": ["Region1/Province1"], "Region1_v2": ["Region1/Province2"],
                          "Region2_v1": ["Region2/Province3"], "Region2_v2": ["Region2/Province4"]}
    index = gpd.read_file(tmp_path / "out" / "index.gpkg")
    assert set(index.columns) >= {"tile", "region", "province", "city", "file", "zip", "version", "bytes"}
    assert len(index) == 8
    areas = pd.read_csv(tmp_path / "out" / "class_areas.csv")
    unit_area = geodesic_area(units.geometry[:8]).sum() / 1e6
    assert areas["total_km2"].sum() == pytest.approx(unit_area, rel=1e-4)
    first = areas.set_index("unit").loc["Region1_Province1_City001"]
    px = np.bincount(data[:90, :60].ravel(), minlength=256)
    assert first["Tree cover"] / first["total_km2"] == pytest.approx(px[10] / px.sum(), rel=1e-3)
    # re-running gives the same bytes
    again = make_products(path, units, tmp_path / "again", legend=WORLDCOVER, size_cap=1)
    assert (tmp_path / "again" / "zips" / "Region1_Province1.zip").read_bytes() == \
        (tmp_path / "out" / "zips" / "Region1_Province1.zip").read_bytes()
    assert again.versions == s.versions


def test_polygon_clip_and_values_outside_the_legend(tmp_path):
    data = np.full((100, 120), 10, dtype=np.uint8)
    data[60:, 90:] = 77  # not a WorldCover code
    r = Raster(data, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4100000), 0)
    path = write_raster(r, tmp_path / "bad.tif")
    units = gpd.GeoDataFrame({"region": ["R", "R"], "province": ["P", "P"], "city": ["Round", "Corner"]},
                             geometry=[shapely.Point(500300, 4099500).buffer(200),
                                       shapely.box(500900, 4099000, 501200, 4099400)], crs=32633)
    s = make_products(path, units, tmp_path / "out", legend=WORLDCOVER)
    assert list(s.tiles) == ["R_P_Round"]
    assert "values [77] are not in the worldcover legend" in s.failed["R_P_Corner"]
    disc = read_raster(tmp_path / "out" / "tiles" / "R_P_Round.tif").data[0]
    assert disc[0, 0] == 0 and disc[20, 20] == 10  # outside the circle: nodata
    km2 = pd.read_csv(tmp_path / "out" / "class_areas.csv")["Tree cover"].iloc[0]
    assert km2 == pytest.approx(np.pi * 0.2**2, rel=0.03)


def test_unit_tiles_carry_overviews(tmp_path):
    """A tile over one block gets internal overviews (nearest: the classes QGIS would sample anyway, without
    reading every pixel): the 2x level of a map of 10 x 10 px class blocks is the same blocks at 5 x 5 px."""
    import rasterio

    classes = np.random.default_rng(3).choice([10, 30, 40, 80], size=(52, 60)).astype(np.uint8)
    data = np.kron(classes, np.ones((10, 10), dtype=np.uint8))  # 520 x 600 px
    r = Raster(data, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4100000), 0)
    path = write_raster(r, tmp_path / "map.tif", legend=WORLDCOVER)
    units = gpd.GeoDataFrame({"region": ["R"], "province": ["P"], "city": ["All"]},
                             geometry=[shapely.box(500000, 4094800, 506000, 4100000)], crs=32633)
    s = make_products(path, units, tmp_path / "out", legend=WORLDCOVER)
    assert list(s.tiles) == ["R_P_All"]
    with rasterio.open(tmp_path / "out" / "tiles" / "R_P_All.tif") as src:
        assert src.overviews(1) == [2, 4]
        assert np.array_equal(src.read(1), data)  # full resolution as the map
        assert np.array_equal(src.read(1, out_shape=(260, 300)), np.kron(classes, np.ones((5, 5), np.uint8)))


def test_admin_layer_without_naming_attributes(geo_map, tmp_path):
    path, _ = geo_map
    units = grid_units((10.0, 45.0, 10.02, 45.015), nx=2, ny=1).rename(columns={"city": "name"})
    units.to_file(tmp_path / "admin.gpkg")
    with pytest.raises(InputError, match=r"admin.gpkg: admin layer lacks naming attributes \['city'\]"):
        make_products(path, tmp_path / "admin.gpkg", tmp_path / "out", legend=WORLDCOVER)
    s = make_products(path, tmp_path / "admin.gpkg", tmp_path / "out", legend=WORLDCOVER,
                      fields=("region", "province", "name"))
    assert len(s.tiles) == 2


def test_versions_and_names():
    sizes = {("A", "p1"): 40, ("A", "p2"): 30, ("A", "p3"): 30, ("A", "p4"): 90, ("B", "q"): 5}
    assert group_versions(sizes, size_cap=70) == {"A_v1": [("A", "p1"), ("A", "p2")], "A_v2": [("A", "p3")],
                                                  "A_v3": [("A", "p4")], "B_v1": [("B", "q")]}
    assert unit_stem("North China", "He_bei", "Shí jiā/zhuāng") == "North-China_He-bei_Shí-jiā-zhuāng"


def test_unit_off_pixel_edges_keeps_every_pixel_centre_inside(tmp_path):
    """A unit from 0.7 to 2.6 px across and 0.7 to 5.0 px down: its tile holds every pixel whose centre is inside
    (counted by rasterio's own mask), the last column and row too."""
    import rasterio.features

    transform = Affine(0.001, 0, 100.0, 0, -0.001, 30.0)
    path = write_raster(Raster(np.full((40, 60), 10, np.uint8), CRS.from_epsg(4326), transform, 0),
                        tmp_path / "map.tif", legend=WORLDCOVER)
    unit = shapely.box(100.0007, 29.995, 100.0026, 29.9993)
    inside = int(rasterio.features.geometry_mask([unit], out_shape=(40, 60), transform=transform, invert=True).sum())
    assert inside == 8  # columns 1-2, rows 1-4
    units = gpd.GeoDataFrame({"region": ["R"], "province": ["P"], "city": ["C"]}, geometry=[unit], crs=4326)
    s = make_products(path, units, tmp_path / "out", legend=WORLDCOVER)
    assert s.tiles["R_P_C"]["valid_pixels"] == inside


def test_provinces_with_one_file_name_are_refused_not_overwritten(geo_map, tmp_path):
    """"Hai Nan" and "Hai-Nan" would both write North_Hai-Nan.zip: the second province's unit fails with a
    reason naming both, and the ZIP holds the first province's tile alone."""
    path, _ = geo_map
    units = grid_units((10.0, 45.0, 10.02, 45.015), nx=3, ny=1)
    units["region"] = ["North", "North", "North China"]
    units["province"] = ["Hai Nan", "Hai-Nan", "X"]
    units.loc[len(units)] = {"region": "North-China", "province": "Y", "city": "Z",
                             "geometry": shapely.box(10.0, 45.0, 10.005, 45.005)}
    s = make_products(path, units, tmp_path / "out", legend=WORLDCOVER)
    assert len(s.tiles) == 2 and len(s.failed) == 2
    assert any("province 'North/Hai-Nan' and 'North/Hai Nan' give the same file name North_Hai-Nan" in m
               for m in s.failed.values())
    assert any("region 'North-China' and 'North China' give the same file name North-China" in m
               for m in s.failed.values())
    with zipfile.ZipFile(tmp_path / "out" / "zips" / "North_Hai-Nan.zip") as zf:
        assert len(zf.namelist()) == 1 and zf.namelist()[0].startswith("North_Hai-Nan_")
    assert len(pd.read_csv(tmp_path / "out" / "versions.csv")) == 2


def test_a_unit_in_another_crs_follows_its_curved_edges(tmp_path):
    """A 1° x 0.25° unit in EPSG:4326 on a 100 m UTM map at 60° N: its parallels are curves on the map. The tile
    holds exactly the pixels whose centres are inside the unit in its own CRS (chords cut some before)."""
    from pyproj import Transformer

    to_utm = Transformer.from_crs(4326, 32633, always_xy=True)
    x0, y1 = to_utm.transform(14.0, 60.3)
    x1, y0 = to_utm.transform(16.0, 59.9)
    transform = Affine(100, 0, np.floor(x0 / 100) * 100 - 2000, 0, -100, np.ceil(y1 / 100) * 100 + 2000)
    width, height = int((x1 - x0) / 100) + 40, int((y1 - y0) / 100) + 40
    path = write_raster(Raster(np.full((1, height, width), 10, np.uint8), CRS.from_epsg(32633), transform, 0),
                        tmp_path / "map.tif", legend=WORLDCOVER)
    unit = shapely.box(14.5, 60.0, 15.5, 60.25)
    rows, cols = np.indices((height, width))
    xs, ys = transform * (cols.ravel() + 0.5, rows.ravel() + 0.5)
    lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(xs, ys)
    inside = int(shapely.contains_xy(unit, lon, lat).sum())
    chords = shapely.Polygon([to_utm.transform(x, y) for x, y in unit.exterior.coords])
    assert abs(int(shapely.contains_xy(chords, xs, ys).sum()) - inside) > 100  # straight edges on the map differ
    units = gpd.GeoDataFrame({"region": ["R"], "province": ["P"], "city": ["C"]}, geometry=[unit], crs=4326)
    s = make_products(path, units, tmp_path / "out", legend=WORLDCOVER)
    assert s.tiles["R_P_C"]["valid_pixels"] == inside


def test_units_across_the_antimeridian_on_a_geographic_map(tmp_path):
    """A 2° x 2° unit round 180° at 17° S (Fiji) on a global 0.5° map, drawn in EPSG:3832 (to_crs gives a band
    from -179° to 179°: 180 times its area) and in EPSG:4326 with longitudes 179° to 181°: both give the unit's
    16 pixels and its area on the ellipsoid."""
    from pyproj import Transformer

    path = write_raster(Raster(np.full((1, 360, 720), 10, np.uint8), CRS.from_epsg(4326),
                               Affine(0.5, 0, -180, 0, -0.5, 90), 0), tmp_path / "world.tif", legend=WORLDCOVER)
    to_3832 = Transformer.from_crs(4326, 3832, always_xy=True)
    (x0, y0), (x1, y1) = to_3832.transform(179, -18), to_3832.transform(181, -16)
    expected = float(latband_area_m2(np.array([-16.0]), np.array([-18.0]), 2.0)[0]) / 1e6
    for name, geom, crs in (("pacific", shapely.box(x0, y0, x1, y1), 3832),
                            ("wrapped", shapely.box(179, -18, 181, -16), 4326)):
        units = gpd.GeoDataFrame({"region": ["R"], "province": ["P"], "city": [name]}, geometry=[geom], crs=crs)
        s = make_products(path, units, tmp_path / name, legend=WORLDCOVER)
        tile = s.tiles[f"R_P_{name}"]
        assert tile["valid_pixels"] == 16, name
        assert sum(tile["areas_km2"].values()) == pytest.approx(expected, rel=1e-6), name

"""Sites: reading real and synthetic polygons, repair, stable ids, UTM grid (poles, antimeridian), year rules."""

import warnings

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from minescape.errors import InputError
from minescape.geo.raster import Raster, write_raster
from minescape.sites import make_site, read_sites, site_centroid, site_id_from_geometry, site_year
from tests.conftest import shared_path


def _quiet_read(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_sites(*args, **kwargs)


def test_real_maus_and_tang_layers_repair_and_ids():
    path = shared_path("mining-polygons", "mining_tiles_with_masks.gpkg")
    maus, notes = _quiet_read(path, layer="maus_polygons", id_field="tile_id")
    assert len(maus) == 146  # 56 of the 202 features have no geometry
    assert sum("empty geometry; dropped" in str(n) for n in notes) == 56
    assert any("repeats site id" in str(n) for n in notes)
    assert len({s.id for s in maus}) == len(maus)
    tang, _ = _quiet_read(path, layer="tang_polygons")  # no id field: geometry hashes
    assert len(tang) == 104 and all(s.id.startswith("site-") for s in tang)
    again, _ = _quiet_read(path, layer="tang_polygons")
    assert [s.id for s in tang] == [s.id for s in again]
    for s in maus[:20]:
        lon, lat = s.centroid_lonlat
        zone = int((lon + 180) // 6) + 1
        assert s.crs.to_epsg() in ((32600 if lat >= 0 else 32700) + zone, 32632, 32631, 32633, 32635, 32637)
        assert s.grid.res == (10.0, 10.0)
        assert s.mask().sum() * 100 == pytest.approx(s.geometry_utm.area, rel=0.05)


def test_real_combined_demo_uses_id_field():
    path = shared_path("mining-polygons", "mining_polygons_combined_demo.gpkg")
    sites, notes = _quiet_read(path)
    assert len(sites) == 100 and not notes
    assert sites[0].id == "3818" and sites[0].attrs["ISO3_CODE"] == "MEX"


def test_repair_drop_and_formats(tmp_path):
    bowtie = shapely.Polygon([(10, 10), (10.01, 10.01), (10.01, 10), (10, 10.01)])  # self-intersecting
    good = shapely.box(11, 11, 11.01, 11.01)
    gdf = gpd.GeoDataFrame({"name": ["bow", "empty", "good"]},
                           geometry=[bowtie, shapely.Polygon(), good], crs="EPSG:4326")
    for suffix, driver in ((".geojson", "GeoJSON"), (".shp", "ESRI Shapefile"), (".gpkg", "GPKG")):
        path = tmp_path / f"sites{suffix}"
        gdf.to_file(path, driver=driver)
        with pytest.warns(UserWarning, match="dropped"):
            sites, notes = read_sites(path)
        assert len(sites) == 2, suffix
        assert sites[0].geometry.is_valid and sites[0].geometry.area > 0
        assert sites[1].id == site_id_from_geometry(good)


def test_antimeridian_site_gets_a_zone_near_180():
    # a Fiji-like site from 179.95°E to 179.95°W
    poly = shapely.Polygon([(179.95, -17.0), (-179.95, -17.0), (-179.95, -17.05), (179.95, -17.05)])
    lon, lat = site_centroid(poly)
    assert abs(abs(lon) - 180) < 0.01 and lat == pytest.approx(-17.025)
    site = make_site("fiji", poly)
    assert site.crs.to_epsg() in (32760, 32701)
    assert site.grid.width < 2000  # ~10.6 km wide, not the whole globe
    assert site.geometry_utm.area == pytest.approx(10.65e3 * 5.53e3, rel=0.05)


@pytest.mark.parametrize("lat,epsg", [(85.0, 32661), (-82.0, 32761), (60.0, 32632)])
def test_polar_and_exception_zones(lat, epsg):
    lon = 5.0
    site = make_site("p", shapely.box(lon, lat, lon + 0.02, lat + 0.01))
    assert site.crs.to_epsg() == epsg
    assert site.mask().any()


def _year_raster(tmp_path, grid_shape=(60, 80), fill=2019):
    data = np.full(grid_shape, fill, dtype=np.uint16)
    data[:, 40:] = 2020
    r = Raster(data, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4100000), 0)
    return write_raster(r, tmp_path / "year.tif"), data


def _utm_site(geom_utm, sid="s"):
    lonlat = gpd.GeoSeries([geom_utm], crs=32633).to_crs(4326).iloc[0]
    return make_site(sid, lonlat)


def test_year_centroid_and_nearest_valid(tmp_path):
    path, data = _year_raster(tmp_path)
    square = shapely.box(500050, 4099450, 500250, 4099750)  # cols 5..25 -> 2019
    y = site_year(_utm_site(square), path)
    assert (y.year, y.rule) == (2019, "centroid")
    # concave U-shape whose centroid is outside the polygon
    u = shapely.box(500050, 4099450, 500750, 4099750).difference(shapely.box(500200, 4099450, 500600, 4099650))
    y = site_year(_utm_site(u), path)
    assert y.rule == "nearest-valid" and y.year in (2019, 2020)
    # centroid on nodata: nearest valid pixel inside wins
    data2 = data.copy()
    data2[27:33, 13:17] = 0
    p2 = write_raster(Raster(data2, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4100000), 0),
                      tmp_path / "year2.tif")
    sq = shapely.box(500100, 4099600, 500200, 4099800)
    y = site_year(_utm_site(sq), p2)
    assert y.rule == "nearest-valid" and y.year == 2019 and data2[y.row, y.col] == 2019
    # all nodata inside: one-line error
    data3 = np.zeros_like(data)
    p3 = write_raster(Raster(data3, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4100000), 0),
                      tmp_path / "year3.tif")
    with pytest.raises(InputError, match="no valid DCM year pixel"):
        site_year(_utm_site(sq), p3)
    far = shapely.box(600000, 4000000, 600100, 4000100)
    with pytest.raises(InputError, match="outside the DCM year raster"):
        site_year(_utm_site(far), path)


def test_synthetic_sites_years(small_region):
    sites, _ = read_sites(small_region.sites)
    assert [s.id for s in sites] == ["S01", "S02"]
    years = [site_year(s, small_region.dcm_year) for s in sites]
    assert all(y.year in (2018, 2019, 2020) for y in years)
    assert sites[0].crs.to_epsg() == 32750


def test_many_dropped_features_warn_a_few_lines_and_one_summary(tmp_path):
    import warnings

    from minescape.sites import NOTES_SHOWN

    geoms = [shapely.Polygon()] * 12 + [shapely.box(11, 11, 11.01, 11.01)]
    path = tmp_path / "many.gpkg"
    gpd.GeoDataFrame({"name": [str(i) for i in range(13)]}, geometry=geoms, crs="EPSG:4326").to_file(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sites, notes = read_sites(path)
    lines = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(sites) == 1 and len(notes) == 12  # every dropped feature is still in the notes
    assert len(lines) == NOTES_SHOWN + 1
    assert lines[-1] == f"many.gpkg: {12 - NOTES_SHOWN} more dropped or renamed features (all of them are in the " \
                        "returned notes and the run's report)"


def test_real_mine_points_become_discs_with_point_buffer(tmp_path):
    """The hand-labelled mine points (Amazon): dropped with a hint without --point-buffer; with it, each is a
    site whose polygon is the disc of that radius (ellipsoidal area within 0.2 % of pi r², centred on the point),
    in the point's own UTM zone, also across the antimeridian and for a MultiPoint (a union of discs)."""
    from minescape.errors import ConfigError
    from minescape.geo.vector import geodesic_area

    path = shared_path("mining-points", "MinesPos2018-2020Sentinel_points.geojson")
    points = gpd.read_file(path)
    assert len(points) == 95 and set(points.geom_type) == {"Point"}
    sites, notes = _quiet_read(path)
    assert sites == [] and len(notes) == 95 and "--point-buffer METRES makes a site" in str(notes[0])
    sites, _ = _quiet_read(path, point_buffer_m=500)
    assert len(sites) == 95
    areas = geodesic_area([s.geometry for s in sites])
    np.testing.assert_allclose(areas, np.pi * 500**2, rtol=2e-3)
    for site, pt in zip(sites[:10], points.geometry.values[:10], strict=True):
        assert site.geometry.centroid.distance(pt) < 1e-6  # degrees: centred on the mine
        assert site.crs == CRS.from_epsg(32600 + int((pt.x + 180) // 6) + 1)  # northern UTM zone of the point
        assert site.grid.width == site.grid.height == 101  # 1 km across at 10 m, snapped
    odd = gpd.GeoDataFrame({"site_id": ["dateline", "pair"]},
                           geometry=[shapely.Point(179.999, -17.0), shapely.MultiPoint([(10.0, 50.0), (10.02, 50.0)])],
                           crs="EPSG:4326")
    odd.to_file(tmp_path / "odd.geojson")
    (far, pair), _ = _quiet_read(tmp_path / "odd.geojson", point_buffer_m=300)
    assert far.crs.to_epsg() in (32760, 32701) and far.grid.width <= 62
    assert pair.geometry.geom_type == "MultiPolygon" and len(pair.geometry.geoms) == 2  # 1.4 km apart: two discs
    np.testing.assert_allclose(geodesic_area([far.geometry, pair.geometry]), [np.pi * 300**2, 2 * np.pi * 300**2],
                               rtol=2e-3)
    with pytest.raises(ConfigError, match="--point-buffer must be a distance > 0"):
        read_sites(path, point_buffer_m=0)


def test_duplicate_ids_are_renamed_to_ids_the_layer_does_not_have(tmp_path):
    """A repeated id gets the first free ``-N`` suffix: never one that another feature of the layer already has
    (before or after it in the file), so the run's ids stay unique."""
    path = tmp_path / "dups.gpkg"
    boxes = [shapely.box(10 + i * 0.02, 10, 10.01 + i * 0.02, 10.01) for i in range(5)]
    gpd.GeoDataFrame({"site_id": ["A-2", "A", "A", "A", "A-3"]}, geometry=boxes, crs="EPSG:4326").to_file(path)
    sites, notes = _quiet_read(path)
    ids = [s.id for s in sites]
    assert len(ids) == 5 and len(set(ids)) == 5, ids
    assert ids[:2] == ["A-2", "A"] and ids[4] == "A-3"  # the ids the layer gives are kept
    assert ids[2:4] == ["A-4", "A-5"]
    assert [str(n) for n in notes] == ["dups.gpkg: feature 3 (site_id 'A') repeats site id 'A'; renamed 'A-4'",
                                       "dups.gpkg: feature 4 (site_id 'A') repeats site id 'A'; renamed 'A-5'"]


def test_geometry_collection_keeps_its_polygonal_parts(tmp_path):
    """A GeometryCollection holding a polygon is the site of its polygonal parts (the point is left out), as the
    repair does for the collections make_valid returns; one holding no polygon is dropped, named as in QGIS."""
    poly = shapely.box(10, 10, 10.01, 10.01)
    gc = shapely.GeometryCollection([poly, shapely.Point(10.005, 10.005)])
    lines = shapely.GeometryCollection([shapely.LineString([(11, 11), (11.01, 11.01)])])
    path = tmp_path / "gc.geojson"
    gpd.GeoDataFrame({"site_id": ["S01", "GC", "LINES"]}, geometry=[shapely.box(12, 12, 12.01, 12.01), gc, lines],
                     crs="EPSG:4326").to_file(path, driver="GeoJSON")
    sites, notes = _quiet_read(path)
    assert [s.id for s in sites] == ["S01", "GC"]
    assert sites[1].geometry.equals(poly)
    dropped = [str(n) for n in notes if n.dropped]
    assert dropped == ["gc.geojson: feature 3 (site_id 'LINES') is a GeometryCollection holding no polygon; dropped"]
    kept = [str(n) for n in notes if not n.dropped]
    assert kept == ["gc.geojson: feature 2 (site_id 'GC') is a GeometryCollection; its polygonal parts are the site"]


def test_dropped_features_are_named_by_gpkg_fid_or_position_from_1(tmp_path):
    """The dropped-feature lines name a feature as QGIS shows it: a GeoPackage's fid (here 10, 20, 30, not the
    positions), else its position counted from 1; with the id value when the layer has an id field."""
    geoms = [shapely.box(10, 10, 10.01, 10.01), shapely.Polygon(), shapely.LineString([(11, 11), (11.01, 11.01)])]
    frame = gpd.GeoDataFrame({"fid": [10, 20, 30], "site_id": ["A", "B", "C"]}, geometry=geoms, crs="EPSG:4326")
    frame.to_file(tmp_path / "fids.gpkg", driver="GPKG")
    _, notes = _quiet_read(tmp_path / "fids.gpkg")
    assert sorted(str(n) for n in notes) == ["fids.gpkg: feature 20 (site_id 'B') has empty geometry; dropped",
                                             "fids.gpkg: feature 30 (site_id 'C') is a LineString, not a polygon; "
                                             "dropped"]
    frame.drop(columns=["fid", "site_id"]).to_file(tmp_path / "noid.geojson", driver="GeoJSON")
    _, notes = _quiet_read(tmp_path / "noid.geojson")
    assert sorted(str(n) for n in notes) == ["noid.geojson: feature 2 has empty geometry; dropped",
                                             "noid.geojson: feature 3 is a LineString, not a polygon; dropped"]


def test_a_huge_site_is_read_and_refused_before_its_grid_is_allocated():
    """Parts 5,000 km apart: reading makes the site (its grid is only numbers), and the size check refuses it in
    one line with its extent in km, its pixels and the memory it needs against the limit, allocating nothing."""
    from minescape.errors import ResourceLimitError
    from minescape.sites import check_site_size

    far = shapely.MultiPolygon([shapely.box(118.0, -22.62, 118.05, -22.60), shapely.box(160.0, 20.0, 160.005, 20.005)])
    site = make_site("FAR", far)
    assert site.grid.width * site.grid.height > 10**11
    with pytest.raises(ResourceLimitError) as err:
        check_site_size(site, bytes_per_px=256)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"site FAR: its {site.grid.width / 100:,.0f} x {site.grid.height / 100:,.0f} km extent "
                           f"is a {site.grid.width:,} x {site.grid.height:,} px grid"), text
    assert "GiB of memory, above the limit of" in text and "one feature per mine" in text
    check_site_size(make_site("S", shapely.box(118.0, -22.62, 118.05, -22.60)), bytes_per_px=256)  # a mine passes

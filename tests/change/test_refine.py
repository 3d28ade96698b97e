"""Manual refinement: candidates exported to GPKG, edited like an analyst would in QGIS, burnt back."""

import geopandas as gpd
import numpy as np
import pytest
import shapely

from minescape.change.difference import DetectOptions, detect_files
from minescape.change.refine import burn_edits, export_candidates
from minescape.errors import InputError
from minescape.geo.raster import read_raster
from minescape.geo.vector import read_vector, write_gpkg


@pytest.fixture(scope="module")
def detected(small_region, tmp_path_factory):
    out = tmp_path_factory.mktemp("refine")
    return detect_files(small_region.t1, small_region.t2, out / "det", options=DetectOptions(min_area_m2=300))


def test_export_is_one_feature_per_region_whatever_the_tiling(detected, tmp_path):
    whole = gpd.read_file(export_candidates(detected.mask, tmp_path / "w.gpkg", difference=detected.difference),
                          layer="candidates")
    tiled = gpd.read_file(export_candidates(detected.mask, tmp_path / "t.gpkg", tile=37), layer="candidates")
    assert len(whole) == len(tiled) > 3
    assert whole.area.sum() == pytest.approx(tiled.area.sum())
    assert whole.area.sum() == pytest.approx(detected.stats["changed_pixels"] * 100.0)
    assert set(whole.columns) >= {"cand_id", "status", "pixels", "area_m2", "mean_diff", "direction", "geometry"}
    assert set(whole.direction) == {"loss", "gain"}
    # ellipsoidal areas: within 0.5 % of the UTM areas near the zone's edge
    assert np.allclose(whole.area_m2, whole.area, rtol=5e-3)
    # the default QGIS style stored in the GeoPackage: outlines by direction, loss red, gain blue; without a
    # difference every candidate in one colour
    import xml.etree.ElementTree as ET

    from minescape.geo.gpkg_style import read_default_style

    root = ET.fromstring(read_default_style(tmp_path / "w.gpkg", "candidates").split("\n", 1)[1])
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "direction"
    cats = {c.get("value"): c.get("symbol") for c in renderer.iter("category")}
    assert set(whole.direction) <= set(cats)  # every value in the layer has its colour
    colour = {s.get("name"): {o.get("name"): o.get("value") for o in s.iter("Option") if o.get("name")}
              for s in renderer.iter("symbol")}
    assert colour[cats["loss"]]["outline_color"] == "178,24,43,255" and colour[cats["loss"]]["style"] == "no"
    assert colour[cats["gain"]]["outline_color"] == "33,102,172,255"
    plain = ET.fromstring(read_default_style(tmp_path / "t.gpkg", "candidates").split("\n", 1)[1])
    assert plain.find("renderer-v2").get("attr") == "status"
    assert gpd.read_file(tmp_path / "t.gpkg", layer="candidates").status.unique().tolist() == ["candidate"]


def test_edits_are_burnt_back(detected, tmp_path):
    cand = gpd.read_file(export_candidates(detected.mask, tmp_path / "c.gpkg"), layer="candidates")
    edited = cand.copy()
    deleted = edited.iloc[0].geometry
    rejected = edited.iloc[1].geometry
    edited = edited.iloc[1:].copy()  # delete the first
    edited.loc[edited.index[0], "status"] = "reject"  # reject the (new) first by attribute
    redrawn_idx = edited.index[1]
    edited.loc[redrawn_idx, "geometry"] = edited.loc[redrawn_idx, "geometry"].buffer(20)  # redraw larger
    minx, miny, maxx, maxy = edited.total_bounds
    added = shapely.box(minx + 10, miny + 10, minx + 60, miny + 60)  # a missed change
    edited = gpd.GeoDataFrame(
        [*edited.to_dict("records"), {"cand_id": 999, "status": None, "geometry": added}],
        geometry="geometry", crs=cand.crs)
    write_gpkg(edited, tmp_path / "edited.gpkg", layer="candidates")
    info = burn_edits(tmp_path / "edited.gpkg", detected.mask, tmp_path / "final.tif")
    final = read_raster(tmp_path / "final.tif")
    original = read_raster(detected.mask)
    assert final.transform == original.transform and final.crs == original.crs
    assert np.array_equal(final.data[0] == 255, original.data[0] == 255)
    grid = original.grid

    def value_at(geom):
        p = geom.representative_point()
        r, c = grid.rowcol([p.x], [p.y])
        return final.data[0, r[0], c[0]]

    assert value_at(deleted) == 0 and value_at(rejected) == 0
    assert value_at(added) == 1
    grown = edited.loc[edited.index[edited.cand_id == cand.loc[redrawn_idx, "cand_id"]][0], "geometry"]
    ring = grown.difference(cand.loc[redrawn_idx, "geometry"].buffer(5))
    assert value_at(ring) == 1
    assert info["features"] == len(edited) - 1


def test_burn_rejects_points(detected, tmp_path):
    pts = gpd.GeoDataFrame({"status": ["keep"]}, geometry=[shapely.Point(600500, 7499500)], crs="EPSG:32750")
    write_gpkg(pts, tmp_path / "pts.gpkg")
    with pytest.raises(InputError, match="pts.gpkg: 1 features are not polygons"):
        burn_edits(tmp_path / "pts.gpkg", detected.mask, tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


def test_polygons_in_another_crs_are_reprojected(detected, tmp_path):
    cand = read_vector(export_candidates(detected.mask, tmp_path / "c.gpkg"))  # the layer, not its style table
    write_gpkg(cand.to_crs(4326), tmp_path / "wgs.gpkg", layer="candidates")
    burn_edits(tmp_path / "wgs.gpkg", detected.mask, tmp_path / "b.tif")
    a = read_raster(tmp_path / "b.tif").data[0]
    b = read_raster(detected.mask).data[0]
    assert (a == b).mean() > 0.999


def test_mean_difference_leaves_out_a_declared_nodata(tmp_path):
    """A converted difference raster whose nodata is -9999 (not NaN): 20 of a region's 28 pixels are nodata and
    8 hold -0.1. Averaged in, the nodata made the mean -7142 ('loss' by accident); it is -0.1."""
    import rasterio
    from rasterio.transform import from_origin

    mask = np.zeros((40, 50), np.uint8)
    mask[5:9, 5:12] = 1
    profile = dict(driver="GTiff", width=50, height=40, count=1, dtype="uint8", crs="EPSG:32633",
                   transform=from_origin(500000, 4000000, 10, 10), nodata=255)
    with rasterio.open(tmp_path / "mask.tif", "w", **profile) as dst:
        dst.write(mask, 1)
    diff = np.full((40, 50), 0.3, np.float32)
    diff[5:9, 5:12] = -9999.0
    diff[5:9, 5:7] = -0.1
    with rasterio.open(tmp_path / "diff.tif", "w", **{**profile, "dtype": "float32", "nodata": -9999.0}) as dst:
        dst.write(diff, 1)
    cand = gpd.read_file(export_candidates(tmp_path / "mask.tif", tmp_path / "c.gpkg",
                                           difference=tmp_path / "diff.tif"), layer="candidates")
    assert cand["pixels"].tolist() == [28] and (diff[mask == 1] == -9999.0).sum() == 20
    assert cand["mean_diff"].iloc[0] == pytest.approx(-0.1) and cand["direction"].iloc[0] == "loss"

"""The bad-input matrix (docs/bad-input.md): every row gives a one-line error naming the file and the
problem, or is handled (repaired, masked, aligned) with a warning line. Real files, no mocks."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from minescape import indices
from minescape.change.labels import decode_binary
from minescape.errors import ConfigError, CRSMismatchError, InputError, NoOverlapError
from minescape.geo.grid import Grid, bounds_in, overlap_grid, reproject_to_grid, utm_crs
from minescape.geo.raster import Raster, read_raster, write_cog, write_raster
from minescape.geo.vector import geodesic_area, read_vector, repair_geometries, write_gpkg
from minescape.legend import CHANGE, MINING_LULC
from minescape.sentinel2 import TEN_BANDS, open_scene, read_stack


def one_line_naming(exc: BaseException, path: Path | str, *problem: str) -> str:
    """Assert the error is one line, names ``path`` and says each ``problem`` phrase; return the text."""
    text = str(exc)
    assert "\n" not in text, text
    assert str(path) in text, text
    for phrase in problem:
        assert phrase in text, text
    return text


# ------------------------------------------------------------------------------------ corrupted GeoTIFF

@pytest.fixture
def corrupt_tifs(small_region, tmp_path) -> dict[str, Path]:
    """A garbage TIFF, a GeoTIFF cut in half (header lost) and a COG cut in half (header intact)."""
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    data = small_region.t1.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    cog = tmp_path / "cog.tif"
    write_cog(read_raster(small_region.t1), cog)
    cog_bytes = cog.read_bytes()
    cog_cut = tmp_path / "S2B_MSIL2A_20190715T022549_N0400_R046_T50KQB_cut.tif"
    cog_cut.write_bytes(cog_bytes[: len(cog_bytes) * 2 // 3])
    return {"garbage": garbage, "cut": cut, "cog_cut": cog_cut}


@pytest.mark.parametrize("which", ["garbage", "cut"])
def test_corrupted_geotiff(corrupt_tifs, which):
    path = corrupt_tifs[which]
    for call in (lambda: read_raster(path), lambda: open_scene(path), lambda: read_stack(path)):
        with pytest.raises(InputError) as err:
            call()
        one_line_naming(err.value, path, "not a readable raster")


def test_truncated_geotiff_whose_header_still_opens(corrupt_tifs):
    path = corrupt_tifs["cog_cut"]
    with pytest.raises(InputError) as err:
        read_raster(path)
    one_line_naming(err.value, path, "corrupt or truncated raster")
    scene = open_scene(path, band_names=list(TEN_BANDS))  # the header is intact
    with pytest.raises(InputError) as err:
        read_stack(scene)
    one_line_naming(err.value, path, "corrupt or truncated raster")


def test_truncated_date_in_change_detect_names_the_file_and_gdal_reason(corrupt_tifs, small_region, tmp_path):
    """change detect reads pixel-aligned dates through its fast path (pairs.read_scene): a cut COG is one line
    naming the file with GDAL's own reason, not rasterio's 'Read failed. See previous exception for details.'"""
    from typer.testing import CliRunner

    from minescape.cli.app import app

    path = corrupt_tifs["cog_cut"]
    res = CliRunner().invoke(app, ["change", "detect", str(path), str(small_region.t2), str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    line = one_line_naming(res.output.strip(), path, "corrupt or truncated raster", "failed")
    assert "previous exception" not in line and "Traceback" not in res.output


def test_cli_line_for_an_unnamed_failed_read_shows_gdal_words(corrupt_tifs):
    """The CLI's safety net for a read site that does not name its file: rasterio's RasterioIOError says only
    'Read failed. See previous exception for details.'; the line shows the GDAL error it chains (file named)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    from minescape.cli.common import error_line

    path = corrupt_tifs["cog_cut"]
    with rasterio.open(path) as src, pytest.raises(RasterioIOError) as err:
        src.read()
    assert "previous exception" in str(err.value)  # what rasterio says on its own
    line = error_line(err.value)
    assert path.name in line and "failed" in line and "previous exception" not in line, line


# ---------------------------------------------------------------------------------------- truncated GPKG

@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_gpkg(small_region, tmp_path, keep):
    data = small_region.sites.read_bytes()
    path = tmp_path / f"sites_{int(keep * 100)}.gpkg"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError) as err:
        read_vector(path)
    one_line_naming(err.value, path, "not a readable vector file")


def test_truncated_gpkg_through_read_sites(small_region, tmp_path):
    from minescape.sites import read_sites

    path = tmp_path / "sites.gpkg"
    path.write_bytes(small_region.sites.read_bytes()[:5000])
    with pytest.raises(InputError) as err:
        read_sites(path)
    one_line_naming(err.value, path, "not a readable vector file")


def test_attribute_table_without_geometries(small_region, tmp_path):
    """A CSV of sites, and a GeoPackage holding an attribute table only: GDAL reads both (rows are there), neither
    has a geometry column; one line naming the file, through the CLI too (exit 2)."""
    import pandas as pd
    import pyogrio
    import pyogrio.raw
    from typer.testing import CliRunner

    from minescape.cli.app import app

    csv = tmp_path / "sites.csv"
    csv.write_text("id,name\nS01,pit\nS02,dump\n")
    table = tmp_path / "table.gpkg"  # a GeoPackage of attributes only
    pyogrio.raw.write(table, None, [np.array(["S01"], dtype=object)], ["id"], layer="sites", driver="GPKG")
    assert len(pyogrio.read_dataframe(csv)) == 2 and isinstance(pyogrio.read_dataframe(table), pd.DataFrame)
    for path in (csv, table):
        with pytest.raises(InputError) as err:
            read_vector(path)
        one_line_naming(err.value, path, "has no geometry column")
    res = CliRunner().invoke(app, ["lulc", "classify", str(csv), str(tmp_path / "out"), "-s",
                                   str(small_region.scene_dir), "--dcm", str(small_region.dcm_dh), "--dcm-year",
                                   str(small_region.dcm_year)])
    assert res.exit_code == 2 and "sites.csv: layer 'sites' has no geometry column" in res.output, res.output


# ---------------------------------------------------------------------------------------- mismatched CRSs

def test_mismatched_crs_is_aligned_not_mixed(small_region):
    """A DEM-change map in another CRS is warped onto the scene grid (values land where they belong)."""
    dh = read_raster(small_region.dcm_dh)
    geo = CRS.from_epsg(4326)
    other = Grid.from_bounds(bounds_in(dh.bounds, dh.crs, geo), 0.00005, geo)  # a lon/lat grid over the region
    in_geo = reproject_to_grid(dh, other)
    back = reproject_to_grid(in_geo, dh.grid)
    valid = back.valid_mask() & dh.valid_mask()
    assert valid.mean() > 0.9
    assert np.median(np.abs(back.data[0][valid] - dh.data[0][valid])) < 0.5  # metres
    # a scene read onto a grid in another CRS comes back on that grid
    stack = read_stack(small_region.t1, bands=["B04"], grid=other)
    assert stack.crs == other.crs and stack.shape == other.shape and np.isfinite(stack.data).mean() > 0.7


def test_missing_crs(small_region, tmp_path):
    ras = read_raster(small_region.t1)
    path = tmp_path / "no_crs.tif"
    write_raster(Raster(ras.data, None, ras.transform, 0, ras.band_names), path)
    with pytest.raises(InputError) as err:
        open_scene(path)
    one_line_naming(err.value, path, "scene has no CRS")
    with pytest.raises(CRSMismatchError, match="without a CRS"):
        reproject_to_grid(read_raster(path), ras.grid)
    gdf = gpd.read_file(small_region.sites)
    vec = tmp_path / "no_crs.gpkg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "'crs' was not provided": the point of this file
        write_gpkg(gdf.set_crs(None, allow_override=True), vec)
    with pytest.raises(InputError) as err:
        read_vector(vec)
    one_line_naming(err.value, vec, "layer has no CRS")


# ------------------------------------------------------------------------------------ non-overlapping extents

def test_extents_that_do_not_overlap(small_region):
    scene = open_scene(small_region.t1)
    far = (100000.0, 100000.0, 101000.0, 101000.0)
    with pytest.raises(NoOverlapError, match=r"bounds \(100000.0.*do not overlap the grid"):
        scene.grid.window_of_bounds(far)
    with pytest.raises(NoOverlapError):
        overlap_grid(scene.grid, (10.0, 10.0, 10.1, 10.1), CRS.from_epsg(4326))


def test_pair_that_does_not_overlap(small_region, tmp_path):
    from minescape.change.pairs import open_pair

    ras = read_raster(small_region.t2)
    moved = tmp_path / "S2B_MSIL2A_20240812T022551_N0510_R046_T50KQB_far.tif"
    t = ras.transform
    write_raster(Raster(ras.data, ras.crs, Affine(t.a, 0, t.c + 50000, 0, t.e, t.f), 0, ras.band_names), moved)
    with pytest.raises(NoOverlapError) as err:
        open_pair(small_region.t1, moved)
    one_line_naming(err.value, moved, "does not overlap")


# ------------------------------------------------------------------------------------------ all-nodata

def test_all_nodata_scene_reads_as_nan_and_site_reports_it(small_region, tmp_path):
    ras = read_raster(small_region.t1)
    paths = []
    for year in (2018, 2019, 2020):  # one empty scene for each year a site may get from the DCM
        path = tmp_path / "scenes" / f"S2A_MSIL2A_{year}0712T022551_N0214_R046_T50KQB.tif"
        write_raster(Raster(np.zeros_like(ras.data), ras.crs, ras.transform, 0, ras.band_names), path,
                     tags={"DATE": f"{year}-07-12", "PROCESSING_BASELINE": "02.14"})
        paths.append(path)
    stack = read_stack(path)
    assert not np.isfinite(stack.data).any() and not stack.valid_mask().any()
    from minescape.lulc.pipeline import classify_sites

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = classify_sites(small_region.sites, paths, small_region.dcm_dh, small_region.dcm_year,
                                 tmp_path / "lulc")
    assert not summary.results and len(summary.failed) == 2  # both sites, each with its reason
    for reason in summary.failed.values():
        assert "\n" not in reason and "T50KQB.tif" in reason and "nodata" in reason, reason


# ------------------------------------------------------------------------------------ NaN and inf in reflectance

def test_nan_and_inf_in_reflectance_become_nodata_silently(utm_raster):
    data = np.full((10, 4, 5), 0.2, np.float32)
    data[6] = 0.4  # B08
    data[:, 0, 0] = np.nan
    data[2, 1, 1] = np.inf  # B04
    data[6, 2, 2] = -np.inf  # B08
    data[8, 3, 3] = np.inf  # B11
    stack = Raster(data, utm_raster.crs, utm_raster.transform, np.nan, TEN_BANDS)
    bad = np.zeros((4, 5), bool)
    bad[0, 0] = bad[1, 1] = bad[2, 2] = bad[3, 3] = True
    assert (stack.valid_mask() == ~bad).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from inf - inf
        for name in indices.INDICES:
            value = indices.compute_index(stack, name).data[0]
            needed = [TEN_BANDS.index(b) for b in indices.index_bands(name)]
            expect_nan = ~np.isfinite(data[needed]).all(axis=0)
            assert np.isnan(value[expect_nan]).all(), name
            assert np.isfinite(value[~expect_nan]).all(), name


# ------------------------------------------------------------------------ invalid, self-intersecting, empty geometries

def test_invalid_self_intersecting_and_empty_geometries(tmp_path):
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])  # self-intersecting
    spike = shapely.Polygon([(0, 0), (2, 0), (2, 2), (1, 2), (1, 3), (1, 2), (0, 2)])  # invalid spike
    flat = shapely.Polygon([(0, 0), (1, 0), (2, 0)])  # zero area
    gdf = gpd.GeoDataFrame({"site_id": ["bowtie", "spike", "empty", "none", "flat"]},
                           geometry=[bowtie, spike, shapely.Polygon(), None, flat], crs=4326)
    fixed, dropped = repair_geometries(gdf, source="sites.gpkg")
    assert list(fixed["site_id"]) == ["bowtie", "spike"]
    assert fixed.geometry.is_valid.all()
    assert fixed.geometry.iloc[0].area == pytest.approx(0.5)  # both triangles kept
    assert fixed.geometry.iloc[1].area == pytest.approx(4.0)
    assert len(dropped) == 3 and all(str(n).startswith("sites.gpkg: feature ") and "\n" not in str(n)
                                     for n in dropped)
    assert any("empty geometry" in str(n) for n in dropped) and any("no area" in str(n) for n in dropped)


def test_read_sites_repairs_and_drops_with_warning_lines(tmp_path):
    from minescape.sites import read_sites

    bowtie = shapely.Polygon([(117.0, -22.0), (117.01, -22.01), (117.01, -22.0), (117.0, -22.01)])
    line = shapely.LineString([(117.0, -22.0), (117.1, -22.1)])
    gdf = gpd.GeoDataFrame({"site_id": ["bowtie", "line", "empty"]}, geometry=[bowtie, line, shapely.Polygon()],
                           crs=4326)
    path = tmp_path / "bad_sites.gpkg"
    write_gpkg(gdf, path)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        sites, notes = read_sites(path)
    assert [s.id for s in sites] == ["bowtie"]
    assert len(notes) == 2 and all(str(n).startswith("bad_sites.gpkg: feature") for n in notes)
    assert any("LineString, not a polygon" in str(n) for n in notes)
    assert all(n.dropped and n.source == "bad_sites.gpkg" for n in notes)  # values, not lines to parse


# ------------------------------------------------------------------------------------ a site across the antimeridian

def test_site_across_the_antimeridian(tmp_path):
    from minescape.sites import read_sites

    assert utm_crs(180.0, -17.0).to_epsg() == 32701 and utm_crs(-180.01, -17.0).to_epsg() == 32760
    with pytest.raises(ConfigError, match="latitude 95.0 outside"):
        utm_crs(10.0, 95.0)
    across = shapely.Polygon([(179.98, -17.0), (-179.98, -17.0), (-179.98, -16.98), (179.98, -16.98)])
    path = tmp_path / "fiji.gpkg"
    write_gpkg(gpd.GeoDataFrame({"site_id": ["fiji"]}, geometry=[across], crs=4326), path)
    (site,), notes = read_sites(path)
    assert not notes
    assert site.crs.to_epsg() in (32660, 32701)  # the zone at ±180°, not one near 0°
    width_m = site.grid.width * site.grid.res[0]
    assert 4000 < width_m < 4600  # 0.04° of longitude at 17° S, not 359.96°
    area = geodesic_area([across])[0]
    assert area == pytest.approx(site.geometry_utm.area, rel=0.01)


def test_a_ring_with_wrapped_longitudes_keeps_its_area(tmp_path):
    """A polygon written with wrapped longitudes (179.998 next to -179.998 in one ring) is invalid in the plane of
    degrees; read as a site it has the area of the same disc written with continuous longitudes, not what the
    planar repair would leave of it."""
    from minescape.sites import point_disc, read_sites

    disc = point_disc(shapely.Point(179.999, 10.0), 300.0)  # continuous: reaches 180.0017
    wrapped = shapely.transform(disc, lambda xy: np.c_[((xy[:, 0] + 180.0) % 360.0) - 180.0, xy[:, 1]])
    assert wrapped.bounds[0] < -179.99 and wrapped.bounds[2] > 179.99 and not wrapped.is_valid
    truth = geodesic_area([disc])[0]
    assert geodesic_area([wrapped])[0] == pytest.approx(truth, rel=1e-9)  # the ellipsoid reads either right
    repaired = shapely.make_valid(wrapped)  # what the repair did before: pieces spanning the globe
    assert repaired.bounds[2] - repaired.bounds[0] > 359
    path = tmp_path / "wrapped.gpkg"
    write_gpkg(gpd.GeoDataFrame({"site_id": ["wrapped", "continuous"]}, geometry=[wrapped, disc], crs=4326), path)
    (site, ref), notes = read_sites(path)
    assert not notes
    assert site.crs == ref.crs and site.crs.to_epsg() == 32660
    assert site.geometry.is_valid and site.geometry.geom_type == "MultiPolygon"  # split at 180 (RFC 7946)
    assert site.geometry.bounds[0] == -180.0 and site.geometry.bounds[2] == 180.0
    assert geodesic_area([site.geometry])[0] == pytest.approx(truth, rel=1e-6)
    assert site.geometry_utm.area == pytest.approx(ref.geometry_utm.area, rel=1e-9)
    assert site.geometry_utm.area == pytest.approx(truth, rel=0.002)  # UTM scale near the zone edge
    assert site.grid.width * site.grid.res[0] < 1000


# ------------------------------------------------------------------------------------ labels with unexpected values

def test_labels_with_unexpected_values(small_region, tmp_path):
    truth = read_raster(small_region.truth_change)
    bad = truth.data.copy()
    bad[0, 0, :5] = 7
    path = tmp_path / "change_labels.tif"
    write_raster(truth.with_data(bad), path)
    with pytest.raises(InputError) as err:
        decode_binary(read_raster(path).data, encoding="0-1", source=str(path))
    one_line_naming(err.value, path, "unexpected label values [7]")
    with pytest.raises(InputError) as err:
        decode_binary(np.array([0, 1, 3, 9]), source=str(path))
    one_line_naming(err.value, path, "cannot tell the label encoding")
    lulc = read_raster(small_region.truth_lulc).data.copy()
    lulc[0, 3, 3] = 42
    with pytest.raises(InputError) as err:
        MINING_LULC.check_codes(lulc, source=str(path))
    one_line_naming(err.value, path, "values [42] are not in the mining_lulc legend")
    assert set(np.unique(decode_binary(truth.data, encoding="0-1", nodata=CHANGE.nodata)).tolist()) <= {0, 1, 255}


# ------------------------------------------------------------------------------------------- wrong band count

def test_wrong_band_count(small_region, tmp_path):
    ras = read_raster(small_region.t1)
    three = tmp_path / "three_bands.tif"
    write_raster(Raster(ras.data[:3], ras.crs, ras.transform, 0), three)  # no band descriptions
    with pytest.raises(InputError) as err:
        open_scene(three)
    one_line_naming(err.value, three, "cannot tell which Sentinel-2 bands the 3 bands are")
    with pytest.raises(InputError) as err:
        open_scene(three, band_names=["B02", "B03", "B04", "B08"])
    one_line_naming(err.value, three, "4 band names given for 3 bands")
    four = tmp_path / "four_bands.tif"
    write_raster(Raster(ras.data[[0, 1, 2, 6]], ras.crs, ras.transform, 0), four)  # read as B02 B03 B04 B08
    with pytest.raises(InputError) as err:
        read_stack(four, bands=["B04", "B11"])
    one_line_naming(err.value, four, "missing bands ['B11']")
    with pytest.raises(InputError, match=r"band 'B11' not available; bands are \['B02', 'B03', 'B04', 'B08'\]"):
        indices.compute_index(read_stack(four), "MNDWI")


def test_holes_are_subtracted_whatever_the_rings_turn():
    """A 10 x 10 km square with a 5 x 5 km hole, both rings clockwise (as some files write them): pyproj's Geod
    adds each ring's signed area, so the hole was added (125 km² instead of 75). The area is the same as for the
    ring order GEOS writes, and the check holds with a real difference: the hole is there."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(32750, 4326, always_xy=True)

    def ring(x0, y0, size):  # clockwise, in lon/lat
        xs, ys = to_lonlat.transform([x0, x0, x0 + size, x0 + size], [y0, y0 + size, y0 + size, y0])
        return list(zip(xs, ys, strict=True))

    shell, hole = ring(500000, 7500000, 10000), ring(502500, 7502500, 5000)
    clockwise = shapely.Polygon(shell, [hole])
    assert not shapely.is_ccw(clockwise.exterior) and not shapely.is_ccw(clockwise.interiors[0])
    area = geodesic_area([clockwise, shapely.orient_polygons(clockwise), shapely.Polygon(shell)])
    assert area[0] == pytest.approx(area[1], rel=1e-9) and area[0] == pytest.approx(75e6, rel=3e-3)
    assert area[2] - area[0] == pytest.approx(25e6, rel=3e-3)


# ------------------------------------------------------------------------------------ sites layers


def _unclosed_ring_gpkg(path: Path) -> Path:
    """Three polygons written as raw WKB; the third's ring leaves out its closing point (invalid WKB, which
    GEOS refuses to parse as it is)."""
    import struct

    from pyogrio.raw import write

    boxes = [shapely.box(10, 10, 10.01, 10.01), shapely.box(11, 11, 11.01, 11.01)]
    ring = list(shapely.box(12, 12, 12.01, 12.01).exterior.coords)[:-1]
    bad = struct.pack("<BII", 1, 3, 1) + struct.pack("<I", len(ring)) + b"".join(struct.pack("<dd", *xy) for xy in ring)
    write(path, np.array([shapely.to_wkb(b) for b in boxes] + [bad], dtype=object),
          [np.array(["S01", "S02", "UNCLOSED"], dtype=object)], ["site_id"], driver="GPKG", geometry_type="Polygon",
          crs="EPSG:4326")
    return path


def test_a_feature_with_an_unclosed_ring_is_repaired_and_the_rest_read(tmp_path):
    from minescape.sites import read_sites

    path = _unclosed_ring_gpkg(tmp_path / "unclosed.gpkg")
    gdf = read_vector(path)
    assert len(gdf) == 3 and gdf.geometry.is_valid.all()
    assert gdf.geometry.iloc[2].equals(shapely.box(12, 12, 12.01, 12.01))  # the ring closed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: the ring is repaired
        sites, notes = read_sites(path)
    assert [s.id for s in sites] == ["S01", "S02", "UNCLOSED"] and not notes


def test_a_gpkg_with_several_layers_read_without_layer_says_which(small_region, tmp_path):
    """Without a layer name the first layer with geometries is read, and one warning line names it and the
    others; with one, or with only one layer beside minescape's own style table, nothing is said."""
    sites = gpd.read_file(small_region.sites)
    path = tmp_path / "multi.gpkg"
    gpd.GeoDataFrame({"tile_id": ["50KQB"]}, geometry=[shapely.box(*sites.total_bounds)], crs=sites.crs).to_file(
        path, layer="tiles")
    sites.to_file(path, layer="mine_polygons", mode="a")
    with pytest.warns(UserWarning) as caught:
        gdf = read_vector(path)
    assert "tile_id" in gdf.columns
    assert [str(w.message) for w in caught] == [
        "multi.gpkg: read layer 'tiles', the first of its layers ['tiles', 'mine_polygons'] (a command's --layer, "
        "where it has one, reads another)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_vector(path, layer="mine_polygons")) == len(sites)
        write_gpkg(sites, tmp_path / "one.gpkg")
        assert len(read_vector(tmp_path / "one.gpkg")) == len(sites)


def test_an_empty_sites_layer_is_one_line(small_region, tmp_path):
    from minescape.sites import read_sites

    path = tmp_path / "empty.gpkg"
    gpd.read_file(small_region.sites).iloc[:0].to_file(path)
    with pytest.raises(InputError) as err:
        read_sites(path)
    one_line_naming(err.value, path, "has no features")

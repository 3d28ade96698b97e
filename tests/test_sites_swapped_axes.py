"""A site layer in EPSG:4326 written with longitude and latitude swapped: where a latitude is impossible
(outside [-90, 90]) the feature's note says so and asks whether the axes are swapped; nowhere else."""

from __future__ import annotations

import warnings

import geopandas as gpd
import pyogrio
import pytest
import shapely

from minescape.sites import read_sites

HINT = "latitude out of range; are longitude and latitude swapped?"


def _read(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_sites(path, **kwargs)


def test_swapped_axes_are_named_for_impossible_latitudes(tmp_path):
    # Bowen Basin (148.0°E, 22.5°S) and Pilbara (118.7°E, 22.7°S) written as (lat, lon); Kiruna (20.2°E,
    # 67.8°N) swapped too, but its (67.8, 20.2) is a possible place: no hint for it
    boxes = [shapely.box(-22.51, 148.0, -22.5, 148.01), shapely.box(-22.71, 118.7, -22.7, 118.71),
             shapely.box(67.8, 20.2, 67.81, 20.21), shapely.box(15.0, 45.0, 15.01, 45.01)]
    path = tmp_path / "swapped.gpkg"
    gdf = gpd.GeoDataFrame({"site_id": ["bowen", "pilbara", "kiruna", "ok"]}, geometry=boxes, crs="EPSG:4326")
    pyogrio.write_dataframe(gdf, path, layer="mines", driver="GPKG")
    # the condition is there: the layer declares EPSG:4326 and two of its features have |y| > 90
    layer = pyogrio.read_dataframe(path)
    assert layer.crs.to_epsg() == 4326 and (layer.geometry.bounds["maxy"].abs() > 90).sum() == 2
    sites, notes = _read(path)
    assert [s.id for s in sites] == ["kiruna", "ok"]
    hinted = [str(n) for n in notes if HINT in str(n)]
    assert len(hinted) == 2 and all(n.dropped for n in notes)
    assert hinted[0].startswith("swapped.gpkg: feature 1 (site_id 'bowen') ")
    assert hinted[1].startswith("swapped.gpkg: feature 2 (site_id 'pilbara') ")
    assert "148.01" in hinted[0]  # the latitude it found
    assert len(notes) == 2


def test_no_hint_for_a_projected_layer(tmp_path):
    # y = 7,500,000 m in a UTM zone is an ordinary northing, not a latitude
    path = tmp_path / "utm.gpkg"
    gdf = gpd.GeoDataFrame({"site_id": ["a"]}, geometry=[shapely.box(500000, 7500000, 500200, 7500200)],
                           crs="EPSG:32755")
    pyogrio.write_dataframe(gdf, path, driver="GPKG")
    sites, notes = _read(path)
    assert len(sites) == 1 and notes == []


@pytest.mark.parametrize("crs", ["EPSG:4326", None])
def test_no_hint_for_possible_latitudes(tmp_path, crs):
    path = tmp_path / "sites.geojson"
    gdf = gpd.GeoDataFrame({"site_id": ["a"]}, geometry=[shapely.box(-22.51, 48.0, -22.5, 48.01)], crs=crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyogrio warns of a layer without a CRS
        pyogrio.write_dataframe(gdf, path, driver="GeoJSON")
    sites, notes = _read(path)
    assert len(sites) == 1 and notes == []


def test_swapped_mine_points_and_metres_in_a_degrees_layer(tmp_path):
    # a point register written as (lat, lon), read with --point-buffer; and a feature in metres declared EPSG:4326
    path = tmp_path / "points.gpkg"
    gdf = gpd.GeoDataFrame({"site_id": ["bowen", "ok", "metres"]},
                           geometry=[shapely.Point(-22.5, 148.0), shapely.Point(15.0, 45.0),
                                     shapely.box(500000, 7500000, 500200, 7500200)], crs="EPSG:4326")
    pyogrio.write_dataframe(gdf, path, driver="GPKG")
    sites, notes = _read(path, point_buffer_m=300.0)
    assert [s.id for s in sites] == ["ok"] and len(notes) == 2
    assert str(notes[0]).startswith(f"points.gpkg: feature 1 (site_id 'bowen') has {HINT}")
    # coordinates that swapped would still be impossible are not called swapped
    assert HINT not in str(notes[1]) and "latitude out of range; the coordinates are not degrees" in str(notes[1])

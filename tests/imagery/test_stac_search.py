"""Searching a catalogue: a saved ItemCollection keeps the items whose bbox meets the area (3D bboxes, bboxes across
the antimeridian) on their UTC dates, and an API search that would stop at the item limit is an error, not a
silent cut (through rustac's STAC API on loopback)."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from minescape.errors import InputError
from minescape.imagery.conventions import scene_from_item
from minescape.imagery.loopback import free_port, start_stac_server
from minescape.imagery.stac_search import MAX_ITEMS, StacQuery, search_scenes
from tests.conftest import shared_path

PC_ITEM = "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
ALASKA = (-147.9, 60.8, -147.8, 60.9)  # inside the real item's footprint (T06VVN)


def _item(name: str, bbox: list[float], when: str = "2019-06-29T21:25:29Z") -> dict:
    """The real Planetary Computer item with another id, bbox and datetime."""
    item = copy.deepcopy(json.loads(shared_path("stac-items", PC_ITEM).read_text()))
    item["id"], item["bbox"] = name, bbox
    item["properties"]["datetime"] = when
    item["properties"]["eo:cloud_cover"] = 1.0
    return item


def _save(tmp_path, items: list[dict]) -> str:
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return str(path)


def test_3d_and_antimeridian_bboxes_meet_the_area(tmp_path):
    items = [_item("flat", [-148.9, 60.3, -146.8, 61.3]), _item("heights", [-148.9, 60.3, 0.0, -146.8, 61.3, 0.0]),
             _item("elsewhere", [10.0, 60.3, 0.0, 11.0, 61.3, 0.0])]
    found = [s.id for s in search_scenes(StacQuery(_save(tmp_path, items)), ALASKA, 2019)]
    assert "flat" in found  # the area really meets the item: the 2D bbox finds it
    assert found == ["flat", "heights"]  # the 3D bbox too; one elsewhere stays out
    (heights,) = [s for s in search_scenes(StacQuery(_save(tmp_path, items[1:2])), ALASKA, 2019)]
    assert heights.bbox == (-148.9, 60.3, -146.8, 61.3)  # (west, south, east, north), heights dropped

    fiji = [_item("fiji", [179.5, -17.5, -179.5, -16.5])]  # west > east: across the antimeridian (STAC spec)
    path = StacQuery(_save(tmp_path, fiji))
    assert [s.id for s in search_scenes(path, (179.6, -17.0, 179.7, -16.9), 2019)] == ["fiji"]
    assert [s.id for s in search_scenes(path, (-179.9, -17.0, -179.8, -16.9), 2019)] == ["fiji"]
    assert search_scenes(path, (0.0, -17.0, 1.0, -16.9), 2019) == []  # the other side of the world


def test_bbox_helpers():
    from minescape.imagery.conventions import bbox_2d
    from minescape.imagery.stac_search import bboxes_meet

    assert bbox_2d([1, 2, 3, 4]) == (1.0, 2.0, 3.0, 4.0)
    assert bbox_2d([1, 2, -5, 3, 4, 9]) == (1.0, 2.0, 3.0, 4.0)
    assert bbox_2d([1, 2, 3]) is None and bbox_2d("1,2,3,4") is None and bbox_2d([1, "x", 3, 4]) is None
    assert bboxes_meet((179.6, -17.0, 179.7, -16.9), (179.5, -17.5, -179.5, -16.5))
    assert bboxes_meet((179.0, -17.0, -179.0, -16.9), (-179.5, -17.5, -179.2, -16.5))  # both across it
    assert not bboxes_meet((-170.0, -17.0, 170.0, -16.9), (179.5, -17.5, -179.5, -16.5))  # between its halves


def test_datetime_with_utc_offset_is_dated_in_utc(tmp_path):
    """2019-12-31T23:30-02:00 is 2020-01-01T01:30Z: a scene of 2020, not of 2019."""
    when = "2019-12-31T23:30:00-02:00"
    assert dt.datetime.fromisoformat(when).date() == dt.date(2019, 12, 31)  # the local date differs
    path = StacQuery(_save(tmp_path, [_item("tz", [-148.9, 60.3, -146.8, 61.3], when)]))
    assert search_scenes(path, ALASKA, 2019) == []
    (scene,) = search_scenes(path, ALASKA, 2020)
    assert scene.date == dt.date(2020, 1, 1)
    assert scene_from_item(_item("z", [-148.9, 60.3, -146.8, 61.3], "2019-12-31T23:30:00")).date == dt.date(
        2019, 12, 31)  # no offset given: UTC, as STAC requires


def _api_items(tmp_path, n: int) -> str:
    """``n`` items of 2021 over one area, every other one cloudy (50 %), as an ItemCollection for rustac."""
    feats = []
    for i in range(n):
        when = (dt.datetime(2021, 1, 1, 10) + dt.timedelta(hours=4 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        feats.append({"type": "Feature", "stac_version": "1.0.0", "id": f"S2_{i:05d}", "collection": "sentinel-2-l2a",
                      "properties": {"datetime": when, "proj:epsg": 32633, "eo:cloud_cover": 50.0 if i % 2 else 1.0,
                                     "s2:processing_baseline": "05.09"},
                      "geometry": {"type": "Polygon", "coordinates": [[[14.9, 50.4], [15.1, 50.4], [15.1, 50.6],
                                                                       [14.9, 50.6], [14.9, 50.4]]]},
                      "bbox": [14.9, 50.4, 15.1, 50.6], "links": [],
                      "assets": {"B02": {"href": "http://127.0.0.1:1/B02.tif"},
                                 "SCL": {"href": "http://127.0.0.1:1/SCL.tif"}}})
    path = tmp_path / f"api-{n}.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return str(path)


@pytest.fixture
def stac_api(tmp_path):
    """Start ``rustac serve`` on loopback for an ItemCollection; the servers are stopped after the test."""
    procs = []

    def start(items: str) -> str:
        port = free_port()
        procs.append(start_stac_server(items, port=port))
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def test_search_past_the_item_limit_is_an_error(tmp_path, stac_api):
    area = (14.95, 50.45, 15.05, 50.55)
    small = stac_api(_api_items(tmp_path, 40))  # under the limit: every clear item, the cloudy ones left out
    got = search_scenes(StacQuery(small, "sentinel-2-l2a", max_cloud=20.0), area, 2021)
    assert len(got) == 20 and all(s.cloud == 1.0 for s in got)
    big = stac_api(_api_items(tmp_path, MAX_ITEMS + 30))  # more than one search reads
    with pytest.raises(InputError) as e:
        search_scenes(StacQuery(big, "sentinel-2-l2a", max_cloud=20.0), area, 2021)
    text = str(e.value)
    assert f"more than the {MAX_ITEMS:,} items read per search" in text and "narrow the bbox or the dates" in text
    assert text.startswith(big) and "2021" in text and "\n" not in text
    assert "cloudy items count too" in text  # rustac's in-memory API has no query extension: filtered here

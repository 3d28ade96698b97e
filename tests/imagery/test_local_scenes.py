"""Scene discovery on disk (files, folders, band folders, local STAC, downloaded catalogue items), dates from
metadata or names, and one scene per date for change detection."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from minescape.errors import InputError, MissingInputError
from minescape.geo.raster import Raster, write_raster
from minescape.imagery.local_scenes import SceneRef, discover_scenes
from minescape.lulc.inputs import load_stack
from minescape.sentinel2 import TEN_BANDS
from minescape.sites import read_sites
from tests.conftest import shared_path


def test_discover_folder_and_files(small_region):
    refs = discover_scenes([small_region.scene_dir])
    assert len(refs) == len(small_region.scenes) + 2
    assert [r.date for r in refs] == sorted(r.date for r in refs)
    cloudy = [r for r in refs if r.date == dt.date(2018, 3, 2)][0]
    assert cloudy.cloud > 10
    one = discover_scenes([small_region.scenes[0], small_region.scenes[0]])
    assert len(one) == 1
    back = SceneRef.from_json(json.loads(json.dumps(refs[0].to_json())))
    assert back == refs[0]


def test_date_from_file_name_without_tags(tmp_path, utm_raster):
    data = (np.arange(10 * 6 * 5).reshape(10, 6, 5) + 1000).astype(np.uint16)
    r = Raster(data, utm_raster.crs, utm_raster.transform, 0, TEN_BANDS)
    path = write_raster(r, tmp_path / "S2B_MSIL2A_20210704T101559_N0300_R065_T33TWF_20210704T130000.tif")
    (ref,) = discover_scenes([path])
    assert ref.date == dt.date(2021, 7, 4) and ref.cloud is None
    bad = write_raster(r, tmp_path / "nodate" / "image.tif")
    with pytest.raises(InputError, match="cannot tell the scene date"):
        discover_scenes([bad])
    with pytest.raises(MissingInputError):
        discover_scenes([tmp_path / "nope"])


def test_band_folder_and_stac(tmp_path, small_region):
    """A one-file-per-band folder, and a STAC ItemCollection + Catalog pointing at per-band assets."""
    src_path = small_region.scenes[0]
    with rasterio.open(src_path) as src:
        data = src.read()
        crs, transform = src.crs, src.transform
    folder = tmp_path / "T50KQB_20190715T022551"
    for i, band in enumerate(TEN_BANDS):
        write_raster(Raster(data[i], crs, transform, 0), folder / f"T50KQB_20190715T022551_{band}.tif")
    (ref,) = discover_scenes([folder])
    assert ref.date == dt.date(2019, 7, 15)
    item = pystac.Item("scene-1", geometry=None, bbox=None, datetime=dt.datetime(2019, 7, 16),
                       properties={"eo:cloud_cover": 4.5})
    for band in TEN_BANDS:
        item.add_asset(band, pystac.Asset(href=str(folder / f"T50KQB_20190715T022551_{band}.tif"),
                                          media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
    coll = tmp_path / "items.json"
    coll.write_text(json.dumps(pystac.ItemCollection([item]).to_dict()))
    (sref,) = discover_scenes([coll])
    assert sref.date == dt.date(2019, 7, 16) and sref.cloud == 4.5 and len(sref.band_files) == 10
    cat = pystac.Catalog("cat", "test catalog")
    cat.add_item(item.clone())
    cat.normalize_and_save(str(tmp_path / "stac"), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    (cref,) = discover_scenes([tmp_path / "stac" / "catalog.json"])
    assert cref.date == dt.date(2019, 7, 16)
    sites, _ = read_sites(small_region.sites)
    a, _ = load_stack(sref, sites[0], bands=["B02", "B08"])
    b, _ = load_stack(SceneRef(src_path, dt.date(2019, 7, 15)), sites[0], bands=["B02", "B08"])
    np.testing.assert_array_equal(np.nan_to_num(a.data), np.nan_to_num(b.data))
    (tmp_path / "junk.json").write_text('{"type": "Nonsense"}')
    with pytest.raises(InputError, match="not a STAC"):
        discover_scenes([tmp_path / "junk.json"])


def test_downloaded_earth_search_item_folder(tmp_path):
    """A folder as Earth Search's bucket holds an item (``<id>.json`` beside ``B02.tif`` ... ``SCL.tif``; the real
    item from ../shared/data, small GeoTIFFs for its assets) is one scene read from the local files through the
    item: its date, cloud cover and DN offset come from the item, no href stays on the internet. Without the item
    JSON the bare files are refused, naming the folder."""
    item = json.loads(shared_path("stac-items", "S2A_28QCH_20200714_0_L2A.json").read_text())
    folder = tmp_path / "downloads" / item["id"]
    folder.mkdir(parents=True)
    (folder / f"{item['id']}.json").write_text(json.dumps(item))
    (folder / "tileInfo.json").write_text('{"path": "tiles/28/Q/CH/2020/7/14/0"}')  # other metadata: ignored
    transform = rasterio.transform.from_origin(300000, 1900000, 10, 10)
    rng = np.random.default_rng(3)
    written = {}
    for key in ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12", "SCL", "AOT"):
        dn = rng.integers(1, 4000, (12, 14)).astype(np.uint16)
        written[key] = dn
        write_raster(Raster(dn, "EPSG:32628", transform, 0), folder / f"{key}.tif")
    for source in (folder, folder.parent):  # the item's folder, or the folder of downloads above it
        (ref,) = discover_scenes([source])
        assert ref.date == dt.date(2020, 7, 14) and ref.cloud == pytest.approx(2.36)
        assert ref.baseline == "02.14" and ref.offset_dn == 0.0 and len(ref.band_files) == 12
        assert all(Path(h).parent == folder.resolve() for _, h, _ in ref.band_files)  # all local: no network
        assert ref.scl == str(folder.resolve() / "SCL.tif")  # its clear pixels come from SCL, as with --stac
    stack = load_stack_bands(ref, ["B02", "B11"])
    np.testing.assert_allclose(stack, np.stack([written["B02"], written["B11"]]) / 10000.0, rtol=1e-6)
    (folder / f"{item['id']}.json").unlink()
    for source in (folder, folder.parent):
        with pytest.raises(InputError, match=rf"{item['id']}: asset files named AOT.tif, B01.tif, B02.tif ... "
                                             "without their STAC item"):
            discover_scenes([source])


def test_downloaded_planetary_computer_item(tmp_path):
    """A Planetary Computer item saved beside ten of its assets (ESA-named band files, a band folder by its names)
    is read through the item: SCL and the item's baseline with it, the bands not downloaded left out; without the
    JSON, the same folder is a band folder."""
    item = json.loads(shared_path("stac-items", "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json")
                      .read_text())
    folder = tmp_path / "pc"
    folder.mkdir()
    (folder / "item.json").write_text(json.dumps(item))
    transform = rasterio.transform.from_origin(400000, 6900000, 10, 10)
    names = {k: a["href"].rsplit("/", 1)[1] for k, a in item["assets"].items() if k in TEN_BANDS or k == "SCL"}
    for name in names.values():
        write_raster(Raster(np.full((4, 4), 1500, np.uint16), "EPSG:32606", transform, 0), folder / name)
    for source in (folder, tmp_path):
        (ref,) = discover_scenes([source])
        assert ref.baseline == "02.12" and ref.offset_dn == 0.0 and ref.scl == str(folder.resolve() / names["SCL"])
        assert {b for b, h, _ in ref.band_files if Path(h).parent == folder.resolve()} == set(TEN_BANDS)
        assert len(ref.band_files) == 10  # B01, B09 not downloaded: not part of the scene
    (folder / "item.json").unlink()
    (ref,) = discover_scenes([folder])
    assert ref.source == folder and ref.band_files is None and ref.scl is None  # the band folder, as before


def test_downloaded_item_lookup_stays_in_its_folder(tmp_path):
    """An ItemCollection whose item states a self link into another folder holding B02.tif ...: the remote hrefs
    are not pointed at that folder's files (only files beside the JSON that was read are used)."""
    item = json.loads(shared_path("stac-items", "S2A_28QCH_20200714_0_L2A.json").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    transform = rasterio.transform.from_origin(300000, 1900000, 10, 10)
    for key in ("B02", "B03"):
        write_raster(Raster(np.ones((4, 4), np.uint16), "EPSG:32628", transform, 0), elsewhere / f"{key}.tif")
    item["links"] = [{"rel": "self", "href": str(elsewhere / "item.json")}]
    here = tmp_path / "here"
    here.mkdir()
    (here / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    with pytest.raises(InputError, match="its band assets are URLs"):  # not pointed at elsewhere/B02.tif
        discover_scenes([here / "items.json"])
    (elsewhere / "item.json").write_text(json.dumps(item))  # the same item read from that folder: local files
    (ref,) = discover_scenes([elsewhere / "item.json"])
    assert {b for b, _, _ in ref.band_files} == {"B02", "B03"}
    (here / "B02.tif").symlink_to(elsewhere / "B02.tif")  # a link beside the item, out of its folder: refused
    (here / "item.json").write_text(json.dumps(item))
    with pytest.raises(InputError, match="B02.tif beside it links out of its folder"):
        discover_scenes([here / "item.json"])


def load_stack_bands(ref: SceneRef, bands: list[str]) -> np.ndarray:
    from minescape.sentinel2 import read_stack

    return read_stack(ref.open(), bands=bands).data




def _single_items(collection: Path, dates: set[str], folder: Path, *, wrong_flag: bool = False) -> dict[str, Path]:
    """The items of ``collection`` acquired on ``dates`` (YYYY-MM-DD), each saved as a STAC Item JSON in
    ``folder`` with its hrefs made absolute; ``wrong_flag``: an item flagged ``earthsearch:boa_offset_applied``
    True is saved flagged False (the catalogue mistake of Element84/earth-search#66)."""
    data = json.loads(collection.read_text())
    out = {}
    folder.mkdir(parents=True, exist_ok=True)
    for feat in data["features"]:
        day = feat["properties"]["datetime"][:10]
        if wrong_flag and feat["properties"].get("earthsearch:boa_offset_applied"):
            feat["properties"]["earthsearch:boa_offset_applied"] = False
        if day in dates:
            for asset in feat["assets"].values():
                asset["href"] = str((collection.parent / asset["href"]).resolve())
            out[day] = folder / f"{feat['id']}.json"
            out[day].write_text(json.dumps(feat))
    return out


def test_change_detect_on_stac_items(stac_region, tmp_path):
    """``change detect`` takes one STAC item per date: the same change map and difference as the Planetary Computer
    items of the same scenes, clouds masked from the items' SCL (--mask-clouds), for the Earth Search item whose
    pixels were harmonized in 2024 flagged rightly, and flagged wrongly (the pixels decide, once per scene; the
    run says so in detect.json). A file holding several items is refused in one line."""
    from typer.testing import CliRunner

    from minescape.cli.app import app
    from minescape.geo.raster import read_raster

    _, _, stac = stac_region
    es = json.loads(stac.earth_search.read_text())
    harm = next(f for f in es["features"] if f["properties"].get("earthsearch:boa_offset_applied"))
    dates = {"2018-07-12", harm["properties"]["datetime"][:10]}
    runner = CliRunner()
    results = {}
    for name, collection in (("es", stac.earth_search), ("pc", stac.planetary_computer), ("wrong", stac.earth_search)):
        items = _single_items(collection, dates, tmp_path / name, wrong_flag=name == "wrong")
        t1, t2 = (items[d] for d in sorted(dates))
        res = runner.invoke(app, ["change", "detect", str(t1), str(t2), str(tmp_path / f"out_{name}"),
                                  "--mask-clouds", *(["--no-report"] if name != "wrong" else [])])
        assert res.exit_code == 0, res.output
        results[name] = (read_raster(tmp_path / f"out_{name}" / "change_mask.tif").data,
                         read_raster(tmp_path / f"out_{name}" / "difference.tif").data)
    (mask_es, diff_es), (mask_pc, diff_pc) = results["es"], results["pc"]
    assert (mask_es == 1).sum() > 0 and (mask_es == 255).sum() > 0  # change found, clouds masked
    np.testing.assert_array_equal(mask_es, mask_pc)
    np.testing.assert_allclose(diff_es, diff_pc, rtol=0, atol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(results["wrong"][0], mask_pc)
    np.testing.assert_allclose(results["wrong"][1], diff_pc, rtol=0, atol=1e-5, equal_nan=True)
    notes = json.loads((tmp_path / "out_wrong" / "detect.json").read_text())["scene_notes"]
    assert len(notes) == 1 and harm["id"] in notes[0] and "cannot carry the baseline-04.00 offset" in notes[0]
    assert "scene_notes" not in json.loads((tmp_path / "out_es" / "detect.json").read_text())
    html = (tmp_path / "out_wrong" / "report.html").read_text()  # the report shows the note and the mask
    assert "scene notes" in html and "cannot carry the baseline-04.00 offset" in html and "SCL" in html
    res = runner.invoke(app, ["change", "detect", str(stac.earth_search), str(t2), str(tmp_path / "out_many")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert f"holds {len(es['features'])} scenes" in res.output and "give one scene per date" in res.output


def test_one_scene_per_date_keeps_undated_band_folders(tmp_path):
    """A band folder whose names carry no date (OSCD's ``imgs_1/``), with an unrelated JSON beside the files, is
    still opened as it was (change detection needs no date); a missing item file is a missing input."""
    from minescape.imagery.local_scenes import open_one_scene

    transform = rasterio.transform.from_origin(300000, 1900000, 10, 10)
    folder = tmp_path / "imgs_1"
    for band in TEN_BANDS:
        write_raster(Raster(np.full((4, 5), 1200, np.uint16), "EPSG:32628", transform, 0), folder / f"img_{band}.tif")
    (folder / "metadata.json").write_text('{"source": "a download script"}')
    scene = open_one_scene(folder)
    assert scene.path == folder and scene.info.date is None and set(scene.bands) == set(TEN_BANDS)
    with pytest.raises(MissingInputError):
        open_one_scene(tmp_path / "nope.json")


def _item_doc(**changes) -> dict:
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None, "links": [], "assets": {},
           "properties": {"datetime": "2021-01-01T00:00:00Z"}}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None or k == "geometry"}


@pytest.mark.parametrize("name, doc, words", [
    ("no-properties", _item_doc(properties=None), "missing field 'properties'"),
    ("bad-datetime", _item_doc(properties={"datetime": "yesterday"}), "ValueError"),
    ("assets-list", {"type": "FeatureCollection", "features": [_item_doc(assets=[])]}, "AttributeError"),
    ("asset-href-number", _item_doc(assets={"B02": {"href": 12}}), "TypeError"),
])
def test_malformed_local_stac_is_one_error_naming_the_file(tmp_path, name, doc, words):
    """JSON-valid but malformed STAC given as scenes: whatever pystac raises (KeyError, ValueError, AttributeError,
    TypeError) becomes one InputError naming the file."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_item_doc()))
    with pytest.raises(InputError, match="no raster band assets"):  # the well-formed item gets past pystac
        discover_scenes([good])
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as e:
        discover_scenes([path])
    text = str(e.value)
    assert text.startswith(f"{path}: invalid STAC (") and words in text and "\n" not in text


def test_malformed_item_of_a_catalogue_names_the_item_file(tmp_path):
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "a.json").write_text(json.dumps(_item_doc(properties={"datetime": "yesterday"})))
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps({"type": "Catalog", "stac_version": "1.0.0", "id": "c", "description": "d",
                               "links": [{"rel": "item", "href": "items/a.json"}]}))
    with pytest.raises(InputError, match=r"items/a\.json: invalid STAC item \(ValueError"):
        discover_scenes([cat])


def test_malformed_local_stac_through_the_cli(tmp_path):
    """``change detect`` on malformed STAC items: exit 2 and one line naming the file (was a traceback, exit 1)."""
    from typer.testing import CliRunner

    from minescape.cli.app import app

    t1, t2 = tmp_path / "t1.json", tmp_path / "t2.json"
    for p in (t1, t2):
        p.write_text(json.dumps(_item_doc(properties={"datetime": "yesterday"})))
    res = CliRunner().invoke(app, ["change", "detect", str(t1), str(t2), str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and f"{t1}: invalid STAC (ValueError" in lines[0]

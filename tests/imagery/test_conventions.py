"""STAC conventions: real Earth Search v0 / Planetary Computer items, the offset rule, and the same reflectance
from both layouts of the same scenes (baselines 02.13 and 05.10, one Earth Search scene harmonized)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from minescape.errors import InputError
from minescape.imagery.conventions import offset_dn, scene_from_item
from minescape.imagery.sources import StacSource
from minescape.imagery.stac_search import StacQuery, search_scenes
from minescape.lulc.features import SPECTRAL_BANDS
from minescape.sites import read_sites
from tests.conftest import shared_path


def test_real_earth_search_v0_item():
    item = json.loads(shared_path("stac-items", "S2A_28QCH_20200714_0_L2A.json").read_text())
    s = scene_from_item(item)
    assert s.convention == "earth-search-v0" and s.epsg == 32628 and s.baseline == "02.14"
    assert s.cloud == pytest.approx(2.36) and s.date.isoformat() == "2020-07-14"
    assert {"B02", "B8A", "B12", "SCL"} <= set(s.assets)
    assert s.assets["B04"].href.endswith("B04.tif") and s.assets["B04"].offset_dn == 0.0
    assert s.assets["B04"].scale == pytest.approx(1e-4) and s.assets["SCL"].scale == 1.0


@pytest.mark.parametrize("name", ["S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json",
                                  "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531_raster_ext.json"])
def test_real_planetary_computer_items(name):
    item = json.loads(shared_path("stac-items", name).read_text())
    s = scene_from_item(item)
    assert s.convention == "planetary-computer" and s.epsg == 32606 and s.baseline == "02.12"
    assert set(s.assets) >= set(SPECTRAL_BANDS) | {"SCL"}
    assert all(a.offset_dn == 0.0 for a in s.assets.values())
    assert "blob.core.windows.net" in s.assets["B11"].href
    # the same item as baseline 04.00 (what PC serves since 2022): DN carry +1000, read with -1000
    item["properties"]["s2:processing_baseline"] = "04.00"
    assert scene_from_item(item).assets["B11"].offset_dn == -1000.0


@pytest.mark.parametrize(("baseline", "flag", "raster_offset", "expected"), [
    ("02.13", None, None, 0.0),
    ("02.13", False, -0.1, 0.0),  # no offset before 04.00, whatever raster:bands says
    ("05.10", False, -0.1, -1000.0),  # Earth Search, pixels as ESA delivered
    ("05.10", True, -0.1, 0.0),  # Earth Search harmonized the pixels (raster:bands offset wrongly left)
    ("05.10", None, -0.1, -1000.0),  # Earth Search collection 1: no flag, raster:bands says it
    ("04.00", None, None, -1000.0),  # Planetary Computer: no flag, no raster:bands offset
    (None, None, -0.1, -1000.0),  # no baseline: trust raster:bands
])
def test_offset_rule(baseline, flag, raster_offset, expected):
    off, note = offset_dn(baseline, offset_applied=flag, raster_offset=raster_offset, scale=1e-4)
    assert off == pytest.approx(expected)
    assert (note is not None) == (baseline == "02.13" and raster_offset is not None)


def test_both_layouts_same_reflectance(stac_region, loopback):
    """Earth Search items over HTTP and Planetary Computer items from disk: same reflectance, pixel for pixel."""
    _, files, stac = stac_region
    sites, _ = read_sites(files.sites)
    grid = sites[0].grid
    es = StacSource(StacQuery(loopback.stac_url, "sentinel-2-l2a", 100))
    pc = StacSource(StacQuery(str(stac.planetary_computer), "sentinel-2-l2a", 100))
    for year, baseline in ((2018, "02.13"), (2024, "05.10")):
        a, b = es.scenes(grid, year), pc.scenes(grid, year)
        assert len(a) == len(b) == 4 and all(s.baseline == baseline for s in a + b)
        assert {s.convention for s in a} == {"earth-search"} and {s.convention for s in b} == {"planetary-computer"}
        for sa, sb in zip(a, b, strict=True):
            oa, ob = es.observe(sa, grid, SPECTRAL_BANDS), pc.observe(sb, grid, SPECTRAL_BANDS)
            finite = np.isfinite(oa.reflectance)
            assert finite.sum() > 0.9 * finite.size  # pixels really compared
            np.testing.assert_array_equal(oa.reflectance, ob.reflectance)
            np.testing.assert_array_equal(oa.clear, ob.clear)
    # the 2024 set holds the hard case: Earth Search DN already offset (flag True), PC DN raw (+1000)
    harm = [s for s in es.scenes(grid, 2024) if "harmonized" in s.assets["B02"].href]
    assert len(harm) == 1 and harm[0].assets["B02"].offset_dn == 0.0
    raw = next(s for s in pc.scenes(grid, 2024) if s.date == harm[0].date)
    assert raw.assets["B02"].offset_dn == -1000.0
    with rasterio.open(raw.assets["B02"].href) as r1:
        d_raw = r1.read(1).astype(int)
    with rasterio.open(harm[0].assets["B02"].href.replace(loopback.assets_url, str(stac.assets))) as r2:
        d_harm = r2.read(1).astype(int)
    assert (d_raw > 0).all() and np.array_equal(d_raw - d_harm, np.full_like(d_raw, 1000))


def test_flag_contradicted_by_pixels(stac_region, tmp_path):
    """An Earth Search item flagged 'offset not applied' whose DN are already offset: read from the pixels."""
    _, files, stac = stac_region
    data = json.loads(stac.earth_search.read_text())
    feats = [f for f in data["features"] if f["properties"]["earthsearch:boa_offset_applied"]]
    assert len(feats) == 1
    feats[0]["properties"]["earthsearch:boa_offset_applied"] = False  # the catalogue's mistake
    for a in feats[0]["assets"].values():
        a["href"] = str((stac.earth_search.parent / a["href"]).resolve())
    path = tmp_path / "wrong-flag.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    sites, _ = read_sites(files.sites)
    grid = sites[0].grid
    wrong = StacSource(StacQuery(str(path), None, 100))
    right = StacSource(StacQuery(str(stac.planetary_computer), None, 100))
    sw = wrong.scenes(grid, 2024)
    assert sw[0].assets["B02"].offset_dn == -1000.0  # metadata alone would subtract it twice
    ow = wrong.observe(sw[0], grid, SPECTRAL_BANDS)
    orr = right.observe(next(s for s in right.scenes(grid, 2024) if s.date == sw[0].date), grid, SPECTRAL_BANDS)
    assert any("flag is wrong" in n for n in ow.notes)
    np.testing.assert_array_equal(ow.reflectance, orr.reflectance)
    # the same item given as a scene file (--scenes): the same check on its pixels
    from minescape.imagery.local_scenes import discover_scenes
    from minescape.imagery.sources import LocalSource

    local = LocalSource(discover_scenes([path]))
    (lref,) = local.scenes(grid, 2024)
    assert lref.offset_dn == -1000.0
    ol = local.observe(lref, grid, SPECTRAL_BANDS)
    assert any("cannot carry" in n for n in ol.notes)
    np.testing.assert_allclose(ol.reflectance, orr.reflectance, rtol=0, atol=1e-6)
    from minescape.lulc.inputs import load_stack  # the clearest-scene path reads it the same way

    stack, notes = load_stack(lref, sites[0], bands=SPECTRAL_BANDS)
    assert len(notes) == 1 and "cannot carry" in notes[0] and feats[0]["id"] in notes[0]  # the run reports it
    inside = sites[0].mask()
    np.testing.assert_allclose(stack.data[:, inside], orr.reflectance[:, inside], rtol=0, atol=1e-6)


def test_item_errors_name_the_item(stac_region, tmp_path):
    _, _, stac = stac_region
    data = json.loads(stac.planetary_computer.read_text())
    item = data["features"][0]
    del item["properties"]["proj:epsg"]
    path = tmp_path / "no-epsg.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    with pytest.raises(InputError, match=rf"no-epsg.json: STAC item {item['id']}: no proj:epsg"):
        search_scenes(StacQuery(str(path), None, 100), (-180, -90, 180, 90), 2017)
    item = data["features"][1]
    s = scene_from_item(item, base=str(stac.planetary_computer.parent))
    del s.assets["B12"]
    with pytest.raises(InputError, match=rf"STAC item {item['id']}: missing bands \['B12'\]"):
        s.require(SPECTRAL_BANDS)
    bad = tmp_path / "items.json"
    bad.write_bytes(b"\x89PNG not json")
    with pytest.raises(InputError, match="items.json: STAC ItemCollection is not valid JSON"):
        search_scenes(StacQuery(str(bad), None, 100), (-180, -90, 180, 90), 2017)


def test_untrusted_hrefs_refused(stac_region):
    _, _, stac = stac_region
    item = json.loads(stac.planetary_computer.read_text())["features"][0]
    for bad in ("/vsicurl/http://example.com/x.tif", "ftp://example.com/B02.tif", "scene.vrt"):
        item["assets"]["B02"]["href"] = bad
        with pytest.raises(InputError, match=rf"STAC item {item['id']}: asset href .* is not allowed"):
            scene_from_item(item, base=str(stac.planetary_computer.parent))
    item["assets"]["B02"]["href"] = "https://example.com/B02.tif"
    assert scene_from_item(item).assets["B02"].href == "https://example.com/B02.tif"


def test_local_stac_files_read_as_the_catalogue_path(stac_region):
    """Items given as scene files (``--scenes items.json``) are read by the same conventions as ``--stac``:
    Earth Search's ``blue`` ... keys and its harmonized item (offset already subtracted) give the same reflectance,
    and their SCL layers the same clear pixels.
    Before, the scene-file path knew ``B02`` keys only and took Earth Search's SCL.tif for a multi-band stack."""
    from minescape.imagery.local_scenes import discover_scenes
    from minescape.imagery.sources import LocalSource

    _, files, stac = stac_region
    sites, _ = read_sites(files.sites)
    grid = sites[0].grid
    masked = 0
    for path in (stac.earth_search, stac.planetary_computer):
        local = LocalSource(discover_scenes([path]))
        cat = StacSource(StacQuery(str(path), None, 100))
        for year in (2018, 2024):
            a, b = local.scenes(grid, year), cat.scenes(grid, year)
            assert len(a) == len(b) == 4
            for ra, sb in zip(a, b, strict=True):
                bands = {x[0] for x in ra.band_files}
                assert ra.date == sb.date and bands == set(sb.assets) - {"SCL"} and bands >= set(SPECTRAL_BANDS)
                assert ra.offset_dn == sb.assets["B02"].offset_dn
                oa, ob = local.observe(ra, grid, SPECTRAL_BANDS), cat.observe(sb, grid, SPECTRAL_BANDS)
                finite = np.isfinite(ob.reflectance)
                assert finite.sum() > 0.9 * finite.size  # pixels really compared
                np.testing.assert_allclose(oa.reflectance, ob.reflectance, rtol=0, atol=1e-6)
                np.testing.assert_array_equal(oa.clear, ob.clear)  # the SCL mask, as the catalogue path
                masked += int((~ob.clear).sum())
    assert masked > 0  # the SCL layers mask clouds in these scenes: the masks really compared
    harm = [r for r in discover_scenes([stac.earth_search]) if "harmonized" in r.band_files[0][1]]
    assert len(harm) == 1 and harm[0].offset_dn == 0.0 and harm[0].baseline == "05.10"


def test_real_items_with_remote_assets_as_scene_files():
    """The real catalogue items given as scene files (their assets on the internet): one line pointing at --stac,
    which reads catalogues over the network, instead of paths that cannot be opened."""
    from minescape.imagery.local_scenes import discover_scenes

    for name in ("S2A_28QCH_20200714_0_L2A.json", "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"):
        path = shared_path("stac-items", name)
        assert len(scene_from_item(json.loads(path.read_text())).assets) >= 13  # bands the conventions find
        with pytest.raises(InputError) as e:
            discover_scenes([path])
        text = str(e.value)
        assert text.startswith(str(path)) and "its band assets are URLs (e.g. https://" in text
        assert f"--stac {name}" in text and "\n" not in text


def test_clearest_local_stac_scene_ranked_by_its_scl(stac_region):
    """The default local composite (the clearest scene) ranks local STAC scenes by their SCL over the site: the
    scene chosen is the one the catalogue path finds clearest, and its cloud share is the catalogue's."""
    from minescape.lulc.inputs import clearest_scene, discover_scenes

    _, files, stac = stac_region
    sites, _ = read_sites(files.sites)
    site = sites[0]
    inside = site.mask()
    cat = StacSource(StacQuery(str(stac.earth_search), None, 100))
    refs = discover_scenes([stac.earth_search])
    for year in (2018, 2024):
        cloudy = {s.date: float((~cat.observe(s, site.grid, SPECTRAL_BANDS).clear)[inside].mean())
                  for s in cat.scenes(site.grid, year)}
        assert len(set(round(v, 3) for v in cloudy.values())) > 1  # the scenes differ: the ranking means something
        ref, share, _ = clearest_scene(refs, site, year)
        assert ref.date == min(cloudy, key=cloudy.get) and share == pytest.approx(cloudy[ref.date], abs=1e-3)


@pytest.mark.parametrize("raster_bands", [{"scale": 0.0001}, [0.0001], "0.0001", [{"scale": 0.0001}, 3]])
def test_malformed_raster_bands_name_the_item(raster_bands):
    """``raster:bands`` that is not a list of objects: one InputError naming the item and the asset."""
    item = json.loads(shared_path("stac-items", "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json")
                      .read_text())
    item["assets"]["B02"]["raster:bands"] = [{"scale": 0.0001, "offset": 0, "nodata": 0}]
    assert scene_from_item(item).assets["B02"].scale == pytest.approx(1e-4)  # a well-formed one is read
    item["assets"]["B02"]["raster:bands"] = raster_bands
    with pytest.raises(InputError) as e:
        scene_from_item(item)
    text = str(e.value)
    assert text.startswith(f"STAC item {item['id']}: asset 'B02' has a malformed raster:bands") and "\n" not in text


def test_malformed_item_parts_name_the_item():
    """Properties or assets of the wrong JSON type: one InputError naming the item, not a Python error."""
    base = json.loads(shared_path("stac-items", "S2A_28QCH_20200714_0_L2A.json").read_text())
    cases = [("properties", [1, 2], "properties is a list"), ("assets", [{"href": "x.tif"}], "assets is a list")]
    assert scene_from_item(base).assets  # the item itself is read
    for field, value, words in cases:
        item = json.loads(json.dumps(base))
        item[field] = value
        with pytest.raises(InputError, match=rf"^STAC item {item['id']}: {words}"):
            scene_from_item(item)


def test_malformed_raster_bands_through_the_cli(tmp_path):
    """``change detect --stac`` on an ItemCollection with a malformed ``raster:bands``: exit 2, one line naming
    the file and the item (was a traceback)."""
    from typer.testing import CliRunner

    from minescape.cli.app import app

    item = json.loads(shared_path("stac-items", "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json")
                      .read_text())
    item["assets"]["B02"]["raster:bands"] = {"scale": 0.0001}
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    res = CliRunner().invoke(app, ["change", "detect", "--stac", str(path), "--bbox", "-147.9,60.8,-147.8,60.9",
                                   "--t1", "2019", "--t2", "2019", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and f"STAC item {item['id']}: asset 'B02'" in lines[0]

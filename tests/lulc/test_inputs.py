"""Scene discovery (files, folders, band folders, STAC), dates from metadata or names, clearest scene."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pystac
import pytest
import rasterio

from minescape.errors import InputError, MissingInputError, NoOverlapError
from minescape.geo.raster import Raster, write_raster
from minescape.lulc.inputs import SceneRef, clearest_scene, discover_scenes, estimate_cloud, load_stack
from minescape.sentinel2 import TEN_BANDS
from minescape.sites import make_site, read_sites, site_year


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
    a = load_stack(sref, sites[0], bands=["B02", "B08"])
    b = load_stack(SceneRef(src_path, dt.date(2019, 7, 15)), sites[0], bands=["B02", "B08"])
    np.testing.assert_array_equal(np.nan_to_num(a.data), np.nan_to_num(b.data))
    (tmp_path / "junk.json").write_text('{"type": "Nonsense"}')
    with pytest.raises(InputError, match="not a STAC"):
        discover_scenes([tmp_path / "junk.json"])


def test_clearest_scene_of_the_site_year(small_region):
    refs = discover_scenes([small_region.scene_dir])
    sites, _ = read_sites(small_region.sites)
    for site in sites:
        year = site_year(site, small_region.dcm_year).year
        ref, share, _ = clearest_scene(refs, site, year)
        assert ref.year == year
        if year == 2018:  # two scenes: the July one is clearer than the 35 %-cloud March one
            assert ref.date == dt.date(2018, 7, 15) and share < 0.1
    with pytest.raises(InputError, match="no scene of year 2031"):
        clearest_scene(refs, sites[0], 2031)
    import shapely

    far = make_site("far", shapely.box(10, 10, 10.01, 10.01))
    with pytest.raises(NoOverlapError, match="outside all"):
        clearest_scene(refs, far, 2019)


def test_estimate_cloud():
    from affine import Affine

    stack = np.full((2, 4, 4), 0.1, dtype=np.float32)
    stack[0, :2] = 0.5  # bright blue
    stack[1, :2] = 0.4  # SWIR darker than blue: cloud
    r = Raster(stack, "EPSG:32633", Affine(10, 0, 0, 0, -10, 0), np.nan, ("B02", "B11"))
    assert estimate_cloud(r, np.ones((4, 4), bool)) == 0.5

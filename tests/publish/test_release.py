"""publish: layout, exact schema, caps, ids, areas, QGIS style, byte-identical and atomic re-publish."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from pyproj import Geod

from minescape.errors import ConfigError, InputError
from minescape.geo.gpkg_style import read_default_style
from minescape.legend import MINING_LULC
from minescape.publish import release as rel
from minescape.publish.inspect import inspect_release
from minescape.publish.regions import WORLD9, world9_region

GEOD = Geod(ellps="WGS84")


def _gpkgs(release: Path, tmp: Path) -> list[Path]:
    files = []
    for z in sorted(release.glob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            for name in zf.namelist():
                zf.extract(name, tmp / z.stem)
                files.append(tmp / z.stem / name)
    return files


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_layout_schema_and_attributes(release, tmp_path):
    names = sorted(p.name for p in release.iterdir())
    assert names == ["README.md", "manifest.json", "mining_lulc_africa.zip", "mining_lulc_latin_america.zip",
                     "mining_lulc_oceania.zip"]
    manifest = json.loads((release / "manifest.json").read_text())
    files = _gpkgs(release, tmp_path)
    assert len(files) > 3
    index = []
    for f in files:
        assert f.name.startswith(f"mining_lulc_{f.parent.name.removeprefix('mining_lulc_')}_")
        info = pyogrio.read_info(f, layer=f.stem)
        assert list(info["fields"]) == ["index_n", "class_name", "area_m2", "year"]
        assert list(info["dtypes"]) == ["int64", "object", "float64", "int32"]
        assert info["crs"] == "EPSG:4326"
        df = pyogrio.read_dataframe(f, layer=f.stem, fid_as_index=True)
        assert 0 < len(df) <= 40
        assert list(df.index) == list(range(1, len(df) + 1))  # fid 1..n
        assert np.all(np.diff(df["index_n"].values) == 1)
        index += df["index_n"].tolist()
        assert set(df["class_name"]) <= set(MINING_LULC.names)
        assert set(df["year"]) <= {2020, 2021}
        assert shapely.is_valid(df.geometry.values).all()
        b = df.total_bounds
        assert b[0] >= -180 and b[2] <= 180
        ref = np.array([abs(GEOD.geometry_area_perimeter(g)[0]) for g in df.geometry.values])
        assert np.all(np.abs(df["area_m2"].values / ref - 1) < 1e-4)  # every feature
        qml = read_default_style(f, f.stem)
        assert 'attr="class_name"' in qml and all(c.name in qml for c in MINING_LULC.classes)
        assert "200,30,45,255" in qml  # Open pit colour
    assert sorted(index) == list(range(1, len(index) + 1)) == list(range(1, manifest["features"] + 1))
    assert manifest["sites"] == 5
    assert sum(v["features"] for v in manifest["summary"]["class"].values()) == manifest["features"]
    assert set(manifest["summary"]["year"]) == {"2020", "2021"}
    for name, digest in manifest["sha256"].items():
        if "/" not in name:
            assert hashlib.sha256((release / name).read_bytes()).hexdigest() == digest
    readme = (release / "README.md").read_text()
    assert all(c.definition[:30] in readme for c in MINING_LULC.classes)
    assert "index_n" in readme and "area_m2" in readme
    # the antimeridian site became multipolygons on both sides of 180
    oceania = [pyogrio.read_dataframe(f, layer=f.stem) for f in files if "oceania" in f.name]
    assert any((df.geom_type == "MultiPolygon").any() for df in oceania)


def test_republish_gives_identical_bytes_and_is_atomic(site_maps, release, tmp_path, monkeypatch):
    before = _digests(release)
    rel.publish(site_maps, release, max_features=40, progress=False)  # over the existing release
    assert _digests(release) == before
    other = tmp_path / "again"
    rel.publish(site_maps, other, max_features=40, progress=False, workers=2)  # parallel: same bytes
    assert _digests(other) == before

    calls = {"n": 0}
    import minescape.publish.shards as shards  # where the parent imports write_shard from when it writes

    real = shards.write_shard

    def crash_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt  # an interrupted publish
        return real(*args, **kwargs)

    monkeypatch.setattr(shards, "write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        rel.publish(site_maps, other, max_features=10, progress=False)
    assert _digests(other) == before  # the old release, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temporary folder left


def test_index_n_order_is_deterministic(release, tmp_path):
    """Every file, not only the first: regions in alphabetical order, index_n consecutive from 1 across the
    files in that order, and in each file fid 1..n follows index_n."""
    files = _gpkgs(release, tmp_path)
    assert len(files) >= 2
    regions = [f.stem.split("_")[-2] for f in files]
    assert "africa" in files[0].name and regions == sorted(regions)
    expected = 1
    for f in sorted(files, key=lambda p: p.name):
        df = pyogrio.read_dataframe(f, layer=f.stem, fid_as_index=True)
        assert len(df) > 0
        assert df["index_n"].tolist() == list(range(expected, expected + len(df))), f.name
        assert df.index.tolist() == list(range(1, len(df) + 1)), f.name
        expected += len(df)
    assert expected - 1 == json.loads((release / "manifest.json").read_text())["features"]


def test_options_extra_columns_crs_simplify_and_tag_regions(site_maps, tmp_path):
    out = tmp_path / "r"
    s = rel.publish(site_maps, out, max_features=5000, extra_columns=True, simplify=15, crs="EPSG:3857",
                    progress=False)
    assert len(s.files) == 3
    f = _gpkgs(out, tmp_path / "x")[0]
    info = pyogrio.read_info(f, layer=f.stem)
    assert list(info["fields"]) == ["index_n", "class_name", "area_m2", "year", "site_id", "region"]
    assert info["crs"] == "EPSG:3857"
    report = inspect_release(out)
    assert report.ok, report.violations[:5]
    with pytest.raises(InputError, match="REGION tag"):
        rel.publish(site_maps, tmp_path / "t", regions="tag", progress=False)
    assert not (tmp_path / "t").exists()


def test_user_regions_layer(site_maps, tmp_path):
    import geopandas as gpd

    layer = tmp_path / "regions.gpkg"
    gpd.GeoDataFrame({"region": ["west", "east"]},
                     geometry=[shapely.box(-180, -90, 0, 90), shapely.box(0, -90, 180, 90)],
                     crs=4326).to_file(layer)
    s = rel.publish(site_maps, tmp_path / "r", regions=layer, progress=False)
    assert s.zips == ["mining_lulc_east.zip", "mining_lulc_west.zip"]
    gpd.GeoDataFrame({"region": ["West", "west"]},
                     geometry=[shapely.box(-180, -90, 0, 90), shapely.box(0, -90, 180, 90)],
                     crs=4326).to_file(tmp_path / "cased.gpkg")
    s = rel.publish(site_maps, tmp_path / "c", regions=tmp_path / "cased.gpkg", progress=False)
    assert len(s.zips) == 1 and s.zips[0] in ("mining_lulc_West.zip", "mining_lulc_west.zip")
    assert s.skipped and all("differs from region" in m and "only in case" in m for m in s.skipped)


def test_regions_layer_across_the_antimeridian(tmp_path):
    """A Pacific region drawn in EPSG:3832 from 175°E to 175°W: in lon/lat it would be a band from 175°W round to
    175°E (covering Africa). Searched in its own CRS, Fiji is Pacific and Zimbabwe African; a geographic layer
    with longitudes past 180° finds Fiji's western neighbour at -179.5° too."""
    import geopandas as gpd
    from pyproj import Transformer

    from minescape.publish.regions import RegionsLayer

    to_3832 = Transformer.from_crs(4326, 3832, always_xy=True)

    def box(left, bottom, right, top):
        xs, ys = to_3832.transform([left, right, right, left], [bottom, bottom, top, top])
        return shapely.Polygon(zip(xs, ys, strict=True))

    gpd.GeoDataFrame({"region": ["pacific", "africa"]}, geometry=[box(175, -25, 185, -10), box(-20, -35, 55, 37)],
                     crs=3832).to_file(tmp_path / "r3832.gpkg")
    layer = RegionsLayer(tmp_path / "r3832.gpkg")
    assert layer.region_of(178.5, -18.0, site="fiji") == "pacific"
    assert layer.region_of(-179.5, -18.0, site="lau") == "pacific"
    assert layer.region_of(30.0, -19.0, site="zimbabwe") == "africa"
    gpd.GeoDataFrame({"region": ["pacific"]}, geometry=[shapely.box(175, -25, 185, -10)],
                     crs=4326).to_file(tmp_path / "r4326.gpkg")
    geographic = RegionsLayer(tmp_path / "r4326.gpkg")
    assert geographic.region_of(-179.5, -18.0, site="lau") == "pacific"
    with pytest.raises(InputError, match="outside every region"):
        geographic.region_of(30.0, -19.0, site="zimbabwe")


def test_bad_site_is_reported_and_the_rest_published(site_maps, tmp_path):
    import shutil

    maps = tmp_path / "maps"
    shutil.copytree(site_maps, maps)
    (maps / "broken.tif").write_bytes(b"not a tiff")
    s = rel.publish(maps, tmp_path / "r", progress=False)
    assert len(s.skipped) == 1 and "broken.tif" in s.skipped[0]
    assert s.manifest["sites"] == 5
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["skipped"] == s.skipped


def test_a_class_map_cut_short_is_named_truncated_not_by_its_lost_tags(site_maps, tmp_path):
    import shutil

    import rasterio

    maps = tmp_path / "maps"
    shutil.copytree(site_maps, maps)
    victim = sorted(maps.glob("*.tif"))[0]
    whole = victim.read_bytes()
    with rasterio.open(victim) as src:  # GDAL writes the directory after the blocks, the tag values after it
        assert src.tags()["SITE_ID"]
    cut = len(whole) - 1200
    victim.write_bytes(whole[:cut])
    with rasterio.open(victim) as src:  # the problem is there: the copy opens, its SITE_ID silently gone
        assert "SITE_ID" not in src.tags()
    s = rel.publish(maps, tmp_path / "r", progress=False)
    assert len(s.skipped) == 1
    assert s.skipped[0].startswith(f"{victim}: truncated GeoTIFF: it needs ")
    assert "SITE_ID" not in s.skipped[0]
    assert s.manifest["sites"] == 4


def test_bad_arguments(site_maps, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not a minescape release"):
        rel.publish(site_maps, tmp_path / "junk", progress=False)
    with pytest.raises(ConfigError):
        rel.publish(site_maps, tmp_path / "o", max_features=0)
    with pytest.raises(InputError, match="choose one of"):
        rel.publish(site_maps, tmp_path / "o", regions="continents")
    with pytest.raises(InputError, match="no class maps"):
        rel.publish(tmp_path / "junk", tmp_path / "o")


@pytest.mark.parametrize(("lon", "lat", "region"), [
    (-112, 40, "north_america"), (-70, -24, "latin_america"), (15, 50, "europe"), (100, 60, "north_asia"),
    (27, -26, "africa"), (45, 24, "west_central_asia"), (85, 22, "south_asia"), (110, 0, "east_southeast_asia"),
    (118, -22, "oceania"), (179.99, -17, "oceania"), (-179.99, -17, "oceania"), (-175, 52, "north_america"),
])
def test_world9(lon, lat, region):
    assert world9_region(lon, lat) == region
    assert region in WORLD9


def test_a_site_outside_the_output_crs_is_skipped_not_folded(tmp_path):
    """A site in Fiji published in a UTM zone of Europe: PROJ folds its outlines over themselves (invalid
    polygons in the release, exit 0 before). Now that site is skipped with a line naming its map and the CRS's
    area of use; the site inside the zone is published and the release is clean."""
    from minescape.geo.raster import Raster, write_raster
    from minescape.sites import make_site

    maps = tmp_path / "maps"
    maps.mkdir()
    rng = np.random.default_rng(0)
    for sid, lon, lat in (("near_zone33", 15.0, 45.0), ("fiji", 180.0, -17.0)):
        s = make_site(sid, shapely.box(lon - 0.02, lat - 0.01, lon + 0.02, lat + 0.01))
        blocks = rng.integers(1, 8, size=(s.grid.height // 8 + 1, s.grid.width // 8 + 1)).astype(np.uint8)
        data = np.kron(blocks, np.ones((8, 8), np.uint8))[:s.grid.height, :s.grid.width].copy()
        data[~s.mask()] = 0
        write_raster(Raster(data, s.crs, s.grid.transform, 0), maps / f"{sid}.tif", legend=MINING_LULC,
                     tags={"SITE_ID": sid, "YEAR": "2019"})
    # the problem is there: Fiji's outlines become invalid polygons in EPSG:32633
    fiji = rel.scan_site(maps / "fiji.tif", lambda *a: "Oceania")
    with pytest.raises(InputError, match="fiji.tif: .* polygons .* become invalid in the output CRS EPSG:32633 "
                                         r"\(its area of use is 12..18°E, 0..84°N\)"):
        rel.site_features(fiji, legend=MINING_LULC, crs=rel.check_output_crs("EPSG:32633"))
    s = rel.publish(maps, tmp_path / "out", crs="EPSG:32633", progress=False)
    assert s.features > 0 and len(s.skipped) == 1 and "fiji.tif" in s.skipped[0]
    assert inspect_release(tmp_path / "out").ok

"""DCM sites at the edges of the tile scheme: latitude bands where the longitude spacing changes, a neighbour
tile that was not delivered, the antimeridian, and a delivery that changes within one process."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from minescape.dcm.index import dcm_index
from minescape.dcm.layers import MapKind, product_name
from minescape.dcm.mosaic import VALID, read_dcm_on_grid
from minescape.dcm.site import read_site_dcm
from minescape.dcm.synthetic_tiles import TileLayers, tile_grid, tile_layers, write_dcm_tiles, write_tile_zip
from minescape.dcm.tiles import TileName, lon_ranges, tiles_covering
from minescape.errors import CRSMismatchError
from minescape.sites import make_site

WAVE_M = 1000.0  # wavelength of the test field, metres on the ground in both directions


def _wave(lon, lat, lat0):
    """A smooth field (m) with a ~1 km wavelength whatever the latitude, continuous across the antimeridian."""
    deg_lat = WAVE_M / 111_320.0
    deg_lon = deg_lat / np.cos(np.radians(lat0))
    deg_lon = 360.0 / np.round(360.0 / deg_lon)  # a whole number of waves round the globe
    return 3.0 * np.sin(2 * np.pi * lon / deg_lon) + 2.0 * np.cos(2 * np.pi * lat / deg_lat)


def _field(offset: float, year: int, lat0: float):
    """Layers of one tile: ``offset + wave`` metres, DATE ``year``0717 (odd: float32 cannot hold it)."""

    def field(lon, lat, kind):
        dh = (offset + _wave(lon, lat, lat0)).astype(np.float32)
        return TileLayers(dh, np.full(lon.shape, year * 10000 + 717, np.int32), np.full(lon.shape, 2.0, np.float32),
                          np.ones(lon.shape, np.uint8))

    return field


def _write(folder, tile: TileName, field, box) -> None:
    write_tile_zip(folder / f"{product_name(tile, MapKind.LAST)}.zip", tile, MapKind.LAST,
                   tile_layers(tile, MapKind.LAST, field, [box]))


def _lonlat(site):
    rows, cols = np.indices(site.grid.shape)
    xs, ys = site.grid.xy(rows.ravel(), cols.ravel())
    lon, lat = Transformer.from_crs(site.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    return lon.reshape(site.grid.shape), lat.reshape(site.grid.shape)


@pytest.mark.parametrize("seam", [50, 60, 70, 80, 85])
def test_site_across_a_latitude_band_mosaics_both_lattices(tmp_path, seam):
    """N<seam-1> and N<seam> have different longitude spacings and share their edge row: both are read, each on
    its own lattice, and each pixel comes from the tile whose 1° cell holds it."""
    south, north = TileName(seam - 1, 13), TileName(seam, 13)
    assert tile_grid(south)[0].a != tile_grid(north)[0].a  # the lattices really differ
    assert tile_grid(south)[0].f + tile_grid(south)[0].e * 0.5 == pytest.approx(seam)  # shared edge row on seam
    dlon = 0.012 / np.cos(np.radians(seam))
    box = (13.5 - dlon, seam - 0.012, 13.5 + dlon, seam + 0.012)
    _write(tmp_path, south, _field(10.0, 2018, seam), box)
    _write(tmp_path, north, _field(20.0, 2019, seam), box)
    site = make_site("LAT", shapely.box(13.5 - dlon / 2, seam - 0.006, 13.5 + dlon / 2, seam + 0.006))
    d = read_site_dcm(tmp_path, site)
    assert len(d.tiles) == 2 and south.name in d.tiles[0] and north.name in d.tiles[1]
    inside = site.mask()
    lon, lat = _lonlat(site)
    wave = _wave(lon, lat, seam)
    below, above = inside & (lat < seam), inside & (lat >= seam)
    edge = inside & (lat >= seam) & (lat < seam + 0.5 / 3600)  # inside N<seam>, also in N<seam-1>'s edge row
    assert below.sum() > 1000 and above.sum() > 1000 and edge.sum() > 10
    dh = d.dh.data[0]
    assert np.isfinite(dh[inside]).all() and d.void_share == 0
    for part, offset in ((below, 10.0), (above, 20.0), (edge, 20.0)):
        err = np.abs(dh[part] - (offset + wave[part]))
        assert np.median(err) < 0.35 and err.max() < 1.5, (offset, np.median(err), err.max())
    assert set(np.unique(d.date[below]).tolist()) == {20180717}
    assert set(np.unique(d.date[above]).tolist()) == {20190717}


def test_site_inside_the_tile_below_50n_is_not_refused(tmp_path):
    """The lookup margin reaches N50E013 (1.5") for a site wholly inside N49E013 (1"): still read."""
    box = (13.49, 49.98, 13.53, 50.01)
    _write(tmp_path, TileName(49, 13), _field(10.0, 2018, 50), box)
    _write(tmp_path, TileName(50, 13), _field(20.0, 2019, 50), box)
    site = make_site("S49", shapely.box(13.505, 49.990, 13.515, 49.9985))
    assert len(dcm_index(tmp_path).lookup((13.505, 49.99, 13.515, 50.0001), MapKind.LAST)) == 2
    d = read_site_dcm(tmp_path, site)
    inside = site.mask()
    lon, lat = _lonlat(site)
    assert inside.sum() > 500 and "N49E013" in d.tiles[0]
    err = np.abs(d.dh.data[0][inside] - (10.0 + _wave(lon, lat, 50)[inside]))
    assert np.median(err) < 0.35 and err.max() < 1.5
    assert d.year.year == 2018


def test_same_tile_twice_on_different_grids_is_still_refused(tmp_path):
    """Only sources of one tile must share a lattice: a second delivery of N49E013 off the lattice is reported."""
    box = (13.49, 49.98, 13.53, 50.01)
    tile = TileName(49, 13)
    _write(tmp_path, tile, _field(10.0, 2018, 50), box)
    transform = tile_grid(tile)[0]
    (tmp_path / "again").mkdir()
    write_tile_zip(tmp_path / "again" / "TDM1_DCM__10_N49E013_LAST1622_V02_C.zip", tile, MapKind.LAST,
                   tile_layers(tile, MapKind.LAST, _field(10.0, 2018, 50), [box]),
                   transform=transform @ transform.translation(0.5, 0.5))
    site = make_site("S49", shapely.box(13.505, 49.990, 13.515, 49.9985))
    with pytest.raises(CRSMismatchError, match="overlap with different grids"):
        read_site_dcm(tmp_path, site)


def test_site_partly_outside_every_delivered_tile_reports_it(tmp_path):
    """Only S23E117 of a site across 118°E is delivered: the missing half is counted as void and named."""
    box = (117.985, -22.62, 118.015, -22.60)
    write_dcm_tiles(tmp_path, [box], _field(10.0, 2018, -22.6), kinds=(MapKind.LAST,))
    os.remove(tmp_path / f"{product_name(TileName(-23, 118), MapKind.LAST)}.zip")
    site = make_site("X1", shapely.box(117.990, -22.615, 118.010, -22.605))
    d = read_site_dcm(tmp_path, site)
    inside = site.mask()
    no_dh = np.isnan(d.dh.data[0][inside]).mean()
    assert len(d.tiles) == 1 and 0.3 < no_dh < 0.7  # half of the site really has no DCM
    assert abs(d.outside_share - no_dh) < 0.01 and d.void_share >= d.outside_share
    assert d.missing_tiles == (TileName(-23, 118),)
    assert len(d.notes) == 1 and "S23E118" in d.notes[0] and "site X1" in d.notes[0] and "\n" not in d.notes[0]
    rep = d.report()
    assert rep["dcm_void_share"] == round(d.void_share, 4) > 0.3
    assert rep["dcm_outside_share"] > 0.3 and rep["dcm_missing_tiles"] == ["S23E118"]
    assert rep["dcm_notes"] == list(d.notes)
    whole = read_site_dcm(tmp_path, make_site("X2", shapely.box(117.990, -22.615, 117.998, -22.605)))
    assert whole.outside_share == 0 and whole.notes == () and "dcm_notes" not in whole.report()


def test_tiles_covering_splits_at_the_antimeridian():
    assert [t.name for t in tiles_covering((179.9, 65.1, -179.9, 65.2))] == ["N65E179", "N65W180"]
    assert [t.name for t in tiles_covering((179.5, -16.6, 180.2, -16.4))] == ["S17E179", "S17W180"]
    assert [t.name for t in tiles_covering((-180.3, 1.1, -179.9, 1.2))] == ["N01E179", "N01W180"]
    assert len(tiles_covering((-200.0, 0.1, 200.0, 0.2))) == 360
    assert lon_ranges(179.9, -179.9) == [(179.9, 180.0), (-180.0, -179.9)]
    assert lon_ranges(10.0, 11.0) == [(10.0, 11.0)]


def test_site_across_the_antimeridian_reads_both_tiles(tmp_path):
    east, west = TileName(-17, 179), TileName(-17, -180)
    _write(tmp_path, east, _field(10.0, 2018, -16.5), (179.97, -16.52, 180.0, -16.48))
    _write(tmp_path, west, _field(10.0, 2019, -16.5), (-180.0, -16.52, -179.97, -16.48))
    site = make_site("AM", shapely.box(179.99, -16.51, 180.01, -16.49))
    d = read_site_dcm(tmp_path, site)
    assert len(d.tiles) == 2 and "S17E179" in d.tiles[0] and "S17W180" in d.tiles[1]
    inside = site.mask()
    lon, lat = _lonlat(site)
    e_side, w_side = inside & (lon > 0), inside & (lon < 0)
    assert e_side.sum() > 1000 and w_side.sum() > 1000  # both sides of 180° really in the site
    dh = d.dh.data[0]
    assert np.isfinite(dh[inside]).all() and d.void_share == 0
    err = np.abs(dh[inside] - (10.0 + _wave(lon, lat, -16.5)[inside]))
    assert np.median(err) < 0.35 and err.max() < 1.5
    assert set(np.unique(d.date[e_side]).tolist()) == {20180717}
    assert set(np.unique(d.date[w_side]).tolist()) == {20190717}
    win = read_dcm_on_grid(dcm_index(tmp_path), site.grid)
    assert (win.state[inside] == VALID).all()


def test_index_sees_zips_added_in_a_subfolder(tmp_path, monkeypatch):
    """A ZIP added to a subfolder leaves the root folder's time as it was; the cached index still sees it, once
    the signature is due to be checked again (here at every call; by default every 10 s)."""
    import minescape.dcm.index

    monkeypatch.setattr(minescape.dcm.index, "SIGNATURE_TTL_S", 0.0)
    box = (117.985, -22.62, 118.015, -22.60)
    src = tmp_path / "src"
    write_dcm_tiles(src, [box], _field(10.0, 2018, -22.6), kinds=(MapKind.LAST,))
    root = tmp_path / "delivery"
    (root / "part").mkdir(parents=True)
    name = f"{product_name(TileName(-23, 117), MapKind.LAST)}.zip"
    shutil.copy(src / name, root / "part" / name)
    assert dcm_index(root).tiles(MapKind.LAST) == [TileName(-23, 117)]
    before = root.stat().st_mtime_ns
    other = f"{product_name(TileName(-23, 118), MapKind.LAST)}.zip"
    shutil.copy(src / other, root / "part" / other)
    assert root.stat().st_mtime_ns == before  # the root folder did not change
    assert dcm_index(root).tiles(MapKind.LAST) == [TileName(-23, 117), TileName(-23, 118)]
    (root / "part" / other).write_bytes(b"not a zip")  # replaced in place: same folder times
    assert [p.path.name for p in dcm_index(root).problems] == [other]
    assert dcm_index(root) is dcm_index(root)  # unchanged: cached
    monkeypatch.setattr(minescape.dcm.index, "SIGNATURE_TTL_S", 3600.0)
    known = dcm_index(root)
    (root / "part" / other).unlink()
    assert dcm_index(root) is known  # within the time-to-live the folders are not walked again


def test_a_vrt_member_dressed_as_the_change_layer_is_not_followed(tmp_path):
    """A tile ZIP whose DCM member (``..._DCM_LAST1622_V01_C.tif``) is a VRT naming a private local file (all
    123): read as the VRT it is, the site's change would be 123 everywhere; read as the GeoTIFF its name says,
    the tile is refused in one line naming it."""
    import zipfile

    import rasterio

    from minescape.dcm.layers import Layer, layer_file_name
    from minescape.dcm.synthetic_tiles import analytic_field
    from minescape.errors import InputError

    tile, kind = TileName(-23, 117), MapKind.LAST
    transform, w, h = tile_grid(tile)
    private = tmp_path / "private.tif"
    with rasterio.open(private, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32", crs="EPSG:4326",
                       transform=transform) as dst:
        dst.write(np.full((h, w), 123.0, np.float32), 1)
    vrt = (f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>EPSG:4326</SRS><GeoTransform>{transform.c!r}, '
           f"{transform.a!r}, 0, {transform.f!r}, 0, {transform.e!r}</GeoTransform>"
           f'<VRTRasterBand dataType="Float32" band="1"><SimpleSource><SourceFilename relativeToVRT="0">{private}'
           f"</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>")
    layers = tile_layers(tile, kind, analytic_field(), [(117.49, -22.51, 117.51, -22.49)])
    clean = write_tile_zip(tmp_path / "clean.zip", tile, kind, layers)
    (tmp_path / "dcm").mkdir()
    evil = tmp_path / "dcm" / f"{product_name(tile, kind)}.zip"
    member = f"{product_name(tile, kind)}/DCM/{layer_file_name(tile, kind, Layer.DCM)}"
    with zipfile.ZipFile(clean) as zin, zipfile.ZipFile(evil, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, vrt if info.filename == member else zin.read(info))
    with rasterio.open(f"/vsizip/{evil}/{member}", driver="VRT") as src:
        assert src.read(1, window=((0, 1), (0, 1)))[0, 0] == 123.0  # the payload is live
    site = make_site("X", shapely.box(117.495, -22.505, 117.505, -22.495))
    with pytest.raises(InputError, match=r"site X: tile S23E117 LAST .*DCM layer is not a readable raster"):
        read_site_dcm(tmp_path / "dcm", site)


@pytest.mark.parametrize("rename", [lambda n: n.replace("/", "\\"), lambda n: "./" + n,
                                    lambda n: n.replace("/", "/./"), lambda n: ".\\" + n.replace("/", "\\"),
                                    lambda n: "./" + n.replace("/", "/./").replace("/", "\\", 1)],
                         ids=["backslash", "dot-slash", "inner-dot", "dot-backslash", "mixed"])
def test_zip_members_written_by_other_zippers_are_read(tmp_path, rename):
    """A tile ZIP whose members use Windows separators, start with './' or '.\\', hold './' parts or mix these: the
    tile is indexed and its layers open (the raw name was either not matched, 'not a TanDEM-X DCM tile', or
    normalised to a name GDAL's /vsizip/ does not list, 'not a readable raster')."""
    import zipfile

    tile, kind = TileName(-23, 117), MapKind.LAST
    clean = write_tile_zip(tmp_path / "clean.zip", tile, kind, tile_layers(tile, kind, _field(10.0, 2018, -22.6),
                                                                            [(117.49, -22.51, 117.51, -22.49)]))
    (tmp_path / "dcm").mkdir()
    odd = tmp_path / "dcm" / f"{product_name(tile, kind)}.zip"
    with zipfile.ZipFile(clean) as zin, zipfile.ZipFile(odd, "w") as zout:
        for info in zin.infolist():
            zout.writestr(rename(info.filename), zin.read(info))
    with zipfile.ZipFile(odd) as zf:
        assert all(n.startswith("./") or "\\" in n or "/./" in n for n in zf.namelist())
    index = dcm_index(tmp_path / "dcm")
    assert index.tiles(MapKind.LAST) == [tile] and not index.problems
    site = make_site("X", shapely.box(117.495, -22.505, 117.505, -22.495))
    assert np.isfinite(read_site_dcm(index, site).dh.data).any()


def test_a_stray_file_with_an_impossible_tile_name_is_one_problem(tmp_path):
    """A ZIP holding 'TDM1_DCM__10_N95E010_DATE_LAST1622_V01_C.tif' (no tile at 95°N) beside a real tile: the
    ZIP is one problem naming it; the delivery is read (the whole command stopped with exit 2 before)."""
    import zipfile

    box = (117.985, -22.62, 118.015, -22.60)
    write_dcm_tiles(tmp_path / "dcm", [box], _field(10.0, 2018, -22.6), kinds=(MapKind.LAST,))
    with zipfile.ZipFile(tmp_path / "dcm" / "readme_bundle.zip", "w") as zf:
        zf.writestr("TDM1_DCM__10_N95E010_DATE_LAST1622_V01_C.tif", b"not a raster")
    index = dcm_index(tmp_path / "dcm")
    assert index.tiles(MapKind.LAST) and [p.path.name for p in index.problems] == ["readme_bundle.zip"]


def test_two_versions_in_one_folder_are_two_products_and_the_complete_one_is_read(tmp_path):
    """Loose layers of V01 (its CIM missing) and V02 (complete) of one tile in one folder, as a flattened copy
    holds them: they were one product of mixed layers (DCM from V01, CIM from V02). Now two products; the site
    reads the complete V02 (values: the V02 field), and V01 is reported as the incomplete copy it is."""
    import zipfile

    tile, kind = TileName(-23, 117), MapKind.LAST
    folder = tmp_path / "flat"
    folder.mkdir()
    for version, offset in (("V01_C", 1.0), ("V02_C", 30.0)):
        zpath = write_tile_zip(tmp_path / f"{version}.zip", tile, kind, tile_layers(
            tile, kind, _field(offset, 2018, -22.6), [(117.49, -22.51, 117.51, -22.49)]))
        with zipfile.ZipFile(zpath) as zf:
            for info in zf.infolist():
                name = info.filename.rsplit("/", 1)[-1]
                if name.endswith(".tif") and not (version == "V01_C" and "_CIM_" in name):
                    (folder / name.replace("V01_C", version)).write_bytes(zf.read(info))
    index = dcm_index(folder)
    assert len(index.entries[(kind, tile)]) == 2
    assert [p.reason.split(";")[0] for p in index.problems] == [
        f"tile {tile.name} LAST has no CIM layer (expected TDM1_DCM__10_{tile.name}_<CIM>*LAST1622_*.tif)"]
    dh = read_site_dcm(index, make_site("X", shapely.box(117.495, -22.505, 117.505, -22.495))).dh.data
    assert np.nanmedian(dh) > 20  # V02's field (offset 30), not V01's (offset 1)


def test_a_tile_spelled_w000_is_a_problem_not_a_second_copy_of_n00e000(tmp_path):
    """A real tile N00E000 and a copy whose file and members say 'N00W000' (the same south-west corner written
    with the other hemisphere): the copy was indexed as a second N00E000 delivery. Its name is refused like any
    impossible tile name (the ZIP is one problem; the delivery is read): one entry for N00E000."""
    import zipfile

    tile, kind = TileName(0, 0), MapKind.LAST
    dcm = tmp_path / "dcm"
    dcm.mkdir()
    real = write_tile_zip(dcm / f"{product_name(tile, kind)}.zip", tile, kind,
                          tile_layers(tile, kind, _field(10.0, 2018, 0.5), [(0.49, 0.49, 0.51, 0.51)]))
    odd = dcm / real.name.replace("N00E000", "N00W000")
    with zipfile.ZipFile(real) as zin, zipfile.ZipFile(odd, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename.replace("N00E000", "N00W000"), zin.read(info))
    with zipfile.ZipFile(odd) as zf:
        assert sum("_N00W000_" in n and n.endswith(".tif") for n in zf.namelist()) == 4  # four layers, W000
    index = dcm_index(dcm)
    assert [s.source.name for s in index.entries[(kind, tile)]] == [real.name]
    assert [p.path.name for p in index.problems] == [odd.name]
    site = make_site("X", shapely.box(0.495, 0.495, 0.505, 0.505))
    assert np.isfinite(read_site_dcm(index, site).dh.data).any()


@pytest.mark.parametrize("rename", [lambda n: n.replace("/", "//"), lambda n: n.replace("/", "///", 1),
                                    lambda n: n.replace("/", "\\\\"), lambda n: n.replace("/", "/\\", 1)],
                         ids=["double-slash", "triple-slash", "double-backslash", "slash-backslash"])
def test_zip_members_with_a_repeated_separator_are_one_problem(tmp_path, rename):
    """A tile ZIP whose layer members repeat a separator ('TDM1_..._LAST1622_V01_C//DCM/...'): GDAL's /vsizip/
    lists no such member, so no path opens them. The ZIP was indexed as a tile (the names normalised to 'a/b') whose
    layers then failed to open at the site; now it is one problem naming the member, and a good tile beside it is
    read."""
    import posixpath
    import zipfile

    import rasterio
    from rasterio.errors import RasterioIOError

    bad_tile, good_tile, kind = TileName(-23, 117), TileName(-23, 118), MapKind.LAST
    dcm = tmp_path / "dcm"
    for tile in (bad_tile, good_tile):
        lon = tile.lon + 0.5
        write_tile_zip(tmp_path / f"{tile.name}.zip" if tile == bad_tile else dcm / f"{product_name(tile, kind)}.zip",
                       tile, kind, tile_layers(tile, kind, _field(10.0, 2018, -22.6),
                                               [(lon - 0.01, -22.51, lon + 0.01, -22.49)]))
    odd = dcm / f"{product_name(bad_tile, kind)}.zip"
    with zipfile.ZipFile(tmp_path / f"{bad_tile.name}.zip") as zin, zipfile.ZipFile(odd, "w") as zout:
        for info in zin.infolist():
            zout.writestr(rename(info.filename), zin.read(info))
    with zipfile.ZipFile(odd) as zf:
        layers = [n for n in zf.namelist() if n.endswith(".tif")]
    assert len(layers) == 4
    date = next(n for n in layers if "_DATE_" in n)  # not the ZIP's first member (GDAL opens that one unlisted)
    for name in (date, posixpath.normpath(date.replace("\\", "/"))):  # GDAL opens it by neither name
        with pytest.raises(RasterioIOError):
            rasterio.open(f"/vsizip/{odd}/{name}")
    index = dcm_index(dcm)
    assert index.tiles(kind) == [good_tile]
    assert [p.path.name for p in index.problems] == [odd.name]
    assert index.problems[0].reason.startswith(f"member {layers[0]!r} repeats a path separator")
    site = make_site("X", shapely.box(118.495, -22.505, 118.505, -22.495))
    assert np.isfinite(read_site_dcm(index, site).dh.data).any()


@pytest.mark.parametrize("member", [
    "../TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif",
    "dir//..//..//TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif",
    "dir\\..\\..\\TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif",
    "/TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif",
    "//server/share/TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif",
    "\\\\server\\share\\TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif",
    "C:/TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif",
    "C://TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif",
    "C:TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif",
])
def test_zip_members_that_would_escape_the_folder_are_refused(tmp_path, member):
    """A real tile ZIP with one more member outside its folder (parent steps, absolute, UNC or drive-letter paths,
    with any separators): the ZIP is one problem naming that member; nothing in it is read."""
    import zipfile

    from minescape.dcm.discover import scan_zip

    tile, kind = TileName(-23, 117), MapKind.LAST
    clean = write_tile_zip(tmp_path / "clean.zip", tile, kind, tile_layers(tile, kind, _field(10.0, 2018, -22.6),
                                                                            [(117.49, -22.51, 117.51, -22.49)]))
    evil = tmp_path / f"{product_name(tile, kind)}.zip"
    with zipfile.ZipFile(clean) as zin, zipfile.ZipFile(evil, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr(member, b"x")
    assert scan_zip(clean)[0] and member in zipfile.ZipFile(evil).namelist()  # a real tile, and the member is there
    tiles, problems = scan_zip(evil)
    assert tiles == [] and len(problems) == 1 and problems[0].path == evil
    assert problems[0].reason.startswith(f"unsafe member path {member!r}")

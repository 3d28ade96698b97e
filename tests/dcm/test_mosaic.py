"""Per-site DCM from tile ZIPs: mosaics across tile edges, exact dates, LAST/FIRST, ZIP vs unzipped, index."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from minescape.dcm.discover import discover_tiles
from minescape.dcm.index import build_index
from minescape.dcm.layers import MapKind
from minescape.dcm.mosaic import read_dcm_on_grid
from minescape.dcm.options import DcmOptions
from minescape.dcm.site import read_site_dcm
from minescape.dcm.synthetic_tiles import TileLayers, analytic_field, tile_grid, write_dcm_tiles
from minescape.dcm.tiles import TileName
from minescape.errors import ConfigError
from minescape.sites import make_site

SPLIT = 118.0
BOX = (117.985, -22.62, 118.015, -22.60)  # straddles the S23E117 / S23E118 edge


def wavy(wavelength=0.01, amplitude=5.0):
    """dh varies on a 1 km scale so a seam or a shifted tile shows."""
    base = analytic_field((2018, 2019), split_lon=SPLIT)

    def field(lon, lat, kind):
        v = base(lon, lat, kind)
        dh = (amplitude * np.sin(2 * np.pi * lon / wavelength) * np.cos(2 * np.pi * lat / wavelength))
        if kind == MapKind.FIRST:  # 70 % of the change where the LAST map is of the later year
            dh = np.where(base(lon, lat, MapKind.LAST).date // 10000 > 2018, 0.7 * dh, dh)
        return TileLayers(dh.astype(np.float32), v.date, v.hai, v.cim)

    return field


def expected_dh(site, wavelength=0.01, amplitude=5.0):
    rows, cols = np.indices(site.grid.shape)
    xs, ys = site.grid.xy(rows.ravel(), cols.ravel())
    lon, lat = Transformer.from_crs(site.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    dh = amplitude * np.sin(2 * np.pi * lon / wavelength) * np.cos(2 * np.pi * lat / wavelength)
    return dh.reshape(site.grid.shape), lon.reshape(site.grid.shape)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dcm")
    zips = write_dcm_tiles(folder, [BOX], wavy())
    return folder, zips


@pytest.fixture(scope="module")
def site():
    return make_site("X1", shapely.box(117.990, -22.615, 118.008, -22.605))


def test_delivery_layout(delivery):
    folder, zips = delivery
    assert sorted(p.name for p in zips) == sorted(
        f"TDM1_DCM__10_{t}_{k}1622_V01_C.zip" for t in ("S23E117", "S23E118") for k in ("LAST", "FIRST"))
    with zipfile.ZipFile(zips[0]) as zf:
        names = zf.namelist()
    prod = zips[0].stem
    assert f"{prod}/DCM/TDM1_DCM__10_S23E117_DCM_LAST1622_V01_C.tif" in names or \
        f"{prod}/DCM/TDM1_DCM__10_S23E117_DCM_FIRST1622_V01_C.tif" in names
    assert sum("/DCM_AUXFILES/" in n for n in names) == 3
    transform, width, height = tile_grid(TileName(-23, 117))
    assert (width, height) == (3601, 3601) and abs(transform.a - 1 / 3600) < 1e-15


def test_site_across_tile_edge_is_seamless(delivery, site):
    folder, _ = delivery
    d = read_site_dcm(folder, site)
    assert len(d.tiles) == 2 and {"S23E117" in d.tiles[0], "S23E118" in d.tiles[1]} == {True}
    inside = site.mask()
    truth, lon = expected_dh(site)
    west, east = inside & (lon < SPLIT - 0.001), inside & (lon > SPLIT + 0.001)
    seam = inside & (np.abs(lon - SPLIT) < 0.0006)
    assert west.sum() > 1000 and east.sum() > 1000 and seam.sum() > 50  # both tiles and the seam are there
    dh = d.dh.data[0]
    assert np.isfinite(dh[inside]).all()  # no void strip along the tile edge
    for part in (west, east, seam):
        err = np.abs(dh[part] - truth[part])
        assert np.median(err) < 0.35 and err.max() < 1.5  # 30 m samples of a 1 km wave, bilinear
    assert d.void_share == 0 and d.masked_share == 0


def test_dates_exact_and_two_years_across_the_site(delivery, site):
    folder, _ = delivery
    d = read_site_dcm(folder, site)
    inside = site.mask()
    dates = set(np.unique(d.date[inside]).tolist())
    assert dates == {20180717, 20190717}  # exact: float32 would give 20190716 / 20180716
    assert d.year.year in (2018, 2019) and d.date_used // 10000 == d.year.year
    assert d.year.rule == "centroid"
    _, lon = expected_dh(site)
    assert d.year.year == (2019 if lon[d.year.row, d.year.col] >= SPLIT else 2018)


def test_first_map(delivery, site):
    folder, _ = delivery
    last = read_site_dcm(folder, site)
    first = read_site_dcm(folder, site, DcmOptions(kind=MapKind.FIRST))
    inside = site.mask()
    assert "FIRST" in first.tiles[0]
    east = inside & (last.date == 20190717)
    assert east.sum() > 100
    assert set(np.unique(first.date[east]).tolist()) == {20180309}
    ratio = first.dh.data[0][east] / last.dh.data[0][east]
    ok = np.abs(last.dh.data[0][east]) > 1
    assert np.allclose(ratio[ok], 0.7, atol=0.02)
    west = inside & (last.date == 20180717)
    np.testing.assert_allclose(first.dh.data[0][west], last.dh.data[0][west])
    with pytest.raises(ConfigError, match="last, first"):
        DcmOptions(kind="middle")


def test_one_zip_and_unzipped_folder_read_the_same(delivery, site, tmp_path):
    folder, zips = delivery
    from_folder = read_site_dcm(folder, site)
    unzipped = tmp_path / "unzipped"
    for z in zips:
        with zipfile.ZipFile(z) as zf:
            zf.extractall(unzipped)
    assert not list(unzipped.rglob("*.zip"))
    other = read_site_dcm(unzipped, site)
    np.testing.assert_array_equal(other.dh.data, from_folder.dh.data)
    np.testing.assert_array_equal(other.date, from_folder.date)
    assert all("zip" not in t for t in other.tiles)
    one = next(z for z in zips if "S23E117_LAST" in z.name)
    single = read_site_dcm(one, site)  # one ZIP: only its half of the site
    assert len(single.tiles) == 1
    inside = site.mask()
    got = np.isfinite(single.dh.data[0]) & inside
    assert 0.2 < got.sum() / inside.sum() < 0.8


def test_index_built_once_and_lookup_is_local(delivery, site):
    folder, _ = delivery
    index = build_index(folder)
    assert len(index) == 4 and index.problems == ()
    assert index.lookup((117.99, -22.62, 117.995, -22.61), MapKind.LAST)[0].tile.name == "S23E117"
    assert index.lookup((10.0, 10.0, 10.1, 10.1), MapKind.LAST) == []
    win = read_dcm_on_grid(index, site.grid)
    assert len(win.tiles) == 2


def test_quality_masks(tmp_path):
    """HAI above the limit and excluded CIM classes become voids, counted in the masked share."""
    base = analytic_field((2018, 2019))

    def field(lon, lat, kind):
        v = base(lon, lat, kind)
        hai = np.where(lon < 117.5005, 8.0, 2.0).astype(np.float32)  # west strip: HAI 8 m
        cim = np.where(lat > -22.6045, 2, np.where(lat < -22.6150, 4, 1)).astype(np.uint8)
        return TileLayers(v.dh, v.date, hai, cim)

    write_dcm_tiles(tmp_path, [(117.49, -22.62, 117.51, -22.60)], field, kinds=(MapKind.LAST,))
    site = make_site("Q", shapely.box(117.495, -22.618, 117.505, -22.602))
    inside = site.mask()
    d = read_site_dcm(tmp_path, site)
    dh = d.dh.data[0]
    _, lon = expected_dh(site)
    assert d.masked_hai_share > 0.3 and d.masked_cim_share > 0.05
    assert abs(d.masked_share - d.masked_hai_share - d.masked_cim_share) < 1e-9
    assert abs(np.isnan(dh[inside]).mean() - d.masked_share) < 0.02
    assert np.isnan(dh[inside & (lon < 117.5000)]).all()
    relaxed = read_site_dcm(tmp_path, site, DcmOptions(max_hai=10.0, keep_cim=(1, 2, 4)))
    assert relaxed.masked_share == 0 and np.isfinite(relaxed.dh.data[0][inside]).all()
    only_hai = read_site_dcm(tmp_path, site, DcmOptions(max_hai=10.0))
    # HAI is checked first: without it the CIM mask also counts the strip HAI had taken
    assert only_hai.masked_hai_share == 0 and only_hai.masked_cim_share > d.masked_cim_share


def test_region_writes_dlr_layout_with_a_straddling_site(dcm_region, dcm_sites):
    tiles, problems = discover_tiles(dcm_region.dcm)
    assert problems == [] and len(tiles) == 4 and not any(t.problem for t in tiles)
    d = read_site_dcm(dcm_region.dcm, dcm_sites["S01"])
    inside = dcm_sites["S01"].mask()
    assert len(d.tiles) == 2  # S01 straddles 118°E
    years = set((np.unique(d.date[inside & (d.date > 0)]) // 10000).tolist())
    assert len(years) >= 2  # DATE in two different years across the site
    with zipfile.ZipFile(next(dcm_region.dcm.glob("*S23E117_LAST*.zip"))) as zf:
        import rasterio
        from rasterio.io import MemoryFile

        name = next(n for n in zf.namelist() if "/DCM/" in n)
        with MemoryFile(zf.read(name)) as mem, mem.open() as src:
            data = src.read(1)
            assert src.nodata == -32767 and (data == -32767).any()  # DLR voids
            assert src.crs.to_epsg() == 4326
    assert rasterio  # imported


def test_unsafe_zip_members_and_reproducible_bytes(tmp_path):
    from minescape.dcm.discover import scan_zip

    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../TDM1_DCM__10_S23E117_DATE_LAST1622_V01_C.tif", b"x")
    tiles, problems = scan_zip(bad)
    assert tiles == [] and "unsafe member path" in problems[0].reason
    a = write_dcm_tiles(tmp_path / "a", [(117.5, -22.6, 117.51, -22.59)], analytic_field(), kinds=(MapKind.LAST,))
    b = write_dcm_tiles(tmp_path / "b", [(117.5, -22.6, 117.51, -22.59)], analytic_field(), kinds=(MapKind.LAST,))
    assert a[0].read_bytes() == b[0].read_bytes() and len(a[0].read_bytes()) > 10_000

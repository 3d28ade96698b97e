"""The windowed reader against a real range-request server on loopback: only the site's blocks are fetched,
5xx answers are retried, a 404 is one line, a dead server is reported after the retries, and the cache makes a
second read fetch nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minescape.errors import InputError
from minescape.imagery.conventions import BandAsset
from minescape.imagery.loopback import free_port, start_asset_server
from minescape.imagery.window_reader import AssetUnreachable, ReadOptions, WindowCache, read_window
from minescape.sites import read_sites


def _log(path):
    """The server's log once it has settled (it writes each line after the response went out)."""
    import time

    def read():
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    rows, t0 = read(), time.monotonic()
    while time.monotonic() - t0 < 5:
        time.sleep(0.15)
        again = read()
        if len(again) == len(rows):
            return again
        rows = again
    return rows


@pytest.fixture
def server(stac_region, tmp_path):
    _, _, stac = stac_region
    port = free_port()
    log = tmp_path / "log.jsonl"
    proc = start_asset_server(stac.assets, port=port, log=log, fail_first=2)
    yield f"http://127.0.0.1:{port}", log, proc, stac
    proc.kill()
    proc.wait()


def test_window_bytes_retries_cache(server, stac_region, tmp_path):
    url, log, _, stac = server
    _, files, _ = stac_region
    sites, _ = read_sites(files.sites)
    grid = sites[0].grid
    scene = sorted(p.name for p in stac.assets.iterdir())[0]
    asset = BandAsset("B02", f"{url}/{scene}/B02.tif")
    local = BandAsset("B02", str(stac.assets / scene / "B02.tif"))
    cache = WindowCache(tmp_path / "cache")
    opts = ReadOptions(retries=4, backoff_s=0.05)
    a = read_window(asset, grid, options=opts, cache=cache)
    entries = _log(log)
    assert [e["status"] for e in entries[:2]] == [503, 503]  # the injected failures were retried
    fetched = sum(e["bytes"] for e in entries)
    size = (stac.assets / scene / "B02.tif").stat().st_size
    assert 0 < fetched < size  # a window, not the file
    b = read_window(local, grid, options=opts)
    assert a.shape == grid.shape and (a > 0).sum() > 0.9 * a.size
    np.testing.assert_array_equal(a, b)  # over HTTP == from disk
    n = len(_log(log))
    c = read_window(asset, grid, options=opts, cache=cache)
    assert len(_log(log)) == n  # served from the cache: no request at all
    np.testing.assert_array_equal(a, c)


def test_404_and_dead_server(server, stac_region):
    url, _, proc, stac = server
    _, files, _ = stac_region
    sites, _ = read_sites(files.sites)
    grid = sites[0].grid
    opts = ReadOptions(retries=2, backoff_s=0.05, timeout_s=5)
    missing = BandAsset("B02", f"{url}/no-such-scene/B02.tif")
    with pytest.raises(InputError, match=r"asset B02 not found \(HTTP 404 or missing file\): http://127.0.0.1:\d+/no-such"):
        read_window(missing, grid, options=opts)
    with pytest.raises(InputError, match="no-such.tif: asset B02: file not found"):
        read_window(BandAsset("B02", str(stac.assets / "no-such.tif")), grid, options=opts)
    proc.kill()
    proc.wait()
    scene = sorted(p.name for p in stac.assets.iterdir())[1]
    with pytest.raises(AssetUnreachable, match=rf"asset B11 unreachable after 2 tries: {url}/{scene}/B11.tif"):
        read_window(BandAsset("B11", f"{url}/{scene}/B11.tif"), grid, options=opts)


def test_signer_hook(server, stac_region, tmp_path):
    """A signer's token reaches the server; the cache key is the unsigned href (a new token reuses the window)."""
    from minescape.imagery.signing import default_signer, no_signing

    url, log, _, stac = server
    _, files, _ = stac_region
    grid = read_sites(files.sites)[0][0].grid
    scene = sorted(p.name for p in stac.assets.iterdir())[2]
    asset = BandAsset("B03", f"{url}/{scene}/B03.tif")
    cache = WindowCache(tmp_path / "cache")
    opts = ReadOptions(retries=4, backoff_s=0.05)
    a = read_window(asset, grid, options=opts, cache=cache, signer=lambda h: h + "?se=2030&sig=token1")
    entries = _log(log)
    assert any(e["signed"] and e["status"] == 206 for e in entries)
    n = len(entries)
    b = read_window(asset, grid, options=opts, cache=cache, signer=lambda h: h + "?se=2031&sig=token2")
    assert len(_log(log)) == n and np.array_equal(a, b)
    assert default_signer("https://earth-search.aws.element84.com/v1") is no_signing
    try:
        import planetary_computer  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(InputError, match="install the 'planetary-computer' package"):
            default_signer("https://planetarycomputer.microsoft.com/api/stac/v1")


def test_clouded_scene_reads_only_scl(stac_region, loopback):
    """A scene without a clear pixel on the site grid costs only its SCL window: no band is requested."""
    from minescape.imagery.sources import StacSource
    from minescape.imagery.stac_search import StacQuery
    from minescape.lulc.features import SPECTRAL_BANDS

    _, files, _ = stac_region
    grid = read_sites(files.sites)[0][0].grid
    everything = StacSource(StacQuery(loopback.stac_url, "sentinel-2-l2a", 100), scl_classes=range(12))
    scene = everything.scenes(grid, 2019)[0]
    before = len(_log(loopback.log))
    obs = everything.observe(scene, grid, SPECTRAL_BANDS)
    paths = {e["path"].rsplit("/", 1)[-1] for e in _log(loopback.log)[before:]}
    assert paths == {"SCL.tif"} and not obs.clear.any() and np.isnan(obs.reflectance).all()
    normal = StacSource(StacQuery(loopback.stac_url, "sentinel-2-l2a", 100))
    before = len(_log(loopback.log))
    obs = normal.observe(scene, grid, SPECTRAL_BANDS)
    paths = {e["path"].rsplit("/", 1)[-1] for e in _log(loopback.log)[before:]}
    assert paths >= {f"{b}.tif" for b in SPECTRAL_BANDS} and obs.clear.mean() > 0.5  # (SCL: GDAL's cache)


def test_stalled_server_times_out_and_is_reported(stac_region, tmp_path):
    """A server that accepts the connection and then stalls (no answer within the timeout) is retried and
    reported as unreachable, in bounded time; the same asset reads fine once the timeout covers the delay."""
    import time

    _, files, stac = stac_region
    grid = read_sites(files.sites)[0][0].grid
    scene = sorted(p.name for p in stac.assets.iterdir())[0]
    port = free_port()
    log = tmp_path / "log.jsonl"
    proc = start_asset_server(stac.assets, port=port, log=log,
                              delay_ms=1500)  # under wait_http's 2 s poll, over the 1 s read timeout
    try:
        href = f"http://127.0.0.1:{port}/{scene}/B04.tif"
        t0 = time.monotonic()
        with pytest.raises(AssetUnreachable, match=rf"asset B04 unreachable after 2 tries: {href}"):
            read_window(BandAsset("B04", href), grid, options=ReadOptions(retries=2, backoff_s=0.05, timeout_s=1))
        assert time.monotonic() - t0 < 30
        assert proc.poll() is None  # the server is alive: it stalled, it did not die
        a = read_window(BandAsset("B04", href), grid, options=ReadOptions(retries=2, backoff_s=0.05, timeout_s=10))
        b = read_window(BandAsset("B04", str(stac.assets / scene / "B04.tif")), grid, options=ReadOptions())
        assert (a > 0).sum() > 0.9 * a.size
        np.testing.assert_array_equal(a, b)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY", b"PK\x03\x04 an archive cut short"])
def test_unusable_cache_file_is_fetched_again(stac_region, tmp_path, content):
    """A cached window left empty or cut short (a crash or a full disk while it was written): the window is read
    again from the asset and the cache file rewritten, instead of an EOFError."""
    _, files, stac = stac_region
    grid = read_sites(files.sites)[0][0].grid
    scene = sorted(p.name for p in stac.assets.iterdir())[0]
    asset = BandAsset("B02", str(stac.assets / scene / "B02.tif"))
    cache = WindowCache(tmp_path / "cache")
    first = read_window(asset, grid, cache=cache)
    path = cache.path(WindowCache.key(asset.href, grid, "bilinear"))
    assert path.stat().st_size > 0 and (first > 0).sum() > 0.9 * first.size  # a real window was cached
    path.write_bytes(content)
    again = read_window(asset, grid, cache=cache)
    np.testing.assert_array_equal(again, first)
    assert path.stat().st_size > len(content)  # rewritten with the window
    np.testing.assert_array_equal(np.load(path), first)


def test_saved_planetary_computer_items_are_signed(tmp_path):
    """A saved Planetary Computer ItemCollection (the real item): its catalogue is a file path, so signing follows
    the assets' host (Azure blob storage); hrefs elsewhere stay as they are. Offline: without the
    ``planetary-computer`` package, reading an asset is one InputError asking for it (never an unsigned request)."""
    import importlib.util

    from rasterio.transform import from_origin

    from minescape.geo.grid import Grid
    from minescape.imagery.signing import default_signer, no_signing, on_azure_blob
    from minescape.imagery.sources import StacSource
    from minescape.imagery.stac_search import StacQuery, search_scenes
    from tests.conftest import shared_path

    item = json.loads(shared_path("stac-items", "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json")
                      .read_text())
    path = tmp_path / "pc-items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    source = StacSource(StacQuery(str(path), "sentinel-2-l2a"))
    (scene,) = search_scenes(source.query, (-147.9, 60.8, -147.8, 60.9), 2019)
    href = scene.assets["B02"].href
    assert scene.convention == "planetary-computer" and on_azure_blob(href)  # the assets are on Azure
    assert source.signer is not no_signing
    for other in ("http://127.0.0.1:8000/B02.tif", "https://example.com/blob.core.windows.net/B02.tif",
                  str(tmp_path / "B02.tif")):
        assert source.signer(other) == other  # not on Azure blob storage: unchanged, no package needed
    assert default_signer("https://earth-search.aws.element84.com/v1") is no_signing  # an API says it itself
    if importlib.util.find_spec("planetary_computer") is not None:
        pytest.skip("planetary-computer is installed: signing would ask its token service (network)")
    with pytest.raises(InputError, match=r"asset on sentinel2l2a01\.blob\.core\.windows\.net: Planetary Computer "
                                         r"assets must be signed; install the 'planetary-computer' package"):
        source.signer(href)
    grid = Grid("EPSG:32606", from_origin(400000, 6760000, 10, 10), 8, 6)  # in the item's UTM zone
    with pytest.raises(InputError, match="install the 'planetary-computer' package"):
        source.observe(scene, grid, ["B02"])  # the first read (SCL) asks for the signature, before any request


def test_a_vrt_served_as_a_geotiff_is_refused_not_followed(tmp_path):
    """An untrusted catalogue's ``B02.tif`` whose bytes are a VRT naming a private local file (all 4242) and a URL
    on a third server: read as the VRT it is, it would put 4242 in the window and call the third server; read as
    the GeoTIFF its name says, it is one line naming the asset, with no request to the third server."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    from minescape.geo.grid import Grid
    from minescape.geo.raster import Raster, write_raster

    crs, transform = CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4100000)
    private = write_raster(Raster(np.full((1, 8, 8), 4242, np.uint16), crs, transform, 0), tmp_path / "private.tif")
    (tmp_path / "third").mkdir()
    write_raster(Raster(np.full((1, 8, 8), 7, np.uint16), crs, transform, 0), tmp_path / "third" / "x.tif")
    (tmp_path / "served").mkdir()
    ports = free_port(), free_port()
    vrt = (f'<VRTDataset rasterXSize="8" rasterYSize="8"><SRS>EPSG:32633</SRS><GeoTransform>500000, 10, 0, 4100000, '
           f'0, -10</GeoTransform><VRTRasterBand dataType="UInt16" band="1"><SimpleSource><SourceFilename '
           f'relativeToVRT="0">{private}</SourceFilename><SourceBand>1</SourceBand></SimpleSource><SimpleSource>'
           f'<SourceFilename relativeToVRT="0">/vsicurl/http://127.0.0.1:{ports[1]}/x.tif</SourceFilename>'
           f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="1" ySize="1"/>'
           f'<DstRect xOff="0" yOff="0" xSize="1" ySize="1"/></SimpleSource></VRTRasterBand></VRTDataset>')
    (tmp_path / "served" / "B02.tif").write_text(vrt)
    log = tmp_path / "third.jsonl"
    procs = [start_asset_server(tmp_path / "served", port=ports[0]),
             start_asset_server(tmp_path / "third", port=ports[1], log=log)]
    try:
        href = f"http://127.0.0.1:{ports[0]}/B02.tif"
        with rasterio.open(href, driver="VRT") as src:  # the payload is live when GDAL sniffs the bytes
            assert src.read(1)[4, 4] == 4242
        start = len(_log(log))
        assert start >= 1  # ... and calls the third server
        grid = Grid(crs, transform, 8, 8)
        with pytest.raises(InputError, match=r"asset B02 is not a readable GTiff file \(the driver its name gives\)"):
            read_window(BandAsset("B02", href), grid, options=ReadOptions(retries=3, backoff_s=0.01))
        assert len(_log(log)) == start  # nothing more asked of the third server
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_saturated_dn_of_an_asset_are_nan_before_scale_and_offset(tmp_path):
    """A STAC asset's DN 65535 (Sentinel-2 SATURATED) reads as NaN like its ``raster:bands`` nodata, whatever the
    asset's scale and offset (masked on the DN, before they are applied), and the blue-offset check counts neither
    as a valid pixel: mostly saturated blue whose other pixels are below 1000 cannot carry the offset."""
    from affine import Affine

    from minescape.geo.grid import Grid
    from minescape.geo.raster import Raster, write_raster
    from minescape.imagery.window_reader import pixels_carry_offset, to_reflectance

    dn = np.full((6, 10), 3000, dtype=np.uint16)
    dn[1, 2] = dn[4, 7] = 65535
    dn[0, 0] = 0
    transform = Affine(10, 0, 600000, 0, -10, 4000000)
    href = write_raster(Raster(dn, "EPSG:32633", transform, 0), tmp_path / "B04.tif")
    grid = Grid("EPSG:32633", transform, 10, 6)
    raw = read_window(BandAsset("B04", str(href), 1e-4, -1000.0, 0.0), grid, resampling="nearest")
    assert int((raw == 65535).sum()) == 2  # the file really holds saturated DN
    for scale, offset in ((1e-4, -1000.0), (1e-4, 0.0), (2e-5, 500.0)):
        refl = to_reflectance(raw, BandAsset("B04", str(href), scale, offset, 0.0))
        assert np.isnan(refl[[1, 4, 0], [2, 7, 0]]).all() and np.isfinite(refl).sum() == refl.size - 3
    blue = np.where(np.arange(100) < 80, 65535, 500).astype(np.uint16)  # 80 saturated, 20 dark
    assert not pixels_carry_offset(blue, nodata=0)

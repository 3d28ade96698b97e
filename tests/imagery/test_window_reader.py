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

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from minescape.errors import InputError, MissingInputError
from minescape.geo.raster import Raster, open_writer, overview_factors, read_raster, write_cog, write_raster
from minescape.legend import MINING_LULC


def test_write_read_roundtrip_keeps_georeferencing(tmp_path, utm_raster):
    path = write_raster(utm_raster, tmp_path / "a.tif")
    back = read_raster(path)
    assert back.crs == utm_raster.crs and back.transform == utm_raster.transform
    assert back.band_names == ("B02", "B03", "B04")
    np.testing.assert_array_equal(back.data, utm_raster.data)
    assert not back.valid_mask()[0, 0] and back.valid_mask()[1, 1]
    assert not list(tmp_path.glob(".tmp-*"))


def test_windowed_read_matches_slice(tmp_path, utm_raster):
    path = write_raster(utm_raster, tmp_path / "a.tif")
    win = read_raster(path, window=Window(5, 3, 7, 9))
    np.testing.assert_array_equal(win.data, utm_raster.data[:, 3:12, 5:12])
    assert win.transform.c == utm_raster.transform.c + 50 and win.transform.f == utm_raster.transform.f - 30


def test_class_map_gets_colour_table_and_names(tmp_path, utm_raster):
    codes = (np.arange(17 * 23).reshape(17, 23) % 8).astype(np.uint8)
    r = utm_raster.with_data(codes, nodata=None)
    path = write_raster(r, tmp_path / "c.tif", legend=MINING_LULC)
    with rasterio.open(path) as src:
        assert src.nodata == 0
        assert src.colormap(1)[1][:3] == MINING_LULC.by_code(1).color
        assert src.tags()["CLASS_4"] == "Water body"


def test_write_is_reproducible(tmp_path, utm_raster):
    a = write_raster(utm_raster, tmp_path / "a.tif").read_bytes()
    b = write_raster(utm_raster, tmp_path / "b.tif").read_bytes()
    assert a == b


def test_failed_write_leaves_nothing(tmp_path, utm_raster):
    bad = Raster(np.zeros((1, 4, 4), dtype=np.complex64), utm_raster.crs, utm_raster.transform)
    with pytest.raises(TypeError):  # numpy refuses the dtype
        write_raster(bad, tmp_path / "x.tif", dtype="not-a-dtype")
    assert list(tmp_path.iterdir()) == []


def test_cog_has_overviews(tmp_path):
    from affine import Affine

    data = (np.indices((600, 700)).sum(0) % 7 + 1).astype(np.uint8)
    r = Raster(data, "EPSG:32633", Affine(10, 0, 0, 0, -10, 0), 0)
    path = write_cog(r, tmp_path / "m.tif", legend=MINING_LULC)
    with rasterio.open(path) as src:
        assert src.overviews(1) and src.block_shapes[0] == (512, 512)
        assert src.colormap(1)[7][:3] == MINING_LULC.by_code(7).color


def test_open_writer_streams_windows(tmp_path, utm_raster):
    grid = utm_raster.grid
    with open_writer(tmp_path / "s.tif", grid, count=1, dtype="float32", nodata=-1.0) as dst:
        assert not (tmp_path / "s.tif").exists()
        dst.write(np.ones((1, 17, 10), np.float32), window=Window(0, 0, 10, 17))
        dst.write(np.full((1, 17, 13), 2, np.float32), window=Window(10, 0, 13, 17))
    back = read_raster(tmp_path / "s.tif")
    assert back.data[0, 0, 9] == 1 and back.data[0, 0, 10] == 2 and back.grid == grid


def test_overview_factors_halve_until_one_block():
    assert overview_factors(10980, 10980, 256) == [2, 4, 8, 16, 32, 64]  # the coarsest level: 172 px
    assert overview_factors(600, 257, 256) == [2, 4]
    assert overview_factors(257, 100, 256) == [2]
    assert overview_factors(256, 256, 256) == [] and overview_factors(10, 10, 256) == []


def test_open_writer_builds_overviews_without_nodata(tmp_path):
    """Average overviews of a float map leave NaN nodata out; an all-nodata block stays nodata; the same
    bytes with one or two GDAL threads; nothing without the option."""
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.enums import Resampling

    from minescape.geo.grid import Grid

    grid = Grid(CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4000000), 600, 520)
    data = np.full((520, 600), 4.0, np.float32)
    data[:, 1::2] = np.nan  # every other column nodata: a 2x average must read 4, not NaN or 2
    data[:256, :256] = np.nan  # a whole corner nodata
    for name, ov, threads in (("plain", None, 1), ("ov1", Resampling.average, 1), ("ov2", Resampling.average, 2)):
        with open_writer(tmp_path / f"{name}.tif", grid, count=1, dtype="float32", nodata=float("nan"),
                         overviews=ov, threads=threads) as dst:
            for r0 in range(0, 520, 100):
                dst.write(data[None, r0:r0 + 100], window=Window(0, r0, 600, min(100, 520 - r0)))
    with rasterio.open(tmp_path / "plain.tif") as src:
        assert src.overviews(1) == []
    with rasterio.open(tmp_path / "ov1.tif") as src:
        assert src.overviews(1) == [2, 4]
        half = src.read(1, out_shape=(260, 300))  # GDAL reads the 2x level
        assert np.isnan(half[:128, :128]).all()
        assert np.allclose(half[200:, 200:], 4.0)
        assert np.array_equal(src.read(1), data, equal_nan=True)  # full resolution untouched
    assert (tmp_path / "ov2.tif").read_bytes() == (tmp_path / "ov1.tif").read_bytes()


def test_levels_built_later_in_another_process_are_the_same_bytes(tmp_path):
    """``build_overviews`` on a closed file, in a worker process (as ``change detect`` overlaps it with its second
    pass), gives the file ``open_writer(overviews=...)`` writes; the scratch name is left alone."""
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.enums import Resampling

    from minescape.geo.grid import Grid
    from minescape.geo.raster import build_overviews
    from minescape.parallel import process_pool

    grid = Grid(CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4000000), 600, 520)
    data = np.arange(520 * 600, dtype=np.float32).reshape(1, 520, 600) % 97
    data[:, :256, :256] = np.nan
    for name, ov in (("later", None), ("inline", Resampling.average)):
        with open_writer(tmp_path / f"{name}.tif", grid, count=1, dtype="float32", nodata=float("nan"),
                         overviews=ov) as dst:
            dst.write(data)
    with rasterio.open(tmp_path / "later.tif") as src:
        assert src.overviews(1) == []
    with process_pool(2) as pool:
        pool.submit(build_overviews, tmp_path / "later.tif", Resampling.average, threads=2).result()
    with rasterio.open(tmp_path / "later.tif") as src:
        assert src.overviews(1) == [2, 4]
        assert np.array_equal(src.read(1), data[0], equal_nan=True)
    assert (tmp_path / "later.tif").read_bytes() == (tmp_path / "inline.tif").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inline.tif", "later.tif"]  # no .aux.xml, no .tmp-*


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(MissingInputError, match="file not found"):
        read_raster(tmp_path / "missing.tif")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(InputError) as exc:
        read_raster(junk)
    assert "junk.tif" in str(exc.value) and "\n" not in str(exc.value)


def test_truncated_geotiff_is_reported(tmp_path, utm_raster):
    path = write_raster(utm_raster, tmp_path / "t.tif", compress="none")
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="t.tif"):
        read_raster(path)


def test_gpkg_writes_are_reproducible(tmp_path):
    import geopandas as gpd
    import shapely

    from minescape.geo.vector import write_gpkg

    gdf = gpd.GeoDataFrame({"site_id": ["a", "b"]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 4)],
                           crs=32633)
    a = write_gpkg(gdf, tmp_path / "a.gpkg", layer="sites").read_bytes()
    import time

    time.sleep(1.1)  # GDAL would otherwise stamp a different write time
    b = write_gpkg(gdf, tmp_path / "b.gpkg", layer="sites").read_bytes()
    assert a == b


def test_replace_dir_swaps_whole_folders(tmp_path):
    from minescape.atomic import replace_dir

    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    new = tmp_path / ".tmp-new"
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_dir(new, final)
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_read_window_filled_matches_boundless_read(tmp_path, utm_raster):
    import rasterio

    from minescape.sentinel2 import read_window_filled

    data = (np.arange(17 * 23, dtype=np.uint16).reshape(1, 17, 23) + 1)
    path = write_raster(utm_raster.with_data(data, nodata=0), tmp_path / "u.tif")
    with rasterio.open(path) as src:
        for win in (Window(-3, -2, 10, 8), Window(15, 10, 12, 12), Window(2, 3, 5, 4), Window(40, 40, 3, 3)):
            expected = src.read([1], window=win, boundless=True, fill_value=0)
            np.testing.assert_array_equal(read_window_filled(src, [1], win, fill=0), expected)


def test_window_reads_give_the_same_values_in_threads(tmp_path):
    """Inside ``window_reads()`` uncompressed GeoTIFFs are read without the block cache (GTIFF_DIRECT_IO, which
    the main thread's setting passes on to the threads it starts); the values are those of a plain read, for a
    pixel-interleaved stack, a band-interleaved one and a compressed one, with windows across tile edges."""
    from concurrent.futures import ThreadPoolExecutor

    from rasterio.transform import from_origin

    from minescape.geo.raster import window_reads

    rng = np.random.default_rng(3)
    data = rng.integers(1, 10000, (5, 300, 340)).astype(np.uint16)
    files = []
    for name, opts in (("pixel.tif", {"interleave": "pixel"}), ("band.tif", {"interleave": "band"}),
                       ("deflate.tif", {"compress": "deflate"})):
        path = tmp_path / name
        with rasterio.open(path, "w", driver="GTiff", width=340, height=300, count=5, dtype="uint16",
                           tiled=True, blockxsize=64, blockysize=64, crs="EPSG:32633",
                           transform=from_origin(500000, 4000000, 10, 10), **opts) as dst:
            dst.write(data)
        files.append(path)
    windows = [Window(0, 0, 340, 300), Window(37, 61, 200, 150), Window(250, 290, 90, 10)]

    def read(path, w):
        with rasterio.open(path) as src:
            return src.read(window=w)

    with window_reads():
        assert rasterio.env.getenv()["GTIFF_DIRECT_IO"] in (True, "ON", "YES")  # the setting is there
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda a: read(*a), [(p, w) for p in files for w in windows]))
    expected = [data[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] for _ in files for w in windows]
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_scan_reads_caps_gdal_block_cache_for_the_pass_only(monkeypatch):
    """One-pass readers cap GDAL's block cache (bench_maps.py --only scan measures the memory it saves); a user's
    GDAL_CACHEMAX, or 0, leaves GDAL's setting; the cap ends with the pass."""
    from rasterio.env import getenv, hasenv

    import minescape.geo.raster as raster

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    with raster.scan_reads():
        assert hasenv() and int(getenv()["GDAL_CACHEMAX"]) == raster.SCAN_CACHE_MB * 2**20
    with raster.scan_reads(64):
        assert int(getenv()["GDAL_CACHEMAX"]) == 64 * 2**20
    monkeypatch.setenv("GDAL_CACHEMAX", "512")  # the user's own setting wins over the default cap
    with raster.scan_reads():
        assert "GDAL_CACHEMAX" not in getenv()
    monkeypatch.delenv("GDAL_CACHEMAX")
    monkeypatch.setattr(raster, "SCAN_CACHE_MB", 0)
    with raster.scan_reads():
        assert "GDAL_CACHEMAX" not in getenv()
    assert not hasenv() or "GDAL_CACHEMAX" not in getenv()


def test_float_maps_are_deflated_at_level_1_class_maps_at_gdal_default(tmp_path, utm_raster):
    """Float GeoTIFFs use DEFLATE level 1 (``FLOAT_DEFLATE_LEVEL``: within 1 % of level 6's size on real float maps,
    in about two thirds of the time, ``bench/bench_float_deflate.py``); integer maps keep GDAL's level 6."""
    from minescape.geo.raster import FLOAT_DEFLATE_LEVEL

    assert FLOAT_DEFLATE_LEVEL == 1
    rng = np.random.default_rng(5)
    smooth = np.cumsum(rng.normal(size=(1, 300, 280)), axis=2).astype(np.float32)  # compressible either way
    ints = (smooth > 0).astype(np.uint8)
    for name, data in (("float", smooth), ("int", ints)):
        raster = Raster(data, utm_raster.crs, utm_raster.transform, None)
        ours = write_raster(raster, tmp_path / f"{name}.tif", tiled=True, blocksize=256)
        with rasterio.open(ours) as src:
            profile = src.profile | {"predictor": 3 if name == "float" else 2}
        blocks = {}
        for level in (1, 6):
            with rasterio.Env(GDAL_PAM_ENABLED="NO"), \
                    rasterio.open(tmp_path / f"{name}{level}.tif", "w", **profile, zlevel=level) as dst:
                dst.write(data)
            blocks[level] = _block_bytes(tmp_path / f"{name}{level}.tif")
        assert blocks[1] != blocks[6]  # the level shows in the compressed blocks
        expected = blocks[1] if name == "float" else blocks[6]
        assert _block_bytes(ours) == expected, name


def _block_bytes(path) -> list[int]:
    """Compressed size of every block (the tags, which differ, left out)."""
    with rasterio.open(path) as src:
        rows, cols = (-(-n // b) for n, b in zip(src.shape, src.block_shapes[0], strict=True))
        return [src.block_size(1, r, c) for r in range(rows) for c in range(cols)]


def _vrt_over(private: Path, width: int, height: int) -> str:
    """The XML of a VRT whose one band is ``private``'s first band (an absolute path: outside any folder)."""
    return (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>EPSG:32633</SRS>'
            f"<GeoTransform>500000, 10, 0, 4100000, 0, -10</GeoTransform>"
            f'<VRTRasterBand dataType="Float32" band="1"><SimpleSource>'
            f'<SourceFilename relativeToVRT="0">{private}</SourceFilename><SourceBand>1</SourceBand>'
            f"</SimpleSource></VRTRasterBand></VRTDataset>")


def test_the_name_decides_the_format_never_the_bytes(tmp_path):
    """A VRT dressed as ``B02.tif`` would make GDAL read the file it names (a user's private raster, here 4242):
    it is opened as a GeoTIFF and refused in one line. The same XML named ``.vrt`` is a VRT, and reads 4242:
    the payload is live."""
    from minescape.geo.raster import open_raster, raster_driver

    private = write_raster(Raster(np.full((1, 4, 6), 4242, np.float32), rasterio.crs.CRS.from_epsg(32633),
                                  rasterio.Affine(10, 0, 500000, 0, -10, 4100000), None), tmp_path / "private.tif")
    (tmp_path / "mosaic.vrt").write_text(_vrt_over(private, 6, 4))
    with open_raster(tmp_path / "mosaic.vrt") as src:
        assert src.driver == "VRT" and (src.read(1) == 4242).all()
    disguised = tmp_path / "scene" / "B02.tif"
    disguised.parent.mkdir()
    disguised.write_text(_vrt_over(private, 6, 4))
    with pytest.raises(InputError, match=r"B02.tif: not a readable raster \(read as GTiff, by its name"):
        open_raster(disguised)
    assert raster_driver("https://x.blob.core.windows.net/B02.jp2?st=1&sig=a.vrt") == "JP2OpenJPEG"
    assert raster_driver("/vsizip//d/t.zip/DCM/x_DCM.TIF") == "GTiff" and raster_driver("labels") == "GTiff"


def test_png_labels_read_and_other_formats_are_named(tmp_path):
    """OSCD ships its labels as cm.png beside the GeoTIFF: PNG is read (by the PNG driver alone). A raster in a
    format not read (an ERDAS .img) is one line listing the formats that are, and how to convert."""
    from minescape.geo.raster import open_raster

    with rasterio.open(tmp_path / "cm.png", "w", driver="PNG", width=6, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.full((4, 6), 2, np.uint8), 1)
    with open_raster(tmp_path / "cm.png") as src:
        assert src.driver == "PNG" and (src.read(1) == 2).all()
    with rasterio.open(tmp_path / "map.img", "w", driver="HFA", width=6, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.ones((4, 6), np.uint8), 1)
    with pytest.raises(InputError, match=r"map.img: not a readable raster .*only GeoTIFF \(.tif, .tiff\), JPEG 2000 "
                                         r"\(.jp2\), PNG \(.png\) and VRT \(.vrt\) rasters are read: convert it"):
        open_raster(tmp_path / "map.img")


def test_read_scopes_give_gdal_block_cache_its_size_back(tmp_path, utm_raster):
    """GDAL's block cache size is process-wide and rasterio does not undo GDAL_CACHEMAX for an Env nested in
    another: after a scan_reads() inside a user's own rasterio.Env(), or build_overviews() (which nests one),
    the cache stayed cut. Every read scope puts back the size it found, nested or not, in any thread order."""
    import threading

    import rasterio
    from rasterio.enums import Resampling
    from rasterio.env import get_gdal_config

    import minescape.geo.raster as raster

    def size() -> int:
        return int(get_gdal_config("GDAL_CACHEMAX"))

    before = size()
    assert before != 64 * 2**20 and before != raster.SCAN_CACHE_MB * 2**20
    with rasterio.Env():  # the user's own GDAL settings block
        with raster.scan_reads(64):
            assert size() == 64 * 2**20  # the cap is there inside
            with raster.window_reads(), raster.scan_reads(32):  # nested scopes: each puts back its own entry
                assert size() == 32 * 2**20
            assert size() == 64 * 2**20
        assert size() == before
    assert size() == before
    path = raster.write_raster(raster.Raster(np.zeros((1, 600, 700), np.float32), utm_raster.crs,
                                             utm_raster.transform, np.nan), tmp_path / "o.tif",
                               tiled=True, blocksize=128)
    with rasterio.Env():
        raster.build_overviews(path, Resampling.average, blocksize=128)
    raster.build_overviews(path, Resampling.average, blocksize=128)
    with rasterio.open(path) as src:
        assert src.overviews(1)  # the overviews were built (through the nested scan_reads)
    assert size() == before
    # two threads whose scopes end in the other order than they began: the last one out puts back the size the
    # first found (while both run, rasterio itself resets the size when a thread's outermost Env ends)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with raster.scan_reads(48):
            first_in.set()
            second_in.wait(timeout=10)
        first_out.set()

    t = threading.Thread(target=first)
    t.start()
    assert first_in.wait(timeout=10)
    with raster.scan_reads(40):
        second_in.set()
        assert first_out.wait(timeout=10)
    t.join(timeout=10)
    assert size() == before

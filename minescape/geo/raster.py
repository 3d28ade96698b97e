"""A raster value (array + CRS + transform + nodata), windowed reading and atomic GeoTIFF/COG writing.

Arrays are always ``(bands, rows, cols)``. Coordinates follow the raster's CRS; the transform maps
pixel corners (rasterio convention).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from minescape.atomic import atomic_path
from minescape.errors import InputError, MissingInputError
from minescape.geo.tiff_layout import bytes_past_end

if TYPE_CHECKING:
    from minescape.geo.grid import Grid
    from minescape.legend import Legend


@dataclass(frozen=True)
class Raster:
    """An immutable georeferenced array.

    Attributes:
        data: ``(bands, rows, cols)`` array.
        crs: coordinate reference system (may be None only for non-georeferenced labels).
        transform: affine pixel-corner -> CRS transform.
        nodata: value marking missing pixels (NaN allowed for floats) or None.
        band_names: one name per band, or None.
    """

    data: np.ndarray
    crs: CRS | None
    transform: Affine
    nodata: float | int | None = None
    band_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.data.ndim == 2:
            object.__setattr__(self, "data", self.data[np.newaxis])
        if self.data.ndim != 3:
            raise ValueError(f"Raster data must be (bands, rows, cols); got shape {self.data.shape}")
        if self.band_names is not None:
            names = tuple(self.band_names)
            if len(names) != self.data.shape[0]:
                raise ValueError(f"{len(names)} band names for {self.data.shape[0]} bands")
            object.__setattr__(self, "band_names", names)
        if self.crs is not None and not isinstance(self.crs, CRS):
            object.__setattr__(self, "crs", CRS.from_user_input(self.crs))

    @property
    def count(self) -> int:
        """Number of bands."""
        return self.data.shape[0]

    @property
    def height(self) -> int:
        """Rows."""
        return self.data.shape[1]

    @property
    def width(self) -> int:
        """Columns."""
        return self.data.shape[2]

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return self.data.shape[1], self.data.shape[2]

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (positive)."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units."""
        return _bounds(self.transform, self.width, self.height)

    @property
    def grid(self) -> Grid:
        """The raster's :class:`~minescape.geo.grid.Grid`."""
        from minescape.geo.grid import Grid

        return Grid(crs=self.crs, transform=self.transform, width=self.width, height=self.height)

    def valid_mask(self) -> np.ndarray:
        """``(rows, cols)`` bool: True where every band is finite and not nodata."""
        data = self.data
        valid = np.ones(self.shape, dtype=bool)
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=0)
        if self.nodata is not None and not (isinstance(self.nodata, float) and np.isnan(self.nodata)):
            valid &= (data != self.nodata).all(axis=0)
        return valid

    def band(self, name: str) -> np.ndarray:
        """One band by name as a 2-D array (InputError listing the available names)."""
        if self.band_names is None or name not in self.band_names:
            raise InputError(f"band {name!r} not available; bands are {list(self.band_names or [])}")
        return self.data[self.band_names.index(name)]

    def select(self, names: Sequence[str]) -> Raster:
        """A raster with only the named bands, in that order."""
        return replace(self, data=np.stack([self.band(n) for n in names]), band_names=tuple(names))

    def with_data(self, data: np.ndarray, *, nodata: float | int | None = ..., band_names=None) -> Raster:
        """Same georeferencing, new array (and optionally nodata / band names)."""
        return Raster(
            data=data,
            crs=self.crs,
            transform=self.transform,
            nodata=self.nodata if nodata is ... else nodata,
            band_names=band_names,
        )


def _bounds(transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    xs = [transform.c, transform.c + transform.a * width]
    ys = [transform.f, transform.f + transform.e * height]
    return min(xs), min(ys), max(xs), max(ys)


_CACHE_LOCK = threading.Lock()
_CACHE_SCOPES: list[list[int]] = []  # per open read scope, oldest first: [GDAL's block cache size before it]


@contextlib.contextmanager
def read_scope(**options) -> Iterator[None]:
    """``rasterio.Env(**options)`` for one stretch of reads, leaving the process as it found it.

    The one mechanism behind :func:`many_files`, :func:`scan_reads` and :func:`window_reads`. On exit:

    * GDAL's block cache gets back the size it had on entry. The size is process-wide, and rasterio only undoes
      ``GDAL_CACHEMAX`` for the outermost Env: one nested in another (``build_overviews``, or any call inside
      a user's own ``rasterio.Env()``) left it shrunk (1205 -> 128 MB for the rest of the process). It is read
      and set with ``rasterio.env.get_gdal_config`` / ``set_gdal_config("GDAL_CACHEMAX", bytes)``, which
      rasterio maps to GDALGetCacheMax64 / GDALSetCacheMax64 (no config option is left set). Scopes of several
      threads may end in any order: the last one open puts back the size the first found.
    * The reader pool's :func:`minescape.geo.handles.session` ends: readers borrowed inside are reused
      within the scope and closed when the outermost scope or session returns.
    """
    from rasterio.env import get_gdal_config, set_gdal_config

    from minescape.geo.handles import session

    with _CACHE_LOCK:
        entry = [int(get_gdal_config("GDAL_CACHEMAX"))]
        _CACHE_SCOPES.append(entry)
    try:
        with rasterio.Env(**options), session():
            yield
    finally:
        with _CACHE_LOCK:
            i = next(k for k, e in enumerate(_CACHE_SCOPES) if e is entry)
            del _CACHE_SCOPES[i]
            if i < len(_CACHE_SCOPES):  # a later scope (another thread) is still open: it restores for both
                _CACHE_SCOPES[i][0] = entry[0]
            elif int(get_gdal_config("GDAL_CACHEMAX")) != entry[0]:
                set_gdal_config("GDAL_CACHEMAX", entry[0])


def many_files() -> contextlib.AbstractContextManager[None]:
    """A GDAL environment for opening many rasters that sit in one big folder (a :func:`read_scope`).

    GDAL lists a raster's folder on every open to look for side-car files (``.aux.xml``, ``.ovr``,
    ``.msk``); with tens of thousands of per-site maps in one folder that listing dominates (600 maps:
    2.2 -> 1.4 ms per open, and it grows with the folder). Inside this block it does not look, so
    side-car files are ignored: use it for rasters minescape wrote itself.

    Their CRS is also taken from the file's GeoKeys alone (``GTIFF_SRS_SOURCE=GEOKEYS``) instead of building it
    from the EPSG database and comparing the two, which GDAL does by default on every open: 0.54 -> 0.33 ms per
    open of a per-site class map, the same CRS (WKT compared on UTM maps written by minescape).
    """
    return read_scope(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GTIFF_SRS_SOURCE="GEOKEYS")


SCAN_CACHE_MB = 128  # GDAL block cache for one pass over a raster (0: GDAL's default, 5 % of the RAM)


def scan_reads(cache_mb: int | None = None) -> contextlib.AbstractContextManager[None]:
    """GDAL settings for one pass over a large raster, tile by tile: a block cache of ``cache_mb`` MB
    (default :data:`SCAN_CACHE_MB`, or the user's own ``GDAL_CACHEMAX`` environment variable when set; 0 leaves
    GDAL's default), for this :func:`read_scope` only: the cache has its old size again on exit.

    A pass reads each block once (a haloed pass reads a block row again, far less than 128 MB), so GDAL's
    default cache, 5 % of the RAM, only fills with blocks that are never read again, and a process's memory grew
    with the raster up to that size: ``map sample`` over the 1.3-gigapixel WorldCover tile peaked at 1,467 MB on
    this 24 GB machine, 359 MB with the cap, in the same time (7.5 vs 6.3 s). The price, where a process passes
    over the same raster again while the default cache still held it: its blocks are decoded again
    (``bench_maps.py --only scan``: three passes over the WorldCover tiles 1,620 -> 404 MB, 20.0 -> 23.1 s).
    """
    if cache_mb is None and "GDAL_CACHEMAX" in os.environ:  # the user's setting wins
        return read_scope()
    mb = SCAN_CACHE_MB if cache_mb is None else int(cache_mb)
    return read_scope(GDAL_CACHEMAX=mb * 2**20) if mb > 0 else read_scope()


def window_reads() -> contextlib.AbstractContextManager[None]:
    """GDAL settings for reading many windows of large inputs (a :func:`read_scope`).

    Uncompressed GeoTIFFs are read straight from the file into the result (``GTIFF_DIRECT_IO``) instead of
    through GDAL's block cache, which for a pixel-interleaved 13-band stack means a copy and a de-interleave per
    block and a cache lock per band block: reading a 416-row strip of two 10980-px dates on two threads took
    0.12 s instead of 0.33 s, the same values. Compressed files are read as before. Entered in the main thread,
    the setting holds for threads it starts (rasterio sets the main thread's options process-wide).
    """
    return read_scope(GTIFF_DIRECT_IO=True)


#: The GDAL driver a raster is opened with, by the suffix of its name: the name decides the format, never the
#: bytes. Left to sniff the content, GDAL follows a VRT (or another format that names files and URLs) dressed as
#: ``B02.tif`` to whatever it references: a local file's pixels in a map, requests to third-party URLs. A ``.vrt``
#: is opened as one only when its name says so (a user's own mosaic); hrefs never are (``check_href``).
DRIVER_BY_SUFFIX: dict[str, str] = {".tif": "GTiff", ".tiff": "GTiff", ".jp2": "JP2OpenJPEG", ".png": "PNG",
                                    ".vrt": "VRT"}
#: How the formats read are named in messages.
READ_FORMATS = "GeoTIFF (.tif, .tiff), JPEG 2000 (.jp2), PNG (.png) and VRT (.vrt)"
#: Names with another suffix (or none) are read as GeoTIFF.
DEFAULT_DRIVER = "GTiff"


def raster_driver(name: str | Path) -> str:
    """The GDAL driver :data:`DRIVER_BY_SUFFIX` gives a file name, a ``/vsizip/`` member or a URL (its query
    string and fragment ignored: signed URLs end in ``?sig=...``)."""
    text = str(name).split("?", 1)[0].split("#", 1)[0]
    return DRIVER_BY_SUFFIX.get(os.path.splitext(text)[1].lower(), DEFAULT_DRIVER)


def open_by_name(path: str | Path):
    """``rasterio.open(path)`` (a local path, a ``/vsi...`` path or a URL) with the driver its name gives
    (:func:`raster_driver`); rasterio's errors pass through."""
    return rasterio.open(path, driver=raster_driver(path))


def open_raster(path: str | Path):
    """``rasterio.open`` with a one-line InputError for missing or unreadable files; the format is the one the
    name says (:func:`raster_driver`)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError("file not found", path=path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return open_by_name(path)
    except RasterioIOError as exc:
        known = path.suffix.lower() in DRIVER_BY_SUFFIX
        hint = "" if known else f"; only {READ_FORMATS} rasters are read: convert it with gdal_translate -of GTiff"
        raise InputError(f"not a readable raster (read as {raster_driver(path)}, by its name: "
                         f"{str(exc).splitlines()[0][:120]}){hint}", path=path) from None


@contextlib.contextmanager
def corrupt_reads_named(path: str | Path, what: str = "") -> Iterator[None]:
    """Reads inside this block that GDAL cannot decode (a truncated or corrupt file whose header still opens)
    raise a one-line InputError naming ``path`` (and ``what``, e.g. ``"band B04"``) instead of rasterio's
    ``Read failed. See previous exception for details.``, which names no file."""
    try:
        yield
    except RasterioIOError as exc:
        label = f", {what}" if what else ""
        raise InputError(f"corrupt or truncated raster{label} ({gdal_reason(exc, path)})", path=path) from None


def gdal_reason(exc: BaseException, path: str | Path = "") -> str:
    """GDAL's own words for a failed read, at most 120 characters: rasterio's ``Read failed. See previous
    exception for details.`` is replaced by the GDAL error it chains (e.g. ``band 1: IReadBlock failed at X
    offset 0, Y offset 79: TIFFReadEncodedStrip() failed.``), without the file name it starts with."""
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    text = (str(cause).splitlines() or [""])[0]
    name = Path(path).name if path else ""
    if name and text.startswith(name + ", "):
        text = text[len(name) + 2:]
    return text[:120]


def open_class_map(path: str | Path):
    """:func:`open_raster` for a class map: InputError (one line) unless its first band holds integers
    (class codes are integer; a float or complex band is imagery, not a class map)."""
    src = open_raster(path)
    if np.dtype(src.dtypes[0]).kind not in "ui":
        src.close()
        raise InputError(f"not a class map: band 1 is {src.dtypes[0]}, class codes are integers (uint8)",
                         path=path)
    return src


def read_raster(
    path: str | Path,
    *,
    bands: Sequence[int] | None = None,
    window: Window | None = None,
    boundless: bool = False,
    fill_value: float | None = None,
) -> Raster:
    """Read a GeoTIFF (or any GDAL raster) into a :class:`Raster`.

    Args:
        path: file to read.
        bands: 1-based band indexes (default all).
        window: pixel window to read (default whole raster); memory scales with the window.
        boundless: allow windows extending beyond the raster (filled with nodata or ``fill_value``).
        fill_value: fill for boundless reads when the file has no nodata.
    """
    with open_raster(path) as src:
        return read_window(src, bands=bands, window=window, boundless=boundless, fill_value=fill_value, path=path)


def read_window(
    src: rasterio.io.DatasetReader,
    *,
    bands: Sequence[int] | None = None,
    window: Window | None = None,
    boundless: bool = False,
    fill_value: float | None = None,
    path: str | Path | None = None,
) -> Raster:
    """:func:`read_raster` from an open reader (e.g. one from :func:`minescape.geo.handles.borrow`);
    ``path`` names the file in errors."""
    idx = list(bands) if bands is not None else list(range(1, src.count + 1))
    with corrupt_reads_named(path or src.name):
        if boundless:
            fill = src.nodata if src.nodata is not None else fill_value
            data = src.read(idx, window=window, boundless=True, fill_value=fill)
        else:
            data = src.read(idx, window=window)
    transform = src.window_transform(window) if window is not None else src.transform
    descriptions = [src.descriptions[i - 1] for i in idx]
    names = tuple(descriptions) if all(descriptions) else None
    return Raster(data=data, crs=src.crs, transform=transform, nodata=src.nodata, band_names=names)


#: DEFLATE level of floating-point GeoTIFFs (GDAL's ``ZLEVEL``; integer rasters keep GDAL's default, 6)
FLOAT_DEFLATE_LEVEL = 1


def _profile(raster: Raster, *, tiled: bool, compress: str, blocksize: int, dtype,
             predictor: int | None = None) -> dict:
    """The GTiff creation profile of ``raster`` (``predictor``: the TIFF predictor, default 3 for floats and 2
    for integers where the compression takes one)."""
    profile = {
        "driver": "GTiff",
        "width": raster.width,
        "height": raster.height,
        "count": raster.count,
        "dtype": np.dtype(dtype).name,
        "crs": raster.crs,
        "transform": raster.transform,
        "nodata": raster.nodata,
        "compress": compress,
    }
    if tiled and raster.width >= blocksize and raster.height >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    if compress in ("deflate", "lzw", "zstd"):
        profile["predictor"] = int(predictor) if predictor is not None else 3 if floating else 2
    if compress == "deflate" and floating:
        # level 1: on float maps (SAVI differences of OSCD cities, DEM change) files 0.4-0.8 % larger than at
        # level 6, written in x0.61-0.67 the time (bench/bench_float_deflate.py); class maps keep level 6
        profile["zlevel"] = FLOAT_DEFLATE_LEVEL
    return profile


def check_complete(path: str | Path) -> None:
    """Make sure the GeoTIFF just closed at ``path`` holds every block it lists, before it gets its final name.

    GDAL reports a write that fails while a dataset is closed (the last blocks flushed from its cache, the
    directory, on a full disk) only on stderr: rasterio's ``close()`` returns normally and the file ends before
    blocks its directory points to, so it opens but cannot be read. This walks the file's TIFF directories
    (:func:`minescape.geo.tiff_layout.bytes_past_end`: every directory, out-of-line tag value and block, at full
    resolution and in each overview; no pixel is read) and compares their end with the file's size.

    Raises:
        OutputError: naming the final file (temporary names mapped back): the cause where the file system shows
            one (full, read-only), else that the file was left incomplete.
    """
    import errno as _errno

    from minescape.atomic import output_cause, public_name
    from minescape.errors import OutputError

    path = Path(path)
    if bytes_past_end(path) == 0:
        return
    final = Path(public_name(path))
    cause = output_cause(final.parent)
    if cause is not None:
        raise OutputError(f"cannot write ({cause[1]})", path=final, errno=cause[0])
    raise OutputError("was left incomplete by GDAL (its blocks end past the end of the file); write it again",
                      path=final, errno=_errno.EIO)


def write_raster(
    raster: Raster,
    path: str | Path,
    *,
    legend: Legend | None = None,
    compress: str = "deflate",
    tiled: bool = True,
    blocksize: int = 256,
    tags: dict[str, str] | None = None,
    dtype: str | None = None,
) -> Path:
    """Write ``raster`` as a GeoTIFF atomically (temporary file, then rename).

    With a ``legend`` the file gets the legend's colour table, class names as metadata and the
    legend's nodata. Band names are written as band descriptions. Output bytes depend only on the
    inputs (no timestamps), so re-runs are reproducible.
    """
    path = Path(path)
    dtype = dtype or raster.data.dtype
    if legend is not None and raster.nodata is None:
        raster = replace(raster, nodata=legend.nodata)
    profile = _profile(raster, tiled=tiled, compress=compress, blocksize=blocksize, dtype=dtype)
    with atomic_path(path) as tmp:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"):
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(raster.data.astype(dtype, copy=False))
                if raster.band_names:
                    for i, name in enumerate(raster.band_names, start=1):
                        dst.set_band_description(i, name)
                all_tags = dict(tags or {})
                if legend is not None:
                    all_tags.update(legend.raster_tags())
                    if raster.count == 1 and np.dtype(dtype) == np.uint8:
                        dst.write_colormap(1, legend.colormap())
                if all_tags:
                    dst.update_tags(**all_tags)
        check_complete(tmp)
    return path


def write_cog(
    raster: Raster,
    path: str | Path,
    *,
    legend: Legend | None = None,
    overview_resampling: str | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write a Cloud-Optimized GeoTIFF with internal overviews, atomically.

    Class maps (with a legend) get ``nearest``/``mode`` overviews and the colour table; continuous
    data ``average``. The GTiff is built in memory-bounded fashion by GDAL's COG driver.
    """
    from rasterio.shutil import copy as rio_copy

    path = Path(path)
    resampling = overview_resampling or ("MODE" if legend is not None else "AVERAGE")
    with atomic_path(path) as tmp:
        plain = tmp.with_name(tmp.name + ".plain.tif")
        try:
            write_raster(raster, plain, legend=legend, tags=tags, tiled=True, blocksize=512)
            with rasterio.Env(GDAL_PAM_ENABLED="NO"):
                rio_copy(plain, tmp, driver="COG", COMPRESS="DEFLATE", OVERVIEW_RESAMPLING=resampling,
                         BLOCKSIZE=512)
            check_complete(tmp)
        finally:
            plain.unlink(missing_ok=True)
    return path


def overview_factors(width: int, height: int, blocksize: int) -> list[int]:
    """Overview decimation factors 2, 4, 8, ... for a ``width`` x ``height`` raster: halving until the coarsest
    level fits in one ``blocksize`` block (as GDAL's COG driver does); none for a raster within one block."""
    factors, f = [], 2
    while math.ceil(max(width, height) / (f // 2)) > blocksize:
        factors.append(f)
        f *= 2
    return factors


def build_overviews(path: str | Path, resampling: Resampling, *, blocksize: int = 256, threads: int = 1) -> None:
    """Add internal overviews to the closed tiled GeoTIFF ``path`` (updated in place), as :func:`open_writer` does.

    Levels halve until the coarsest fits in one ``blocksize`` block (:func:`overview_factors`; none for a raster
    within one block). GDAL computes them from the file block by block in ``threads`` threads (memory stays
    bounded), nodata left out of averages. A module-level function of plain values, so a worker process can build
    one file's levels while the caller goes on (:mod:`minescape.change.difference` overlaps them with its second
    pass); the bytes are the same wherever it runs.
    """
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), scan_reads():
        with rasterio.open(path, "r+") as dst:
            factors = overview_factors(dst.width, dst.height, blocksize)
            if factors:
                # DEFLATE level 1 for the levels (a third of the pixels) takes a fifth off their time on a float
                # map, for about the same size
                with rasterio.Env(GDAL_NUM_THREADS=max(1, int(threads)), ZLEVEL_OVERVIEW=1):
                    dst.build_overviews(factors, resampling)
    check_complete(path)


@contextlib.contextmanager
def open_writer(
    path: str | Path,
    grid: Grid,
    *,
    count: int,
    dtype: str,
    nodata: float | int | None,
    legend: Legend | None = None,
    band_names: Sequence[str] | None = None,
    compress: str = "deflate",
    blocksize: int = 256,
    tags: dict[str, str] | None = None,
    threads: int = 1,
    overviews: Resampling | None = None,
    predictor: int | None = None,
) -> Iterator[rasterio.io.DatasetWriter]:
    """Open a tiled GeoTIFF for window-by-window writing; it appears under ``path`` only on success.

    Use for outputs too large to hold in memory: ``dst.write(block, window=w)`` per window. ``threads`` > 1
    compresses blocks in that many GDAL threads (GTiff ``NUM_THREADS``; blocks are still written in order, the
    file is the same bytes). With ``overviews`` (a resampling: ``nearest`` or ``mode`` for classes, ``average`` for
    continuous values; nodata is left out of averages), internal overviews are built once every window is
    written, by halving until the coarsest level fits in one block (:func:`overview_factors`), so QGIS draws
    the whole raster zoomed out without reading it at full resolution. GDAL builds them from the file, block by
    block (in ``threads`` threads): memory stays bounded. ``predictor`` overrides the TIFF predictor (default 3
    for floats, 2 for integers; 1 = none, for noisy float maps such as index differences, where it saves time
    and bytes: ``bench/bench_float_deflate.py``).
    """
    fake = Raster(np.zeros((count, 1, 1), dtype=dtype), grid.crs, grid.transform, nodata)
    profile = _profile(fake, tiled=True, compress=compress, blocksize=blocksize, dtype=dtype, predictor=predictor)
    profile.update(width=grid.width, height=grid.height)
    if grid.width >= blocksize and grid.height >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if legend is not None and nodata is None:
        profile["nodata"] = legend.nodata
    if threads > 1 and compress not in (None, "none"):
        profile["num_threads"] = int(threads)
    with atomic_path(path) as tmp:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"):
            with rasterio.open(tmp, "w", **profile) as dst:
                if band_names:
                    for i, name in enumerate(band_names, start=1):
                        dst.set_band_description(i, name)
                all_tags = dict(tags or {})
                if legend is not None:
                    all_tags.update(legend.raster_tags())
                    if count == 1 and np.dtype(dtype) == np.uint8:
                        dst.write_colormap(1, legend.colormap())
                if all_tags:
                    dst.update_tags(**all_tags)
                yield dst
        if overviews is not None:
            build_overviews(tmp, overviews, blocksize=blocksize, threads=threads)  # checks the file
        else:
            check_complete(tmp)

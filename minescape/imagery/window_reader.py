"""Read one asset's window onto a grid: COGs over HTTP range requests (GDAL ``/vsicurl/``) or local files,
warped onto the site's grid, with retries and a local cache of fetched windows.

Only the blocks of the asset that the target grid covers are fetched: rasterio opens the URL (GDAL reads the
COG header with one range request), and a :class:`rasterio.vrt.WarpedVRT` onto the grid reads just the source
window it needs. Network failures are the normal case here: GDAL retries HTTP 429/5xx itself
(``GDAL_HTTP_MAX_RETRY``), and :func:`read_window` retries the whole open+read on connection errors and
timeouts with exponential backoff. A 404 is not retried.

The cache (:class:`WindowCache`) stores each read as ``.npy`` keyed by the unsigned href, the grid (CRS,
transform, size) and the resampling, so a rerun reads nothing twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT

from minescape.atomic import atomic_path
from minescape.errors import InputError
from minescape.geo.grid import Grid, aligned_window
from minescape.geo.raster import Raster, open_by_name, raster_driver
from minescape.imagery.conventions import BandAsset
from minescape.imagery.signing import Signer, no_signing
from minescape.sentinel2 import invalid_dn, read_window_filled


class AssetUnreachable(InputError):
    """An asset kept failing (connection refused, timeouts, 5xx) after every retry."""


@dataclass(frozen=True)
class ReadOptions:
    """How windows are fetched.

    Attributes:
        retries: attempts per asset window (open + read), with ``backoff_s`` x 2^attempt sleeps between them.
        backoff_s: first sleep, seconds.
        timeout_s: GDAL HTTP timeout per request, seconds.
        cache_dir: folder of cached windows (None: no cache).
        threads: assets of one scene read at the same time (requests wait on the network, not the CPU).
    """

    retries: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 30.0
    cache_dir: Path | None = None
    threads: int = 8


def gdal_env(options: ReadOptions) -> rasterio.Env:
    """GDAL settings for COG range reads, scoped to a block (never written to ``os.environ``)."""
    return rasterio.Env(
        GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",  # no directory listing per URL
        CPL_VSIL_CURL_ALLOWED_EXTENSIONS=".tif,.TIF,.tiff",
        GDAL_HTTP_MERGE_CONSECUTIVE_RANGES="YES",
        GDAL_HTTP_MULTIPLEX="YES",
        GDAL_HTTP_TIMEOUT=str(int(options.timeout_s)),
        GDAL_HTTP_CONNECTTIMEOUT=str(max(1, int(options.timeout_s // 3))),
        GDAL_HTTP_MAX_RETRY=str(options.retries),
        GDAL_HTTP_RETRY_DELAY=str(options.backoff_s),
        VSI_CACHE="TRUE",
    )


class WindowCache:
    """Fetched windows on disk, keyed by (unsigned href, grid, resampling); files written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key(href: str, grid: Grid, resampling: str) -> str:
        """SHA-256 of the href, the grid's CRS, transform and size, and the resampling."""
        text = json.dumps([href, grid.crs.to_string() if grid.crs else None, list(grid.transform)[:6],
                           grid.width, grid.height, resampling])
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        """File of a key (two-level fan-out)."""
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The cached array, or None: no file, or one that cannot be used (empty or cut short, e.g. by a crash or
        a full disk while it was written; not an ``.npy`` array; of the wrong shape), which is then ignored and
        the window fetched again."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # empty (EOFError), cut short or foreign
            return None
        if not isinstance(arr, np.ndarray):  # an .npz archive under the name: not a window
            arr.close()
            return None
        return arr if arr.shape == shape else None

    def put(self, key: str, array: np.ndarray) -> None:
        """Store ``array`` atomically."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


@functools.lru_cache(maxsize=1)
def _gdal_clear_cache():
    """GDAL's ``VSICurlPartialClearCache`` (rasterio does not expose it), or None where it cannot be found."""
    import ctypes
    import glob

    libs = sorted(glob.glob(str(Path(rasterio.__file__).parent.parent / "rasterio.libs" / "libgdal*")))
    for name in [*libs, "libgdal.so"]:
        try:
            func = ctypes.CDLL(name).VSICurlPartialClearCache
        except (OSError, AttributeError):
            continue
        func.argtypes = [ctypes.c_char_p]
        return func
    return None


def forget_url(url: str) -> None:
    """Drop what GDAL cached about ``url`` (after a failed open it remembers the file as absent, so a retry
    would fail without asking the server again)."""
    func = _gdal_clear_cache()
    if func is not None and "://" in url:
        func(("/vsicurl/" + url).encode())


def _is_missing(message: str) -> bool:
    text = message.lower()
    return "404" in text or "does not exist" in text or "no such file" in text


def _read(url: str, grid: Grid, method: Resampling, fill: float) -> np.ndarray:
    with open_by_name(url) as src:  # the driver the href's name gives: a VRT served as B02.tif is not followed
        if src.crs is None:
            raise InputError(f"asset {url} has no CRS")
        win = aligned_window(src.crs, src.transform, grid)
        if win is not None:  # same grid up to an integer offset: a plain window, no warp
            return read_window_filled(src, [1], win, fill=fill)[0]
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=method, src_nodata=fill, nodata=fill) as vrt:
            return vrt.read(1)


def read_window(asset: BandAsset, grid: Grid, *, resampling: str = "bilinear", options: ReadOptions = ReadOptions(),
                signer: Signer = no_signing, cache: WindowCache | None = None) -> np.ndarray:
    """The asset's pixels (raw DN, the file's dtype) on ``grid``; ``asset.nodata`` where it has no data.

    Raises:
        InputError: the asset does not exist (HTTP 404 / missing file), naming its href.
        AssetUnreachable: it kept failing after ``options.retries`` tries, naming its href.
    """
    method = Resampling[resampling]
    key = WindowCache.key(asset.href, grid, resampling) if cache is not None else ""
    if cache is not None:
        hit = cache.get(key, grid.shape)
        if hit is not None:
            return hit
    href = asset.href
    url = signer(href) if "://" in href else href
    if "://" not in href and not Path(href).exists():
        raise InputError(f"asset {asset.band}: file not found", path=href)
    last = ""
    for attempt in range(max(1, options.retries)):
        try:
            with gdal_env(options):
                data = _read(url, grid, method, asset.nodata)
            break
        except RasterioIOError as exc:
            last = " ".join(str(exc).split())[:160]
            if "not recognized as being in a supported file format" in last:  # the bytes: a retry will not help
                raise InputError(f"asset {asset.band} is not a readable {raster_driver(href)} file (the driver its "
                                 f"name gives): {href}") from None
            if _is_missing(last):
                raise InputError(f"asset {asset.band} not found (HTTP 404 or missing file): {href}") from None
            forget_url(url)
            if attempt + 1 < options.retries:
                time.sleep(options.backoff_s * 2**attempt)
    else:
        raise AssetUnreachable(f"asset {asset.band} unreachable after {options.retries} tries: {href} ({last})")
    if cache is not None:
        cache.put(key, data)
    return data


def to_reflectance(dn: np.ndarray, asset: BandAsset) -> np.ndarray:
    """float32 reflectance ``(DN + offset_dn) x scale``; NaN where the DN are the asset's nodata (its
    ``raster:bands`` nodata) or SATURATED (65535), tested on the DN before offset and scale
    (:func:`minescape.sentinel2.invalid_dn`)."""
    out = (dn.astype(np.float32) + np.float32(asset.offset_dn)) * np.float32(asset.scale)
    out[invalid_dn(dn, asset.nodata)] = np.nan
    return out


def undo_uncarried_offset(stack: Raster, offset_dn: float | None, name: str, *,
                          carried: bool | None = None) -> str | None:
    """For reflectance read with a catalogue item's -1000 DN offset (``offset_dn``) whose blue DN cannot carry it
    (:func:`pixels_carry_offset`: Earth Search items whose ``boa_offset_applied`` flag is wrong), add the offset
    back to every band of ``stack`` in place (the reflectance as if read with offset 0) and return a note naming
    ``name``; else None. ``carried``: the decision already made for the whole area (:func:`offset_probe_grid`;
    a tile of a larger composite must not decide on its own pixels); None decides on ``stack``, which must then
    hold ``B02`` (local STAC scenes; the ``--stac`` path checks the DN as it reads them)."""
    from minescape.sentinel2 import QUANTIFICATION

    if not offset_dn:
        return None
    if carried is None:
        if "B02" not in stack.band_names:
            return None
        blue = stack.band("B02")
        carried = pixels_carry_offset(np.where(np.isfinite(blue), blue * QUANTIFICATION - offset_dn, 0.0), nodata=0.0)
    if carried:
        return None
    np.subtract(stack.data, np.float32(offset_dn / QUANTIFICATION), out=stack.data)
    return uncarried_offset_note(name)


def uncarried_offset_note(name: str, cause: str = "the item's metadata is wrong for it") -> str:
    """The note of a scene ``name`` whose blue DN cannot carry the -1000 offset its metadata asks for, read as
    already offset (every reader that makes this decision reports it in these words)."""
    return f"{name}: DN below 1000 cannot carry the baseline-04.00 offset; read as already offset ({cause})"


#: Longest side (pixels) of the decimated blue band the DN-offset check reads once per scene (and area).
OFFSET_PROBE_PX = 512


def offset_probe_grid(area: Grid, *, max_px: int = OFFSET_PROBE_PX) -> Grid:
    """The grid on which a scene's blue DN are checked for the -1000 offset (:func:`pixels_carry_offset`) once for
    a whole ``area``: ``area`` itself up to ``max_px`` pixels a side, else coarsened by a whole factor (same
    origin and CRS; its bounds cover ``area``'s). Every tile of the area then shares one decision."""
    import math

    from affine import Affine

    factor = max(1, math.ceil(max(area.width, area.height) / max_px))
    if factor == 1:
        return area
    return Grid(area.crs, area.transform * Affine.scale(factor), math.ceil(area.width / factor),
                math.ceil(area.height / factor))


def pixels_carry_offset(blue_dn: np.ndarray, *, nodata: float = 0, share: float = 0.25) -> bool:
    """False when the blue band's DN cannot carry the +1000 offset of baseline >= 04.00: more than ``share``
    of its valid pixels are below 1000 (a negative blue surface reflectance). Used to catch Earth Search items
    whose ``earthsearch:boa_offset_applied`` flag says False while the offset was already subtracted. Nodata and
    SATURATED DN are not valid pixels (:func:`minescape.sentinel2.invalid_dn`)."""
    valid = ~invalid_dn(blue_dn, nodata)
    if not valid.any():
        return True
    return float((blue_dn[valid] < 1000).mean()) <= share

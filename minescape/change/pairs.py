"""Bi-temporal pairs: T2 aligned onto T1's grid, cropped to the common footprint, one nodata mask.

A :class:`Pair` holds no pixels: it names the two scenes (any layout
:func:`minescape.imagery.local_scenes.open_one_scene` reads: multi-band stacks, one-file-per-band folders, STAC
items and downloaded items, any CRS and resolution) and the *pair grid*, the
part of T1's 10 m grid that T2 also covers. :func:`read_pair` reads both dates onto that grid (or one
window of it, so memory follows the window), warping T2 when its CRS, resolution or origin differ,
and sets a pixel to NaN in both dates when it is nodata in either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from minescape.errors import ConfigError, InputError, NoOverlapError
from minescape.geo.grid import Grid, aligned_window, bounds_in
from minescape.geo.raster import Raster, corrupt_reads_named, open_raster
from minescape.sentinel2 import QUANTIFICATION, Scene, decode_dn, invalid_dn, read_stack, read_window_filled


@dataclass(frozen=True)
class Pair:
    """Two scenes and the grid they are compared on.

    Attributes:
        t1: the first date (its grid is the reference).
        t2: the second date (warped onto ``grid`` when read).
        grid: the common footprint on T1's reference grid (T1's CRS, 10 m pixels for Sentinel-2).
        bands: band names read by default (present in both scenes).
    """

    t1: Scene
    t2: Scene
    grid: Grid
    bands: tuple[str, ...]

    @property
    def notes(self) -> tuple[str, ...]:
        """What opening the two scenes decided (date 1's notes, then date 2's), for the run to report."""
        return (*self.t1.notes, *self.t2.notes)


def open_pair(t1: str | Path | Scene, t2: str | Path | Scene, *, bands: Sequence[str] | None = None) -> Pair:
    """Describe a pair: check bands, find the common footprint on T1's grid.

    Args:
        t1: first-date scene (:class:`Scene`, or a path: a stack file, a band folder or SAFE product, a STAC item
            JSON or a downloaded item's folder; :func:`minescape.imagery.local_scenes.open_one_scene`).
        t2: second-date scene; any CRS/resolution, it is warped onto T1's grid when read.
        bands: bands the caller needs (default: every band both scenes have).

    Raises:
        InputError: a requested band is missing in one scene (the message names the file).
        NoOverlapError: the two footprints do not overlap.
    """
    from minescape.imagery.local_scenes import open_one_scene

    s1 = t1 if isinstance(t1, Scene) else open_one_scene(t1)
    s2 = t2 if isinstance(t2, Scene) else open_one_scene(t2)
    if bands is None:
        common = tuple(b for b in s1.bands if b in s2.band_files)
        if not common:
            raise InputError(f"no band in common with {s1.path} (T2 has {s2.bands}, T1 has {s1.bands})",
                             path=s2.path)
        bands = common
    bands = tuple(b.upper() for b in bands)
    for scene in (s1, s2):
        missing = [b for b in bands if b not in scene.band_files]
        if missing:
            raise InputError(f"missing bands {missing} (scene has {scene.bands})", path=scene.path)
    grid = common_grid(s1.grid, s2.grid, names=(str(s1.path), str(s2.path)))
    return Pair(s1, s2, grid, bands)


def common_grid(reference: Grid, other: Grid, *, names: tuple[str, str] = ("T1", "T2")) -> Grid:
    """The part of ``reference`` covered by ``other``'s footprint (transformed into the reference CRS).

    Raises:
        NoOverlapError: the footprints are disjoint (message names both inputs).
    """
    b = other.bounds if other.crs == reference.crs else bounds_in(other.bounds, other.crs, reference.crs)
    left, bottom, right, top = reference.bounds
    ol, ob, orr, ot = b
    if ol >= right or orr <= left or ob >= top or ot <= bottom:
        raise NoOverlapError(f"does not overlap {names[0]} (footprints {tuple(round(v, 3) for v in b)} and "
                             f"{tuple(round(v, 3) for v in reference.bounds)} in {reference.crs})", path=names[1])
    return reference.window_grid(reference.window_of_bounds(b))


@contextlib.contextmanager
def open_datasets() -> Iterator[dict]:
    """A cache of open rasterio datasets for many window reads (GDAL then keeps decoded blocks between
    windows instead of decompressing them again); closed on exit. Pass it as ``handles=``."""
    cache: dict = {}
    try:
        yield cache
    finally:
        for ds in cache.values():
            ds.close()


def _open(path: Path, handles: dict | None):
    if handles is None:  # the process's handle pool: one open per file and process, safe across threads
        from minescape.geo.handles import borrow

        return borrow(path)
    if path not in handles:
        handles[path] = open_raster(path)
    return contextlib.nullcontext(handles[path])


def read_pair(pair: Pair, *, window: Window | None = None, bands: Sequence[str] | None = None,
              reflectance: bool = True, handles: dict | None = None) -> tuple[Raster, Raster]:
    """Read both dates onto the pair grid (or a window of it) with one common nodata mask.

    Args:
        pair: from :func:`open_pair`.
        window: pixel window of ``pair.grid`` (may extend beyond it: outside pixels are NaN).
        bands: subset of ``pair.bands`` (default all).
        reflectance: float32 reflectance (else float32 DN).
        handles: an :func:`open_datasets` cache for repeated window reads.

    Returns:
        ``(t1, t2)`` float32 rasters on the same grid; NaN wherever either date is nodata in any band.
    """
    bands = tuple(b.upper() for b in (bands or pair.bands))
    r1 = read_scene(pair.t1, bands=bands, grid=pair.grid, window=window, reflectance=reflectance, handles=handles)
    r2 = read_scene(pair.t2, bands=bands, grid=pair.grid, window=window, reflectance=reflectance, handles=handles)
    return apply_common_mask(r1, r2)


def read_scene(scene: Scene, *, bands: Sequence[str], grid: Grid, window: Window | None = None,
               reflectance: bool = True, handles: dict | None = None) -> Raster:
    """:func:`minescape.sentinel2.read_stack` with a fast path for files already on ``grid``.

    Bands stored in one pixel-aligned file are read in a single call (a multi-band stack is decompressed
    once per window, not once per band) and windows reaching past the file are filled with nodata
    without GDAL's slow boundless reads. Files that need warping go through ``read_stack`` (same values).
    Floating-point files hold reflectance and are taken as stored (:func:`minescape.sentinel2.decode_dn`), as
    :func:`open_pair_source` reads them: ``change detect`` and ``change predict`` see the same values.
    """
    target = grid.window_grid(window) if window is not None else grid
    out = np.empty((len(bands), target.height, target.width), dtype=np.float32)
    by_file = _bands_by_file(scene, bands)
    slow: list[int] = []
    offset = scene.info.radiometric_offset
    for path, items in by_file.items():
        with _open(path, handles) as src:
            win = _aligned(src, target) if src.crs is not None else None
            if win is None:
                slow.extend(i for i, _ in items)
                continue
            nodata = src.nodata if src.nodata is not None else scene.nodata
            with corrupt_reads_named(path):
                dn = read_window_filled(src, [idx for _, idx in items], win, fill=nodata if nodata is not None else 0)
        for k, (i, _) in enumerate(items):
            decode_dn(dn[k], reflectance=reflectance, offset=offset, nodata=nodata, out=out[i])
    if slow:
        warped = read_stack(scene, bands=[bands[i] for i in slow], grid=grid, window=window,
                            reflectance=reflectance)
        for k, i in enumerate(slow):
            out[i] = warped.data[k]
    return Raster(out, target.crs, target.transform, np.nan, tuple(bands))


def _bands_by_file(scene: Scene, bands: Sequence[str]) -> dict[Path, list[tuple[int, int]]]:
    """``{file: [(position in bands, 1-based band index in the file), ...]}``, files in first-band order, so
    a multi-band stack is read in one call (InputError naming the scene for a band it lacks)."""
    by_file: dict[Path, list[tuple[int, int]]] = {}
    for i, band in enumerate(bands):
        if band not in scene.band_files:
            raise InputError(f"missing bands {[band]}; scene has {scene.bands}", path=scene.path)
        path, idx = scene.band_files[band]
        by_file.setdefault(path, []).append((i, idx))
    return by_file


def apply_common_mask(t1: Raster, t2: Raster) -> tuple[Raster, Raster]:
    """Both float rasters, masked **in place**: NaN wherever either is invalid (same grid required). For arrays
    the caller owns (``read_pair`` masks what it has just read; no copy of two strips)."""
    if t1.shape != t2.shape:
        raise InputError(f"dates differ in size: {t1.shape} vs {t2.shape}; align them with open_pair first")
    bad = ~(t1.valid_mask() & t2.valid_mask())
    if bad.any():
        t1.data[:, bad] = np.nan
        t2.data[:, bad] = np.nan
    return t1, t2


def read_on_grid(path: str | Path, grid: Grid, *, window: Window | None = None, band: int = 1,
                 resampling: str = "nearest", fill: float | int | None = None,
                 handles: dict | None = None) -> Raster:
    """Read one band of any raster onto ``grid`` (or a window of it): a label/mask onto a pair grid.

    Pixel-aligned files are read directly (boundless); others are warped (``nearest`` for classes).
    A file without CRS is accepted only if it has exactly ``grid``'s size (OSCD labels): it is then
    taken to be on ``grid``.

    Args:
        path: raster file.
        grid: target grid.
        window: pixel window of ``grid``.
        band: 1-based band index.
        resampling: rasterio resampling name.
        fill: value outside the file (default the file's nodata, else 0).
    """
    path = Path(path)
    target = grid.window_grid(window) if window is not None else grid
    try:
        method = Resampling[resampling]
    except KeyError:
        raise ConfigError(f"invalid resampling {resampling!r}; choose one of: nearest, bilinear, cubic") from None
    with _open(path, handles) as src:
        if band < 1 or band > src.count:
            raise InputError(f"has {src.count} bands, band {band} requested", path=path)
        nodata = src.nodata
        fillv = fill if fill is not None else (nodata if nodata is not None else 0)
        if src.crs is None:
            if (src.height, src.width) != grid.shape:
                raise InputError(f"has no CRS and is {src.height}x{src.width} pixels, not the pair grid's "
                                 f"{grid.height}x{grid.width}: cannot place it", path=path)
            win = window or Window(0, 0, grid.width, grid.height)
            data = src.read(band, window=win, boundless=True, fill_value=fillv)
        else:
            win = _aligned(src, target)
            if win is not None:
                data = src.read(band, window=win, boundless=True, fill_value=fillv)
            else:
                with WarpedVRT(src, crs=target.crs, transform=target.transform, width=target.width,
                               height=target.height, resampling=method, src_nodata=nodata,
                               nodata=fillv) as vrt:
                    data = vrt.read(band)
    return Raster(data[np.newaxis], target.crs, target.transform, nodata if nodata is not None else fill)


def _aligned(src: rasterio.io.DatasetReader, target: Grid) -> Window | None:
    return aligned_window(src.crs, src.transform, target)


# ------------------------------------------------------------------------------- windowed pair sources
@dataclass(frozen=True)
class DNWindow:
    """Both dates of a window as stored: ``(C, h, w)`` digital numbers (the files' integer type), ``valid``
    ``(h, w)`` where neither date is nodata in any band, and per date the ``(gain, bias)`` making them
    reflectance (``DN * gain + bias``, Sentinel-2's ``(DN + offset) / 10000``). Values at invalid pixels are
    the nodata value, not NaN: use ``valid``."""

    dn1: np.ndarray
    dn2: np.ndarray
    valid: np.ndarray
    to_reflectance: tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class PairSource:
    """A pair read window by window on one grid: ``read(window) -> (a1, a2)``, each ``(C, h, w)`` float32
    reflectance with NaN nodata (each date's own for reflectance stacks, so a co-registration shift can move
    date 2's; the common mask for scenes). ``kind`` says what was opened (for messages).

    ``read_dn(window) -> DNWindow | None``: the same window as stored, where both dates are Sentinel-2 files on
    the pair grid pixel for pixel (None otherwise, and None for sources without it): a reader that normalises
    for a network skips the float reflectance arrays (one pass over the data instead of four).

    ``notes``: what opening the two scenes decided, for the run to report (:attr:`minescape.sentinel2.Scene.notes`).
    """

    grid: Grid
    read: object  # Callable[[Window], tuple[np.ndarray, np.ndarray]]
    kind: str
    read_dn: object = None  # Callable[[Window], DNWindow | None] | None
    notes: tuple[str, ...] = ()  # what opening the scenes decided (a catalogue offset the pixels contradict)


def band_indexes(wanted: Sequence[str], file_bands: Sequence[str | None], count: int, path) -> list[int]:
    """1-based band indexes of ``wanted`` in a GeoTIFF (by description, else by count).

    Raises InputError naming the file when the imagery lacks a band.
    """
    names = [b for b in file_bands if b]
    if len(names) == count:
        missing = [b for b in wanted if b not in names]
        if missing:
            raise InputError(f"model needs bands {list(wanted)} but the imagery has {names} "
                             f"(missing {missing})", path=path)
        return [names.index(b) + 1 for b in wanted]
    if count != len(wanted):
        raise InputError(f"model needs {len(wanted)} bands {list(wanted)} but the imagery has {count} "
                         "unnamed bands", path=path)
    return list(range(1, count + 1))


def _is_reflectance_stack(path: Path) -> bool:
    if path.is_dir() or path.suffix.lower() == ".json":  # a band folder, a STAC item
        return False
    with open_raster(path) as src:
        return bool(np.issubdtype(np.dtype(src.dtypes[0]), np.floating))


def open_pair_source(t1: str | Path, t2: str | Path, bands: Sequence[str], *,
                     handles: dict | None = None) -> PairSource:
    """Open a pair for windowed reading of ``bands`` (the deep change reader; the index method's is
    :func:`open_pair`, which this uses for scenes).

    Float GeoTIFF stacks are reflectance (bands found by description, else by count) and must share one grid;
    anything else is a Sentinel-2 scene (stack file or band folder, e.g. OSCD's ``imgs_1/``) opened with
    :func:`open_pair` and read with :func:`read_pair` (DN -> reflectance, date 2 warped onto the pair grid).

    Args:
        handles: an :func:`open_datasets` cache kept open for the reads (faster for many windows).

    Raises:
        MissingInputError: a path does not exist.
        InputError: the imagery lacks a band (naming the file and both band lists).
        CRSMismatchError: two reflectance stacks on different grids.
    """
    from minescape.errors import CRSMismatchError, MissingInputError

    t1, t2 = Path(t1), Path(t2)
    for p in (t1, t2):
        if not p.exists():
            raise MissingInputError("image not found", path=p)
    if _is_reflectance_stack(t1) and _is_reflectance_stack(t2):
        with open_raster(t1) as s1, open_raster(t2) as s2:
            if (s1.width, s1.height) != (s2.width, s2.height) or s1.transform != s2.transform or s1.crs != s2.crs:
                raise CRSMismatchError(f"date 2 is not on date 1's grid ({s2.width}x{s2.height} vs "
                                       f"{s1.width}x{s1.height}, or another transform/CRS); align the pair first",
                                       path=t2)
            idx = (band_indexes(bands, s1.descriptions, s1.count, t1),
                   band_indexes(bands, s2.descriptions, s2.count, t2))
            grid = Grid(crs=s1.crs, transform=s1.transform, width=s1.width, height=s1.height)
            nod = (s1.nodata, s2.nodata)

        def read_float(window: Window) -> tuple[np.ndarray, np.ndarray]:
            out = []
            for path, ix, nd in ((t1, idx[0], nod[0]), (t2, idx[1], nod[1])):
                with _open(path, handles) as src:
                    a = src.read(ix, window=window).astype(np.float32)
                if nd is not None and not np.isnan(nd):
                    a[a == nd] = np.nan
                out.append(a)
            return out[0], out[1]

        return PairSource(grid, read_float, "reflectance stacks")
    pair = open_pair(t1, t2, bands=bands)

    def read_scenes(window: Window) -> tuple[np.ndarray, np.ndarray]:
        r1, r2 = read_pair(pair, window=window, handles=handles)
        return r1.data, r2.data

    if not all(stored_on_grid(sc, bands, pair.grid, handles=handles) for sc in (pair.t1, pair.t2)):
        return PairSource(pair.grid, read_scenes, "Sentinel-2 scenes", notes=pair.notes)
    scale = tuple((1.0 / QUANTIFICATION, sc.info.radiometric_offset / QUANTIFICATION) for sc in (pair.t1, pair.t2))

    def read_dn(window: Window) -> DNWindow | None:
        dn1 = read_scene_dn(pair.t1, bands=bands, grid=pair.grid, window=window, handles=handles)
        dn2 = read_scene_dn(pair.t2, bands=bands, grid=pair.grid, window=window, handles=handles) \
            if dn1 is not None else None
        if dn2 is None:
            return None
        (dn1, bad1), (dn2, bad2) = dn1, dn2
        valid = np.logical_not(np.logical_or(bad1, bad2, out=bad1), out=bad1)
        return DNWindow(dn1, dn2, valid, scale)

    return PairSource(pair.grid, read_scenes, "Sentinel-2 scenes", read_dn, pair.notes)


def stored_on_grid(scene: Scene, bands: Sequence[str], grid: Grid, *, handles: dict | None = None) -> bool:
    """Whether every file holding ``bands`` is on ``grid`` pixel for pixel and all share one integer type: then
    any window of ``grid`` can be read as stored (:func:`read_scene_dn`). Decided once per pair, not per
    window (a window of an aligned grid is aligned)."""
    dtypes = set()
    for path, items in _bands_by_file(scene, bands).items():
        with _open(path, handles) as src:
            if src.crs is None or _aligned(src, grid) is None:
                return False
            dtypes.add(np.dtype(src.dtypes[items[0][1] - 1]))
    return len(dtypes) == 1 and np.issubdtype(dtypes.pop(), np.integer)


def read_scene_dn(scene: Scene, *, bands: Sequence[str], grid: Grid, window: Window,
                  handles: dict | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(dn, invalid)``: the scene's bands over ``window`` of ``grid`` as stored, ``(C, h, w)`` in the files'
    integer type, and ``(h, w)`` where any band is nodata or SATURATED (or outside the files), for files
    :func:`stored_on_grid`. None where the window reaches past a file without nodata (:func:`read_scene` then
    decides what those pixels are)."""
    target = grid.window_grid(window)
    by_file = _bands_by_file(scene, bands)
    out = invalid = None
    for path, items in by_file.items():
        with _open(path, handles) as src:
            win = _aligned(src, target)
            nodata = src.nodata if src.nodata is not None else scene.nodata
            if nodata is None and (win.col_off < 0 or win.row_off < 0 or win.col_off + win.width > src.width
                                   or win.row_off + win.height > src.height):
                return None
            with corrupt_reads_named(path):
                dn = read_window_filled(src, [idx for _, idx in items], win, fill=nodata if nodata is not None else 0)
        if out is None and len(by_file) == 1 and [i for i, _ in items] == list(range(len(bands))):
            out = dn  # one stack file, bands in order: the read is the result
        elif out is None:
            out = np.empty((len(bands), target.height, target.width), dn.dtype)
        if out is not dn:
            for k, (i, _) in enumerate(items):
                out[i] = dn[k]
        if invalid is None:
            invalid = np.zeros((target.height, target.width), bool)
        for band in dn:  # band by band: no (C, h, w) temporary; nodata and SATURATED as decode_dn masks them
            np.logical_or(invalid, invalid_dn(band, nodata), out=invalid)
    return out, invalid

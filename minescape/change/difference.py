"""Index differencing and change-vector analysis: difference raster, threshold, clean-up, change mask.

The method of CHANGE-MINING2025: ``SAVI(T2) - SAVI(T1)`` (NDVI, NDWI, BSI, MNDWI, NDBI selectable; or the
change-vector magnitude ``sqrt(sum_b (T2_b - T1_b)^2)`` over the bands), a *score* per pixel by direction
(``both``: ``|d|``, ``loss``: ``-d`` i.e. the index went down, ``gain``: ``d``; CVA has no sign), a
threshold on the score (Otsu, fixed or a percentile), a morphological clean-up (opening then closing
with disc footprints, radii in pixels) and a minimum connected-component area (m² on the WGS84
ellipsoid, 8-connectivity). Output: a uint8 mask in the CHANGE legend (0 no change, 1 change,
255 nodata, with the colour table) and the float32 difference raster (NaN nodata).

Two implementations give **identical masks**:

* :func:`detect` works on whole in-memory rasters (OSCD cities, tests);
* :func:`detect_files` streams a pair from disk window by window (memory bounded by the window, not the
  scene): pass 1 writes the difference raster and accumulates the score histogram, the threshold comes
  from that histogram (Otsu and percentiles are computed from a fixed-range histogram in both
  implementations), pass 2 reads the difference back (from an uncompressed scratch copy, see
  :mod:`minescape.geo.scratch`) in tiles with a halo wide enough that opening,
  closing and the minimum-area rule are exact at the tile cores.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rasterio.enums import Resampling
from scipy import ndimage

from minescape.atomic import atomic_path, atomic_write_text
from minescape.change.pair_cloud_mask import PairCloudMask
from minescape.errors import ConfigError, InputError, check_choice
from minescape.geo.grid import Grid, iter_tiles
from minescape.geo.pixel_area import centre_pixel_area_m2
from minescape.geo.raster import Raster, build_overviews, open_by_name, open_writer, scan_reads
from minescape.geo.raster_style import (
    DISPLAY_PERCENTILE,
    diverging_ramp,
    sequential_ramp,
    style_path,
    write_legend_style,
    write_ramp_style,
)
from minescape.indices import INDICES, index_bands
from minescape.legend import CHANGE

Method = Literal["SAVI", "NDVI", "NDWI", "BSI", "MNDWI", "NDBI", "CVA"]
METHODS: tuple[str, ...] = ("SAVI", "NDVI", "NDWI", "BSI", "MNDWI", "NDBI", "CVA")
DIRECTIONS: tuple[str, ...] = ("both", "loss", "gain")
THRESHOLDS: tuple[str, ...] = ("otsu", "fixed", "percentile")
INDEX_SCORE_MAX = 3.0  # |SAVI(T2) - SAVI(T1)| <= 3 for reflectance in [0, 1]; normalized differences <= 2
NBINS = 4096
WINDOWS_PER_WORKER = 4  # automatic workers: one per this many windows (a worker process costs ~1 s to start)


@dataclass(frozen=True)
class DetectOptions:
    """How to turn a pair into a change mask.

    Attributes:
        method: an index name (difference T2 - T1) or ``CVA`` (change-vector magnitude).
        direction: ``both`` (|d|), ``loss`` (index decrease) or ``gain`` (index increase); CVA: ``both``.
        threshold: ``otsu`` (automatic), ``fixed`` (``value`` is the score threshold) or ``percentile``
            (``value`` in (0, 100): the score percentile over valid pixels).
        value: threshold value or percentile (ignored for Otsu).
        opening: radius (pixels) of the disc used to open the raw mask (removes specks); 0 = none.
        closing: radius (pixels) of the disc used to close it (fills pinholes); 0 = none.
        min_area_m2: drop change components smaller than this (m², ellipsoidal).
        cva_bands: bands of the change vector (default: every band the pair has).
    """

    method: str = "SAVI"
    direction: str = "both"
    threshold: str = "otsu"
    value: float | None = None
    opening: int = 1
    closing: int = 1
    min_area_m2: float = 0.0
    cva_bands: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())
        check_choice(self.method, METHODS, what="method")
        check_choice(self.direction, DIRECTIONS, what="direction")
        check_choice(self.threshold, THRESHOLDS, what="threshold")
        if self.method == "CVA" and self.direction != "both":
            raise ConfigError("CVA magnitude has no sign: use direction 'both' (or an index for loss/gain)")
        if self.threshold == "fixed" and (self.value is None or not self.value >= 0):
            raise ConfigError(f"a fixed threshold needs a value >= 0 (got {self.value})")
        if self.threshold == "percentile" and (self.value is None or not 0 < self.value < 100):
            raise ConfigError(f"a percentile threshold needs a value in (0, 100) (got {self.value})")
        if self.opening < 0 or self.closing < 0 or self.min_area_m2 < 0:
            raise ConfigError("opening, closing and min_area_m2 must be >= 0")
        if self.cva_bands is not None:
            object.__setattr__(self, "cva_bands", tuple(b.upper() for b in self.cva_bands))


@dataclass
class DetectResult:
    """In-memory result: the mask (uint8 CHANGE legend), the difference (float32) and statistics."""

    mask: Raster
    difference: Raster
    threshold: float
    stats: dict = field(default_factory=dict)


def method_bands(options: DetectOptions, available: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Bands the method reads (index bands, or the CVA bands among ``available``)."""
    if options.method == "CVA":
        return tuple(options.cva_bands or available)
    return index_bands(options.method)


def score_max(options: DetectOptions, n_bands: int) -> float:
    """Upper end of the score histogram (scores above fall in the last bin)."""
    return INDEX_SCORE_MAX if options.method != "CVA" else float(math.sqrt(n_bands))


def difference(t1: Raster, t2: Raster, *, options: DetectOptions) -> np.ndarray:
    """``index(T2) - index(T1)`` (or the CVA magnitude) as a float32 ``(rows, cols)`` array, NaN nodata."""
    if t1.shape != t2.shape:
        raise InputError(f"dates differ in size: {t1.shape} vs {t2.shape}; align them first (open_pair)")
    if options.method == "CVA":
        bands = method_bands(options, t1.band_names or ())
        if not bands:
            raise InputError("CVA needs named bands")
        acc = np.zeros(t1.shape, dtype=np.float32)
        for b in bands:
            d = t2.band(b).astype(np.float32) - t1.band(b).astype(np.float32)
            acc += d * d
        return np.sqrt(acc)
    func, bands = INDICES[options.method]
    i1 = func(*(t1.band(b) for b in bands))
    i2 = func(*(t2.band(b) for b in bands))
    return (i2 - i1).astype(np.float32)


def change_score(diff: np.ndarray, *, options: DetectOptions) -> np.ndarray:
    """Non-negative score (NaN nodata) by direction: ``|d|``, ``-d`` (loss) or ``d`` (gain), clipped at 0."""
    if options.method == "CVA" or options.direction == "both":
        return np.abs(diff)
    s = -diff if options.direction == "loss" else diff
    return np.maximum(s, np.float32(0))  # NaN propagates


def score_histogram(score: np.ndarray, *, top: float, nbins: int = NBINS) -> np.ndarray:
    """Counts of valid scores in ``nbins`` equal bins over ``[0, top]`` (above ``top``: last bin)."""
    s = score[np.isfinite(score)]
    idx = np.minimum((s * (nbins / top)).astype(np.int64), nbins - 1)
    return np.bincount(idx, minlength=nbins).astype(np.int64)


def threshold_from_histogram(counts: np.ndarray, *, top: float, options: DetectOptions) -> float:
    """The score threshold (change where score > threshold) from a fixed-range histogram."""
    if options.threshold == "fixed":
        return float(options.value)
    nbins = counts.size
    width = top / nbins
    total = int(counts.sum())
    if total == 0:
        raise InputError("no valid pixel common to both dates: cannot set a threshold")
    if options.threshold == "percentile":
        k = int(np.searchsorted(np.cumsum(counts), options.value / 100.0 * total, side="left"))
        return float((k + 1) * width)
    from skimage.filters import threshold_otsu

    nz = np.nonzero(counts)[0]
    if nz.size < 2:
        return float((nz[0] + 1) * width) if nz.size else 0.0
    lo, hi = nz[0], nz[-1] + 1
    centers = (np.arange(lo, hi) + 0.5) * width
    return float(threshold_otsu(hist=(counts[lo:hi], centers)))


def display_limit(counts: np.ndarray, top: float) -> float:
    """The score at :data:`DISPLAY_PERCENTILE` of the histogram ``counts`` over ``[0, top]``: the end of the
    difference's colour ramp, so that a few extreme pixels do not wash out the rest (index units)."""
    return threshold_from_histogram(counts, top=top, options=DetectOptions(threshold="percentile",
                                                                            value=DISPLAY_PERCENTILE))


def write_difference_style(diff_path: Path, options: DetectOptions, limit: float) -> Path:
    """``difference.qml`` beside the difference, the style QGIS applies when it opens it: red (index loss)
    through white to blue (gain) over ``-limit .. +limit`` for an index, as the run report draws it; viridis over
    ``0 .. limit`` for the CVA magnitude."""
    if options.method == "CVA":
        ramp = sequential_ramp(0.0, limit, "change-vector magnitude (reflectance)")
    else:
        ramp = diverging_ramp(limit, f"{options.method}(T2) - {options.method}(T1)")
    return write_ramp_style(diff_path, ramp)


def min_pixels(options: DetectOptions, grid: Grid) -> int:
    """The minimum component size in pixels for ``options.min_area_m2`` on ``grid``."""
    if options.min_area_m2 <= 0:
        return 0
    return int(math.ceil(options.min_area_m2 / centre_pixel_area_m2(grid) - 1e-9))


def halo(options: DetectOptions, n_min: int) -> tuple[int, int]:
    """``(halo, exact_shrink)`` in pixels that make tiled clean-up identical to the whole-array one."""
    shrink = 2 * options.opening + 2 * options.closing
    return shrink + n_min, shrink


#: Bytes per pixel of a pass-2 tile in memory: the difference, the score and the component labels (4 B each), the
#: change and valid masks and scipy's morphology temporaries.
PASS2_BYTES_PER_PX = 32


def pass2_reads(grid: Grid, *, window: int, pad: int) -> tuple[tuple[int, int], float]:
    """What pass 2 of :func:`detect_files` reads with ``window`` px cores and a ``pad`` px halo (:func:`halo`):
    ``((rows, cols), factor)``, the largest tile read (pixels; the halo clipped at the raster's edges) and the
    pixels read over the scene's (1.0: each pixel once). The halo grows with the minimum area: 5 ha of 10 m pixels
    is a 500 px halo, so 64 px windows read (64 + 1000)² px each, the whole of a small scene."""
    def along(n: int) -> tuple[int, int]:
        reads = [min(n, start + window + pad) - max(0, start - pad) for start in range(0, n, window)]
        return max(reads), sum(reads)

    (rows, read_r), (cols, read_c) = along(grid.height), along(grid.width)
    return (rows, cols), read_r * read_c / max(grid.height * grid.width, 1)


def _disc(radius: int) -> np.ndarray:
    from skimage.morphology import disk

    return disk(radius).astype(bool)


def postprocess(score: np.ndarray, threshold: float, *, options: DetectOptions, n_min: int,
                interior: tuple[bool, bool, bool, bool] = (False, False, False, False)) -> np.ndarray:
    """Threshold, open, close and drop small components on one block.

    Args:
        score: ``(rows, cols)`` score (NaN nodata).
        threshold: change where ``score > threshold``.
        options: clean-up radii (pixels).
        n_min: minimum component size in pixels (0: keep all).
        interior: whether the block's (top, bottom, left, right) side lies inside the raster (a tile
            edge, not the raster's). Results are exact only ``2*opening + 2*closing`` pixels away from
            interior sides; components that touch that exact region's interior border are kept.

    Returns:
        bool change array (False at nodata); only the exact region is meaningful.
    """
    valid = np.isfinite(score)
    change = np.zeros(score.shape, dtype=bool)
    np.greater(score, threshold, out=change, where=valid)
    # border_value=1 in erosions: the raster's outside never erodes change at its edges
    if options.opening > 0:
        fp = _disc(options.opening)
        change = ndimage.binary_dilation(ndimage.binary_erosion(change, fp, border_value=1), fp)
    if options.closing > 0:
        fp = _disc(options.closing)
        change = ndimage.binary_erosion(ndimage.binary_dilation(change, fp), fp, border_value=1)
    change &= valid
    if n_min > 1:
        shrink = 2 * options.opening + 2 * options.closing
        top, bottom, left, right = (shrink if f else 0 for f in interior)
        h, w = change.shape
        sub = change[top:h - bottom, left:w - right]
        labels, n = ndimage.label(sub, structure=np.ones((3, 3), dtype=bool))
        if n:
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            keep = sizes >= n_min
            edges = []
            if interior[0]:
                edges.append(labels[0])
            if interior[1]:
                edges.append(labels[-1])
            if interior[2]:
                edges.append(labels[:, 0])
            if interior[3]:
                edges.append(labels[:, -1])
            if edges:
                keep[np.unique(np.concatenate(edges))] = True
            keep[0] = False
            sub[...] = keep[labels]
        out = np.zeros_like(change)
        out[top:h - bottom, left:w - right] = sub
        change = out
    return change


def encode_mask(change: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Bool change + bool valid -> uint8 CHANGE codes (0, 1, 255)."""
    out = change.astype(np.uint8)
    out[~valid] = CHANGE.nodata
    return out


def detect(t1: Raster, t2: Raster, *, options: DetectOptions | None = None) -> DetectResult:
    """Whole-array change detection on two rasters on the same grid (float32 reflectance, NaN nodata).

    Returns:
        The mask (uint8, CHANGE legend, same grid), the difference raster and statistics
        (threshold, changed pixels, loss/gain pixels, changed area in m²).
    """
    options = options or DetectOptions()
    diff = difference(t1, t2, options=options)
    bands = method_bands(options, t1.band_names or ())
    top = score_max(options, len(bands))
    score = change_score(diff, options=options)
    thr = threshold_from_histogram(score_histogram(score, top=top), top=top, options=options)
    grid = t1.grid
    n_min = min_pixels(options, grid)
    valid = np.isfinite(score)
    change = postprocess(score, thr, options=options, n_min=n_min)
    mask = Raster(encode_mask(change, valid), t1.crs, t1.transform, CHANGE.nodata)
    name = "CVA" if options.method == "CVA" else f"d{options.method}"
    diff_r = Raster(diff[np.newaxis], t1.crs, t1.transform, np.nan, (name,))
    stats = _stats(change, valid, diff, thr, options, grid, n_min)
    return DetectResult(mask, diff_r, thr, stats)


def _stats(change, valid, diff, thr, options, grid, n_min) -> dict:
    n_change = int(change.sum())
    return {
        "method": options.method, "direction": options.direction, "threshold_rule": options.threshold,
        "threshold": thr, "min_component_pixels": n_min,
        "valid_pixels": int(valid.sum()), "changed_pixels": n_change,
        "loss_pixels": int((change & (diff < 0)).sum()) if options.method != "CVA" else None,
        "gain_pixels": int((change & (diff > 0)).sum()) if options.method != "CVA" else None,
        "changed_area_m2": n_change * centre_pixel_area_m2(grid),
    }


@dataclass(frozen=True)
class DetectFiles:
    """Files written by :func:`detect_files` and the statistics."""

    mask: Path
    difference: Path
    summary: Path
    stats: dict


#: Rough throughput of streamed index change detection on one CPU core, pixels per second (the basis of the
#: time estimate printed before a run; a loaded 2-core machine, conservative).
DETECT_PX_PER_S = 1_000_000


def detect_files(t1: str | Path, t2: str | Path, out_dir: str | Path, *, options: DetectOptions | None = None,
                 window: int = 1024, progress: bool = False, cache_mb: int = 64,
                 coregister: bool = False, force: bool = False, workers: int | None = 1,
                 mask_clouds: bool = False, overviews: bool = True) -> DetectFiles:
    """Streamed change detection of a pair on disk (T2 warped onto T1's grid, common footprint).

    With ``coregister``, date 2 is first moved onto date 1 by a sub-pixel translation estimated by phase
    correlation on the central 1024 x 1024 window (:mod:`minescape.change.coregister`); the shift (rows, cols,
    px) goes into ``detect.json`` and both GeoTIFFs' tags (``coregistration_shift_px``). A shift above
    5 px is refused with an InputError naming ``t2``.

    Memory is bounded by ``window`` (pixels per side), the bands of the method and ``cache_mb`` (GDAL's
    block cache, scoped to this call: left at GDAL's default of 5 % of RAM it grows with the scene), never by
    the scene; with ``workers`` > 1 each worker process holds its own windows and cache.

    ``workers`` processes compute windows in parallel (see :mod:`minescape.parallel`); the three files are the
    same bytes for any number of workers. None: one per 4 windows, up to every core this process may use.

    Writes (each atomically) ``change_mask.tif`` (uint8 0/1/255, CHANGE colour table),
    ``difference.tif`` (float32, NaN nodata; the signed index difference or the CVA magnitude) and
    ``detect.json`` (options and statistics). Both rasters are on the pair grid (T1's CRS) and, with ``overviews``,
    carry internal overviews (nearest for the mask, average for the difference) for viewing zoomed out.

    With ``mask_clouds``, pixels under a cloud in either date (and its buffer), found by the change of the cirrus
    band B10 where both dates have it (L1C), else by both dates' SCL layers (L2A; clouds and their shadows;
    :mod:`minescape.change.pair_cloud_mask`), are nodata in both rasters and left out of the threshold's
    histogram; ``detect.json`` and the tags say what was masked.

    A pair estimated (from its size and :data:`DETECT_PX_PER_S`, pass 2's halo reads counted) to take more than
    :data:`~minescape.limits.MAX_RUN_HOURS` is refused unless ``force``; a window that does not fit in memory is
    refused before anything is read, pass 2's tiles with their halo included (:func:`pass2_reads`: the halo
    grows with ``min_area_m2``, up to whole-scene tiles).
    """
    from minescape.change.pairs import open_pair
    from minescape.limits import check_alloc, check_positive, plan_run

    options = options or DetectOptions()
    out_dir = Path(out_dir)
    check_positive(window, "--window (pixels)", minimum=16)
    pair = open_pair(t1, t2, bands=None if options.method == "CVA" and not options.cva_bands
                     else method_bands(options, ()))
    bands = method_bands(options, pair.bands)
    check_alloc(window * window * 4 * (2 * len(bands) + 6), f"a {window:,} px window")
    n_min = min_pixels(options, pair.grid)
    pad, _ = halo(options, n_min)
    (rows, cols), reads = pass2_reads(pair.grid, window=window, pad=pad)
    check_alloc(rows * cols * PASS2_BYTES_PER_PX,
                f"a {window:,} px window with its {pad:,} px clean-up halo ({rows:,} x {cols:,} px read at once"
                + (f"; the halo grows with --min-area, {options.min_area_m2:g} m² = {n_min:,} px" if n_min else "")
                + ")")
    # pass 2 reads each pixel `reads` times (the halo): the estimate counts it (pass 1 and 2 about half each)
    plan_run(pair.grid.width, pair.grid.height, px_per_second=DETECT_PX_PER_S * 2 / (1 + reads), name=str(t1),
             force=force)
    mask_path, diff_path, summary = out_dir / "change_mask.tif", out_dir / "difference.tif", out_dir / "detect.json"
    for stale in (mask_path, summary, style_path(diff_path), style_path(mask_path)):  # a failed re-run must not
        stale.unlink(missing_ok=True)  # leave an old mask beside a new difference
    clouds = None
    if mask_clouds:
        from minescape.change.pair_cloud_mask import pair_cloud_mask

        clouds = pair_cloud_mask(t1, t2, pair.grid)
    try:
        with scan_reads(int(cache_mb)):
            stats = detect_pair_streamed(pair, mask_path, diff_path, options=options, bands=bands,
                                         window=window, progress=progress, coregister=coregister,
                                         t2_path=Path(t2), workers=workers, cache_mb=cache_mb, clouds=clouds,
                                         overviews=overviews)
    except BaseException as exc:
        diff_path.unlink(missing_ok=True)  # no output without its mask: the run owns out_dir
        style_path(diff_path).unlink(missing_ok=True)
        style_path(mask_path).unlink(missing_ok=True)
        if isinstance(exc, InputError) and "no valid pixel" in str(exc):
            empty = [p for p in (Path(t1), Path(t2)) if all_nodata(p)]
            if empty:
                raise InputError("every pixel is nodata (this date has no data: nothing to compare)",
                                 path=empty[0]) from None
        raise
    stats.update(t1=str(Path(t1)), t2=str(Path(t2)), crs=pair.grid.crs.to_string(),
                 width=pair.grid.width, height=pair.grid.height, options=asdict(options))
    if pair.notes:  # e.g. a catalogue offset the pixels contradict
        stats["scene_notes"] = list(pair.notes)
    atomic_write_text(summary, json.dumps(stats, indent=2, default=str))
    return DetectFiles(mask_path, diff_path, summary, stats)


def all_nodata(path: Path) -> bool:
    """True when the raster file ``path`` has no valid pixel in any band (GDAL's dataset mask, read block by
    block, stopping at the first valid pixel; memory is one block). False for folders and unreadable files."""
    import rasterio

    if not path.is_file():
        return False
    try:
        with open_by_name(path) as src:
            nan_is_nodata = src.nodata is None and np.dtype(src.dtypes[0]).kind == "f"
            for _, w in src.block_windows(1):
                if nan_is_nodata:
                    if np.isfinite(src.read(window=w)).any():
                        return False
                elif src.dataset_mask(window=w).any():
                    return False
    except rasterio.errors.RasterioError:
        return False
    return True


def detect_pair_streamed(pair, mask_path: Path, diff_path: Path, *, options: DetectOptions,
                         bands: tuple[str, ...], window: int = 1024, progress: bool = False,
                         coregister: bool = False, t2_path: Path | None = None, workers: int | None = 1,
                         cache_mb: int = 64, clouds: PairCloudMask | None = None, overviews: bool = True) -> dict:
    """The two streamed passes over a :class:`~minescape.change.pairs.Pair` (see module docs); with
    ``coregister``, date 2 is shifted onto date 1 first (window by window, with a halo). ``workers``
    processes compute windows in parallel; the outputs are the same bytes for any number. ``clouds`` (a
    :class:`~minescape.change.pair_cloud_mask.PairCloudMask` on the pair grid) makes its pixels nodata;
    ``overviews`` builds both GeoTIFFs' internal overviews."""
    shift, shift_used, tags = None, None, {}
    if coregister:
        from minescape.change.coregister import checked_shift, estimate_reader_shift, needs_shift

        grid = pair.grid
        reader = _PairJob(pair, bands, options, None, cache_mb).reader()
        shift = checked_shift(estimate_reader_shift(reader, (grid.height, grid.width), bands), "pair", path=t2_path)
        shift_used = shift if needs_shift(shift) else None
        tags["coregistration_shift_px"] = f"{shift[0]:.2f} {shift[1]:.2f}"
    if clouds is not None:
        tags["cloud_mask"] = clouds.describe()
    job = _PairJob(pair, bands, options, shift_used, cache_mb, clouds)
    stats = _streamed(job, pair.grid, mask_path, diff_path, options=options, n_bands=len(bands),
                      window=window, progress=progress, tags=tags or None, workers=workers, overviews=overviews)
    stats["coregistration_shift_px"] = list(shift) if shift is not None else None
    stats["cloud_mask"] = None if clouds is None else {"description": clouds.describe(),
                                                       "masked_fraction": clouds.fraction}
    return stats


@dataclass(frozen=True)
class _PairJob:
    """What a worker process needs to compute the difference of any window of a pair (picklable)."""

    pair: object
    bands: tuple[str, ...]
    options: DetectOptions
    shift: tuple[float, float] | None  # date 2 moved by this many px (rows, cols), or None
    cache_mb: int
    clouds: PairCloudMask | None = None  # its pixels become nodata

    def reader(self):
        """``Window -> (a1, a2)`` float32 arrays on the pair grid (date 2 shifted when ``shift`` is set)."""
        from minescape.change.pairs import read_pair

        def arrays(w):
            t1, t2 = read_pair(self.pair, window=w, bands=self.bands)  # readers from the process's handle pool
            return t1.data, t2.data

        if self.shift is None:
            return arrays
        from minescape.change.coregister import shifted_reader

        grid = self.pair.grid
        return shifted_reader(arrays, (grid.height, grid.width), self.shift)


def _diff_window(item: tuple) -> np.ndarray:
    """Pass 1 for one window: the difference goes into the scratch grid (disjoint windows: any process may write
    its own); returns the window's score histogram."""
    from rasterio.windows import transform as window_transform

    job, w, top, scores = item
    grid = job.pair.grid
    with scan_reads(int(job.cache_mb)):
        a1, a2 = job.reader()(w)
    tr = window_transform(w, grid.transform)
    diff = difference(Raster(a1, grid.crs, tr, np.nan, job.bands), Raster(a2, grid.crs, tr, np.nan, job.bands),
                      options=job.options)
    if job.clouds is not None:
        diff[job.clouds.window(int(w.row_off), int(w.col_off), diff.shape[0], diff.shape[1])] = np.nan
    scores.write(diff, w)
    return score_histogram(change_score(diff, options=job.options), top=top)


def _mask_tile(item: tuple) -> tuple[np.ndarray, int, int, int, int]:
    """Pass 2 for one haloed tile: ``(encoded core mask, changed, valid, loss, gain pixels)``."""
    scores, tile, thr, options, n_min = item
    r = tile.read
    d = scores.read(r)
    interior = (r.row_off > 0, r.row_off + r.height < scores.height, r.col_off > 0,
                r.col_off + r.width < scores.width)
    score = change_score(d, options=options)
    change = postprocess(score, thr, options=options, n_min=n_min, interior=interior)
    c = tile.core_in_read
    sl = (slice(c.row_off, c.row_off + c.height), slice(c.col_off, c.col_off + c.width))
    core_change, core_valid, core_d = change[sl], np.isfinite(score[sl]), d[sl]
    return (encode_mask(core_change, core_valid), int(core_change.sum()), int(core_valid.sum()),
            int((core_change & (core_d < 0)).sum()), int((core_change & (core_d > 0)).sum()))


def _overviews(path: Path, resampling: Resampling, pool: Executor | None, threads: int) -> Callable[[], object]:
    """Build the closed GeoTIFF ``path``'s overview levels (:func:`build_overviews`): on a worker of ``pool``,
    while the caller goes on (returns the wait for it), or here and now without a pool."""
    if pool is None:
        build_overviews(path, resampling, threads=threads)
        return lambda: None
    return pool.submit(build_overviews, path, resampling, threads=threads).result


def _streamed(job: _PairJob, grid: Grid, mask_path: Path, diff_path: Path, *, options: DetectOptions,
              n_bands: int, window: int, progress: bool, tags: dict[str, str] | None = None,
              workers: int | None = 1, overviews: bool = True) -> dict:
    """Pass 1: difference by windows + histogram; pass 2: threshold + clean-up by haloed tiles.

    Windows are computed by ``workers`` processes (:func:`minescape.parallel.ordered_map`) and written here in
    tile order, so the files are the same bytes for any number of workers. Pass 1 also keeps the difference in an
    uncompressed scratch file beside the outputs (:mod:`minescape.geo.scratch`), which pass 2 reads instead of
    decoding the compressed difference again (removed at the end). With workers, the difference's overview levels
    are built by one more process while the workers run pass 2 (in the workers' pool they held a worker back from
    pass 2: 2 workers 12.8-13.5 -> 11.5-12.9 s on a 10980² pair), and the mask's on a worker while those finish.
    """
    from minescape.geo.scratch import scratch_grid
    from minescape.parallel import ordered_map, process_pool, workers_for
    from minescape.progress import make_progress

    if window < 16:
        raise ConfigError(f"window must be >= 16 pixels (got {window})")
    top = score_max(options, n_bands)
    counts = np.zeros(NBINS, dtype=np.int64)
    tiles = list(iter_tiles(grid.width, grid.height, size=window))
    name = "CVA" if options.method == "CVA" else f"d{options.method}"
    n_min = min_pixels(options, grid)
    pad, _ = halo(options, n_min)
    tiles2 = list(iter_tiles(grid.width, grid.height, size=window, overlap=pad))
    if workers is None:
        workers = workers_for(len(tiles), per_worker=WINDOWS_PER_WORKER)
    workers = max(1, min(int(workers), len(tiles)))
    with make_progress(transient=True, enabled=progress) as bar, \
            scratch_grid(Path(diff_path).with_suffix(".raw"), grid.height, grid.width) as scores, \
            (process_pool(workers) if workers > 1 else contextlib.nullcontext()) as pool, \
            contextlib.ExitStack() as stack:  # one pool, both passes; outputs renamed into place with their levels
        task = bar.add_task("change: difference", total=len(tiles) + len(tiles2), extra="")
        diff_tmp = stack.enter_context(atomic_path(diff_path))
        # no predictor: an index difference is noise to the float predictor (OSCD cities: files 1.6-2.5 % smaller
        # without it, written and read back faster; bench/bench_float_deflate.py)
        with open_writer(diff_tmp, grid, count=1, dtype="float32", nodata=float("nan"), band_names=(name,),
                         blocksize=256, tags=tags, threads=workers, predictor=1) as dst:
            items = ((job, tile.core, top, scores) for tile in tiles)
            for tile, hist in zip(tiles, ordered_map(_diff_window, items, workers=workers, pool=pool), strict=True):
                dst.write(scores.read(tile.core), 1, window=tile.core)  # written in tile order: same bytes
                counts += hist
                bar.advance(task)
        # the difference's overview levels in a process of their own while pass 2 runs (it reads the scratch copy)
        levels_pool = stack.enter_context(process_pool(1)) if pool is not None and overviews else None
        waits = [_overviews(diff_tmp, Resampling.average, levels_pool, workers)] if overviews else []
        thr = threshold_from_histogram(counts, top=top, options=options)
        write_difference_style(diff_path, options, display_limit(counts, top))
        bar.update(task, description="change: threshold + clean-up")
        n_change = n_valid = n_loss = n_gain = 0
        mask_tmp = stack.enter_context(atomic_path(mask_path))
        with open_writer(mask_tmp, grid, count=1, dtype="uint8", nodata=CHANGE.nodata, legend=CHANGE,
                         blocksize=256, tags=tags, threads=workers) as dst:
            items = ((scores, tile, thr, options, n_min) for tile in tiles2)
            results = ordered_map(_mask_tile, items, workers=workers, pool=pool)
            for tile, (mask, nc, nv, nl, ng) in zip(tiles2, results, strict=True):
                dst.write(mask, 1, window=tile.core)
                n_change += nc
                n_valid += nv
                n_loss += nl
                n_gain += ng
                bar.advance(task)
        write_legend_style(mask_path, CHANGE)  # QGIS lists "No change" / "Change", not 0 / 1
        if overviews:
            waits.append(_overviews(mask_tmp, Resampling.nearest, pool, workers))
        for wait in waits:
            wait()
    return {
        "method": options.method, "direction": options.direction, "threshold_rule": options.threshold,
        "threshold": thr, "min_component_pixels": n_min, "valid_pixels": n_valid, "changed_pixels": n_change,
        "loss_pixels": n_loss if options.method != "CVA" else None,
        "gain_pixels": n_gain if options.method != "CVA" else None,
        "changed_area_m2": n_change * centre_pixel_area_m2(grid),
    }

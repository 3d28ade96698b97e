"""Tiled inference of any pixel or patch model over rasters larger than memory, written as a COG.

A :class:`Predictor` turns a block of imagery ``(bands, rows, cols)`` into class probabilities
``(n_classes, rows, cols)``. Two kinds exist:

* pixel models (:func:`pixel_predictor`): any object with ``predict_proba(features)`` (LightGBM, sklearn)
  plus a feature function of the block; a feature function that looks at neighbours declares its reach as
  ``halo`` pixels. Tiles are read with that halo and only their core is written, so the result equals a
  whole-raster prediction exactly (no seams).
* patch models (:func:`unet_predictor`): a segmentation network applied on windows of ``window`` pixels laid
  on one global lattice (every ``stride`` pixels from the raster origin). Overlapping windows are blended
  with a smooth (Hann) weight by the one tiled-inference engine (:mod:`minescape.geo.blend`, which change
  prediction uses too). Each output tile reads every lattice window touching its core, so the blended value
  of a pixel does not depend on the tile it falls in: no seams at tile edges.

Memory is bounded by the tile size (``tile`` + halo, times the number of classes), never by the raster.
The output is first streamed window by window to a tiled GeoTIFF (``open_writer``), then converted by GDAL's
COG driver (internal overviews by MODE resampling, the legend's colour table and class names in metadata).
Pixels where any input band is nodata (or not finite) are written as the legend's nodata.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from minescape.atomic import atomic_path
from minescape.errors import InputError
from minescape.geo.blend import Blender, lattice_origins, taper_2d
from minescape.geo.grid import Grid, iter_tiles
from minescape.geo.raster import check_complete, open_raster, open_writer, scan_reads
from minescape.geo.raster_style import write_legend_style
from minescape.legend import Legend
from minescape.progress import make_progress

FeatureFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Predictor:
    """A model ready for tiled inference.

    Attributes:
        proba: ``(bands, rows, cols)`` float32 (invalid pixels already filled) -> ``(n_classes, rows, cols)``.
        codes: legend code of each probability channel.
        n_bands: number of input bands the model needs.
        halo: pixels of context a pixel model's features need on each side (pixel models).
        window: patch size in pixels (patch models; 0 for pixel models).
        stride: distance between lattice windows in pixels (patch models).
        fill: per-band fill value for nodata pixels before prediction.
        name: for messages.
        proba_batch: optional batched form of ``proba`` for patch models, ``(n, bands, s, s)`` ->
            ``(n, n_classes, s, s)``.
    """

    proba: Callable[[np.ndarray], np.ndarray]
    codes: tuple[int, ...]
    n_bands: int
    halo: int = 0
    window: int = 0
    stride: int = 0
    fill: tuple[float, ...] | None = None
    name: str = "model"
    proba_batch: Callable[[np.ndarray], np.ndarray] | None = None


def raw_bands(block: np.ndarray) -> np.ndarray:
    """The identity feature function: the bands themselves."""
    return block


def pixel_predictor(model, *, codes, n_bands: int, features: FeatureFn = raw_bands, halo: int = 0,
                    name: str = "pixel model") -> Predictor:
    """Wrap an object with ``predict_proba(X)`` (``X``: ``(n_pixels, n_features)``) for tiled inference.

    Args:
        model: a fitted classifier (LightGBM, sklearn...). Its ``classes_`` (when present) are checked
            against ``codes``; its ``n_features_in_`` against what ``features`` produces.
        codes: legend code of each ``predict_proba`` column.
        n_bands: bands the imagery must have.
        features: ``(bands, rows, cols)`` -> ``(n_features, rows, cols)``; computed per tile (with ``halo``).
        halo: pixels of neighbourhood ``features`` uses (0 for per-pixel features).
        name: for messages.
    """
    codes = tuple(int(c) for c in codes)
    expected = getattr(model, "n_features_in_", None)
    classes = getattr(model, "classes_", None)
    if classes is not None and len(classes) != len(codes):
        raise InputError(f"{name}: model has {len(classes)} classes but {len(codes)} codes were given")

    def proba(block: np.ndarray) -> np.ndarray:
        feats = np.asarray(features(block), dtype=np.float32)
        nf, h, w = feats.shape
        if expected is not None and nf != expected:
            raise InputError(f"{name}: model expects {expected} features but the imagery gives {nf} "
                             f"(from {block.shape[0]} bands); use the bands and features it was trained on")
        p = np.asarray(model.predict_proba(feats.reshape(nf, -1).T), dtype=np.float32)
        return p.T.reshape(len(codes), h, w)

    return Predictor(proba=proba, codes=codes, n_bands=n_bands, halo=halo, name=name)


def unet_predictor(checkpoint, *, window: int = 256, stride: int | None = None, batch: int = 4,
                   compute=None) -> Predictor:
    """Wrap a :class:`~minescape.maps.train.Checkpoint` (or a path to one) for blended patch inference.

    Args:
        checkpoint: a Checkpoint or the path of a saved one.
        window: patch size in pixels.
        stride: lattice step in pixels (default ``window * 3 // 4``; must be <= ``window``).
        batch: windows per forward pass.
        compute: device, precision and threads (:func:`minescape.compute.resolve_compute`; default CPU, fp32);
            on a CPU its ``tiles_at_once`` batches run at once, each in one thread, so the class map is the same
            for any thread count.
    """
    import torch

    from minescape.compute import Compute
    from minescape.inference_net import prepared_forward
    from minescape.maps.train import load_checkpoint, normalize

    ckpt = load_checkpoint(checkpoint) if isinstance(checkpoint, str | Path) else checkpoint
    stride = stride or max(1, window * 3 // 4)
    if not 0 < stride <= window:
        raise InputError(f"stride must be in 1..window ({window}); got {stride}")
    net = ckpt.net
    hold = compute.torch_scope if compute is not None else nullcontext  # no compute: torch as the caller set it
    compute = compute or Compute()
    logits_of = prepared_forward(net, compute)  # folded, channels-last; on a bf16 CPU compiled
    n_classes = len(ckpt.codes)

    def forward(x: np.ndarray) -> np.ndarray:
        return torch.softmax(logits_of(x), dim=1).cpu().numpy()

    def proba(block: np.ndarray) -> np.ndarray:
        if block.shape[0] != net.in_channels:
            raise InputError(f"U-Net expects {net.in_channels} bands but the imagery has {block.shape[0]}")
        return forward(normalize(block, ckpt.mean, ckpt.std)[None])[0]

    at_once = compute.tiles_at_once

    def proba_batch(blocks: np.ndarray) -> np.ndarray:
        x = np.stack([normalize(b, ckpt.mean, ckpt.std) for b in blocks])
        batches = [x[i:i + batch] for i in range(0, len(x), batch)]
        with hold():  # torch's threads held at op_threads while the network runs, then put back
            if at_once > 1 and len(batches) > 1:  # on a CPU: batches at once, each in one thread (same values)
                with ThreadPoolExecutor(min(at_once, len(batches))) as pool:
                    out = list(pool.map(forward, batches))
            else:
                out = [forward(b) for b in batches]
        return np.concatenate(out).reshape(len(blocks), n_classes, *blocks.shape[2:])

    return Predictor(proba=proba, codes=tuple(ckpt.codes), n_bands=net.in_channels, window=window,
                     stride=stride, fill=tuple(float(m) for m in ckpt.mean), name="U-Net", proba_batch=proba_batch)


@dataclass(frozen=True)
class PredictSummary:
    """What :func:`predict_tiled` wrote."""

    path: Path
    width: int
    height: int
    tiles: int
    class_pixels: dict[int, int]
    nodata_pixels: int


def _valid_and_fill(block: np.ndarray, nodata, fill: tuple[float, ...] | None, *,
                    inside: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``block`` as float32 with its invalid pixels (nodata, not finite, or outside the image where ``inside`` is
    False) set to ``fill`` (per band; the training mean), and the valid mask."""
    data = block.astype(np.float32, copy=False)
    valid = np.isfinite(data).all(axis=0)
    if inside is not None:
        valid &= inside
    if nodata is not None and not np.isnan(nodata):
        valid &= (block != nodata).all(axis=0)
    if not valid.all():
        data = data.copy()
        values = fill if fill is not None else (0.0,) * data.shape[0]
        for b in range(data.shape[0]):
            data[b][~valid] = values[b]
    return data, valid


def _predict_patch_tile(src, pred: Predictor, core: Window, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    r0, c0, h, w = int(core.row_off), int(core.col_off), int(core.height), int(core.width)
    rows = lattice_origins(r0, r0 + h, src.height, size=pred.window, stride=pred.stride)
    cols = lattice_origins(c0, c0 + w, src.width, size=pred.window, stride=pred.stride)
    R0, C0 = rows[0], cols[0]
    H, W = rows[-1] + pred.window - R0, cols[-1] + pred.window - C0
    region = Window(C0, R0, W, H)
    fill_value = src.nodata if src.nodata is not None else 0
    block = src.read(window=region, boundless=True, fill_value=fill_value)
    inside = np.zeros((H, W), dtype=bool)
    inside[: max(0, min(H, src.height - R0)), : max(0, min(W, src.width - C0))] = True
    data, valid = _valid_and_fill(block, src.nodata, pred.fill, inside=inside)  # the padding too: as nodata
    blend = Blender(n_classes, H, W)
    taper = taper_2d(pred.window, pred.window, kind="hann")
    s = pred.window
    starts = [(r - R0, c - C0) for r in rows for c in cols]
    batcher = pred.proba_batch
    for i in range(0, len(starts), 8):
        chunk = starts[i:i + 8]
        blocks = np.stack([data[:, r:r + s, c:c + s] for r, c in chunk])
        probs = batcher(blocks) if batcher else np.stack([pred.proba(b) for b in blocks])
        for (r, c), p in zip(chunk, probs, strict=True):
            blend.add(p, r, c, taper)
    rr, cc = r0 - R0, c0 - C0
    core_acc = blend.result(slice(rr, rr + h), slice(cc, cc + w))
    return core_acc, valid[rr:rr + h, cc:cc + w]


#: Throughput of tiled U-Net prediction on one CPU core, pixels per second (1020 x 1020 px image, default window
#: and stride, measured on a loaded 2-core machine): the basis of the time estimate before a run.
PREDICT_PX_PER_S = 300_000


def predict_plan(image: str | Path, *, force: bool = False):
    """The :class:`~minescape.limits.RunPlan` of predicting ``image`` (its declared size and estimated time);
    ResourceLimitError above :data:`~minescape.limits.MAX_RUN_HOURS` unless ``force``."""
    from minescape.limits import plan_run

    with open_raster(image) as src:
        return plan_run(src.width, src.height, px_per_second=PREDICT_PX_PER_S, name=str(image), force=force)


def predict_tiled(image: str | Path, predictor: Predictor, out: str | Path, *, legend: Legend, tile: int = 1024,
                  bands: list[int] | None = None, cog: bool = True, gdal_cache_mb: int = 256,
                  force: bool = False) -> PredictSummary:
    """Classify ``image`` tile by tile with ``predictor`` and write a class-map COG to ``out``.

    Args:
        image: input GeoTIFF ``(bands, rows, cols)``, any CRS; its nodata (or NaN) marks missing pixels.
        predictor: from :func:`pixel_predictor` or :func:`unet_predictor`.
        out: output path (a COG with overviews, or a tiled GeoTIFF when ``cog`` is False).
        legend: the output legend (colour table, class names, nodata); ``predictor.codes`` must belong to it.
        tile: core tile size in pixels (memory ~ (tile + 2 halo)² x classes x 4 bytes).
        bands: 1-based bands of ``image`` to use (default all).
        cog: convert the streamed GeoTIFF to a COG.
        gdal_cache_mb: GDAL block cache while writing (bounded memory).
        force: run even when the image is estimated to take longer than the limit (see :func:`predict_plan`).

    Raises:
        InputError: band count mismatch, codes not in the legend, unreadable input.
        ResourceLimitError: a tile that does not fit in memory; an image estimated above the time limit.
    """
    from minescape.limits import check_alloc, check_positive

    image, out = Path(image), Path(out)
    check_positive(tile, "--tile (core tile size in pixels)")
    side = tile + 2 * predictor.halo + (predictor.window or 0)
    check_alloc(side * side * 4 * (len(predictor.codes) + predictor.n_bands + 2), f"a {tile:,} px tile")
    predict_plan(image, force=force)
    missing = sorted(set(predictor.codes) - set(legend.codes))
    if missing:
        raise InputError(f"{predictor.name} predicts codes {missing} that are not in the {legend.name} legend")
    code_lut = np.asarray(predictor.codes, dtype=np.uint8)
    counts = np.zeros(256, dtype=np.int64)
    with scan_reads(gdal_cache_mb), open_raster(image) as src:
        idx = bands or list(range(1, src.count + 1))
        if len(idx) != predictor.n_bands:
            raise InputError(f"{predictor.name} expects {predictor.n_bands} bands but the imagery has {len(idx)} "
                             f"(pass the bands it was trained on)", path=image)
        grid = Grid(src.crs, src.transform, src.width, src.height)
        view = _BandView(src, idx)
        tiles = list(iter_tiles(src.width, src.height, size=tile, overlap=predictor.halo))
        with atomic_path(out) as final_tmp:
            streamed = final_tmp.with_name(final_tmp.name + ".stream.tif") if cog else final_tmp
            try:
                with open_writer(streamed, grid, count=1, dtype="uint8", nodata=legend.nodata, legend=legend,
                                 blocksize=512 if cog else 256) as dst, make_progress() as progress:
                    task = progress.add_task(f"predicting {image.name}", total=len(tiles), extra="")
                    for t in tiles:
                        if predictor.window:
                            probs, valid = _predict_patch_tile(view, predictor, t.core, len(code_lut))
                        else:
                            block = view.read(window=t.read)
                            data, valid_r = _valid_and_fill(block, src.nodata, predictor.fill)
                            probs_r = predictor.proba(data)
                            ci = t.core_in_read
                            sl = (slice(int(ci.row_off), int(ci.row_off + ci.height)),
                                  slice(int(ci.col_off), int(ci.col_off + ci.width)))
                            probs, valid = probs_r[:, sl[0], sl[1]], valid_r[sl]
                        classes = code_lut[np.argmax(probs, axis=0)]
                        classes[~valid] = legend.nodata
                        counts += np.bincount(classes.ravel(), minlength=256)
                        dst.write(classes[None], window=t.core)
                        progress.advance(task)
                if cog:
                    cog_from_stream(streamed, final_tmp, gdal_cache_mb=gdal_cache_mb)
            finally:
                if cog:
                    streamed.unlink(missing_ok=True)
    write_legend_style(out, legend)  # QGIS's layer panel lists the class names, not the codes
    return PredictSummary(path=out, width=grid.width, height=grid.height, tiles=len(tiles),
                          class_pixels={int(c): int(counts[c]) for c in legend.codes if counts[c]},
                          nodata_pixels=int(counts[legend.nodata]))


def cog_from_stream(streamed: Path, out: Path, *, gdal_cache_mb: int = 256) -> Path:
    """Convert a streamed tiled GeoTIFF of class codes to a COG (DEFLATE, MODE overviews) with GDAL.

    The block size shrinks for small rasters (down to 128 px) so even they get at least one overview level.
    GDAL builds the overviews from the file, so memory stays bounded by its block cache.
    """
    import rasterio
    from rasterio.shutil import copy as rio_copy

    with open_raster(streamed) as src:
        side = max(src.width, src.height)
    blocksize = 512
    while blocksize > 128 and side <= blocksize:
        blocksize //= 2
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), scan_reads(gdal_cache_mb):
        rio_copy(streamed, out, driver="COG", COMPRESS="DEFLATE", OVERVIEW_RESAMPLING="MODE",
                 BLOCKSIZE=blocksize, NUM_THREADS=1)
    check_complete(out)
    return out


class _BandView:
    """A dataset view reading only the selected bands (keeps ``read(window=...)`` and sizes)."""

    def __init__(self, src, idx: list[int]) -> None:
        self._src, self._idx = src, idx
        self.width, self.height, self.nodata = src.width, src.height, src.nodata

    def read(self, *, window: Window, boundless: bool = False, fill_value=None) -> np.ndarray:
        if boundless:
            return self._src.read(self._idx, window=window, boundless=True, fill_value=fill_value)
        return self._src.read(self._idx, window=window)

"""Scene inference with trained change models: overlapping tiles, blended probabilities, bounded memory.

Tiles of at most ``tile`` x ``tile`` pixels overlap by ``overlap`` pixels and are blended by the one
tiled-inference engine (:mod:`minescape.geo.blend`: a ramp taper falling over the overlap, weighted mean), so tile
edges leave no seams. Tiles are fitted to the scene (:func:`~minescape.geo.blend.fitted_windows`): as many as
``tile`` needs, each just large enough, so the network does not compute pixels twice for nothing.
:func:`predict_scene` streams strip by strip: each strip of tile rows is read and normalised on every core (in
column parts, into buffers reused from strip to strip) while the previous strip is written, then the network
runs on its tiles, ``compute.tiles_at_once`` at a time (on a CPU each in one thread: the same bytes for any
thread count); one strip of accumulators is kept, so memory grows with the scene's width, not its height. Several
models form an ensemble: their probabilities are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from minescape.change.deep.model import ChangeModel
from minescape.change.deep.norm import NORMS, StatsAccumulator, normalise, normalise_pair, stats_in_stored_units
from minescape.change.deep.runner import (
    Member,
    Runner,
    check_ensemble,
    flip_batch_for,
    tile_probability,
    torch_runner,
)
from minescape.compute import Compute
from minescape.errors import ConfigError, InputError, check_choice
from minescape.geo.blend import Blender, fitted_windows, taper_2d
from minescape.geo.raster_style import sequential_ramp, style_path, write_legend_style, write_ramp_style
from minescape.legend import CHANGE

BACKENDS: tuple[str, ...] = ("torch", "onnx")
DEFAULT_TILE = 512  # pixels, the most; the network ran fastest per pixel at 448-576 px tiles on this CPU (bf16)
DEFAULT_OVERLAP = 32
MIN_SIDE = 16  # pixels: the networks pool four times


def check_tiling(tile: int, overlap: int) -> None:
    """Tile a multiple of 16 pixels, overlap in ``[0, tile/2)``; ConfigError otherwise."""
    if tile < 16 or tile % 16:
        raise ConfigError(f"tile must be a multiple of 16 pixels and >= 16 (got {tile})")
    if overlap < 0 or 2 * overlap >= tile:
        raise ConfigError(f"overlap must be >= 0 and < tile/2 (got overlap={overlap}, tile={tile})")


def predict_arrays(runner: Runner, t1: np.ndarray, t2: np.ndarray, *, mean: np.ndarray, std: np.ndarray,
                   tile: int = 256, overlap: int = 32, norm: str = "global", tta: bool = False,
                   flip_batch: int = 1) -> np.ndarray:
    """Change probability ``(H, W)`` for two in-memory ``(C,H,W)`` reflectance stacks on one grid.

    Tiles are fitted to the scene (at most ``tile`` pixels; a scene smaller than a tile is one tile). NaN enters
    the network as 0 (the mean); pixels with NaN in either date get NaN.
    ``overlap=0`` with ``tile`` >= the scene is whole-image inference; ``tta`` averages 4 flips, run
    ``flip_batch`` at a time (:func:`~minescape.change.deep.runner.flip_batch_for`).
    """
    check_tiling(tile, overlap)
    if t1.shape != t2.shape:
        raise InputError(f"the two dates differ in shape: {t1.shape} vs {t2.shape}")
    _, h, w = t1.shape
    valid = np.isfinite(t1).all(0) & np.isfinite(t2).all(0)
    n1, n2 = normalise_pair(t1, t2, mean=mean, std=std, norm=norm)
    blend = Blender(1, h, w)
    (th, rows), (tw, cols) = fitted_windows(h, size=tile, overlap=overlap), fitted_windows(w, size=tile,
                                                                                         overlap=overlap)
    wgt = taper_2d(th, tw, overlap=overlap)
    for r in rows:
        for c in cols:
            sl = (slice(None), slice(r, r + th), slice(c, c + tw))
            blend.add(tile_probability(runner, n1[sl], n2[sl], tta=tta, flip_batch=flip_batch), r, c, wgt)
    prob = blend.result()[0]
    prob[~valid] = np.nan
    return prob


@dataclass(frozen=True)
class PredictResult:
    """Files written by :func:`predict_scene` and a few numbers."""

    probability: Path
    mask: Path
    threshold: float
    changed_fraction: float
    pixels: int
    tiles: int
    models: int = 1
    shift: tuple[float, float] | None = None  # date 2 co-registration shift (rows, cols) in px, if applied
    clouds: str | None = None  # the cloud mask, described, if one was applied (mask_clouds)
    tiles_skipped: int = 0  # tiles not run because every pixel was nodata or under the cloud mask
    notes: tuple[str, ...] = ()  # what opening the scenes decided (also the GeoTIFFs' ``scene_notes`` tag)


def make_members(models: Sequence[ChangeModel], *, backend: str = "torch", compute: Compute | None = None,
                 onnx_paths: Sequence[Path] | None = None) -> list[Member]:
    """Runners for each model (torch on ``compute``, or onnxruntime from ``<model>.onnx``, or ``onnx_paths``).

    Raises:
        InputError: an ONNX file not exported from its model (architecture, bands, normalisation or weights
            differ; :func:`minescape.change.deep.onnx_backend.onnx_mismatch`), naming the file.
    """
    check_choice(backend, BACKENDS, what="backend")
    check_ensemble(models)
    compute = compute or Compute()
    out = []
    for i, m in enumerate(models):
        if backend == "onnx":
            from minescape.change.deep.onnx_backend import onnx_runner

            path = Path(onnx_paths[i]) if onnx_paths else Path(m.path).with_suffix(".onnx")
            out.append(Member(m, onnx_runner(path, threads=compute.op_threads, model=m), flip_batch_for(None)))
        else:
            out.append(Member(m, torch_runner(m.net, compute), flip_batch_for(compute)))
    return out


def predict_scene(models: ChangeModel | Sequence[ChangeModel], t1_path: str | Path, t2_path: str | Path,
                  out_prob: str | Path, out_mask: str | Path, *, tile: int = DEFAULT_TILE,
                  overlap: int = DEFAULT_OVERLAP, threshold: float | None = None, backend: str = "torch",
                  onnx_paths: Sequence[Path] | None = None, compute: Compute | None = None,
                  tta: bool | None = None, coregister: bool | None = None,
                  mask_clouds: bool = False, overviews: bool = True) -> PredictResult:
    """Predict change for a pair (reflectance stacks or Sentinel-2 scenes), streaming strip by strip.

    Args:
        models: one :class:`ChangeModel`, or several (an ensemble: same bands and normalisation mode; their
            probabilities are averaged, each model normalising with its own statistics).
        t1_path, t2_path: the two dates, as read by :func:`minescape.change.pairs.open_pair_source`. Outputs
            are on the pair grid (date 1's grid, cropped to date 2's footprint for scenes).
        out_prob: probability of change, float32, NaN nodata.
        out_mask: binary mask in the CHANGE legend (0 no change, 1 change, 255 nodata) with its colour table.
        tile, overlap: the largest tile and the overlap in pixels (tile a multiple of 16); tiles are fitted to
            the pair (:func:`~minescape.geo.blend.fitted_windows`), a pair smaller than a tile is one tile.
        threshold: decision threshold; default the mean of the models' thresholds.
        backend: ``torch`` or ``onnx`` (onnxruntime; ``onnx_paths`` or ``<model>.onnx`` beside each model).
        compute: device, precision and threads (:func:`minescape.compute.resolve_compute`).
        tta: average 4 flips per tile (default: when a model's threshold was chosen that way).
        coregister: move date 2 onto date 1 by a sub-pixel shift estimated on the central 1024 x 1024
            window (:mod:`minescape.change.coregister`); default: when a model was trained so.
        mask_clouds: set pixels under a cloud in either date (and its buffer) to nodata in both outputs, from
            the change of Sentinel-2's cirrus band B10 where both dates have it (L1C), else from both dates'
            SCL layers (L2A; clouds and their shadows; :mod:`minescape.change.pair_cloud_mask`). They are not
            counted as valid.
        overviews: build both GeoTIFFs' internal overviews (average for the probability, nearest for the
            mask) once they are written, for viewing zoomed out.
    """
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from minescape.change.pairs import open_pair_source
    from minescape.geo.raster import open_writer
    from minescape.progress import make_progress

    models = [models] if isinstance(models, ChangeModel) else list(models)
    check_tiling(tile, overlap)
    members = make_members(models, backend=backend, compute=compute, onnx_paths=onnx_paths)
    ref = models[0]
    thr = float(np.mean([m.threshold for m in models])) if threshold is None else float(threshold)
    tta = any(m.tta for m in models) if tta is None else bool(tta)
    if not 0.0 < thr < 1.0:
        raise ConfigError(f"threshold must be in (0, 1) (got {thr})")
    check_choice(ref.norm, NORMS, what="model normalisation")
    io_threads = compute.threads if compute is not None else 1
    tiles_at_once = compute.tiles_at_once if compute is not None else 1
    from minescape.geo.handles import reserve
    from minescape.geo.raster import window_reads

    # each input thread reads every band file of both dates (13-band OSCD folders: 26 files a thread): with
    # fewer idle readers than that, the pool closes and reopens files on every strip (abudhabi's input phase:
    # 0.08 -> 0.05 s a strip)
    reserve(2 * len(ref.bands) * io_threads + 8)
    # torch's threads held at op_threads while the tiles run (the pool's threads take that count), then put back;
    # without a compute, torch as the caller set it
    hold = compute.torch_scope() if compute is not None else nullcontext()
    with hold, window_reads(), ThreadPoolExecutor(max_workers=io_threads) as pool:
        # files are read through the process's handle pool: a reader is lent to one thread at a time
        pair = open_pair_source(t1_path, t2_path, ref.bands)
        grid = pair.grid
        if grid.width < MIN_SIDE or grid.height < MIN_SIDE:
            raise InputError(f"pair is {grid.width}x{grid.height} pixels, smaller than the network's "
                             f"{MIN_SIDE}x{MIN_SIDE} minimum", path=t1_path)
        tags = {"model": ";".join(str(m.path) for m in models), "threshold": f"{thr:.4f}"}
        if pair.notes:  # e.g. a catalogue offset the pixels contradict: read as already offset
            tags["scene_notes"] = "; ".join(pair.notes)
        notes = pair.notes
        clouds = None
        if mask_clouds:
            from minescape.change.pair_cloud_mask import pair_cloud_mask

            clouds = pair_cloud_mask(t1_path, t2_path, grid)
            tags["cloud_mask"] = clouds.describe()
        shift = None
        if any(m.coregister for m in models) if coregister is None else coregister:
            pair, shift = _coregistered(pair, ref.bands, t1_path, t2_path)
            tags["coregistration_shift_px"] = f"{shift[0]:.2f} {shift[1]:.2f}"
        h, w = grid.height, grid.width
        (th, rows), (tw, cols) = fitted_windows(h, size=tile, overlap=overlap), fitted_windows(w, size=tile,
                                                                                             overlap=overlap)
        wgt = taper_2d(th, tw, overlap=overlap)
        stats = _stream_pair_statistics(pair, th) if ref.norm == "per-image" else None
        counts = [0, 0]  # changed, valid pixels
        skipped = 0
        parts = _column_parts(w, io_threads)
        nb = len(ref.bands)
        # one set of strip buffers, reused: the input phase of a strip starts after the network is done with
        # the previous one
        valid = np.empty((th, w), bool)
        normed = [(np.empty((nb, th, w), np.float32), np.empty((nb, th, w), np.float32)) for _ in members]

        def prepare(r0: int, c0: int, c1: int) -> None:
            """Read columns [c0, c1) of one strip into the buffers, normalised for every member: from the
            stored DN where the pair offers them (one pass instead of four), else from reflectance."""
            win = Window(c0, r0, c1 - c0, th)
            raw = pair.read_dn(win) if pair.read_dn is not None else None
            if raw is not None:
                valid[:, c0:c1] = raw.valid
                for mb, (n1, n2) in zip(members, normed, strict=True):
                    _normalise_into(mb, raw.dn1, raw.dn2, stats, n1[:, :, c0:c1], n2[:, :, c0:c1],
                                    scale=raw.to_reflectance, valid=raw.valid)
                return
            s1, s2 = pair.read(win)
            np.logical_and(np.isfinite(s1).all(0), np.isfinite(s2).all(0), out=valid[:, c0:c1])
            for mb, (n1, n2) in zip(members, normed, strict=True):
                _normalise_into(mb, s1, s2, stats, n1[:, :, c0:c1], n2[:, :, c0:c1])

        def network_tile(c0: int) -> np.ndarray:
            return _ensemble_tile(members, normed, slice(c0, c0 + tw), tta)

        def write(prob: np.ndarray, valid: np.ndarray, r0: int) -> None:
            """Mask, count and write finished rows (strips are written in order)."""
            prob[~valid] = np.nan
            mask = np.where(valid, (prob >= thr).astype(np.uint8), np.uint8(CHANGE.nodata)).astype(np.uint8)
            counts[0] += int((mask == 1).sum())
            counts[1] += int(valid.sum())
            out_win = Window(0, r0, w, prob.shape[0])
            dp.write(prob[None], window=out_win)
            dm.write(mask[None], window=out_win)

        for old in (out_prob, out_mask):  # a failed re-run leaves no style of an old output
            style_path(old).unlink(missing_ok=True)
        with open_writer(out_prob, grid, count=1, dtype="float32", nodata=float("nan"),
                         band_names=["change_probability"], tags={**tags, "arch": ref.arch},
                         threads=io_threads, overviews=Resampling.average if overviews else None) as dp, \
                open_writer(out_mask, grid, count=1, dtype="uint8", nodata=CHANGE.nodata, legend=CHANGE,
                            tags=tags, threads=io_threads,
                            overviews=Resampling.nearest if overviews else None) as dm, make_progress() as bar:
            task = bar.add_task(f"predict {Path(t1_path).name}", total=len(rows) * len(cols), extra="")
            blend = Blender(1, th, w)
            written = None
            for i, r0 in enumerate(rows):
                # the input phase: the strip's column parts read and normalised on every core, the previous
                # strip written beside them; then the network has the cores (no thread waits on another)
                futures = [pool.submit(prepare, r0, c0, c1) for c0, c1 in parts]
                if written is not None:
                    written()
                for f in futures:
                    f.result()
                # cloud pixels are invalid like nodata (written as nodata, not counted), and a tile whose every
                # pixel is invalid is not run: a tile touches no pixel outside itself, so the others stay as they were
                if clouds is not None:
                    valid &= ~clouds.window(r0, 0, th, w)
                # then the strip's tiles, tiles_at_once of them at a time (each in one thread on a CPU, so its
                # values do not depend on the thread count); blended in column order
                run = [c0 for c0 in cols if valid[:, c0:c0 + tw].any()]
                probs = {}
                for c0, p in zip(run, (pool.map if tiles_at_once > 1 else map)(network_tile, run), strict=True):
                    probs[c0] = p
                    bar.advance(task)
                for c0 in cols:
                    p = probs.get(c0)
                    if p is None:
                        p = np.zeros((th, tw), np.float32)
                        skipped += 1
                        bar.advance(task)
                    blend.add(p, 0, c0, wgt)
                end = rows[i + 1] - r0 if i + 1 < len(rows) else th
                written = partial(write, blend.pop_rows(end)[0], valid[:end].copy(), r0)
            if written is not None:
                written()
        write_ramp_style(out_prob, sequential_ramp(0.0, 1.0, f"change probability (threshold {thr:.2f})"))
        write_legend_style(out_mask, CHANGE)
    return PredictResult(Path(out_prob), Path(out_mask), thr, counts[0] / max(counts[1], 1), h * w,
                         len(rows) * len(cols), len(models), shift,
                         None if clouds is None else clouds.describe(), skipped, notes)


def _column_parts(width: int, n: int) -> list[tuple[int, int]]:
    """``n`` column ranges ``[c0, c1)`` splitting ``width`` pixels into nearly equal parts."""
    edges = np.linspace(0, width, max(1, min(n, width)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _normalise_into(member: Member, s1: np.ndarray, s2: np.ndarray, stats, out1: np.ndarray,
                    out2: np.ndarray, *, scale=((1.0, 0.0), (1.0, 0.0)), valid: np.ndarray | None = None) -> None:
    """Both dates normalised for one member into ``out1``/``out2``: with the pair's own statistics
    (per-image) or the model's. ``scale``: per date, the ``(gain, bias)`` making ``s1``/``s2`` reflectance (DN
    input); ``valid``: the pixels to keep (else non-finite values become 0)."""
    if stats is not None:
        (m1, sd1), (m2, sd2) = stats
    else:
        m1 = m2 = member.model.mean
        sd1 = sd2 = member.model.std
    for s, m, sd, (gain, bias), out in ((s1, m1, sd1, scale[0], out1), (s2, m2, sd2, scale[1], out2)):
        if (gain, bias) != (1.0, 0.0):
            m, sd = stats_in_stored_units(m, sd, gain, bias)
        normalise(s, m, sd, out=out, valid=valid)


def _ensemble_tile(members: Sequence[Member], normed: Sequence[tuple[np.ndarray, np.ndarray]], cols: slice,
                   tta: bool) -> np.ndarray:
    """Mean probability of the members on one tile (columns ``cols`` of each member's normalised strips)."""
    total = None
    for mb, (n1, n2) in zip(members, normed, strict=True):
        p = tile_probability(mb.runner, n1[:, :, cols], n2[:, :, cols], tta=tta, flip_batch=mb.flip_batch)
        total = p if total is None else total + p
    return total / len(members)


def _coregistered(pair, bands: Sequence[str], t1_path, t2_path):
    """``(pair with date 2 shifted, shift)``: the shift estimated on the 10 m bands' central window."""
    from minescape.change.coregister import (
        REFERENCE_BANDS,
        checked_shift,
        estimate_source_shift,
        needs_shift,
        shifted_source,
    )
    from minescape.change.pairs import open_pair_source

    ref = [b for b in REFERENCE_BANDS if b in bands]  # read only the 10 m bands for the estimate
    est = open_pair_source(t1_path, t2_path, ref) if ref else pair
    shift = checked_shift(estimate_source_shift(est, ref or list(bands)), "pair", path=t2_path)
    if needs_shift(shift):
        pair = shifted_source(pair, shift)
    return pair, shift


def _stream_pair_statistics(pair, rows: int):
    """Per-band statistics of both dates over pixels valid in both, read in strips of ``rows`` rows."""
    from rasterio.windows import Window

    acc1 = acc2 = None
    h, w = pair.grid.height, pair.grid.width
    for r0 in range(0, h, rows):
        a1, a2 = pair.read(Window(0, r0, w, min(rows, h - r0)))
        if acc1 is None:
            acc1, acc2 = StatsAccumulator(a1.shape[0]), StatsAccumulator(a2.shape[0])
        v = np.isfinite(a1).all(0) & np.isfinite(a2).all(0)
        acc1.add(a1, v)
        acc2.add(a2, v)
    return acc1.result(), acc2.result()

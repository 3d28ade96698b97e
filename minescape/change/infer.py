"""Scene inference with a trained change model: overlapping tiles, blended probabilities, bounded memory.

Tiles of ``tile`` x ``tile`` pixels overlap by ``overlap`` pixels. Each tile's probabilities are weighted by
a separable ramp (1 in the tile's interior, falling linearly over ``overlap`` pixels towards its edges, never 0)
and the weighted sum is divided by the summed weights, so tile edges leave no seams. :func:`predict_scene`
streams: it reads one strip of ``tile`` rows at a time from the two inputs and keeps one strip of accumulators,
so memory does not grow with the scene's height; it grows with its width (per strip: 8 bytes/pixel of
accumulators plus 2 x 4 bytes/pixel/band of input, about 170 MB for a 10980-pixel-wide Sentinel-2 tile with
13 bands at ``tile=256``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minescape.errors import ConfigError, CRSMismatchError, InputError, check_choice
from minescape.geo.grid import window_starts
from minescape.legend import CHANGE

BACKENDS: tuple[str, ...] = ("torch", "onnx")
# input normalisation: "global" = the training set's per-band mean/std (stored with the model);
# "per-image" = each date of each pair standardised by its own per-band mean/std (pixels valid in both dates),
# a relative radiometric normalisation that removes most of the level/contrast differences between scenes.
NORMS: tuple[str, ...] = ("global", "per-image")
Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (N,C,H,W) x2 normalised -> (N,1,H,W) logits


def normalise(stack: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(C,H,W)`` reflectance -> float32 z-scores; NaN (nodata) becomes 0 (the training mean)."""
    out = (stack.astype(np.float32, copy=False) - mean[:, None, None]) / std[:, None, None]
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)


def image_statistics(stack: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation of one ``(C,H,W)`` stack over ``valid`` pixels (default: pixels
    finite in every band); float64 sums, std floored at 1e-6. All-invalid input gives mean 0, std 1."""
    c = stack.shape[0]
    if valid is None:
        valid = np.isfinite(stack).all(0)
    acc = _StatsAccumulator(c)
    acc.add(stack, valid)
    return acc.result()


class _StatsAccumulator:
    """Streaming per-band sums for :func:`image_statistics` (float64)."""

    def __init__(self, bands: int) -> None:
        self.s = np.zeros(bands)
        self.ss = np.zeros(bands)
        self.n = 0

    def add(self, stack: np.ndarray, valid: np.ndarray) -> None:
        v = stack[:, valid].astype(np.float64)
        self.s += v.sum(1)
        self.ss += (v * v).sum(1)
        self.n += v.shape[1]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n == 0:
            return np.zeros(len(self.s), np.float32), np.ones(len(self.s), np.float32)
        mean = self.s / self.n
        std = np.sqrt(np.maximum(self.ss / self.n - mean * mean, 0.0))
        return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def pair_statistics(t1: np.ndarray, t2: np.ndarray):
    """Per-image statistics of a pair: ``((mean1, std1), (mean2, std2))`` over pixels valid in both dates."""
    valid = np.isfinite(t1).all(0) & np.isfinite(t2).all(0)
    return image_statistics(t1, valid), image_statistics(t2, valid)


def normalise_pair(t1: np.ndarray, t2: np.ndarray, *, mean: np.ndarray, std: np.ndarray,
                   norm: str = "global") -> tuple[np.ndarray, np.ndarray]:
    """Normalise both dates: with the model's ``mean``/``std`` (``global``) or each date by its own
    statistics over the pixels valid in both dates (``per-image``)."""
    check_choice(norm, NORMS, what="normalisation")
    if norm == "per-image":
        (m1, s1), (m2, s2) = pair_statistics(t1, t2)
        return normalise(t1, m1, s1), normalise(t2, m2, s2)
    return normalise(t1, mean, std), normalise(t2, mean, std)


def tile_starts(n: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis: every ``stride`` pixels, the last flush with the edge (pixels)."""
    return window_starts(n, size=tile, stride=stride)


def ramp(n: int, overlap: int) -> np.ndarray:
    """1-D blending weights of length ``n``: linear from ~0 to 1 over ``overlap`` pixels at both ends."""
    i = np.arange(n, dtype=np.float32)
    if overlap <= 0:
        return np.ones(n, np.float32)
    return np.clip(np.minimum(i + 1, n - i) / (overlap + 1), 1e-3, 1.0).astype(np.float32)


def torch_runner(net, *, threads: int | None = None) -> Runner:
    """A runner calling a torch network in eval mode without gradients."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    net.eval()

    def run(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x1), torch.from_numpy(x2)).numpy()

    return run


def _run_tile(runner: Runner, x1: np.ndarray, x2: np.ndarray, stride: int = 16) -> np.ndarray:
    """Probability ``(h,w)`` for one normalised tile; pads to a multiple of ``stride`` with zeros."""
    _, h, w = x1.shape
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        pad = ((0, 0), (0, ph), (0, pw))
        x1 = np.pad(x1, pad, mode="reflect" if min(h, w) > max(ph, pw) else "constant")
        x2 = np.pad(x2, pad, mode="reflect" if min(h, w) > max(ph, pw) else "constant")
    logits = runner(x1[None], x2[None])[0, 0, :h, :w]
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def _run_tile_tta(runner: Runner, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Mean probability over the identity and the horizontal, vertical and double flips of one tile."""
    out = np.zeros(x1.shape[1:], np.float32)
    for axes in ((), (-1,), (-2,), (-2, -1)):
        a1 = np.ascontiguousarray(np.flip(x1, axes)) if axes else x1
        a2 = np.ascontiguousarray(np.flip(x2, axes)) if axes else x2
        p = _run_tile(runner, a1, a2)
        out += np.flip(p, axes) if axes else p
    return out / 4.0


def _check_tiling(tile: int, overlap: int) -> None:
    if tile < 16 or tile % 16:
        raise ConfigError(f"tile must be a multiple of 16 pixels and >= 16 (got {tile})")
    if overlap < 0 or 2 * overlap >= tile:
        raise ConfigError(f"overlap must be >= 0 and < tile/2 (got overlap={overlap}, tile={tile})")


def predict_arrays(runner: Runner, t1: np.ndarray, t2: np.ndarray, *, mean: np.ndarray, std: np.ndarray,
                   tile: int = 256, overlap: int = 32, norm: str = "global", tta: bool = False) -> np.ndarray:
    """Change probability for two in-memory ``(C,H,W)`` reflectance stacks on one grid.

    Scenes smaller than a tile are run as one padded tile. Pixels with NaN in either date get NaN.
    ``overlap=0`` with ``tile`` >= the scene is whole-image inference. ``norm`` is the model's normalisation
    (:data:`NORMS`); ``tta`` averages each tile's probability over 4 flips (4x the compute).
    """
    _check_tiling(tile, overlap)
    if t1.shape != t2.shape:
        raise InputError(f"the two dates differ in shape: {t1.shape} vs {t2.shape}")
    _, h, w = t1.shape
    valid = np.isfinite(t1).all(0) & np.isfinite(t2).all(0)
    n1, n2 = normalise_pair(t1, t2, mean=mean, std=std, norm=norm)
    run = _run_tile_tta if tta else _run_tile
    num = np.zeros((h, w), np.float32)
    den = np.zeros((h, w), np.float32)
    stride = tile - overlap
    for r in tile_starts(h, tile, stride):
        for c in tile_starts(w, tile, stride):
            sl = (slice(None), slice(r, r + tile), slice(c, c + tile))
            p = run(runner, n1[sl], n2[sl])
            wgt = np.outer(ramp(p.shape[0], overlap), ramp(p.shape[1], overlap))
            num[sl[1:]] += p * wgt
            den[sl[1:]] += wgt
    prob = num / den
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
    shift: tuple[float, float] | None = None  # date 2 co-registration shift (rows, cols) in px, if applied


def band_indexes(model_bands: Sequence[str], file_bands: Sequence[str | None], count: int, path) -> list[int]:
    """1-based band indexes of ``model_bands`` in a GeoTIFF (by description, else by count).

    Raises InputError naming the file when the imagery lacks a band the model needs.
    """
    names = [b for b in file_bands if b]
    if len(names) == count:
        missing = [b for b in model_bands if b not in names]
        if missing:
            raise InputError(f"model needs bands {list(model_bands)} but the imagery has {names} "
                             f"(missing {missing})", path=path)
        return [names.index(b) + 1 for b in model_bands]
    if count != len(model_bands):
        raise InputError(f"model needs {len(model_bands)} bands {list(model_bands)} but the imagery has {count} "
                         "unnamed bands", path=path)
    return list(range(1, count + 1))


def predict_scene(model, t1_path: str | Path, t2_path: str | Path, out_prob: str | Path, out_mask: str | Path, *,
                  tile: int = 256, overlap: int = 32, threshold: float | None = None, backend: str = "torch",
                  onnx_path: str | Path | None = None, threads: int | None = None,
                  progress: bool = True, tta: bool | None = None, coregister: bool | None = None) -> PredictResult:
    """Predict change for a pair (reflectance stacks or Sentinel-2 scenes), streaming tile by tile.

    Args:
        model: a :class:`~minescape.change.models.ChangeModel` or the path of a ``model.pt``.
        t1_path, t2_path: the two dates, as read by :func:`open_pair`: float GeoTIFF reflectance stacks on one
            grid (bands by description), or Sentinel-2 scenes (DN stacks or band folders; date 2 is warped
            onto date 1's 10 m grid). Outputs are on date 1's grid.
        out_prob: probability of change, float32, NaN nodata, on the pair's grid.
        out_mask: binary mask in the CHANGE legend (0 no change, 1 change, 255 nodata) with its colour table.
        tile, overlap: tile size and overlap in pixels (tile a multiple of 16; the pair must hold one tile).
        threshold: decision threshold; default the model's (chosen on validation data).
        backend: ``torch`` or ``onnx`` (onnxruntime; ``onnx_path`` or ``<model>.onnx`` beside the model).
        tta: average each tile over 4 flips (default: as the model's threshold was chosen, ``model.tta``).
        coregister: move date 2 onto date 1 by a sub-pixel shift estimated by phase correlation on the
            central 1024 x 1024 window (:mod:`minescape.change.coregister`); default: as the model was trained.

    The model's normalisation is applied: ``global`` (its stored mean/std) or ``per-image`` (each date by its
    own per-band statistics over the pixels valid in both dates; this reads the pair twice).
    """
    from rasterio.windows import Window

    from minescape.change.models import load_model
    from minescape.geo.raster import open_writer
    from minescape.progress import make_progress

    check_choice(backend, BACKENDS, what="backend")
    _check_tiling(tile, overlap)
    if not hasattr(model, "net"):
        model = load_model(model)
    thr = model.threshold if threshold is None else float(threshold)
    tta = bool(getattr(model, "tta", False)) if tta is None else bool(tta)
    if not 0.0 < thr < 1.0:
        raise ConfigError(f"threshold must be in (0, 1) (got {thr})")
    if backend == "onnx":
        from minescape.change.onnx_backend import onnx_runner

        onnx_file = Path(onnx_path) if onnx_path else Path(model.path).with_suffix(".onnx")
        runner = onnx_runner(onnx_file, threads=threads)
    else:
        runner = torch_runner(model.net, threads=threads)
    pair = open_pair(t1_path, t2_path, model.bands)
    grid = pair.grid
    if grid.width < tile or grid.height < tile:
        raise InputError(f"pair is {grid.width}x{grid.height} pixels, smaller than one {tile}x{tile} tile; "
                         f"use a smaller --tile (multiple of 16)", path=t1_path)
    tags = {"model": str(model.path), "threshold": f"{thr:.4f}"}
    shift = None
    if (bool(getattr(model, "coregister", False)) if coregister is None else coregister):
        from minescape.change.coregister import (
            REFERENCE_BANDS,
            checked_shift,
            estimate_source_shift,
            needs_shift,
            shifted_source,
        )

        ref = [b for b in REFERENCE_BANDS if b in model.bands]  # read only the 10 m bands for the estimate
        est = open_pair(t1_path, t2_path, ref) if ref else pair
        shift = checked_shift(estimate_source_shift(est, ref or model.bands), "pair", path=t2_path)
        if needs_shift(shift):
            pair = shifted_source(pair, shift)
        tags["coregistration_shift_px"] = f"{shift[0]:.2f} {shift[1]:.2f}"
    h, w = grid.height, grid.width
    stride = tile - overlap
    rows, cols = tile_starts(h, tile, stride), tile_starts(w, tile, stride)
    wgt = np.outer(ramp(tile, overlap), ramp(tile, overlap))
    norm = getattr(model, "norm", "global")
    check_choice(norm, NORMS, what="model normalisation")
    if norm == "per-image":  # a first streaming pass: each date's statistics over pixels valid in both
        (m1, sd1), (m2, sd2) = _stream_pair_statistics(pair, tile)
    else:
        m1 = m2 = model.mean
        sd1 = sd2 = model.std
    run = _run_tile_tta if tta else _run_tile
    changed = valid_total = 0
    with open_writer(out_prob, grid, count=1, dtype="float32", nodata=float("nan"),
                     band_names=["change_probability"], tags={**tags, "arch": model.arch}) as dp, \
            open_writer(out_mask, grid, count=1, dtype="uint8", nodata=CHANGE.nodata, legend=CHANGE,
                        tags=tags) as dm, \
            make_progress() as bar:
        task = bar.add_task(f"predict {Path(t1_path).name}", total=len(rows) * len(cols), extra="")
        carry_num = carry_den = carry_valid = None
        for i, r0 in enumerate(rows):
            num = np.zeros((tile, w), np.float32)
            den = np.zeros((tile, w), np.float32)
            valid = np.zeros((tile, w), bool)
            if carry_num is not None:
                k = carry_num.shape[0]
                num[:k] += carry_num
                den[:k] += carry_den
                valid[:k] = carry_valid
            # one read per strip of ``tile`` rows (fewer GDAL calls than per tile; memory still bounded by width)
            s1, s2 = pair.read(Window(0, r0, w, tile))
            for c0 in cols:
                a1, a2 = s1[:, :, c0:c0 + tile], s2[:, :, c0:c0 + tile]
                v = np.isfinite(a1).all(0) & np.isfinite(a2).all(0)
                valid[:, c0:c0 + tile] = v
                if v.any():
                    p = run(runner, normalise(a1, m1, sd1), normalise(a2, m2, sd2))
                else:
                    p = np.zeros((tile, tile), np.float32)
                num[:, c0:c0 + tile] += p * wgt
                den[:, c0:c0 + tile] += wgt
                bar.advance(task)
            end = rows[i + 1] - r0 if i + 1 < len(rows) else tile
            prob = num[:end] / den[:end]
            vv = valid[:end]
            prob[~vv] = np.nan
            mask = np.where(vv, (prob >= thr).astype(np.uint8), np.uint8(CHANGE.nodata)).astype(np.uint8)
            changed += int((mask == 1).sum())
            valid_total += int(vv.sum())
            out_win = Window(0, r0, w, end)
            dp.write(prob[None], window=out_win)
            dm.write(mask[None], window=out_win)
            carry_num, carry_den, carry_valid = num[end:].copy(), den[end:].copy(), valid[end:].copy()
    return PredictResult(Path(out_prob), Path(out_mask), thr, changed / max(valid_total, 1), h * w,
                         len(rows) * len(cols), shift)


def _stream_pair_statistics(pair, rows: int):
    """Per-band statistics of both dates of a :class:`PairSource` over pixels valid in both, read in strips of
    ``rows`` rows (memory bounded by the width)."""
    from rasterio.windows import Window

    acc1 = acc2 = None
    h, w = pair.grid.height, pair.grid.width
    for r0 in range(0, h, rows):
        a1, a2 = pair.read(Window(0, r0, w, min(rows, h - r0)))
        if acc1 is None:
            acc1, acc2 = _StatsAccumulator(a1.shape[0]), _StatsAccumulator(a2.shape[0])
        v = np.isfinite(a1).all(0) & np.isfinite(a2).all(0)
        acc1.add(a1, v)
        acc2.add(a2, v)
    return acc1.result(), acc2.result()


@dataclass(frozen=True)
class PairSource:
    """Two co-registered inputs read window by window onto date 1's grid (reflectance, NaN nodata)."""

    grid: object
    read: Callable  # Window -> (a1, a2), each (C, h, w) float32
    kind: str


def _is_reflectance_stack(path: Path) -> bool:
    import rasterio

    if path.is_dir():
        return False
    with rasterio.open(path) as src:
        return np.issubdtype(np.dtype(src.dtypes[0]), np.floating)


def open_pair(t1_path: str | Path, t2_path: str | Path, bands: Sequence[str]) -> PairSource:
    """Open a pair for windowed reading of ``bands``.

    Float GeoTIFF stacks are taken as reflectance (bands found by description, else by count) and must share
    one grid; anything else is read as a Sentinel-2 scene (stack file or one-file-per-band folder, e.g. an OSCD
    ``imgs_1/``) through :func:`minescape.sentinel2.read_stack`: DN -> reflectance, date 2 warped onto date 1's
    10 m grid window by window.

    Raises:
        MissingInputError: a path does not exist.
        InputError: the imagery lacks a band the model needs (naming the file and both band lists).
        CRSMismatchError: two reflectance stacks on different grids.
    """
    import rasterio

    from minescape.errors import MissingInputError
    from minescape.geo.grid import Grid
    from minescape.sentinel2 import open_scene, read_stack

    t1_path, t2_path = Path(t1_path), Path(t2_path)
    for p in (t1_path, t2_path):
        if not p.exists():
            raise MissingInputError("image not found", path=p)
    if _is_reflectance_stack(t1_path) and _is_reflectance_stack(t2_path):
        with rasterio.open(t1_path) as s1, rasterio.open(t2_path) as s2:
            if (s1.width, s1.height) != (s2.width, s2.height) or s1.transform != s2.transform or s1.crs != s2.crs:
                raise CRSMismatchError(f"date 2 is not on date 1's grid ({s2.width}x{s2.height} vs "
                                       f"{s1.width}x{s1.height}, or another transform/CRS); align the pair first",
                                       path=t2_path)
            idx1 = band_indexes(bands, s1.descriptions, s1.count, t1_path)
            idx2 = band_indexes(bands, s2.descriptions, s2.count, t2_path)
            grid = Grid(crs=s1.crs, transform=s1.transform, width=s1.width, height=s1.height)
            nod = (s1.nodata, s2.nodata)

        def read_float(window):
            out = []
            for path, idx, nd in ((t1_path, idx1, nod[0]), (t2_path, idx2, nod[1])):
                with rasterio.open(path) as src:
                    a = src.read(idx, window=window).astype(np.float32)
                if nd is not None and not np.isnan(nd):
                    a[a == nd] = np.nan
                out.append(a)
            return out[0], out[1]

        return PairSource(grid, read_float, "reflectance stacks")
    s1, s2 = open_scene(t1_path), open_scene(t2_path)
    for scene, path in ((s1, t1_path), (s2, t2_path)):
        missing = [b for b in bands if b not in scene.band_files]
        if missing:
            raise InputError(f"model needs bands {list(bands)} but the imagery has {scene.bands} "
                             f"(missing {missing})", path=path)
    grid = s1.grid

    def read_scene(window):
        a1 = read_stack(s1, bands=bands, window=window).data
        a2 = read_stack(s2, bands=bands, grid=grid, window=window).data
        return a1, a2

    return PairSource(grid, read_scene, "Sentinel-2 scenes")

"""Cut a pair and its change mask into patch datasets (CHANGE-MINING2025 layout) with spatial-block splits.

Output (under ``out_dir``, built in a temporary folder and renamed into place when complete, so a
failed run leaves nothing half-written and a re-run replaces the previous dataset whole)::

    T1/<name>.tif       float32 reflectance, (bands, size, size), NaN nodata, band descriptions
    T2/<name>.tif       same grid and name
    Change/<name>.tif   uint8 CHANGE legend (0 no change, 1 change, 255 nodata) with the colour table
    split.csv           name,split (train / val / test)
    manifest.json       sources, options, counts and one entry per patch (window, split, shares)

Patch names are ``[<prefix>_]r<row>_c<col>`` (pixel offsets of the patch in the pair grid). Every
patch is georeferenced (its own transform in the pair grid's CRS).

Splits are assigned to *spatial blocks* of ``block`` x ``block`` pixels (a seeded shuffle of the blocks,
then cumulative pixel-share targets), and a patch belongs to the split of every block it touches; a
patch touching blocks of different splits is dropped, so no pixel is shared between splits even with
overlapping patches (stride < size).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from rasterio.windows import Window

from minescape.atomic import atomic_write_text, replace_dir, temp_path
from minescape.errors import ConfigError, InputError, check_choice
from minescape.geo.grid import Grid, window_starts
from minescape.geo.raster import Raster, scan_reads, write_raster
from minescape.legend import CHANGE

Padding = Literal["flush", "nodata", "reflect"]
PADDINGS: tuple[str, ...] = ("flush", "nodata", "reflect")


@dataclass(frozen=True)
class PatchOptions:
    """How to cut patches (sizes in pixels).

    Attributes:
        size: patch side (pixels).
        stride: step between patches (pixels; default ``size``, no overlap).
        padding: ``flush`` (the last row/column of patches is shifted back inside the raster; rasters
            smaller than ``size`` are padded with nodata), ``nodata`` (a regular grid of patches, those
            crossing the edge padded with nodata) or ``reflect`` (same, padded by mirroring the pixels;
            padded mask pixels stay nodata).
        max_nodata: drop patches whose nodata share (either date or the mask) exceeds this.
        balance: keep every changed patch and as many unchanged ones (seeded draw), dropping the rest.
        changed_share: a patch counts as changed when its change share of valid pixels is >= this
            (and it has at least one change pixel).
        block: side (pixels) of the spatial blocks the splits are drawn on (default ``4 * size``).
        fractions: train, val, test shares (of blocks with patches), summing to 1.
        seed: seed of the block shuffle and of balancing.
        prefix: prepended to patch names (e.g. a pair or city name, to merge several pairs in one dataset).
        compress: GeoTIFF compression of the image patches (``none`` is ~5x faster to write and faster to
            read in training; ``deflate`` saves ~25 % on reflectance). Masks are always deflated.
    """

    size: int = 128
    stride: int | None = None
    padding: str = "flush"
    max_nodata: float = 0.5
    balance: bool = False
    changed_share: float = 0.0
    block: int | None = None
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    prefix: str = ""
    compress: str = "none"

    def __post_init__(self) -> None:
        check_choice(self.padding, PADDINGS, what="padding")
        check_choice(self.compress, ("none", "deflate", "lzw", "zstd"), what="compression")
        if self.size < 8:
            raise ConfigError(f"patch size must be >= 8 pixels (got {self.size})")
        if self.stride is not None and self.stride <= 0:
            raise ConfigError(f"stride must be > 0 (got {self.stride})")
        if not 0 <= self.max_nodata < 1:
            raise ConfigError(f"max_nodata must be in [0, 1) (got {self.max_nodata})")
        if self.block is not None and self.block < self.size:
            raise ConfigError(f"split block ({self.block} px) must be >= the patch size ({self.size} px)")
        fr = tuple(float(f) for f in self.fractions)
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
            raise ConfigError(f"fractions must be three shares (train, val, test) >= 0 summing to 1 (got {fr})")
        object.__setattr__(self, "fractions", fr)
        if any(c in self.prefix for c in "/\\"):
            raise ConfigError(f"prefix must not contain path separators (got {self.prefix!r})")

    @property
    def step(self) -> int:
        """Stride in pixels."""
        return self.stride or self.size

    @property
    def block_size(self) -> int:
        """Split block side in pixels."""
        return self.block or 4 * self.size


@dataclass(frozen=True)
class PatchWindow:
    """A patch position: ``row``/``col`` offsets in the pair grid (may be < 0 or run past the edge)."""

    row: int
    col: int
    size: int

    @property
    def window(self) -> Window:
        """The (possibly boundless) pixel window."""
        return Window(self.col, self.row, self.size, self.size)


def patch_windows(width: int, height: int, *, options: PatchOptions) -> list[PatchWindow]:
    """Patch positions covering a ``width`` x ``height`` grid (pixels) according to ``options``."""
    size, step = options.size, options.step

    def starts(n: int) -> list[int]:
        if options.padding == "flush":
            return window_starts(n, size=size, stride=step)
        return list(range(0, n, step)) if n > size else [0]

    return [PatchWindow(r, c, size) for r in starts(height) for c in starts(width)]


def assign_blocks(windows: Sequence[PatchWindow], *, options: PatchOptions) -> dict[tuple[int, int], str]:
    """Split per spatial block: blocks shuffled (seeded) then filled to the train/val/test shares."""
    b = options.block_size
    blocks = sorted({(max(w.row, 0) // b, max(w.col, 0) // b) for w in windows})
    rng = np.random.default_rng(options.seed)
    order = [blocks[i] for i in rng.permutation(len(blocks))]
    n = len(order)
    train, val, _ = options.fractions
    n_train = int(round(train * n))
    n_val = int(round(val * n))
    if n >= 3:  # every non-empty share gets at least one block
        n_val = max(n_val, 1 if val > 0 else 0)
        n_train = min(max(n_train, 1 if train > 0 else 0), n - n_val - (1 if options.fractions[2] > 0 else 0))
    out = {}
    for i, key in enumerate(order):
        out[key] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
    return out


def _patch_split(w: PatchWindow, grid_shape: tuple[int, int], blocks: dict, b: int) -> str | None:
    """The split of every block the patch's in-raster part touches, or None if they disagree."""
    h, wd = grid_shape
    r0, r1 = max(w.row, 0), min(w.row + w.size, h) - 1
    c0, c1 = max(w.col, 0), min(w.col + w.size, wd) - 1
    splits = {blocks.get((br, bc)) for br in range(r0 // b, r1 // b + 1) for bc in range(c0 // b, c1 // b + 1)}
    splits.discard(None)
    return splits.pop() if len(splits) == 1 else None


def _reflect_pad(data: np.ndarray, w: PatchWindow, grid_shape: tuple[int, int]) -> np.ndarray:
    """Mirror the in-raster part of a boundless patch into its out-of-raster part."""
    h, wd = grid_shape
    top, left = max(0, -w.row), max(0, -w.col)
    bottom = max(0, w.row + w.size - h)
    right = max(0, w.col + w.size - wd)
    if not (top or left or bottom or right):
        return data
    inner = data[..., top:w.size - bottom, left:w.size - right]
    return np.pad(inner, [(0, 0)] * (data.ndim - 2) + [(top, bottom), (left, right)], mode="symmetric")


@dataclass(frozen=True)
class PatchSummary:
    """What :func:`make_patches` wrote."""

    root: Path
    n_patches: int
    counts: dict[str, int]
    changed: int
    unchanged: int
    dropped_nodata: int
    dropped_straddle: int
    dropped_balance: int


def make_patches(read_window, grid: Grid, out_dir: str | Path, *, options: PatchOptions | None = None,
                 band_names: Sequence[str] | None = None, sources: dict | None = None,
                 progress: bool = False, cache_mb: float = 256.0) -> PatchSummary:
    """Cut patches from a pair readable by windows.

    Args:
        read_window: ``f(window) -> (t1, t2, mask)``: float32 ``(bands, rows, cols)`` arrays (NaN nodata)
            and a uint8 CHANGE-legend mask, for any pixel window of ``grid`` (boundless: NaN/255 outside).
            :func:`pair_reader` builds one from files; :func:`raster_reader` from in-memory rasters.
        grid: the pair grid (patches are georeferenced in it).
        out_dir: dataset folder (replaced whole when the run succeeds).
        options: sizes, padding, nodata rule, balancing, splits.
        band_names: written as band descriptions of T1/T2 patches.
        sources: recorded in the manifest (input file names, detection options...).
        progress: show a progress bar.
        cache_mb: patches read in the first pass are kept for the second up to this many MB; beyond
            it they are read again. Memory is bounded by this budget, not by the input size.
    """
    from minescape.progress import make_progress

    options = options or PatchOptions()
    out_dir = Path(out_dir)
    from minescape.limits import check_alloc

    # one patch of both dates (float32, all bands) and its mask is held at a time
    check_alloc(options.size**2 * (8 * max(len(band_names or ()), 1) + 1), f"a {options.size:,} px patch")
    windows = patch_windows(grid.width, grid.height, options=options)
    blocks = assign_blocks(windows, options=options)
    b = options.block_size
    entries = []
    dropped_nodata = dropped_straddle = 0
    cache: dict[tuple[int, int], tuple] = {}
    budget = int(cache_mb * 2**20)
    with make_progress(transient=True, enabled=progress) as bar:
        task = bar.add_task("patches: scan", total=len(windows), extra="")
        for w in windows:
            bar.advance(task)
            split = _patch_split(w, grid.shape, blocks, b)
            if split is None:
                dropped_straddle += 1
                continue
            t1, t2, mask = read_window(w.window)
            valid = np.isfinite(t1).all(axis=0) & np.isfinite(t2).all(axis=0) & (mask != CHANGE.nodata)
            nodata_share = 1 - valid.mean()
            if nodata_share > options.max_nodata:
                dropped_nodata += 1
                continue
            n_change = int((mask[valid] == 1).sum())
            share = n_change / max(int(valid.sum()), 1)
            entries.append({"window": w, "split": split, "nodata_share": float(nodata_share),
                            "change_share": float(share),
                            "changed": bool(n_change > 0 and share >= options.changed_share)})
            nbytes = t1.nbytes + t2.nbytes + mask.nbytes
            if nbytes <= budget:
                cache[(w.row, w.col)] = (t1, t2, mask)
                budget -= nbytes
        dropped_balance = 0
        if options.balance:
            changed = [e for e in entries if e["changed"]]
            unchanged = [e for e in entries if not e["changed"]]
            if len(unchanged) > len(changed):
                rng = np.random.default_rng(options.seed + 1)
                keep = set(rng.choice(len(unchanged), size=len(changed), replace=False).tolist())
                dropped_balance = len(unchanged) - len(keep)
                unchanged = [e for i, e in enumerate(unchanged) if i in keep]
            kept = {id(e) for e in changed + unchanged}
            entries = [e for e in entries if id(e) in kept]
        if not entries:
            raise InputError(f"no patch kept out of {len(windows)} (all dropped: {dropped_nodata} mostly nodata, "
                             f"{dropped_straddle} across splits); lower max_nodata or the patch size", path=out_dir)
        bar.update(task, description="patches: write", completed=0, total=len(entries))
        tmp = temp_path(out_dir)
        try:
            for e in entries:
                w = e["window"]
                name = f"{options.prefix + '_' if options.prefix else ''}r{w.row:06d}_c{w.col:06d}"
                e["name"] = name
                cached = cache.pop((w.row, w.col), None)
                t1, t2, mask = cached if cached is not None else read_window(w.window)
                if options.padding == "reflect":
                    t1 = _reflect_pad(t1, w, grid.shape)
                    t2 = _reflect_pad(t2, w, grid.shape)
                sub = grid.window_grid(w.window)
                names = tuple(band_names) if band_names else None
                write_raster(Raster(t1.astype(np.float32), sub.crs, sub.transform, np.nan, names),
                             tmp / "T1" / f"{name}.tif", tiled=False, compress=options.compress)
                write_raster(Raster(t2.astype(np.float32), sub.crs, sub.transform, np.nan, names),
                             tmp / "T2" / f"{name}.tif", tiled=False, compress=options.compress)
                write_raster(Raster(mask.astype(np.uint8), sub.crs, sub.transform, CHANGE.nodata),
                             tmp / "Change" / f"{name}.tif", legend=CHANGE, tiled=False)
                bar.advance(task)
            counts = {s: sum(1 for e in entries if e["split"] == s) for s in ("train", "val", "test")}
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(["name", "split"])
            for e in entries:
                writer.writerow([e["name"], e["split"]])
            atomic_write_text(tmp / "split.csv", buf.getvalue())
            manifest = {
                "format": "minescape-change-patches/1",
                "layout": {"t1": "T1/", "t2": "T2/", "mask": "Change/", "split": "split.csv"},
                "mask_legend": CHANGE.to_dict(),
                "crs": grid.crs.to_string() if grid.crs else None,
                "grid": {"transform": list(grid.transform)[:6], "width": grid.width, "height": grid.height},
                "bands": list(band_names) if band_names else None,
                "image_units": "reflectance (float32, NaN nodata)",
                "options": {**asdict(options), "stride": options.step, "block": options.block_size},
                "sources": sources or {},
                "counts": {**counts, "total": len(entries),
                           "changed": sum(e["changed"] for e in entries),
                           "unchanged": sum(not e["changed"] for e in entries),
                           "dropped_nodata": dropped_nodata, "dropped_straddle": dropped_straddle,
                           "dropped_balance": dropped_balance, "candidates": len(windows)},
                "patches": [{"name": e["name"], "split": e["split"], "row": e["window"].row,
                             "col": e["window"].col, "size": options.size, "changed": e["changed"],
                             "change_share": round(e["change_share"], 6),
                             "nodata_share": round(e["nodata_share"], 6)} for e in entries],
            }
            atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1))
            _replace_dir(tmp, out_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return PatchSummary(out_dir, len(entries), counts, manifest["counts"]["changed"],
                        manifest["counts"]["unchanged"], dropped_nodata, dropped_straddle, dropped_balance)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final``, replacing an earlier folder (never a file)."""
    if final.exists() and not final.is_dir():
        raise InputError("exists and is not a folder", path=final)
    replace_dir(tmp, final)


def raster_reader(t1: Raster, t2: Raster, mask: Raster):
    """A ``read_window`` over in-memory rasters on one grid (boundless: NaN / 255 outside)."""
    if not (t1.shape == t2.shape == mask.shape):
        raise InputError(f"T1 {t1.shape}, T2 {t2.shape} and mask {mask.shape} differ in size")
    h, w = t1.shape

    def read(win: Window):
        r0, c0 = int(win.row_off), int(win.col_off)
        size_r, size_c = int(win.height), int(win.width)
        a = np.full((t1.count, size_r, size_c), np.nan, np.float32)
        b_ = np.full((t2.count, size_r, size_c), np.nan, np.float32)
        m = np.full((size_r, size_c), CHANGE.nodata, np.uint8)
        rr0, rr1 = max(r0, 0), min(r0 + size_r, h)
        cc0, cc1 = max(c0, 0), min(c0 + size_c, w)
        if rr1 > rr0 and cc1 > cc0:
            dst = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
            a[(slice(None), *dst)] = t1.data[:, rr0:rr1, cc0:cc1]
            b_[(slice(None), *dst)] = t2.data[:, rr0:rr1, cc0:cc1]
            m[dst] = mask.data[0, rr0:rr1, cc0:cc1]
        bad = ~(np.isfinite(a).all(axis=0) & np.isfinite(b_).all(axis=0))
        m[bad] = CHANGE.nodata
        return a, b_, m

    return read


def pair_reader(pair, mask_path: str | Path, *, bands: Sequence[str] | None = None,
                mask_encoding: str = "auto", handles: dict | None = None):
    """A ``read_window`` over a :class:`~minescape.change.pairs.Pair` and a mask file (any encoding, any
    grid: it is read onto the pair grid with nearest resampling). ``handles``: an
    :func:`~minescape.change.pairs.open_datasets` cache."""
    from minescape.change.labels import decode_binary, scan_mask_file
    from minescape.change.pairs import read_on_grid, read_pair

    mask_path = Path(mask_path)
    bands = tuple(bands or pair.bands)
    # decode every value once (block by block) so unexpected values fail before anything is written,
    # and pick the value that marks pixels outside the mask file
    mask_encoding, fill = scan_mask_file(mask_path, encoding=mask_encoding)

    def read(win: Window):
        t1, t2 = read_pair(pair, window=win, bands=bands, handles=handles)
        raw = read_on_grid(mask_path, pair.grid, window=win, fill=fill, handles=handles)
        m = decode_binary(raw.data[0], encoding=mask_encoding, nodata=fill, source=str(mask_path))
        bad = ~(np.isfinite(t1.data).all(axis=0) & np.isfinite(t2.data).all(axis=0))
        m[bad] = CHANGE.nodata
        return t1.data, t2.data, m

    return read


#: Rough throughput of cutting patches (both dates and the mask read, patches written), pixels per second on
#: one core: the basis of the time estimate before a run.
PATCH_PX_PER_S = 1_000_000


def patches_from_files(t1: str | Path, t2: str | Path, mask: str | Path, out_dir: str | Path, *,
                       options: PatchOptions | None = None, bands: Sequence[str] | None = None,
                       mask_encoding: str = "auto", progress: bool = False, force: bool = False) -> PatchSummary:
    """Patch dataset from two scenes and a change mask on disk (T2 and the mask are aligned onto T1's grid).

    A pair estimated above :data:`~minescape.limits.MAX_RUN_HOURS` is refused unless ``force``; an ``out_dir``
    that is or holds one of the three inputs too (it is replaced whole: they would be deleted).
    """
    from minescape.change.pairs import open_datasets, open_pair
    from minescape.limits import plan_run
    from minescape.path_identity import check_not_within

    check_not_within(out_dir, {"the input T1": t1, "the input T2": t2, "the input MASK": mask}, what="OUT")
    pair = open_pair(t1, t2, bands=bands)
    plan_run(pair.grid.width, pair.grid.height, px_per_second=PATCH_PX_PER_S, name=str(t1), force=force)
    # open handles keep decoded blocks between patches; GDAL's block cache is capped (scoped) so memory
    # does not grow with the scene
    with scan_reads(128), open_datasets() as handles:
        reader = pair_reader(pair, mask, mask_encoding=mask_encoding, handles=handles)
        return make_patches(reader, pair.grid, out_dir, options=options, band_names=pair.bands,
                            sources={"t1": str(t1), "t2": str(t2), "mask": str(mask)}, progress=progress)


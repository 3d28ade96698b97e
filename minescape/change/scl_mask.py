"""Clouds in either date of a pair from Sentinel-2 L2A's Scene Classification layer (SCL), on the pair grid.

L2A products drop the cirrus band B10 that :mod:`minescape.change.cirrus_mask` needs, and carry SCL instead (20 m,
one class per pixel, ESA's L2A processor). A pixel is masked where either date's SCL says cloud shadow (3), cloud
of medium or high probability (8, 9), thin cirrus (10) or saturated/defective (1): the classes of the compositing
mask (:data:`minescape.imagery.cloud_mask.DEFAULT_SCL_MASK`) but "no data" (0), which is nodata in the pair
anyway. Unlike the B10 test this also masks cloud shadows, and it trusts ESA's classifier, which is known to call
some bright ground (new concrete, bare white soil, a fresh waste dump) cloud: the masked fraction is reported.

Where SCL is found: in a band folder, one file whose name ends in ``SCL.tif``, ``_SCL_20m.jp2`` and the like; in
an L2A SAFE product or its ``IMG_DATA``, ``R20m``'s (:func:`minescape.sentinel2.band_file_folders`); in a stack
file, the band described ``SCL``; in a STAC item JSON, its SCL asset when that is a local file.
SCL is read with nearest-neighbour resampling onto the pair grid, in strips, and held per block of ``block`` x
``block`` pixels (2 x 2 = SCL's 20 m on a 10 m grid): a block is cloud where any of its pixels is. Where the SCL
files lie on the blocks' grid pixel for pixel (a pair of one MGRS tile), they are read as stored instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from affine import Affine

from minescape.change.pair_cloud_mask import PairCloudMask, grow_blocks
from minescape.errors import ConfigError, InputError
from minescape.geo.grid import Grid
from minescape.imagery.cloud_mask import DEFAULT_SCL_MASK, check_scl_classes

SCL_FILE = re.compile(r"(?:^|_)SCL(?:_(?:10|20|60)m)?\.(?:tif|tiff|jp2)$", re.IGNORECASE)
SCL_PAIR_CLASSES: tuple[int, ...] = tuple(c for c in DEFAULT_SCL_MASK if c != 0)  # 1, 3, 8, 9, 10
DEFAULT_BUFFER = 10  # pair-grid pixels (100 m on a 10 m grid), as the B10 mask
DEFAULT_BLOCK = 2  # pair-grid pixels per block side (SCL's 20 m on a 10 m grid)


class NoSclLayer(InputError):
    """A date has no SCL layer (an L1C product, or a stack without that band); names the file."""


def find_scl(path: str | Path) -> tuple[Path, int] | None:
    """``(file, 1-based band)`` of a date's SCL layer, or None where it has none.

    Raises:
        InputError: a band folder with two SCL files (naming the folder).
    """
    path = Path(path)
    if path.suffix.lower() == ".json":  # a STAC item: its SCL asset, where it is a local file
        from minescape.imagery.local_scenes import discover_scenes

        refs = discover_scenes([path])
        scl = refs[0].scl if len(refs) == 1 else None
        return (Path(scl), 1) if scl is not None and "://" not in scl else None
    if path.is_dir():
        from minescape.sentinel2 import band_file_folders

        for sub in band_file_folders(path):  # an L2A SAFE: R20m's SCL before R60m's
            found = sorted(p for p in sub.iterdir() if SCL_FILE.search(p.name))
            if len(found) > 1:
                raise InputError(f"two SCL files: {found[0].name}, {found[1].name}", path=sub)
            if found:
                return found[0], 1
        return None
    from minescape.geo.raster import open_raster

    with open_raster(path) as src:
        names = [(d or "").strip().upper() for d in src.descriptions]
    return (path, names.index("SCL") + 1) if "SCL" in names else None


def _on_grid(path: Path, grid: Grid) -> bool:
    """Whether the raster at ``path`` lies on ``grid`` pixel for pixel (same CRS, pixel size and phase)."""
    from minescape.geo.grid import aligned_window
    from minescape.geo.raster import open_raster

    with open_raster(path) as src:
        return aligned_window(src.crs, src.transform, grid) is not None


def scl_mask(t1: str | Path, t2: str | Path, grid: Grid, *, classes: tuple[int, ...] = SCL_PAIR_CLASSES,
             buffer: int = DEFAULT_BUFFER, block: int = DEFAULT_BLOCK) -> PairCloudMask:
    """The clouds (and shadows) of either date on the pair grid ``grid``, from each date's SCL.

    Args:
        t1, t2: the two dates (band folders or stack files carrying SCL, see :func:`find_scl`).
        grid: the pair grid (the caller's: the change map's pixels).
        classes: SCL classes masked (default 1, 3, 8, 9, 10).
        buffer: pixels of the pair grid added around every cloud block (>= 0; rounded up to whole blocks).
        block: block side in pair-grid pixels (>= 1).

    Raises:
        NoSclLayer: a date has no SCL layer, naming it (date 1 first).
    """
    from rasterio.windows import Window
    from skimage.measure import block_reduce

    from minescape.change.pairs import read_on_grid
    from minescape.geo.raster import window_reads

    check_scl_classes(classes)
    if buffer < 0:
        raise ConfigError(f"the cloud mask's buffer must be >= 0 (got {buffer})")
    if block < 1:
        raise ConfigError(f"the cloud mask's block must be >= 1 pixel (got {block})")
    layers = []
    for t in (t1, t2):
        found = find_scl(t)
        if found is None:
            raise NoSclLayer("has no SCL layer (Sentinel-2 L2A scene classification), which the cloud mask needs",
                             path=t)
        layers.append(found)
    h, w = grid.height, grid.width
    out = np.zeros((-(-h // block), -(-w // block)), bool)
    wanted = np.asarray(classes)
    # the grid of the blocks: where both SCL files lie on it pixel for pixel (20 m SCL of the pair's own tile),
    # each SCL pixel is a block and is read as stored; otherwise SCL is resampled onto the pair grid
    blocks_grid = Grid(grid.crs, grid.transform @ Affine.scale(block), out.shape[1], out.shape[0])
    native = all(_on_grid(path, blocks_grid) for path, _ in layers)
    target, step = (blocks_grid, 512) if native else (grid, block * max(1, 512 // block))
    with window_reads():
        for r0 in range(0, target.height, step):
            win = Window(0, r0, target.width, min(step, target.height - r0))
            flag = np.zeros((int(win.height), target.width), bool)
            for path, band in layers:
                scl = read_on_grid(path, target, window=win, band=band, resampling="nearest", fill=0).data[0]
                flag |= np.isin(scl, wanted)
            if native:
                out[r0:r0 + flag.shape[0]] = flag
            else:
                blocks = block_reduce(flag, (block, block), func=np.any, cval=False)
                out[r0 // block: r0 // block + blocks.shape[0]] = blocks
    cloud, grown = grow_blocks(out, block, buffer)
    listed = ", ".join(str(c) for c in classes)
    return PairCloudMask(grid, cloud, block, "SCL", f"SCL classes {listed} in either date, buffer {grown} px")

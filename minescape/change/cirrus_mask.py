"""Clouds in one date of a pair, from Sentinel-2's cirrus band (B10, 1375 nm): pixels a change map should not judge.

B10 lies in a strong water-vapour absorption band: under a moist atmosphere the ground is nearly invisible there
(top-of-atmosphere reflectance about 0.001-0.005 over clear land in the OSCD cities), while clouds above the
lowest kilometres reflect. A change of B10 between the two dates, beyond the scene's median change (the two dates'
offsets differ, by up to 0.004 in OSCD), is therefore atmospheric: a cloud (or its haze) in one date and not the
other. Change models read such a cumulus as change with high confidence (OSCD paris: thousands of false alarms
against 450 changed pixels); this mask marks them, with a buffer for the cloud's edges, so that prediction can
set them to nodata instead of calling them change.

The test works on blocks of ``block`` x ``block`` pair-grid pixels (6 x 6 = B10's native 60 m on a 10 m grid):
the mask is held per block, so its memory is 1/36 of one band's. B10 exists only in L1C products (L2A drops it):
the mask needs it in both dates.

Known limit: over high, dry terrain (above about 3 km) B10 sees the ground, and a bright surface change there
(snow, a new waste dump in the Andes) can be masked as cloud. The masked fraction is reported.

Defaults (``threshold`` 0.002 reflectance, ``buffer`` 10 pixels = 100 m) were set on the ten OSCD cities
(docs/deep-change.md, "A cirrus-band cloud mask"): the 99.9th percentile of the block statistic is 0.0004-0.0019
in eight of them, 0.0025 in saclay_e (a haze in date 1) and 0.0037 in cloudy paris.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minescape.change.pair_cloud_mask import PairCloudMask, grow_blocks
from minescape.errors import ConfigError, InputError, MissingInputError
from minescape.geo.grid import Grid

CIRRUS_BAND = "B10"
DEFAULT_THRESHOLD = 0.002  # |change of B10 reflectance| beyond the scene median
DEFAULT_BUFFER = 10  # pair-grid pixels (100 m on Sentinel-2's 10 m grid)
DEFAULT_BLOCK = 6  # pair-grid pixels per block side (B10's 60 m on a 10 m grid)
CACHE_MB = 64  # GDAL block cache while the mask reads


class NoCirrusBand(InputError):
    """A date has no B10 (an L2A product, or a stack without that band); names the file."""


def cirrus_mask(t1: str | Path, t2: str | Path, *, threshold: float = DEFAULT_THRESHOLD,
                buffer: int = DEFAULT_BUFFER, block: int = DEFAULT_BLOCK) -> PairCloudMask:
    """The cloud mask of a pair on its pair grid (:func:`minescape.change.pairs.open_pair_source`'s grid).

    Args:
        t1, t2: the two dates (Sentinel-2 scenes or reflectance stacks with a band named B10).
        threshold: |B10 change - the scene's median change| above which a block is a cloud (reflectance, > 0).
        buffer: pixels of the pair grid added around every cloud block (>= 0; rounded up to whole blocks).
        block: block side in pair-grid pixels (>= 1).

    Raises:
        NoCirrusBand: a date has no B10 (an L2A product, or a stack without that band), naming the file.
    """
    if not threshold > 0:
        raise ConfigError(f"the cloud mask's threshold must be > 0 (got {threshold})")
    if buffer < 0:
        raise ConfigError(f"the cloud mask's buffer must be >= 0 (got {buffer})")
    grid, dev, offset = cirrus_change(t1, t2, block=block)
    cloud, grown = grow_blocks(np.nan_to_num(dev, nan=0.0) > threshold, block, buffer)
    return PairCloudMask(grid, cloud, block, CIRRUS_BAND,
                         f"B10 change > {threshold:g} beyond the median ({offset:+.4f}), buffer {grown} px")


def cirrus_change(t1: str | Path, t2: str | Path, *, block: int = DEFAULT_BLOCK) -> tuple[Grid, np.ndarray, float]:
    """``(pair grid, |B10 change - median| per block, median)``: the statistic :func:`cirrus_mask` thresholds.

    The change is date 2 - date 1 in reflectance, averaged over each ``block`` x ``block`` block of the pair grid
    (NaN where a block has no valid pixel); the median is over the blocks. Raises InputError (naming the file)
    when a date has no B10.
    """
    from minescape.change.pairs import open_pair_source

    if block < 1:
        raise ConfigError(f"the cloud mask's block must be >= 1 pixel (got {block})")
    try:
        source = open_pair_source(t1, t2, [CIRRUS_BAND])
    except MissingInputError:
        raise
    except InputError as exc:
        if CIRRUS_BAND not in str(exc) or exc.path is None:  # another problem with the pair: as it is
            raise
        raise NoCirrusBand(f"has no band {CIRRUS_BAND} (cirrus), which the cloud mask needs in both dates "
                           "(Sentinel-2 L1C has it, L2A does not)", path=exc.path) from None
    diff = _block_means(source, block)
    finite = np.isfinite(diff)
    offset = float(np.median(diff[finite])) if finite.any() else 0.0
    return source.grid, np.abs(diff - offset), offset


def _block_means(source, block: int) -> np.ndarray:
    """Mean B10 change (date 2 - date 1, reflectance) per block, NaN where a block has no valid pixel; read in
    strips of whole blocks, so memory follows one strip."""
    import warnings

    from rasterio.windows import Window
    from skimage.measure import block_reduce

    from minescape.geo.raster import scan_reads, window_reads

    h, w = source.grid.height, source.grid.width
    nr, nc = -(-h // block), -(-w // block)
    out = np.full((nr, nc), np.nan, np.float32)
    rows = block * max(1, 512 // block)  # about 512 rows: 45 MB a date on a 10980-px-wide pair
    # one band of a pixel-interleaved stack: GDAL decodes every band's blocks, so its block cache is bounded while
    # the mask reads (10980² 13-band pair: 1.45 GB of cache and 5.6 s unbounded, 0.28 GB and 2.5 s with 64 MB)
    with window_reads(), scan_reads(CACHE_MB):
        for r0 in range(0, h, rows):
            a1, a2 = source.read(Window(0, r0, w, min(rows, h - r0)))
            with warnings.catch_warnings():  # a block without a valid pixel is NaN: nanmean warns, rightly so
                warnings.simplefilter("ignore", RuntimeWarning)
                means = block_reduce(a2[0] - a1[0], (block, block), func=np.nanmean, cval=np.nan)
            out[r0 // block: r0 // block + means.shape[0]] = means
    return out

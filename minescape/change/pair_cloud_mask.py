"""Clouds in either date of a pair, as blocks of the pair grid: the pixels a change map should not judge.

One value, :class:`PairCloudMask`, for the two ways a pair can say where its clouds are:

* Sentinel-2 L1C: the change of the cirrus band B10 between the dates (:mod:`minescape.change.cirrus_mask`);
* Sentinel-2 L2A: the Scene Classification layer (SCL) of each date (:mod:`minescape.change.scl_mask`; L2A has
  no B10).

:func:`pair_cloud_mask` picks the first that both dates carry, in that order: ``--mask-clouds`` on ``change
predict`` and ``change detect`` calls it, and sets the mask's pixels to nodata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minescape.errors import InputError
from minescape.geo.grid import Grid


@dataclass(frozen=True)
class PairCloudMask:
    """Blocks of the pair grid where a date has a cloud (buffer included).

    Attributes:
        grid: the pair grid the blocks tile (from its top-left corner).
        blocks: ``(ceil(H / block), ceil(W / block))`` bool, True = cloud.
        block: side of a block in pair-grid pixels (6 for B10's 60 m, 2 for SCL's 20 m, on a 10 m grid).
        source: what found the clouds: ``B10`` or ``SCL``.
        detail: the test and its parameters, for outputs and tags.
    """

    grid: Grid
    blocks: np.ndarray
    block: int
    source: str
    detail: str

    @property
    def fraction(self) -> float:
        """Share of the pair grid's blocks masked (0-1)."""
        return float(self.blocks.mean()) if self.blocks.size else 0.0

    def window(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """The mask over a window of the pair grid, ``(height, width)`` bool (outside the grid: False)."""
        out = np.zeros((height, width), bool)
        rows = np.arange(row, row + height) // self.block
        cols = np.arange(col, col + width) // self.block
        ri = (rows >= 0) & (rows < self.blocks.shape[0])
        ci = (cols >= 0) & (cols < self.blocks.shape[1])
        out[np.ix_(ri, ci)] = self.blocks[np.ix_(rows[ri], cols[ci])]
        return out

    def check_grid(self, grid: Grid, *, path: str | Path | None = None) -> None:
        """InputError unless ``grid`` is the grid the mask was made on (a caller's pair grid)."""
        if grid != self.grid:
            raise InputError("the cloud mask's pair grid differs from this run's (are both dates on one grid?)",
                             path=path)

    def describe(self) -> str:
        """One line for outputs and tags."""
        return f"{self.detail}: {self.fraction:.2%} masked"


def grow_blocks(cloud: np.ndarray, block: int, buffer: int) -> tuple[np.ndarray, int]:
    """``(cloud blocks grown by buffer, the buffer applied in pixels)``: ``buffer`` pair-grid pixels rounded up to
    whole blocks, grown in all 8 directions."""
    from scipy import ndimage

    grow = -(-buffer // block)
    if grow and cloud.any():
        cloud = ndimage.binary_dilation(cloud, structure=np.ones((3, 3), bool), iterations=grow)
    return cloud, grow * block


def pair_cloud_mask(t1: str | Path, t2: str | Path, grid: Grid) -> PairCloudMask:
    """The clouds of a pair on its pair grid ``grid`` (the change map's), from B10 where both dates have it
    (L1C), else from SCL where both have it (L2A).

    Raises:
        InputError: naming a date that has neither, or the second date when the two dates have different ones.
    """
    from minescape.change.cirrus_mask import NoCirrusBand, cirrus_mask
    from minescape.change.scl_mask import NoSclLayer, scl_mask

    try:
        mask = cirrus_mask(t1, t2)
        mask.check_grid(grid, path=t2)
        return mask
    except NoCirrusBand as exc:
        no_b10 = Path(exc.path) if exc.path is not None else Path(t1)
    try:
        return scl_mask(t1, t2, grid)
    except NoSclLayer as exc:
        lacking = Path(exc.path) if exc.path is not None else Path(t1)
    if lacking == no_b10:
        raise InputError("has neither B10 (Sentinel-2 L1C) nor an SCL layer (L2A), one of which the cloud mask "
                         "needs in both dates", path=lacking)
    raise InputError("the dates carry different cloud layers (one only B10, the other only SCL); the cloud mask "
                     "needs the same in both", path=Path(t2))

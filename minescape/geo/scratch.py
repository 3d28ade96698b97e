"""An uncompressed, row-major scratch grid on disk: write windows once, read haloed windows many times.

A two-pass raster job (change detection: pass 1 computes the difference, pass 2 needs a global threshold before it
can clean haloed tiles) must keep pass 1's values somewhere. Reading them back from the compressed output costs a
DEFLATE decode of every block, and, when worker processes share the rows, the 256-row blocks under every tile's
halo are decoded twice. A raw file has no blocks: a window is ``height`` positioned reads of ``width`` values, any
process can read it, and nothing is decoded. GDAL's ENVI/raw drivers would do the same with more ceremony
(a header, a dataset per reader), so this is plain ``os.pwrite``/``os.pread`` on one file.

The file is not georeferenced: it is a cache of one grid whose CRS and transform the caller holds. Memory does
not grow with the grid (nothing is mapped); the file is ``height * width * itemsize`` bytes on disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from minescape.atomic import output_error, prepare_output, temp_path
from minescape.errors import OutputError


@dataclass(frozen=True)
class ScratchGrid:
    """A ``height x width`` grid of ``dtype`` values in a raw file (picklable: worker processes open it by path)."""

    path: Path
    height: int
    width: int
    dtype: str = "float32"

    @property
    def itemsize(self) -> int:
        """Bytes per value."""
        return np.dtype(self.dtype).itemsize

    def write(self, values: np.ndarray, window: Window) -> None:
        """Write a 2-D block at ``window`` (whole pixels, inside the grid)."""
        r0, c0, h, w = _checked(self, window)
        if values.shape != (h, w):
            raise ValueError(f"block {values.shape} does not fit window {h} x {w}")
        rows = np.ascontiguousarray(values, dtype=self.dtype)
        try:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                for i in range(h):
                    os.pwrite(fd, rows[i].data, ((r0 + i) * self.width + c0) * self.itemsize)
            finally:
                os.close(fd)
        except OSError as exc:  # a full disk is the output folder's problem, named as such
            raise output_error(exc, self.path) or exc from None

    def read(self, window: Window) -> np.ndarray:
        """The 2-D block at ``window`` (whole pixels, inside the grid), a new array."""
        r0, c0, h, w = _checked(self, window)
        out = np.empty((h, w), dtype=self.dtype)
        n = w * self.itemsize
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i in range(h):
                got = os.preadv(fd, [out[i].data.cast("B")], ((r0 + i) * self.width + c0) * self.itemsize)
                if got != n:
                    raise OSError(f"{self.path}: short read ({got} of {n} bytes)")
        finally:
            os.close(fd)
        return out


def _checked(grid: ScratchGrid, window: Window) -> tuple[int, int, int, int]:
    r0, c0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
    if r0 < 0 or c0 < 0 or h < 0 or w < 0 or r0 + h > grid.height or c0 + w > grid.width:
        raise ValueError(f"window {window} is outside the {grid.height} x {grid.width} scratch grid")
    return r0, c0, h, w


@contextlib.contextmanager
def scratch_grid(beside: str | Path, height: int, width: int, dtype: str = "float32") -> Iterator[ScratchGrid]:
    """A new scratch grid in a temporary file named after ``beside`` (in its folder, created if needed; the name is
    :func:`minescape.atomic.temp_path`'s, so the file of a killed run is swept by the next one), sized up front,
    removed on exit. Refused (:class:`OutputError`) when the folder's file system has less free space than the
    file needs."""
    beside = prepare_output(beside).absolute()  # workers may not share this process's working folder
    size = int(height) * int(width) * np.dtype(dtype).itemsize
    free = shutil.disk_usage(beside.parent).free
    if size > free:  # the file is sparse until written: without this check a full disk shows up half-way
        raise OutputError(f"needs {size / 2**20:,.0f} MiB of scratch space in its folder, {free / 2**20:,.0f} MiB "
                          "free", path=beside.parent, errno=errno.ENOSPC)
    path = temp_path(beside)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        yield ScratchGrid(path, int(height), int(width), np.dtype(dtype).name)
    finally:
        path.unlink(missing_ok=True)

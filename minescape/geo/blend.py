"""The one tiled-inference engine: window origins and blending weights for overlapping patch predictions.

Patch models (change networks, the large-area U-Net) see windows that overlap; each window's output is
weighted by a taper that falls towards its edges and the weighted sum is divided by the summed weights, so
window edges leave no seams. Two origin layouts exist, both here:

* :func:`window_origins`: every ``stride`` pixels from 0, the last window flush with the edge (a scene
  covered exactly; used where the whole scene is processed in order, e.g. ``change predict``);
* :func:`lattice_origins`: the windows of one global lattice (multiples of ``stride``) that touch a pixel
  range, so the blended value of a pixel does not depend on which output tile asks for it (``map predict``).

Sizes and origins are in pixels of the grid being predicted. This module needs numpy only (no GDAL), so the
deep change package runs where the geo stack is not installed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from minescape.errors import ConfigError, check_choice

Taper = Literal["ramp", "hann"]
TAPERS: tuple[str, ...] = ("ramp", "hann")


def window_origins(n: int, *, size: int, stride: int) -> list[int]:
    """Window origins along one axis of ``n`` pixels: every ``stride`` pixels, the last one flush with the
    edge (``[0]`` when ``n <= size``). Sizes in pixels. (:func:`minescape.geo.grid.window_starts` is this.)"""
    if size < 1 or stride < 1:
        raise ConfigError(f"window size and stride must be >= 1 pixel (got {size}, {stride})")
    if n <= size:
        return [0]
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


def fitted_size(n: int, *, size: int, overlap: int, multiple: int = 16) -> int:
    """The smallest window size along an axis of ``n`` pixels that needs no more windows than ``size`` does.

    Windows of ``size`` pixels overlapping by ``overlap`` need ``k`` windows to cover ``n`` pixels; the same
    ``k`` windows cover it at ``ceil((n + (k - 1) * overlap) / k)`` pixels, rounded up to ``multiple`` (the
    network's stride) and never above ``size`` or ``n``. A 799-px city in 512-px windows: 416 px, not 512, so
    the network sees 1.08x the pixels instead of 1.64x; a scene smaller than ``size`` is one window of its size.
    """
    if n < 1 or size < 1 or not 0 <= overlap < size:
        raise ConfigError(f"window fitting needs n, size >= 1 and 0 <= overlap < size (got {n}, {size}, {overlap})")
    k = len(window_origins(n, size=size, stride=size - overlap))
    s = -(-(n + (k - 1) * overlap) // k)
    s = -(-s // multiple) * multiple
    return min(s, size, n)


def fitted_windows(n: int, *, size: int, overlap: int, multiple: int = 16) -> tuple[int, list[int]]:
    """``(window size, origins)`` along an axis of ``n`` pixels: :func:`fitted_size` windows at
    :func:`window_origins` (one window at 0 when it covers the axis)."""
    s = fitted_size(n, size=size, overlap=overlap, multiple=multiple)
    return s, window_origins(n, size=s, stride=max(1, s - overlap))


def lattice_origins(start: int, end: int, n: int, *, size: int, stride: int) -> list[int]:
    """Origins of the lattice windows (multiples of ``stride``, < ``n``) that touch pixels ``[start, end)``."""
    if size < 1 or not 0 < stride <= size:
        raise ConfigError(f"lattice stride must be in 1..size (got size={size}, stride={stride})")
    k = max(0, -(-(start - size + 1) // stride))
    out = []
    while k * stride < end and k * stride < n:
        out.append(k * stride)
        k += 1
    return out


def taper_1d(n: int, *, kind: Taper = "ramp", overlap: int = 0) -> np.ndarray:
    """1-D blending weights of length ``n``, never 0.

    ``ramp``: 1 in the interior, linear from ~0 to 1 over ``overlap`` pixels at both ends (all ones when
    ``overlap`` is 0). ``hann``: ``sin²`` over the whole window plus 1e-3.
    """
    check_choice(kind, TAPERS, what="blending taper")
    if kind == "hann":
        w = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2
        return (w + 1e-3).astype(np.float32)
    if overlap <= 0:
        return np.ones(n, np.float32)
    i = np.arange(n, dtype=np.float32)
    return np.clip(np.minimum(i + 1, n - i) / (overlap + 1), 1e-3, 1.0).astype(np.float32)


def taper_2d(rows: int, cols: int, *, kind: Taper = "ramp", overlap: int = 0) -> np.ndarray:
    """Separable 2-D weights ``(rows, cols)`` (outer product of :func:`taper_1d`)."""
    return np.outer(taper_1d(rows, kind=kind, overlap=overlap), taper_1d(cols, kind=kind, overlap=overlap))


class Blender:
    """Weighted accumulation of overlapping window outputs over a ``(channels, rows, cols)`` region.

    ``add`` puts one window's ``(channels, h, w)`` values (or ``(h, w)``) at ``(row, col)`` of the region
    with weights ``(h, w)``; :meth:`result` is the weighted mean. :meth:`pop_rows` hands out finished rows
    and shifts the rest up, so a scene can be processed strip by strip with bounded memory.
    """

    def __init__(self, channels: int, rows: int, cols: int) -> None:
        self.num = np.zeros((channels, rows, cols), np.float32)
        self.den = np.zeros((rows, cols), np.float32)

    def add(self, values: np.ndarray, row: int, col: int, weights: np.ndarray) -> None:
        """Accumulate one window (clipped to the region)."""
        v = values if values.ndim == 3 else values[None]
        h = min(v.shape[1], self.num.shape[1] - row)
        w = min(v.shape[2], self.num.shape[2] - col)
        self.num[:, row:row + h, col:col + w] += v[:, :h, :w] * weights[:h, :w]
        self.den[row:row + h, col:col + w] += weights[:h, :w]

    def result(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Weighted mean ``(channels, r, c)`` of a part of the region (NaN where nothing was added)."""
        den = self.den[rows, cols]
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.num[:, rows, cols] / den

    def pop_rows(self, n: int) -> np.ndarray:
        """The first ``n`` rows' weighted mean; the remaining rows move up and the freed rows are zeroed."""
        out = self.result(slice(0, n))
        self.num = np.roll(self.num, -n, axis=1)
        self.den = np.roll(self.den, -n, axis=0)
        self.num[:, -n:] = 0
        self.den[-n:] = 0
        return out

"""Sub-pixel co-registration of a pair's second date onto the first date's grid.

Sentinel-2 scenes acquired before the 2019 geometric-refinement baseline are often misregistered between
dates by a fraction of a pixel to more than a pixel (OSCD: up to 1.3 px in Abu Dhabi). Every edge then
shows up as "change". :func:`coregister_pair` estimates one global translation between the dates by phase
correlation (Guizar-Sicairos et al. 2008, ``skimage.registration.phase_cross_correlation``) on the mean of
the standardised 10 m bands, and resamples date 2 bilinearly by that shift. The grid (CRS, transform) is
date 1's and is unchanged; pixels shifted in from outside the scene become NaN (nodata).

The estimate uses at most a ``max_size`` x ``max_size`` window at the scene centre, so its cost does not
grow with the scene; :func:`shift_bands` works on in-memory arrays (the OSCD cities and patch pairs). A
translation is all this corrects: rotation, scale and terrain-dependent residuals stay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from minescape.errors import InputError

#: Bands used for the estimate when the pair has them (10 m, the sharpest); otherwise every band is used.
REFERENCE_BANDS = ("B02", "B03", "B04", "B08")


def _reference_image(data: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
    """Mean of per-band standardised bands ``(C,H,W)`` over ``window``; NaN filled with 0 (the mean)."""
    out = np.zeros(data[(0,) + window].shape, np.float64)
    for band in data:
        b = band[window].astype(np.float64)
        ok = np.isfinite(b)
        if ok.sum() < 2:
            continue
        b = (b - b[ok].mean()) / (b[ok].std() + 1e-12)
        out += np.where(ok, b, 0.0)
    return out / max(len(data), 1)


def central_window(h: int, w: int, max_size: int) -> tuple[int, int, int, int]:
    """``(row_off, col_off, height, width)`` of the central window of at most ``max_size`` x ``max_size`` px."""
    sh, sw = min(h, max_size), min(w, max_size)
    return (h - sh) // 2, (w - sw) // 2, sh, sw


def estimate_shift(ref: np.ndarray, mov: np.ndarray, *, max_size: int = 1024,
                   upsample: int = 20) -> tuple[float, float]:
    """Translation ``(dy, dx)`` in pixels that moves ``mov`` onto ``ref`` (both ``(C,H,W)``, same grid).

    Positive ``dy`` moves ``mov``'s content down, positive ``dx`` to the right. Resolution ``1/upsample`` px.
    """
    if ref.shape != mov.shape or ref.ndim != 3:
        raise ValueError(f"estimate_shift needs two (C,H,W) arrays of one shape, got {ref.shape} and {mov.shape}")
    from skimage.registration import phase_cross_correlation

    top, left, sh, sw = central_window(ref.shape[1], ref.shape[2], max_size)
    window = (slice(top, top + sh), slice(left, left + sw))
    a, b = _reference_image(ref, window), _reference_image(mov, window)
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=upsample, normalization=None)
    return float(shift[0]), float(shift[1])


def shift_bands(data: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``data`` ``(C,H,W)`` moved by ``shift`` px (bilinear, float32): ``out[y, x] = data[y - dy, x - dx]``
    interpolated, as ``scipy.ndimage.shift(order=1)`` moves an image; pixels that need one from outside the
    array (or a NaN neighbour with a weight) are NaN.

    Written out rather than ``ndimage.shift``: that computes each pixel's source coordinate ``y - dy`` anew, so the
    weights' last bits depend on the pixel's index and a window shifted on its own differed from the whole
    scene by one float32 ulp (1.2e-7, ``change detect --coregister`` with another ``--tile``). Here the four
    weights are computed once from the fractional shift and every pixel is the same sum of its integer-offset
    neighbours, so any window of the result equals the whole scene's, bit for bit.
    """
    import math

    (dy, dx), (_, h, w) = shift, data.shape
    iy, ix = math.floor(-dy), math.floor(-dx)
    fy, fx = -dy - iy, -dx - ix  # source of out[y, x]: data[y + iy + fy, x + ix + fx], fy and fx in [0, 1)
    src = np.asarray(data, dtype=np.float32)
    out = np.zeros(data.shape, np.float32)
    reach = np.zeros((h, w), bool)  # pixels whose every weighted neighbour lies inside the array
    reach[max(0, -iy):h - max(0, iy + (fy > 0)), max(0, -ix):w - max(0, ix + (fx > 0))] = True
    for oy, wy in ((0, 1.0 - fy), (1, fy)):
        for ox, wx in ((0, 1.0 - fx), (1, fx)):
            weight = np.float32(wy * wx)
            if weight == 0:
                continue  # a neighbour without weight is not read (a NaN there does not spread)
            ys, xs = iy + oy, ix + ox
            dst = (slice(None), slice(max(0, -ys), min(h, h - ys)), slice(max(0, -xs), min(w, w - xs)))
            srcs = (slice(None), slice(max(0, ys), min(h, h + ys)), slice(max(0, xs), min(w, w + xs)))
            out[dst] += weight * src[srcs]
    out[:, ~reach] = np.nan
    return out


#: Largest shift (px) accepted: beyond it the dates probably do not cover the same place, or change
#: dominates the scene, and a translation is not the fix.
MAX_SHIFT = 5.0
#: Shifts below this (px) leave date 2 untouched (no resampling blur for nothing).
MIN_SHIFT = 0.05


def reference_indexes(band_names: Sequence[str | None] | None, count: int) -> list[int]:
    """0-based indexes of :data:`REFERENCE_BANDS` among ``band_names``; every band when none is there."""
    names = list(band_names or ())
    return [names.index(b) for b in REFERENCE_BANDS if b in names] or list(range(count))


def checked_shift(shift: tuple[float, float], what: str, path=None) -> tuple[float, float]:
    """``shift`` if within :data:`MAX_SHIFT`; InputError naming ``what`` (and ``path``) otherwise."""
    if max(abs(shift[0]), abs(shift[1])) > MAX_SHIFT:
        raise InputError(f"{what}: estimated misregistration ({shift[0]:.2f}, {shift[1]:.2f}) px exceeds "
                         f"{MAX_SHIFT:g} px; the dates may not cover the same place", path=path)
    return shift


def needs_shift(shift: tuple[float, float]) -> bool:
    """Whether ``shift`` is large enough (:data:`MIN_SHIFT`) to resample for."""
    return max(abs(shift[0]), abs(shift[1])) >= MIN_SHIFT


def coregister_arrays(t1: np.ndarray, t2: np.ndarray, band_names: Sequence[str | None] | None,
                      what: str) -> tuple[np.ndarray, tuple[float, float]]:
    """``(date 2 moved onto date 1, (dy, dx))`` for two in-memory ``(C,H,W)`` stacks on one grid.

    ``t2`` itself is returned when the shift is below :data:`MIN_SHIFT` px; InputError naming ``what`` when it
    exceeds :data:`MAX_SHIFT` px.
    """
    idx = reference_indexes(band_names, t1.shape[0])
    shift = checked_shift(estimate_shift(t1[idx], t2[idx]), what)
    return (shift_bands(t2, shift) if needs_shift(shift) else t2), shift


def coregister_pair(pair):
    """``(pair with date 2 resampled onto date 1, (dy, dx))``; the label and date 1 are untouched.

    Raises InputError when the estimated shift exceeds :data:`MAX_SHIFT` px. Shifts below
    :data:`MIN_SHIFT` px leave date 2 as it is.
    """
    t2, shift = coregister_arrays(pair.t1.data, pair.t2.data, pair.t1.band_names, f"pair {pair.name!r}")
    if t2 is pair.t2.data:
        return pair, shift
    return replace(pair, t2=replace(pair.t2, data=t2)), shift


def estimate_reader_shift(read: Callable, shape: tuple[int, int], bands: Sequence[str] | None, *,
                          max_size: int = 1024) -> tuple[float, float]:
    """Shift of date 2 onto date 1 for a windowed pair, estimated on its central ``max_size`` x ``max_size``
    window (the only part read).

    Args:
        read: ``Window -> (a1, a2)``, both ``(C, h, w)`` float arrays on date 1's grid (NaN nodata).
        shape: ``(height, width)`` of the pair grid in pixels.
        bands: band names of the arrays' channels (the 10 m :data:`REFERENCE_BANDS` among them are used).
    """
    from rasterio.windows import Window

    top, left, sh, sw = central_window(shape[0], shape[1], max_size)
    a1, a2 = read(Window(left, top, sw, sh))
    idx = reference_indexes(bands, a1.shape[0])
    return estimate_shift(a1[idx], a2[idx], max_size=max_size)


def shifted_reader(read: Callable, shape: tuple[int, int], shift: tuple[float, float]) -> Callable:
    """A window reader like ``read`` whose date 2 is moved by ``shift`` px.

    Each window is read with a halo of ``ceil(max |shift|) + 1`` px, date 2 is shifted bilinearly and both are
    cropped back, so the result equals shifting the whole scene (NaN where the shift brings in pixels from
    outside it) while memory stays that of one window.
    """
    import math

    from rasterio.windows import Window

    halo = int(math.ceil(max(abs(shift[0]), abs(shift[1])))) + 1
    h, w = shape

    def shifted(window):
        r0, c0 = int(window.row_off), int(window.col_off)
        nr, nc = int(window.height), int(window.width)
        top, left = max(r0 - halo, 0), max(c0 - halo, 0)
        bottom, right = min(r0 + nr + halo, h), min(c0 + nc + halo, w)
        a1, a2 = read(Window(left, top, right - left, bottom - top))
        pad = ((0, 0), (top - (r0 - halo), r0 + nr + halo - bottom), (left - (c0 - halo), c0 + nc + halo - right))
        a2 = shift_bands(np.pad(a2, pad, constant_values=np.nan), shift)
        a1 = a1[:, r0 - top:r0 - top + nr, c0 - left:c0 - left + nc]
        return a1, a2[:, halo:halo + nr, halo:halo + nc]

    return shifted


def estimate_source_shift(source, bands: Sequence[str], *, max_size: int = 1024) -> tuple[float, float]:
    """:func:`estimate_reader_shift` for a :class:`minescape.change.pairs.PairSource`."""
    return estimate_reader_shift(source.read, (source.grid.height, source.grid.width), bands, max_size=max_size)


def shifted_source(source, shift: tuple[float, float]):
    """A ``PairSource`` whose date 2 is moved by ``shift`` px (:func:`shifted_reader`)."""
    read = shifted_reader(source.read, (source.grid.height, source.grid.width), shift)
    return type(source)(source.grid, read, source.kind + ", date 2 co-registered")


__all__ = ["MAX_SHIFT", "MIN_SHIFT", "REFERENCE_BANDS", "central_window", "checked_shift", "coregister_arrays",
           "coregister_pair", "estimate_reader_shift", "estimate_shift", "estimate_source_shift", "needs_shift",
           "reference_indexes", "shift_bands", "shifted_reader", "shifted_source"]

"""Annual composites: reduce the cloud-masked observations of a year to one reflectance stack.

Methods (:data:`METHODS`):

* ``median`` (default; the published method): per pixel and band, the median of the clear observations;
* ``clearest``: the single scene with the most clear pixels (minescape's behaviour before composites), taken
  whole (its cloudy pixels included, as before); its clear mask is the clear count;
* ``medoid``: per pixel, the clear observation with the smallest summed spectral distance to the other clear
  observations (a real spectrum, not a blend of scenes).

Every composite carries the number of scenes used and, per pixel, the count of clear observations. Scenes are
sorted by (date, id) before reducing, so the result does not depend on the order they arrive in (same bytes).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from minescape.errors import InputError, check_choice
from minescape.geo.grid import Grid
from minescape.geo.raster import Raster
from minescape.imagery.sources import ImagerySource, Observation

Method = Literal["median", "clearest", "medoid"]
METHODS: tuple[str, ...] = ("median", "clearest", "medoid")


@dataclass(frozen=True)
class Composite:
    """A composite on a grid.

    Attributes:
        raster: float32 reflectance ``(bands, rows, cols)`` named by band, NaN where no observation is usable.
        clear_count: uint16 ``(1, rows, cols)``: clear observations per pixel (band ``CLEAR_COUNT``).
        scenes: ids of the scenes read (sorted by date, id).
        method: the method used.
        notes: what the readers decided on the way.
    """

    raster: Raster
    clear_count: Raster
    scenes: tuple[str, ...]
    method: str
    notes: tuple[str, ...] = field(default=())

    @property
    def n_scenes(self) -> int:
        """Number of scenes read."""
        return len(self.scenes)

    def clear_fraction(self, mask: np.ndarray | None = None) -> float:
        """Share of pixels (inside ``mask`` when given) with at least one clear observation."""
        has = self.clear_count.data[0] > 0
        if mask is not None:
            return float(has[mask].mean()) if mask.any() else 0.0
        return float(has.mean())


def _medoid(stack: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Per pixel, the clear observation nearest (sum of Euclidean distances) to the other clear ones."""
    n, nb, rows, cols = stack.shape
    out = np.full((nb, rows, cols), np.nan, dtype=np.float32)
    step = max(1, 2_000_000 // max(1, n * n * cols))  # bound the (n, n, rows, cols) distance block
    for r0 in range(0, rows, step):
        x = stack[:, :, r0:r0 + step]
        c = clear[:, r0:r0 + step]
        xz = np.where(c[:, None], x, 0.0).astype(np.float64)
        d = np.sqrt(((xz[:, None] - xz[None]) ** 2).sum(axis=2))  # (n, n, r, c)
        score = (d * c[None, :]).sum(axis=1)
        score[~c] = np.inf
        best = np.argmin(score, axis=0)  # ties: the earliest scene
        pick = np.take_along_axis(x, best[None, None], axis=0)[0]
        out[:, r0:r0 + step] = np.where(c.any(axis=0)[None], pick, np.nan)
    return out


def reduce_observations(observations: Sequence[Observation], grid: Grid, bands: Sequence[str], *,
                        method: Method = "median", mask: np.ndarray | None = None) -> Composite:
    """Reduce observations on ``grid`` to a :class:`Composite` (see module docstring for the methods).

    Args:
        observations: scenes read onto ``grid``; any order.
        grid: their common grid.
        bands: band names of the reflectance stacks.
        method: ``median``, ``clearest`` or ``medoid``.
        mask: pixels that count when ranking scenes for ``clearest`` (the site polygon); default all.
    """
    check_choice(method, METHODS, what="composite method")
    obs = sorted(observations, key=lambda o: (o.date, o.id))
    if not obs:
        raise InputError("no observation to composite")
    stack = np.stack([o.reflectance for o in obs]).astype(np.float32)  # (n, bands, rows, cols)
    clear = np.stack([o.clear for o in obs])
    count = clear.sum(axis=0).astype(np.uint16)
    if method == "median":
        masked = np.where(clear[:, None], stack, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
            data = np.nanmedian(masked, axis=0).astype(np.float32)
    elif method == "medoid":
        data = _medoid(stack, clear)
    else:
        region = mask if mask is not None else np.ones(grid.shape, dtype=bool)
        scores = [int(c[region].sum()) for c in clear]
        best = int(np.argmax(scores))  # ties: the earliest scene
        data = stack[best].copy()
        count = clear[best].astype(np.uint16)
    notes = tuple(n for o in obs for n in o.notes)
    unclear = [o.id for o in obs if not o.clear.any()]
    if unclear:  # one line, not one per scene: a cloudy year can have dozens
        shown = ", ".join(unclear[:3]) + (", ..." if len(unclear) > 3 else "")
        notes += (f"{len(unclear)} of {len(obs)} scenes had no clear pixel here (not used): {shown}",)
    raster = Raster(data, grid.crs, grid.transform, np.nan, tuple(bands))
    counts = Raster(count[np.newaxis], grid.crs, grid.transform, None, ("CLEAR_COUNT",))
    used = tuple(o.id for o in obs) if method != "clearest" else (obs[best].id,)
    return Composite(raster, counts, used, method, notes)


def observe_all(source: ImagerySource, scenes: Sequence, grid: Grid, bands: Sequence[str], *,
                threads: int = 4, area: Grid | None = None) -> list[Observation]:
    """Every scene read onto ``grid``, ``threads`` scenes at a time (reads wait on the network; the result is in
    scene order whatever the timing). ``area``: the whole composite when ``grid`` is one of its tiles (per-scene
    decisions are made over it, :meth:`~minescape.imagery.sources.ImagerySource.observe`); default ``grid``."""
    if threads <= 1 or len(scenes) <= 1:
        return [source.observe(s, grid, bands, area=area) for s in scenes]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(scenes))) as pool:
        return list(pool.map(lambda s: source.observe(s, grid, bands, area=area), scenes))


def annual_composite(source: ImagerySource, grid: Grid, year: int, *, bands: Sequence[str],
                     method: Method = "median", mask: np.ndarray | None = None,
                     min_clear: float = 0.0, what: str = "the area", threads: int | None = None) -> Composite:
    """The ``year`` composite of ``bands`` on ``grid`` from every scene ``source`` finds.

    Args:
        source: a :class:`~minescape.imagery.sources.StacSource` or
            :class:`~minescape.imagery.sources.LocalSource`.
        grid: target grid (a site's 10 m UTM grid).
        year: calendar year (UTC dates).
        bands: Sentinel-2 band names (``B02`` ...).
        method: ``median`` (default), ``clearest`` or ``medoid``.
        mask: pixels that matter (the site polygon) for ``clearest`` and the clear fraction.
        min_clear: least share of ``mask`` pixels with a clear observation; below it an InputError names
            ``what``, the fraction and the scenes.
        what: how errors name the area (``site S01``).
        threads: scenes read at the same time (default ``source.scene_threads``; same result either way).

    Returns:
        The :class:`Composite`: reflectance named by band, per-pixel clear count, scene ids.
    """
    check_choice(method, METHODS, what="composite method")
    scenes = source.scenes(grid, year)
    if not scenes:
        raise InputError(f"{what}: no scene of {year} found ({_describe(source)})")
    obs = observe_all(source, scenes, grid, bands, threads=source.scene_threads if threads is None else threads)
    comp = reduce_observations(obs, grid, bands, method=method, mask=mask)
    frac = comp.clear_fraction(mask)
    if frac < min_clear:
        raise InputError(f"{what}: clear fraction {frac:.2f} < {min_clear:.2f} after cloud masking "
                         f"{len(obs)} scene(s) of {year}")
    return comp


def _describe(source: ImagerySource) -> str:
    d = source.describe()
    if "stac" in d:
        return f"{d['stac']}, collection {d['collection']}, cloud cover <= {d['max_cloud']} %"
    return f"{len(d.get('scenes', []))} local scenes"

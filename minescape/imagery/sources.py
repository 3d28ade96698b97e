"""Imagery sources: where the scenes of a year over an area come from and how one is read onto a grid.

Both sources give the composite engine the same thing, an :class:`Observation` (reflectance stack plus a
per-pixel clear mask on the target grid):

* :class:`StacSource`: items from a STAC API or ItemCollection (:mod:`~minescape.imagery.stac_search`), assets
  read window by window over HTTP or from disk (:mod:`~minescape.imagery.window_reader`), clear pixels from the
  SCL band (:mod:`~minescape.imagery.cloud_mask`);
* :class:`LocalSource`: scenes found on disk (:class:`minescape.imagery.local_scenes.SceneRef`: stacks, band folders,
  local STAC), clear pixels from the spectral test when a scene has no SCL.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from minescape.geo.grid import Grid, bounds_in
from minescape.imagery.cloud_mask import DEFAULT_SCL_MASK, check_scl_classes, scl_clear, spectral_clear
from minescape.imagery.conventions import SCL, BandAsset, StacScene
from minescape.imagery.signing import Signer, default_signer
from minescape.imagery.stac_search import StacQuery, search_scenes
from minescape.imagery.window_reader import (
    ReadOptions,
    WindowCache,
    offset_probe_grid,
    pixels_carry_offset,
    read_window,
    to_reflectance,
    uncarried_offset_note,
    undo_uncarried_offset,
)


class _Decisions:
    """What a source decided per (scene, area) during a run (whether a scene's blue DN carry the -1000 offset),
    so each decision is made once and every tile of the area reuses it. Safe to use from the scene threads."""

    def __init__(self) -> None:
        self._done: dict[tuple, bool] = {}
        self._lock = threading.Lock()

    def get(self, scene_id: str, area: Grid, decide: Callable[[], bool]) -> bool:
        """The decision for ``scene_id`` over ``area``, made by ``decide()`` the first time it is asked for."""
        key = (scene_id, area.crs.to_string() if area.crs else None, tuple(area.transform)[:6], area.width,
               area.height)
        with self._lock:
            if key in self._done:
                return self._done[key]
        value = decide()  # outside the lock: another scene's decision need not wait on this read
        with self._lock:
            return self._done.setdefault(key, value)


@dataclass(frozen=True)
class Observation:
    """One scene on a grid.

    Attributes:
        id: scene id (STAC item id or file name).
        date: acquisition date.
        reflectance: ``(bands, rows, cols)`` float32, NaN = nodata.
        clear: ``(rows, cols)`` bool, valid in every band and not masked as cloud/shadow.
        notes: what the reader decided (e.g. an offset flag overruled by the pixels).
    """

    id: str
    date: dt.date
    reflectance: np.ndarray
    clear: np.ndarray
    notes: tuple[str, ...] = field(default=())


class ImagerySource(Protocol):
    """What the composite engine needs from a source."""

    def scenes(self, grid: Grid, year: int) -> Sequence[Any]:
        """Scenes of ``year`` that may cover ``grid`` (sorted by date, id)."""

    def observe(self, scene: Any, grid: Grid, bands: Sequence[str], *, area: Grid | None = None) -> Observation:
        """One scene read onto ``grid``, a tile of ``area`` (default ``grid``): what is decided per scene rather
        than per pixel (the DN offset its pixels carry) is decided once over ``area``, so tiling never changes it."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity of the source (run records, fingerprints)."""

    @property
    def scene_threads(self) -> int:
        """Scenes worth reading at the same time (1 where reads do not wait on a network)."""


def grid_lonlat(grid: Grid) -> tuple[float, float, float, float]:
    """A grid's bounds in WGS84 degrees (densified)."""
    from rasterio.crs import CRS

    return tuple(bounds_in(grid.bounds, grid.crs, CRS.from_epsg(4326)))  # type: ignore[return-value]


class StacSource:
    """Scenes from a STAC catalogue (API or ItemCollection file).

    Args:
        query: catalogue, collection and cloud ceiling.
        scl_classes: SCL classes masked per pixel (default {0, 1, 3, 8, 9, 10}).
        read: retries, timeouts and the window cache folder.
        signer: href -> readable URL (default :func:`~minescape.imagery.signing.default_signer`: Planetary
            Computer's signer for its catalogue, and for a saved ItemCollection's hrefs on Azure blob storage).
    """

    def __init__(self, query: StacQuery, *, scl_classes: Sequence[int] = DEFAULT_SCL_MASK,
                 read: ReadOptions = ReadOptions(), signer: Signer | None = None) -> None:
        self.query = query
        self.scl_classes = check_scl_classes(scl_classes)
        self.read = read
        self.signer = signer or default_signer(query.source)
        self.cache = WindowCache(read.cache_dir) if read.cache_dir is not None else None
        self._offsets = _Decisions()

    @property
    def scene_threads(self) -> int:
        """Half the asset threads (4 by default; 1 when reading one request after the other)."""
        return max(1, self.read.threads // 2)

    def describe(self) -> dict[str, Any]:
        """Catalogue, collection, cloud ceiling and SCL mask."""
        return {"stac": self.query.source, "collection": self.query.collection, "max_cloud": self.query.max_cloud,
                "scl_mask": list(self.scl_classes)}

    def scenes(self, grid: Grid, year: int) -> list[StacScene]:
        """Items of ``year`` over ``grid`` with cloud cover <= the ceiling."""
        return search_scenes(self.query, grid_lonlat(grid), year)

    def _band(self, asset: BandAsset, grid: Grid, resampling: str) -> np.ndarray:
        return read_window(asset, grid, resampling=resampling, options=self.read, signer=self.signer,
                           cache=self.cache)

    def _bands(self, assets: list[BandAsset], grid: Grid) -> dict[str, np.ndarray]:
        """Several assets' windows, fetched by ``read.threads`` threads (GDAL releases the GIL while it waits)."""
        if self.read.threads <= 1 or len(assets) == 1:
            return {a.band: self._band(a, grid, "bilinear") for a in assets}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.read.threads, len(assets))) as pool:
            arrays = list(pool.map(lambda a: self._band(a, grid, "bilinear"), assets))
        return {a.band: arr for a, arr in zip(assets, arrays, strict=True)}

    def offset_carried(self, scene: StacScene, area: Grid, *, blue_dn: np.ndarray | None = None) -> bool:
        """Whether ``scene``'s blue DN carry the -1000 offset its metadata asks for, decided once per scene and
        ``area`` (:func:`~minescape.imagery.window_reader.pixels_carry_offset` on B02 read bilinear, as every
        band, onto :func:`~minescape.imagery.window_reader.offset_probe_grid` of ``area``) and reused for every
        tile of it. ``blue_dn``: that read when the caller already holds it (a site: the probe grid is the grid
        it read), so it is not fetched twice."""
        blue = scene.assets["B02"]
        return self._offsets.get(scene.id, area, lambda: pixels_carry_offset(
            blue_dn if blue_dn is not None else self._band(blue, offset_probe_grid(area), "bilinear"),
            nodata=blue.nodata))

    def observe(self, scene: StacScene, grid: Grid, bands: Sequence[str], *, area: Grid | None = None) -> Observation:
        """Reflectance of ``bands`` (bilinear onto ``grid``, fetched in parallel) and the SCL clear mask (nearest).

        SCL is read first: a scene with no clear pixel on ``grid`` is not read further (its reflectance is NaN),
        which saves the requests of the 10 other assets for scenes clouded over the site. An Earth Search item
        asking for the -1000 DN offset is checked on its blue DN once over ``area`` (default ``grid``; a composite
        passes its whole area to each tile, :meth:`offset_carried`): where they cannot carry it, every band is read
        with offset 0 and a note says so.
        """
        scene.require([*bands, SCL])
        notes = list(scene.notes)
        scl = self._band(scene.assets[SCL], grid, "nearest")
        scl_ok = scl_clear(scl, masked=self.scl_classes)
        if not scl_ok.any():
            empty = np.full((len(bands), *grid.shape), np.nan, dtype=np.float32)
            return Observation(scene.id, scene.date, empty, scl_ok, tuple(notes))  # the composite counts these
        dns = self._bands([scene.assets[b] for b in bands], grid)
        assets = dict(scene.assets)
        area = grid if area is None else area
        if (scene.convention.startswith("earth-search") and "B02" in assets and assets["B02"].offset_dn != 0
                and not self.offset_carried(scene, area, blue_dn=dns.get("B02") if offset_probe_grid(area) == grid
                                            else None)):
            notes.append(uncarried_offset_note(scene.id, "the catalogue's flag is wrong for this item"))
            assets = {b: BandAsset(a.band, a.href, a.scale, 0.0, a.nodata) for b, a in assets.items()}
        refl = np.stack([to_reflectance(dns[b], assets[b]) for b in bands])
        clear = scl_ok & np.isfinite(refl).all(axis=0)
        return Observation(scene.id, scene.date, refl, clear, tuple(notes))


class LocalSource:
    """Scenes found on disk (files, band folders, local STAC) through :mod:`minescape.imagery.local_scenes`.

    Clear pixels come from the scene's SCL where it has one (local STAC items with an SCL asset, masked by
    ``scl_classes`` as :class:`StacSource` does), else from :func:`~minescape.imagery.cloud_mask.spectral_clear`.
    """

    def __init__(self, refs: Sequence[Any], *, scl_classes: Sequence[int] = DEFAULT_SCL_MASK) -> None:
        self.refs = list(refs)
        self.scl_classes = check_scl_classes(scl_classes)
        self._offsets = _Decisions()

    scene_threads = 1  # local files: reads do not wait on a network

    def describe(self) -> dict[str, Any]:
        """The scene files (and the SCL classes masked, when a scene has SCL)."""
        out: dict[str, Any] = {"scenes": [str(r.source) for r in self.refs]}
        if any(getattr(r, "scl", None) for r in self.refs):
            out["scl_mask"] = list(self.scl_classes)
        return out

    def scenes(self, grid: Grid, year: int) -> list[Any]:
        """Scenes of ``year`` whose footprint meets ``grid``."""
        out = []
        for ref in self.refs:
            if ref.year != year:
                continue
            sg = ref.open().grid
            b = sg.bounds if sg.crs == grid.crs else bounds_in(sg.bounds, sg.crs, grid.crs)
            g = grid.bounds
            if not (b[2] <= g[0] or b[0] >= g[2] or b[3] <= g[1] or b[1] >= g[3]):
                out.append(ref)
        return sorted(out, key=lambda r: (r.date, str(r.source)))

    def offset_carried(self, ref: Any, area: Grid) -> bool:
        """Whether the blue DN of a local STAC scene read with a -1000 DN offset carry it, decided once per scene
        and ``area`` on B02 read bilinear (as every band) onto
        :func:`~minescape.imagery.window_reader.offset_probe_grid` of ``area`` (as :meth:`StacSource.offset_carried`;
        where the probe grid is the grid read, :meth:`observe` decides on what it read instead)."""
        from minescape.sentinel2 import read_stack

        def decide() -> bool:
            dn = read_stack(ref.open(), bands=["B02"], grid=offset_probe_grid(area), reflectance=False).data[0]
            return pixels_carry_offset(np.nan_to_num(dn, nan=0.0), nodata=0.0)

        return self._offsets.get(str(ref.source), area, decide)

    def observe(self, ref: Any, grid: Grid, bands: Sequence[str], *, area: Grid | None = None) -> Observation:
        """Reflectance on ``grid`` (:func:`minescape.sentinel2.read_stack`) and the clear mask: from the scene's
        SCL (nearest onto ``grid``) where it has one, else spectral. A local STAC scene read with the -1000 DN
        offset whose blue DN cannot carry it over ``area`` (default ``grid``; :meth:`offset_carried`) is read as
        already offset, with a note."""
        from minescape.sentinel2 import read_stack

        scl_href = getattr(ref, "scl", None)
        need = list(dict.fromkeys([*bands, "B02"] if scl_href else [*bands, "B02", "B11"]))
        stack = read_stack(ref.open(), bands=need, grid=grid)
        offset = getattr(ref, "offset_dn", None)
        area = grid if area is None else area
        carried = self.offset_carried(ref, area) if offset and offset_probe_grid(area) != grid else None
        note = undo_uncarried_offset(stack, offset, Path(ref.source).name, carried=carried)
        refl = stack.select(list(bands)).data
        notes = (note,) if note else ()
        if scl_href:
            clear = scl_file_clear(scl_href, grid, masked=self.scl_classes)
        else:
            clear = spectral_clear(stack.band("B02"), stack.band("B11"))
        return Observation(Path(ref.source).name, ref.date, refl, clear & np.isfinite(refl).all(axis=0), notes)


def scl_file_clear(path: str, grid: Grid, *, masked: Sequence[int]) -> np.ndarray:
    """``grid.shape`` bool: True where the SCL file ``path`` (read nearest onto ``grid``) has a class not in
    ``masked`` (a local STAC scene's SCL asset)."""
    return scl_clear(read_window(BandAsset(SCL, path, 1.0, 0.0, 0.0), grid, resampling="nearest"), masked=masked)

"""Inputs per site: the clearest scene of a year, and the Sentinel-2 stack plus DEM change clipped to a site on
its 10 m UTM grid. Scenes are found by :mod:`minescape.imagery.local_scenes` (re-exported here:
:class:`SceneRef`, :func:`discover_scenes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS

from minescape.errors import InputError, NoOverlapError
from minescape.geo.grid import Grid, bounds_in, reproject_to_grid
from minescape.geo.raster import Raster, read_window
from minescape.imagery.local_scenes import SceneRef, discover_scenes
from minescape.imagery.window_reader import undo_uncarried_offset
from minescape.sentinel2 import Scene, read_stack
from minescape.sites import Site, site_bounds_in

__all__ = ["SceneRef", "discover_scenes", "clearest_scene", "load_stack", "load_dh", "dh_on_grid", "scene_covers",
           "estimate_cloud", "read_stack_on", "scl_cloud_share", "rank_scenes", "fill_same_date", "SameDateFill",
           "used_cloud_share"]

# ------------------------------------------------------------------------------------------ per site


def scene_covers(scene: Scene, site: Site) -> bool:
    """True when the scene's footprint (its grid bounds) intersects the site's grid."""
    sb = site_bounds_in(site, scene.grid.crs)
    b = scene.grid.bounds
    return not (sb[2] <= b[0] or sb[0] >= b[2] or sb[3] <= b[1] or sb[1] >= b[3])


def estimate_cloud(stack: Raster, mask: np.ndarray, *, blue_min: float = 0.3, swir_max_ratio: float = 1.0) -> float:
    """Share of ``mask`` pixels that are cloud or nodata (0..1).

    Cloud: bright in the blue (B02 > ``blue_min``) and not brighter in SWIR1 than in blue
    (B11 / B02 < ``swir_max_ratio``), which keeps bright soils and roofs out.
    """
    from minescape.imagery.cloud_mask import spectral_clear  # the one spectral cloud test

    if not mask.any():
        return 1.0
    clear = spectral_clear(stack.band("B02"), stack.band("B11"), blue_min=blue_min, swir_max_ratio=swir_max_ratio)
    return float((~clear)[mask].mean())


def rank_scenes(refs: Sequence[SceneRef], site: Site, year: int, *,
                scl_classes: Sequence[int] | None = None) -> list[tuple[SceneRef, float]]:
    """The scenes of ``year`` covering ``site``, clearest first: ``[(scene, site_cloud_share), ...]``.

    Candidates are ranked by the cloud-or-nodata share over the site (from the scene's SCL where it has one,
    ``scl_classes`` masked, default :data:`~minescape.imagery.cloud_mask.DEFAULT_SCL_MASK`; else estimated from
    B02/B11 read on the site's grid), then by the metadata cloud cover, then by date and file (deterministic). The
    share is NaN when only one scene covers the site (nothing to rank, nothing read). Raises NoOverlapError when no
    scene covers the site, InputError when none of ``year`` does (the message names the years that do).
    """
    from minescape.lulc.scene_index import covering as covering_scenes

    covering: list[tuple[SceneRef, Scene]] = covering_scenes(refs, site)  # footprint index, then exact test
    if not covering:
        raise NoOverlapError(f"site {site.id} is outside all {len(refs)} scenes")
    of_year = [(r, s) for r, s in covering if r.year == year]
    if not of_year:
        years = sorted({r.year for r, _ in covering})
        raise InputError(f"site {site.id}: no scene of year {year} covers it (scenes of {years} do)")
    mask = site.mask()
    ranked, probes = [], {}
    for ref, scene in of_year:
        if len(of_year) == 1:
            share = float("nan")
        elif ref.scl is not None:
            share = scl_cloud_share(ref.scl, site.grid, mask, scl_classes)
        else:
            probes[ref] = probe = read_stack_on(scene, site.grid, bands=["B02", "B11"])
            share = estimate_cloud(probe, mask)
        ranked.append((0.0 if np.isnan(share) else share, ref.cloud if ref.cloud is not None else 100.0,
                       ref.date, str(ref.source), ref, share))
    ranked.sort(key=lambda t: t[:4])
    best = ranked[0]
    if best[4] in probes:  # load_stack reuses these bands instead of reading them again
        from minescape.lulc.scene_index import remember_probe

        remember_probe(best[4], site.grid, probes[best[4]])
    return [(t[4], t[5]) for t in ranked]


def clearest_scene(refs: Sequence[SceneRef], site: Site, year: int, *,
                   scl_classes: Sequence[int] | None = None) -> tuple[SceneRef, float, list[str]]:
    """The clearest scene of ``year`` covering ``site`` (the first of :func:`rank_scenes`, whose ranking and
    errors it shares).

    Returns:
        ``(scene, site_cloud_share, notes)``.
    """
    ranked = rank_scenes(refs, site, year, scl_classes=scl_classes)
    best, share = ranked[0]
    notes = [f"{len(ranked)} scene(s) of {year}; chose {best.source.name}"]
    return best, share, notes


@dataclass(frozen=True)
class SameDateFill:
    """Where each pixel of a site's stack comes from after :func:`fill_same_date`.

    Attributes:
        scenes: the chosen (clearest) scene first, then the scenes that filled pixels, in the order they filled.
        source: ``(rows, cols)`` int8 on the site grid: the index in ``scenes`` of the scene each pixel was
            taken from; -1 outside the polygon and where no scene has data.
        notes: what reading the filling scenes decided (:func:`load_stack`).
    """

    scenes: tuple[SceneRef, ...]
    source: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def filled_from(self) -> tuple[str, ...]:
        """File names of the scenes that filled pixels, in the order they filled (the chosen scene left out)."""
        return tuple(ref.source.name for ref in self.scenes[1:])


def fill_same_date(stack: Raster, chosen: SceneRef, ranked: Sequence[tuple[SceneRef, float]], site: Site,
                   inside: np.ndarray, *, bands: Sequence[str]) -> SameDateFill:
    """Fill, in place, the pixels of the site that ``stack`` (``chosen`` read by :func:`load_stack`) has no data
    for from the other scenes of the same date (the same pass: neighbouring tiles of one acquisition), in
    ``ranked`` order (clearest first, :func:`rank_scenes`), so a site across a tile edge is mapped whole.

    ``inside`` is the site's polygon mask on its grid (``site.mask()``, which the caller already has); only
    its pixels are filled. ``chosen``'s pixels are kept wherever it has data in every band; a later scene fills
    only what is still empty, so the result does not depend on anything but the inputs. Each scene is read on
    the site's grid only (a window of the scene), one at a time, and only while part of the site is still empty:
    a site inside one scene reads nothing more and keeps the same bytes.

    Returns:
        the scenes used and, per pixel, which one each pixel came from (:class:`SameDateFill`).
    """
    source = np.where(inside & np.isfinite(stack.data).all(axis=0), 0, -1).astype(np.int8)
    gaps = inside & (source < 0)
    used: list[SceneRef] = [chosen]
    notes: list[str] = []
    for ref, _ in ranked:
        if not gaps.any():
            break
        if ref == chosen or ref.date != chosen.date:
            continue
        other, read_notes = load_stack(ref, site, bands=bands)
        take = gaps & np.isfinite(other.data).all(axis=0)
        if take.any():
            stack.data[:, take] = other.data[:, take]
            gaps &= ~take
            source[take] = len(used)
            used.append(ref)
            notes.extend(read_notes)
        del other  # one other scene's stack at a time
    return SameDateFill(tuple(used), source, tuple(notes))


def used_cloud_share(fill: SameDateFill, stack: Raster, grid: Grid, inside: np.ndarray, *,
                     scl_classes: Sequence[int] | None = None) -> float:
    """Share (0..1) of the polygon's pixels (``inside``, on ``grid``) that are cloud-masked in the scene each was
    taken from (``fill.source``): a masked SCL class (``scl_classes``, default
    :data:`~minescape.imagery.cloud_mask.DEFAULT_SCL_MASK`) where that scene has an SCL file, else the spectral
    cloud test on the filled ``stack``'s B02/B11 (the test of :func:`estimate_cloud`). Pixels without imagery are
    not counted (they are the site's imagery nodata share); 1 for an empty polygon.
    """
    from minescape.imagery.cloud_mask import DEFAULT_SCL_MASK, check_scl_classes, spectral_clear
    from minescape.imagery.sources import scl_file_clear

    if not inside.any():
        return 1.0
    cloudy = np.zeros(inside.shape, dtype=bool)
    spectral = None
    for i, ref in enumerate(fill.scenes):
        taken = inside & (fill.source == i)
        if ref.scl is not None:
            masked = check_scl_classes(DEFAULT_SCL_MASK if scl_classes is None else scl_classes)
            clear = scl_file_clear(ref.scl, grid, masked=masked)
        else:
            if spectral is None:
                spectral = spectral_clear(stack.band("B02"), stack.band("B11"))
            clear = spectral
        cloudy |= taken & ~clear
    return float(cloudy[inside].mean())


def scl_cloud_share(href: str, grid: Grid, mask: np.ndarray, classes: Sequence[int] | None = None) -> float:
    """Share of ``mask`` pixels whose SCL class (the file ``href``, nearest onto ``grid``) is masked
    (``classes``, default :data:`~minescape.imagery.cloud_mask.DEFAULT_SCL_MASK`: no data, defective, shadow,
    clouds, cirrus); 1 for an empty mask."""
    from minescape.imagery.cloud_mask import DEFAULT_SCL_MASK, check_scl_classes
    from minescape.imagery.sources import scl_file_clear

    if not mask.any():
        return 1.0
    masked = check_scl_classes(DEFAULT_SCL_MASK if classes is None else classes)
    return float((~scl_file_clear(href, grid, masked=masked))[mask].mean())


def read_stack_on(scene: Scene, grid: Grid, *, bands: Sequence[str]) -> Raster:
    """Reflectance of ``bands`` on ``grid`` (scenes in other CRSs are warped); see
    :func:`minescape.sentinel2.read_stack`, which reads an aligned multi-band stack in one call."""
    return read_stack(scene, bands=[b.upper() for b in bands], grid=grid)


def load_stack(ref: SceneRef, site: Site, *, bands: Sequence[str]) -> tuple[Raster, tuple[str, ...]]:
    """Reflectance of ``bands`` on the site grid (scenes in other CRSs are warped), NaN outside the site, and the
    notes of what reading it decided (a catalogue DN offset the pixels contradict: read as already offset)."""
    from minescape.lulc.scene_index import describe, recall_probe

    wanted = [b.upper() for b in bands]
    known = recall_probe(ref, site.grid)  # bands the clearest-scene choice already read
    if known is None or not set(known.band_names) & set(wanted):
        stack = read_stack_on(describe(ref), site.grid, bands=wanted)
    else:
        rest = [b for b in wanted if b not in known.band_names]
        part = read_stack_on(describe(ref), site.grid, bands=rest) if rest else None
        merged = np.empty((len(wanted), *known.shape), dtype=np.float32)
        for i, b in enumerate(wanted):
            merged[i] = known.band(b) if b in known.band_names else part.band(b)
        stack = Raster(merged, known.crs, known.transform, np.nan, tuple(wanted))
    note = undo_uncarried_offset(stack, ref.offset_dn, ref.source.name)
    data = stack.data
    data[:, ~site.mask()] = np.nan
    return stack, (note,) if note else ()


def dh_on_grid(dcm_dh: str | Path, grid: Grid, *, resampling: str = "bilinear", what: str = "the area") -> Raster:
    """Elevation change (m, float32) on ``grid``; NaN for voids and outside the DCM.

    Only the window of the DCM covering ``grid`` (plus a 2-pixel margin) is read, so memory follows the grid.
    Raises NoOverlapError when the DCM does not reach ``grid`` at all.
    """
    from rasterio.windows import Window

    from minescape.geo.handles import borrow

    with borrow(dcm_dh) as src:  # one open per process (handle pool), not one per site
        if src.crs is None:
            raise InputError("DEM-change raster has no CRS", path=dcm_dh)
        dgrid = Grid(src.crs, src.transform, src.width, src.height)
        nodata = src.nodata
        b = bounds_in(grid.bounds, grid.crs, CRS.from_user_input(dgrid.crs)) if dgrid.crs != grid.crs \
            else grid.bounds
        try:
            win = dgrid.window_of_bounds(b)
        except NoOverlapError:
            raise NoOverlapError(f"{what} lies outside the DEM-change map", path=dcm_dh) from None
        c0, r0 = max(0, int(win.col_off) - 2), max(0, int(win.row_off) - 2)
        c1 = min(dgrid.width, int(win.col_off + win.width) + 2)
        r1 = min(dgrid.height, int(win.row_off + win.height) + 2)
        part = read_window(src, bands=[1], window=Window(c0, r0, c1 - c0, r1 - r0), path=dcm_dh)
    data = part.data.astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        data[part.data == nodata] = np.nan
    src_r = Raster(data, part.crs, part.transform, np.nan, ("DH",))
    return reproject_to_grid(src_r, grid, resampling=resampling, dst_nodata=np.nan)


def load_dh(dcm_dh: str | Path, site: Site, *, resampling: str = "bilinear") -> Raster:
    """Elevation change (m) on the site grid, NaN for voids, outside the DCM and outside the site."""
    dh = dh_on_grid(dcm_dh, site.grid, resampling=resampling, what=f"site {site.id}")
    dh.data[:, ~site.mask()] = np.nan
    return dh

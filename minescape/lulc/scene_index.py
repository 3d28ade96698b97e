"""Scene descriptions and their footprint index, built once per process for a run's scenes.

A per-site run used to open every scene for every site to learn its grid (5 scenes x 2 opens per site) and
test each footprint. Here each scene is described once per process (:func:`describe`, checked against the
file's inode, size and modification time) and a :class:`~minescape.geo.footprints.FootprintIndex` over all of
them answers which scenes may cover a site; only those are tested exactly (:func:`covering`), so the
answer is the same as testing every scene.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from minescape.geo.footprints import FootprintIndex
from minescape.sentinel2 import Scene
from minescape.sites import Site, site_bounds_in

_MAX_SCENES = 4096  # descriptions kept per process
_MAX_INDEXES = 8  # scene lists (runs) indexed per process
_lock = threading.Lock()
_scenes: OrderedDict = OrderedDict()  # ref -> (signature, Scene)
_indexes: OrderedDict = OrderedDict()  # tuple(refs) -> SceneIndex


def _signature(ref) -> tuple | None:
    try:
        st = os.stat(ref.source)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def describe(ref) -> Scene:
    """``ref.open()`` (a :class:`~minescape.sentinel2.Scene`: band files, grid, nodata), cached per process
    while the scene's file (or folder) is unchanged."""
    sig = _signature(ref)
    with _lock:
        hit = _scenes.get(ref)
        if hit is not None and hit[0] == sig:
            _scenes.move_to_end(ref)
            return hit[1]
    scene = ref.open()
    with _lock:
        _scenes[ref] = (sig, scene)
        _scenes.move_to_end(ref)
        while len(_scenes) > _MAX_SCENES:
            _scenes.popitem(last=False)
    return scene


@dataclass(frozen=True)
class SceneIndex:
    """A run's scenes, described, with a footprint index over them."""

    refs: tuple
    scenes: tuple[Scene, ...]
    signatures: tuple
    crs_keys: tuple[str, ...]
    index: FootprintIndex


def scene_index(refs: Sequence) -> SceneIndex:
    """The :class:`SceneIndex` of ``refs`` (built on first use in this process, then reused)."""
    key = tuple(refs)
    with _lock:
        hit = _indexes.get(key)
        if hit is not None:
            _indexes.move_to_end(key)
            return hit
    scenes = tuple(describe(r) for r in key)
    built = SceneIndex(key, scenes, tuple(_signature(r) for r in key), tuple(s.grid.crs.to_wkt() for s in scenes),
                       FootprintIndex([s.grid for s in scenes]))
    with _lock:
        _indexes[key] = built
        while len(_indexes) > _MAX_INDEXES:
            _indexes.popitem(last=False)
    return built


def covering(refs: Sequence, site: Site) -> list[tuple[object, Scene]]:
    """``(ref, scene)`` of every scene in ``refs`` whose footprint intersects ``site``'s grid (input order).

    Only the index's candidates are tested exactly (the test of :func:`minescape.lulc.inputs.scene_covers`); a candidate
    whose file changed since the index was built rebuilds the index first.
    """
    idx = scene_index(refs)
    cands = idx.index.candidates(site.grid.bounds, site.grid.crs)
    if any(_signature(idx.refs[i]) != idx.signatures[i] for i in cands):
        with _lock:
            _indexes.pop(idx.refs, None)
        idx = scene_index(refs)
        cands = idx.index.candidates(site.grid.bounds, site.grid.crs)
    site_bounds: dict[str, tuple] = {}  # the site's bounds in each scene CRS, transformed once
    out = []
    for i in cands:
        scene = idx.scenes[i]
        key = idx.crs_keys[i]
        if key not in site_bounds:
            site_bounds[key] = site_bounds_in(site, scene.grid.crs)
        sb, b = site_bounds[key], scene.grid.bounds
        # the test of minescape.lulc.inputs.scene_covers, with the transformed bounds shared
        if not (sb[2] <= b[0] or sb[0] >= b[2] or sb[3] <= b[1] or sb[1] >= b[3]):
            out.append((idx.refs[i], scene))
    return out


_probe = threading.local()  # the last clearest-scene probe of this thread: (ref, grid, Raster)


def remember_probe(ref, grid, probe) -> None:
    """Keep the bands the clearest-scene choice read for the chosen scene on ``grid`` (one per thread), so the
    stack read right after (:func:`minescape.lulc.inputs.load_stack`) does not read them again."""
    _probe.value = (ref, grid, probe)


def recall_probe(ref, grid):
    """The remembered probe of ``ref`` on ``grid`` (a Raster), or None; forgotten once recalled."""
    value = getattr(_probe, "value", None)
    _probe.value = None
    if value is None or value[0] != ref or not (value[1] is grid or value[1] == grid):
        return None
    return value[2]


def clear() -> None:
    """Forget every cached description and index of this process."""
    with _lock:
        _scenes.clear()
        _indexes.clear()

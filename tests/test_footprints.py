"""The footprint index: a site only touches the scenes that cover it, with the answer of testing them all."""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS

from minescape.geo.footprints import FootprintIndex, lonlat_box
from minescape.geo.grid import Grid
from minescape.geo.handles import close_all, pool, session
from minescape.geo.raster import Raster, write_raster
from minescape.lulc import scene_index
from minescape.lulc.inputs import clearest_scene, discover_scenes, load_stack, scene_covers
from minescape.sentinel2 import TEN_BANDS
from minescape.sites import make_site, site_bounds_in


def _scene(folder, name, crs, x0, y0, size=40, value=900):
    rng = np.random.default_rng(len(name))
    data = rng.integers(value, value + 200, (10, size, size), dtype=np.uint16)
    return write_raster(Raster(data, CRS.from_epsg(crs), Affine(10, 0, x0, 0, -10, y0), 0, TEN_BANDS),
                        folder / name, tags={"DATE": name[11:15] + "-07-15"})


def _scenes(tmp_path):
    """A 3 x 2 checkerboard of 400 m scenes in UTM 33N, one more in UTM 34N far east, two of another year."""
    folder = tmp_path / "scenes"
    names = []
    for i in range(3):
        for j in range(2):
            names.append(_scene(folder, f"S2A_MSIL2A_2019{i}{j}_T33.tif", 32633, 500000 + 400 * i, 4000000 - 400 * j))
    names.append(_scene(folder, "S2A_MSIL2A_2019_T34_far.tif", 32634, 400000, 4100000))
    names.append(_scene(folder, "S2A_MSIL2A_2020_T33a.tif", 32633, 500000, 4000000))
    names.append(_scene(folder, "S2A_MSIL2A_2020_T33b.tif", 32633, 501600, 4000000))
    return folder


def test_site_touches_only_covering_scenes(tmp_path):
    folder = _scenes(tmp_path)
    refs = discover_scenes([folder])
    assert len(refs) == 9
    # a site inside the first column (x 500000-500400), rows 0 and 1 (it straddles their border)
    to_ll = __import__("pyproj").Transformer.from_crs(32633, 4326, always_xy=True)
    ring = [to_ll.transform(x, y) for x, y in ((500100, 3999700), (500300, 3999700), (500300, 3999500),
                                                (500100, 3999500))]
    site = make_site("s1", shapely.Polygon(ring))
    scene_index.clear()
    idx = scene_index.scene_index(refs)
    cands = idx.index.candidates(site.grid.bounds, site.grid.crs)
    assert 0 < len(cands) < len(refs)  # the index rules out the far scenes before any exact test
    far = [i for i, r in enumerate(refs) if "far" in r.source.name or "T33b" in r.source.name]
    assert not set(far) & set(cands)
    brute = [r for r in refs if scene_covers(r.open(), site)]
    got = [r for r, _ in scene_index.covering(refs, site)]
    assert got == brute and len(brute) == 3  # the two 2019 scenes of column 0 and the 2020 "a" scene
    assert {r.source.name for r in got} == {"S2A_MSIL2A_201900_T33.tif", "S2A_MSIL2A_201901_T33.tif",
                                            "S2A_MSIL2A_2020_T33a.tif"}
    # the per-site chain now reads pixels of covering scenes only (descriptions are cached per process)
    close_all()
    opened = pool().opened
    with session():  # as a run's units are (runner.run_units): readers kept until the session ends
        ref, _, _ = clearest_scene(refs, site, 2019)
        stack, _ = load_stack(ref, site, bands=["B02", "B11"])
        assert np.isfinite(stack.data).sum() > 0
        touched = {r.name.rsplit("/", 1)[-1] for r in pool().idle_readers()}
        assert touched and touched <= {"S2A_MSIL2A_201900_T33.tif", "S2A_MSIL2A_201901_T33.tif"}
        assert pool().opened - opened == len(touched)  # each scene opened once for the whole chain
    assert pool().idle_count() == 0


def test_index_candidates_match_exact_tests_everywhere(tmp_path):
    folder = _scenes(tmp_path)
    refs = discover_scenes([folder])
    scene_index.clear()
    scenes = [r.open() for r in refs]
    index = FootprintIndex([s.grid for s in scenes])
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(40):  # random small sites around the scenes; the index never drops a covering scene
        x, y = 499800 + rng.uniform(0, 1600), 3999000 + rng.uniform(0, 1400)
        to_ll = __import__("pyproj").Transformer.from_crs(32633, 4326, always_xy=True)
        site = make_site("r", shapely.box(*to_ll.transform(x, y), *to_ll.transform(x + 90, y + 90)))
        cands = set(index.candidates(site.grid.bounds, site.grid.crs))
        exact = {i for i, s in enumerate(scenes) if scene_covers(s, site)}
        assert exact <= cands
        checked += len(exact)
        assert [r for r, _ in scene_index.covering(refs, site)] == [refs[i] for i in sorted(exact)]
    assert checked > 0
    # the exact test uses the same transformed bounds as scene_covers
    assert site_bounds_in(site, scenes[0].grid.crs) is not None


def test_antimeridian_footprint_is_always_a_candidate():
    across = Grid(CRS.from_epsg(32660), Affine(10, 0, 800000, 0, -10, 100000), 10000, 1000)  # lon 179.7 .. 180.6
    assert lonlat_box(across.bounds, across.crs) is None
    plain = Grid(CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4000000), 100, 100)
    index = FootprintIndex([plain, across])
    assert index.candidates((0.0, 0.0, 0.1, 0.1), "EPSG:4326") == [1]
    w, s, e, n = lonlat_box(plain.bounds, plain.crs)
    assert index.candidates((w, s, e, n), "EPSG:4326") == [0, 1]

"""Boundary tracing (4-connectivity) gives GDAL's polygons as flat arrays; RaggedPolygons round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from minescape.geo.polygonize import polygonize_ragged
from minescape.geo.raster import Raster
from minescape.geo.trace import trace_polygons

NORTH_UP = Affine(10, 0, 500000, 0, -10, 7000000)
MIRRORED = Affine(2, 0, 100, 0, 2, 50)  # y grows with the row: traced rings must be reversed


def _gdal(data, transform, nodata):
    mask = data != nodata if nodata is not None else None
    shapes = rasterio.features.shapes(data, mask=mask, transform=transform, connectivity=4)
    pairs = [(shapely.geometry.shape(g), int(v)) for g, v in shapes]
    return np.array([g for g, _ in pairs], dtype=object), np.array([v for _, v in pairs], dtype=np.int64)


def _canonical(geoms):
    return sorted(shapely.to_wkt(shapely.normalize(geoms), rounding_precision=6).tolist())


def _random_map(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 30, 2))
    data = rng.integers(0, int(rng.integers(2, 6)), (h, w)).astype(np.uint8)
    if seed % 3 == 0:  # blockier patches: long runs, holes, diagonal contacts of one patch
        data = ndimage.zoom(data, 2, order=0)
    return data


@pytest.mark.parametrize("seed", range(60))
def test_same_polygons_as_gdal(seed):
    data = _random_map(seed)
    nodata = 0 if seed % 2 else None
    transform = MIRRORED if seed % 5 == 0 else NORTH_UP
    ours = trace_polygons(data, transform, nodata)
    geoms = ours.to_shapely()
    ref, ref_codes = _gdal(data, transform, nodata)
    assert len(ours) == len(ref)
    assert shapely.is_valid(geoms).all()
    assert shapely.is_ccw(shapely.get_exterior_ring(geoms)).all()  # shells counter-clockwise ...
    holes = shapely.get_rings(geoms)[np.concatenate([[False] + [True] * (len(g.interiors)) for g in geoms])]
    assert not shapely.is_ccw(holes).any()  # ... holes clockwise, on both grids
    for code in np.unique(ref_codes):
        assert _canonical(geoms[ours.codes == code]) == _canonical(ref[ref_codes == code])
    # vertices only where the boundary turns, as GDAL: the same number of coordinates
    assert len(ours.xy) == shapely.get_num_coordinates(ref).sum()


def test_patch_touching_itself_diagonally_is_shell_plus_touching_hole():
    a = np.zeros((5, 5), dtype=np.uint8)
    a[0, :] = a[:, 0] = 1  # an L ...
    a[0:4, 4] = 1
    a[4, 1:4] = 1  # ... closed around the square except one diagonal contact at the bottom right
    a[4, 4] = 2
    ps = trace_polygons(a, NORTH_UP, None)
    one = ps.to_shapely()[ps.codes == 1]
    assert len(one) == 1 and one[0].is_valid
    assert len(one[0].interiors) == 1  # the enclosed 0-patch is a hole touching the shell at a corner
    assert one[0].area == pytest.approx((a == 1).sum() * 100)


def test_empty_single_pixel_and_uniform_maps():
    empty = trace_polygons(np.zeros((4, 4), np.uint8), NORTH_UP, 0)
    assert len(empty) == 0 and empty.to_shapely().shape == (0,)
    one = trace_polygons(np.array([[3]], np.uint8), NORTH_UP, None)
    assert one.codes.tolist() == [3] and len(one.xy) == 5
    assert one.to_shapely()[0].equals(shapely.box(500000, 6999990, 500010, 7000000))
    big = trace_polygons(np.full((700, 600), 5, np.int32), NORTH_UP, None)  # spans several strips
    assert len(big) == 1 and big.to_shapely()[0].area == pytest.approx(700 * 600 * 100)


def test_nodata_in_any_band_and_unrepresentable_nodata():
    data = np.stack([np.full((3, 3), 4, np.uint8), np.full((3, 3), 4, np.uint8)])
    data[1, 1, 1] = 0  # nodata only in the second band hides the pixel
    ps = polygonize_ragged(Raster(data, CRS.from_epsg(32750), NORTH_UP, 0))
    assert len(ps) == 1 and len(ps.to_shapely()[0].interiors) == 1
    ps = polygonize_ragged(Raster(data[:1], CRS.from_epsg(32750), NORTH_UP, -1.0))  # no uint8 is -1
    assert ps.to_shapely()[0].area == pytest.approx(900)


def test_ragged_take_reverse_and_wkb_match_shapely():
    rng = np.random.default_rng(4)
    data = ndimage.zoom(rng.integers(1, 4, (12, 12)).astype(np.uint8), 3, order=0)
    ps = trace_polygons(data, NORTH_UP, None)
    geoms = ps.to_shapely()
    assert ps.to_wkb().tolist() == shapely.to_wkb(geoms, byte_order=1, output_dimension=2).tolist()
    idx = np.argsort(ps.codes, kind="stable")[::-1]
    taken = ps.take(idx)
    assert shapely.equals_exact(taken.to_shapely(), geoms[idx], tolerance=0).all()
    rev = ps.reversed_rings().to_shapely()
    assert shapely.equals(rev, geoms).all()
    assert not shapely.is_ccw(shapely.get_exterior_ring(rev)).any()


@pytest.mark.parametrize("n", [1, 2, 7, 300, 5000])
def test_both_ring_walks_agree(n):
    from minescape.geo.trace import _walk_dfs, _walk_jumping

    rng = np.random.default_rng(n)
    succ = rng.permutation(n)  # a random permutation: cycles of every length
    seq_a, pos_a = _walk_jumping(succ)
    seq_b, pos_b = _walk_dfs(succ)
    assert seq_a.tolist() == seq_b.tolist() and pos_a.tolist() == pos_b.tolist()
    assert sorted(seq_a.tolist()) == list(range(n))
    ends = np.append(pos_a[1:], n)
    for start, end in zip(pos_a, ends, strict=True):  # each cycle is walked along succ from its lowest element
        cycle = seq_a[start:end]
        assert cycle[0] == cycle.min()
        assert np.all(succ[cycle[:-1]] == cycle[1:]) and succ[cycle[-1]] == cycle[0]


def test_by_code_order_is_a_stable_sort_of_the_scan_order():
    rng = np.random.default_rng(11)
    data = ndimage.zoom(rng.integers(0, 5, (15, 17)).astype(np.uint8), 2, order=0)
    scan = trace_polygons(data, NORTH_UP, 0)
    by_code = trace_polygons(data, NORTH_UP, 0, by_code=True)
    expected = scan.take(np.argsort(scan.codes, kind="stable"))
    assert by_code.codes.tolist() == expected.codes.tolist()
    assert np.array_equal(by_code.xy, expected.xy) and np.array_equal(by_code.ring_offsets, expected.ring_offsets)

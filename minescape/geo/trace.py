"""Class raster -> polygons as flat coordinate arrays, by tracing pixel edges (4-connectivity).

What GDAL's polygonize (``rasterio.features.shapes``) computes, but returned as numpy arrays instead of one
GeoJSON dict per polygon and one Python tuple per vertex: on a 4000 x 4000 class map rasterio spends ~40 % of
its time building those objects and turning them back into arrays costs as much again. Everything here is
vectorised numpy/scipy; memory is a few bytes per pixel (labels and two vertex lookup tables).

Algorithm
---------
1. Connected patches of equal value (4-connectivity) are labelled (``skimage.measure.label``).
2. Boundary *runs*: maximal straight stretches of pixel edges with the same patch on the same side.
   A horizontal edge with patch K above is walked eastward, with K below westward; a vertical edge
   with K to the west is walked northward, to the east southward. Every ring is thus walked with its
   patch on the left (shells counter-clockwise, holes clockwise on a north-up grid) and its vertices
   are exactly the run ends (no collinear vertices, as GDAL).
3. Each horizontal run ends where a vertical run of the same patch starts, and vice versa. At most one
   run leaves a vertex in each direction, so the successor is found in dense per-vertex tables. Where
   two diagonal pixels of one patch meet at a corner (the patch is connected around elsewhere), the
   ring turns away from the pixel it came along: the patch's outer boundary and the boundary of the
   hole it encloses stay two rings touching at that corner, which is valid (a self-touching shell
   would not be).
4. Rings are the cycles of the successor permutation (``scipy.sparse.csgraph``); each patch has one
   counter-clockwise shell, the others are its holes.

Vertices are pixel corners mapped through the affine transform. Polygons come in the raster-scan order
of each patch's first pixel (optionally by value first), each shell first and then its holes.
"""

from __future__ import annotations

import numpy as np
from affine import Affine

from minescape.geo.ragged import RaggedPolygons

STRIP = 512  # rows (or columns) of the label array processed at once
SMALL_WALK = 50_000  # runs up to which rings are ordered by pointer jumping (scipy's set-up costs more)


def label_patches(data: np.ndarray, nodata: int | None) -> tuple[np.ndarray, int]:
    """int32 labels 1..n of 4-connected patches of equal value; 0 where ``data == nodata``."""
    from skimage.measure import label

    if nodata is None:  # every pixel counts: use a value below the minimum as background
        low = int(data.min()) - 1
        if np.iinfo(data.dtype).min <= low:
            background, work = low, data
        else:
            background, work = -1, data.astype(np.int64)
    else:
        background, work = int(nodata), data
    lab, n = label(work, background=background, connectivity=1, return_num=True)
    return lab.astype(np.int32, copy=False), int(n)


def _runs(block: np.ndarray, first_line: int):
    """Boundary runs on the lines between consecutive rows of ``block`` (line r lies between rows r and
    r+1; edge t of a line lies between ``block[r, t]`` and ``block[r + 1, t]``).

    Returns two tuples ``(line, first edge, last edge, owner)``, for runs owned by the patch on the
    first side (upper row) and on the second side (lower row), in line-major order.
    """
    upper, lower = block[:-1], block[1:]
    n_t = block.shape[1]
    flat = np.flatnonzero(upper != lower)  # boundary edges only: the work is sparse from here on
    t = flat % n_t
    adjacent = np.zeros(len(flat), dtype=bool)
    adjacent[1:] = (np.diff(flat) == 1) & (t[1:] != 0)
    out = []
    for side in (upper, lower):
        own = side.ravel()[flat]
        cont = adjacent.copy()
        cont[1:] &= own[1:] == own[:-1]
        starts = np.flatnonzero(~cont)
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:] - 1
        ends[-1:] = len(flat) - 1
        keep = own[starts] != 0  # runs along nodata belong to no polygon
        starts, ends = starts[keep], ends[keep]
        out.append(((flat[starts] // n_t + first_line).astype(np.int64), t[starts].astype(np.int64),
                    t[ends].astype(np.int64), own[starts]))
    return out


def _line_blocks(labels: np.ndarray, transpose: bool):
    """Blocks of consecutive rows (or columns) of ``labels`` padded with a 0 line at both ends, and
    the index of the first line between them."""
    n = labels.shape[1] if transpose else labels.shape[0]
    for r0 in range(0, n + 1, STRIP):
        r1 = min(n + 1, r0 + STRIP)  # lines r0 .. r1-1 need rows r0-1 .. r1-1
        lo, hi = max(r0 - 1, 0), min(r1, n)
        part = labels[:, lo:hi].T if transpose else labels[lo:hi]
        width = part.shape[1]
        block = np.zeros((r1 - r0 + 1, width), dtype=labels.dtype)
        block[lo - (r0 - 1):lo - (r0 - 1) + (hi - lo)] = part
        yield block, r0


def trace_polygons(data: np.ndarray, transform: Affine, nodata: int | None = None, *,
                   by_code: bool = False) -> RaggedPolygons:
    """Vectorise a 2-D class array: one polygon per 4-connected patch of one value, holes kept.

    Args:
        data: 2-D integer class array.
        transform: the raster's affine transform (pixel corners -> CRS coordinates).
        nodata: value of pixels outside the map (no polygons), or None.
        by_code: order polygons by value first (then, as always, by the raster-scan order of each
            patch's first pixel).

    Returns:
        :class:`RaggedPolygons` in the raster's CRS; shells counter-clockwise and holes clockwise
        for any transform (rings are reversed when the transform mirrors the grid).
    """
    h, w = data.shape
    labels, n_patches = label_patches(data, nodata)
    if n_patches == 0:
        return RaggedPolygons.empty()
    stride = w + 1  # vertex (i, j) has id i * stride + j, i in 0..h, j in 0..w

    # horizontal runs: line i between pixel rows i-1 and i; eastward if the patch is above
    hs, he, ho, hdir = [], [], [], []
    for block, i0 in _line_blocks(labels, transpose=False):
        (li, f, last, o), (li2, f2, l2, o2) = _runs(block, i0)
        hs += [li * stride + f, li2 * stride + l2 + 1]  # start vertex: east walks from f, west from last+1
        he += [li * stride + last + 1, li2 * stride + f2]
        ho += [o, o2]
        hdir += [np.ones(len(o), bool), np.zeros(len(o2), bool)]  # True = eastward
    h_start, h_end, h_owner, h_east = (np.concatenate(a) for a in (hs, he, ho, hdir))
    # vertical runs: line j between pixel columns j-1 and j; northward if the patch is to the west
    vs, ve, vo, vdir = [], [], [], []
    for block, j0 in _line_blocks(labels, transpose=True):
        (lj, f, last, o), (lj2, f2, l2, o2) = _runs(block, j0)
        vs += [(last + 1) * stride + lj, f2 * stride + lj2]  # north walks from row last+1 up to f
        ve += [f * stride + lj, (l2 + 1) * stride + lj2]
        vo += [o, o2]
        vdir += [np.ones(len(lj), bool), np.zeros(len(lj2), bool)]  # True = northward
    v_start, v_end, v_owner, v_north = (np.concatenate(a) for a in (vs, ve, vo, vdir))
    del labels
    n_h, n_v = len(h_start), len(v_start)

    # successor of each horizontal run: the vertical run of the same patch leaving its end vertex. At
    # most one run leaves a vertex northward (owned by the pixel north-west of it) and one southward
    # (south-east). Only where one patch holds two diagonal pixels are both its own: the ring then
    # turns away from the pixel it came along, so the patch's outer and inner boundaries stay separate
    # rings (a shell and a hole touching at that corner: valid, as GDAL writes it).
    n_vert = (h + 1) * stride
    table = np.full((2, n_vert), -1, dtype=np.int32)  # [0] northward start, [1] southward start
    table[np.where(v_north, 0, 1), v_start] = np.arange(n_v, dtype=np.int32)
    h_next = _turn(table, h_end, np.where(h_east, 1, 0), h_owner, v_owner)  # east: south if own, west: north
    # successor of each vertical run: the horizontal run leaving its end vertex (same rule)
    table[:] = -1
    table[np.where(h_east, 0, 1), h_start] = np.arange(n_h, dtype=np.int32)  # [0] eastward, [1] westward
    v_next = _turn(table, v_end, np.where(v_north, 0, 1), v_owner, h_owner)  # north: east if own, south: west
    del table, v_end, h_end
    if np.any(h_next < 0) or np.any(v_next < 0):  # cannot happen for a consistent labelling
        raise RuntimeError("boundary tracing failed: an unmatched run end")

    # rings: cycles of H -> V -> H, walked in order; vertices are the run starts
    seq, ring_pos = _walk(v_next[h_next])
    n_rings = len(ring_pos)
    verts = np.empty(2 * len(seq), dtype=np.int64)
    verts[0::2] = h_start[seq]
    verts[1::2] = v_start[h_next[seq]]
    cols = (verts % stride).astype(np.float64)
    rows = (verts // stride).astype(np.float64)
    del verts
    off = np.append(2 * ring_pos, 2 * len(seq))  # open rings in walking order
    # twice the signed area of each ring in pixel units (y up = -row): its sign tells shells from holes
    nxt = np.arange(1, len(cols) + 1)
    nxt[off[1:] - 1] = off[:-1]
    area2 = np.add.reduceat(rows * cols[nxt] - cols * rows[nxt], off[:-1])
    first = seq[ring_pos]  # first run of each ring
    owner = h_owner[first]
    is_hole = area2 < 0
    if np.count_nonzero(~is_hole) != n_patches or len(np.unique(owner[~is_hole])) != n_patches:
        raise RuntimeError("boundary tracing failed: a patch without exactly one shell")
    # class value of each ring's patch: the pixel beside its first run (above an eastward run, below a westward one)
    si, sj = h_start[first] // stride, h_start[first] % stride
    east = h_east[first]
    ring_code = np.asarray(data[np.where(east, si - 1, si), np.where(east, sj, sj - 1)], dtype=np.int64)
    keys = (is_hole, owner, ring_code) if by_code else (is_hole, owner)
    order = np.lexsort(keys)  # by (value,) patch, shell first, then holes in walking order

    # gather the rings in that order, closing each (first vertex repeated)
    open_len = np.diff(off)[order]
    closed_len = open_len + 1
    ring_offsets = np.concatenate([[0], np.cumsum(closed_len)]).astype(np.int64)
    pos = np.arange(ring_offsets[-1]) - np.repeat(ring_offsets[:-1], closed_len)
    pos[ring_offsets[1:] - 1] = 0
    if transform.determinant > 0:  # mirrored grid: walk every ring the other way
        pos = np.where(pos == 0, 0, np.repeat(open_len, closed_len) - pos)
    take = np.repeat(off[:-1][order], closed_len) + pos
    a, b, c, d, e, f = transform[:6]
    cols, rows = cols[take], rows[take]
    xy = np.empty((len(take), 2))
    xy[:, 0] = c + a * cols + b * rows
    xy[:, 1] = f + d * cols + e * rows
    patch = owner[order]
    geom_offsets = np.append(np.flatnonzero(np.r_[True, patch[1:] != patch[:-1]]), n_rings).astype(np.int64)
    return RaggedPolygons(xy, ring_offsets, geom_offsets, ring_code[order][geom_offsets[:-1]])


def _turn(table: np.ndarray, at: np.ndarray, preferred: np.ndarray, owner: np.ndarray,
          next_owner: np.ndarray) -> np.ndarray:
    """The run leaving vertex ``at`` of each arriving run: the ``preferred`` direction (row of
    ``table``) if such a run leaves there and belongs to the same patch, else the other direction."""
    pref = table[preferred, at]
    other = table[1 - preferred, at]
    own = (pref >= 0) & (next_owner[np.maximum(pref, 0)] == owner)
    return np.where(own, pref, other)


def _walk(succ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cycles of the permutation ``succ`` walked one after the other.

    Returns ``(seq, ring_pos)``: every element in walking order, and the position in ``seq`` where
    each cycle starts (cycles start at their lowest element and come in the order of it).
    """
    if len(succ) <= SMALL_WALK:
        return _walk_jumping(succ)
    return _walk_dfs(succ)


def _walk_jumping(succ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_walk` by pointer jumping: O(n log n) but a few microseconds per step, best for small n."""
    n = len(succ)
    ident = np.arange(n)
    low, to = ident.copy(), succ.copy()
    steps = max(1, int(np.ceil(np.log2(max(n, 2)))) + 1)
    for _ in range(steps):  # lowest element of each cycle
        low = np.minimum(low, low[to])
        to = to[to]
    is_start = low == ident
    last = is_start[succ]  # the element walked just before its cycle's start
    dist = np.where(last, 0, 1)
    to = np.where(last, ident, succ)
    for _ in range(steps):  # steps from each element to its cycle's last element
        dist = dist + dist[to]
        to = to[to]
    pos = dist[low] - dist  # position after the start
    seq = np.argsort(low * n + pos, kind="stable")
    return seq, np.flatnonzero(is_start[seq])


def _walk_dfs(succ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_walk` in linear time: a depth-first traversal (in C) of the graph ``p -> succ[p]`` with
    header nodes chained in element order (header k -> k, header k -> header k+1)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import depth_first_order

    n = len(succ)
    indptr = np.empty(2 * n + 1, dtype=np.int32)
    indptr[:n + 1] = np.arange(n + 1, dtype=np.int32)
    indptr[n + 1:] = n + 2 * np.arange(1, n + 1, dtype=np.int32)
    indptr[-1] -= 1  # the last header has no next header
    indices = np.empty(indptr[-1], dtype=np.int32)
    indices[:n] = succ
    indices[n::2] = np.arange(n, dtype=np.int32)
    indices[n + 1::2] = n + np.arange(1, n, dtype=np.int32)
    graph = csr_matrix((np.ones(len(indices), dtype=np.int8), indices, indptr), shape=(2 * n, 2 * n))
    visit = depth_first_order(graph, n, directed=True, return_predecessors=False)
    is_run = visit < n
    starts = is_run.copy()
    starts[1:] &= ~is_run[:-1]
    return visit[is_run].astype(np.int64), np.flatnonzero(starts[is_run])

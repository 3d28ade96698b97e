"""Stratified random sampling of validation points and area-weighted accuracy (Olofsson et al. 2014).

The strata are the classes of the map being validated. Points are drawn tile by tile, so memory does not
grow with the map: a first pass counts the pixels of each stratum, a seeded generator picks ranks within each
stratum, a second pass turns ranks into pixels. Points are exported for visual interpretation (GPKG and CSV,
column ``ref_code`` left empty) and the interpreted file is imported back.

Estimators follow Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder, M. A.
(2014) "Good practices for estimating area and assessing accuracy of land change", Remote Sensing of
Environment 148, 42-57: eqs. 2-7 (error matrix of estimated area proportions, accuracies), 9-12 (areas and
their standard errors) and section 5.1.2 (sample allocation). Confusion-matrix metrics of the sample itself
(counts, kappa) come from :mod:`minescape.accuracy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from minescape.accuracy import Metrics, confusion_matrix, metrics_from_matrix
from minescape.errors import InputError, check_choice
from minescape.legend import Legend

Allocation = Literal["proportional", "equal", "olofsson"]
ALLOCATIONS: tuple[str, ...] = ("proportional", "equal", "olofsson")
Z95 = 1.959964


def allocate(counts: Sequence[int], n: int, *, method: str = "olofsson", min_per_class: int = 50) -> np.ndarray:
    """Number of sample points per stratum.

    Args:
        counts: pixels (or area) of each stratum, in legend order.
        n: total sample size.
        method: ``proportional`` (to stratum size), ``equal`` (same per stratum) or ``olofsson`` (Olofsson et
            al. 2014, section 5.1.2: the strata whose proportional share is below ``min_per_class`` (the rare
            ones) get ``min_per_class`` points, or the equal share when ``n`` is too small for that, and the
            rest is allocated proportionally among the other strata).
        min_per_class: the minimum of the ``olofsson`` allocation.

    Returns:
        int64 array summing to ``n`` (strata with no pixels get 0; no stratum gets more points than pixels).
    """
    check_choice(method, ALLOCATIONS, what="allocation")
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if n < 0:
        raise InputError(f"sample size must be >= 0 (got {n})")
    k = int(present.sum())
    if k == 0 or n == 0:
        return np.zeros(counts.size, dtype=np.int64)
    n = int(min(n, counts.sum()))
    if method == "proportional":
        share = counts / counts.sum() * n
    elif method == "equal":
        share = np.where(present, n / k, 0.0)
    else:
        share = _olofsson_shares(counts, n, min(min_per_class, n // k))
    return _round_capped(share, counts, n)


def _olofsson_shares(counts: np.ndarray, n: int, floor: int) -> np.ndarray:
    """Olofsson et al. (2014) §5.1.2: ``floor`` points for each stratum whose proportional share of what is left
    falls below it (repeated: giving rare strata their floor shrinks the others' shares), the rest proportionally
    among the others. The large strata keep their proportional points, which their omission errors (the area
    estimates' main uncertainty) need."""
    present = counts > 0
    rare = np.zeros(counts.size, dtype=bool)
    while True:
        common = present & ~rare
        left = n - floor * int(rare.sum())
        share = np.where(rare, float(floor), 0.0)
        if common.any():
            share[common] = counts[common] / counts[common].sum() * left
        below = common & (share < floor)
        if not below.any():
            return share
        rare |= below


def _round_capped(share: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    """Largest-remainder rounding to ``n``, capped at the stratum sizes (excess moves to other strata)."""
    out = np.minimum(np.floor(share), counts).astype(np.int64)
    frac = np.where(out < counts, share - np.floor(share), -1.0)
    while out.sum() < n:
        room = out < counts
        if not room.any():
            break
        # strata with the largest remainder first, then the largest strata (deterministic tie-break)
        order = np.lexsort((-counts, -frac))
        for i in order:
            if out.sum() >= n:
                break
            if room[i]:
                out[i] += 1
        frac = np.where(out < counts, share - out, -1.0)
    return out


def sample_size(weights: Sequence[float], users_accuracy: Sequence[float], *, target_se: float = 0.01) -> int:
    """Total sample size for a target standard error of overall accuracy (Olofsson et al. 2014, eq. 13,
    after Cochran 1977): ``n = (sum W_i S_i / S(O))^2`` with ``S_i = sqrt(U_i (1 - U_i))``."""
    w = np.asarray(weights, dtype=np.float64)
    u = np.asarray(users_accuracy, dtype=np.float64)
    if target_se <= 0:
        raise InputError(f"target standard error must be > 0 (got {target_se})")
    return int(np.ceil((np.sum(w * np.sqrt(u * (1 - u))) / target_se) ** 2))


@dataclass(frozen=True)
class AreaEstimate:
    """Area-weighted accuracy and class areas with 95 % confidence half-widths (Olofsson et al. 2014).

    Per-class arrays are in the order of ``codes``. ``*_ci`` are half-widths of 95 % confidence intervals
    (1.96 standard errors). Areas are in the unit of ``total_area`` (e.g. km²).
    """

    codes: tuple[int, ...]
    proportions: np.ndarray  # estimated area proportions p_ij (rows map, columns reference)
    overall_accuracy: float
    overall_accuracy_ci: float
    users_accuracy: np.ndarray
    users_accuracy_ci: np.ndarray
    producers_accuracy: np.ndarray
    producers_accuracy_ci: np.ndarray
    area: np.ndarray  # estimated (reference) area per class, over the sampled strata
    area_ci: np.ndarray
    mapped_area: np.ndarray  # area mapped as each class (all strata)
    n_per_stratum: np.ndarray
    unsampled: tuple[int, ...] = ()  # codes of strata mapped but without a sample point: left out of the estimates

    @property
    def unsampled_area(self) -> float:
        """Mapped area of the :attr:`unsampled` strata (the part of the map the estimates do not cover)."""
        return float(sum(a for c, a in zip(self.codes, self.mapped_area, strict=True) if c in self.unsampled))

    def to_dict(self, names: Sequence[str] | None = None) -> dict:
        """JSON-ready dict keyed by class name (or code)."""
        keys = list(names) if names is not None else [str(c) for c in self.codes]

        def per(a):
            return {k: (None if not np.isfinite(v) else float(v)) for k, v in zip(keys, a, strict=True)}

        return {
            "overall_accuracy": self.overall_accuracy,
            "overall_accuracy_ci95": self.overall_accuracy_ci,
            "users_accuracy": per(self.users_accuracy),
            "users_accuracy_ci95": per(self.users_accuracy_ci),
            "producers_accuracy": per(self.producers_accuracy),
            "producers_accuracy_ci95": per(self.producers_accuracy_ci),
            "estimated_area": per(self.area),
            "estimated_area_ci95": per(self.area_ci),
            "mapped_area": per(self.mapped_area),
            "n_per_stratum": {k: int(v) for k, v in zip(keys, self.n_per_stratum, strict=True)},
            "unsampled_strata": [k for k, c in zip(keys, self.codes, strict=True) if c in self.unsampled],
            "unsampled_mapped_area": self.unsampled_area,
        }


def area_weighted_estimates(map_codes: np.ndarray, ref_codes: np.ndarray, codes: Sequence[int],
                            stratum_sizes: Sequence[float], *, pixel_area: float = 1.0) -> AreaEstimate:
    """Stratified estimators of Olofsson et al. (2014) for a sample stratified by the map classes.

    Args:
        map_codes: map class of each sample point (its stratum).
        ref_codes: reference (interpreted) class of each point.
        codes: class codes, giving the order of strata and classes.
        stratum_sizes: mapped size of each stratum (pixels or area), in ``codes`` order.
        pixel_area: area of one unit of ``stratum_sizes`` (e.g. km² per pixel); areas are reported in that unit.

    A stratum mapped but without a point (a rare class whose points were all left uninterpreted) has no estimate
    of its own; counted with weight and no point, it would read as 0 % accurate and its area would vanish. The
    estimates cover the sampled strata (weights over their area) and the others are listed in ``unsampled``,
    their mapped area in ``mapped_area`` as for every stratum.
    """
    codes = list(codes)
    # rows: map (strata), columns: reference -> counts n_ij; accuracy.confusion_matrix puts truth in rows
    n_ij = confusion_matrix(ref_codes, map_codes, codes).T.astype(np.float64)
    all_sizes = np.asarray(stratum_sizes, dtype=np.float64)
    if all_sizes.shape != (len(codes),):
        raise InputError(f"{all_sizes.size} stratum sizes for {len(codes)} classes")
    n_i = n_ij.sum(axis=1)
    unsampled = tuple(int(c) for c, size, n in zip(codes, all_sizes, n_i, strict=True) if size > 0 and n == 0)
    sizes = np.where(n_i > 0, all_sizes, 0.0)
    total = sizes.sum()
    w = sizes / total if total > 0 else np.zeros_like(sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n_i[:, None] > 0, n_ij / n_i[:, None], 0.0)  # n_ij / n_i.
        p = w[:, None] * frac  # eq. 4
        p_dot_j = p.sum(axis=0)  # reference-class proportions (eq. 9)
        diag = np.diag(p)
        oa = float(diag.sum())  # eq. 1
        ua = np.where(n_i > 0, np.diag(frac), np.nan)  # eq. 2
        pa = np.where(p_dot_j > 0, diag / p_dot_j, np.nan)  # eq. 3
        dof = np.where(n_i > 1, n_i - 1, np.nan)
        # eq. 5: V(O) = sum W_i^2 U_i (1 - U_i) / (n_i - 1)
        v_oa = np.nansum(w**2 * ua * (1 - ua) / dof)
        # eq. 6: V(U_i) = U_i (1 - U_i) / (n_i - 1)
        v_ua = ua * (1 - ua) / dof
        # eq. 7: V(P_j)
        n_j_hat = (sizes[:, None] * frac).sum(axis=0)  # estimated reference totals N_.j
        v_pa = np.full(len(codes), np.nan)
        for j in range(len(codes)):
            if not n_j_hat[j] > 0 or not n_i[j] > 1:
                continue
            pj = pa[j]
            term1 = sizes[j] ** 2 * (1 - pj) ** 2 * ua[j] * (1 - ua[j]) / (n_i[j] - 1)
            others = [i for i in range(len(codes)) if i != j and n_i[i] > 1]
            term2 = pj**2 * sum(sizes[i] ** 2 * frac[i, j] * (1 - frac[i, j]) / (n_i[i] - 1) for i in others)
            v_pa[j] = (term1 + term2) / n_j_hat[j] ** 2
        # eq. 10: SE of the area proportion of class k
        se_p = np.sqrt(np.nansum(w[:, None] ** 2 * frac * (1 - frac) / dof[:, None], axis=0))
    area_total = total * pixel_area
    return AreaEstimate(
        codes=tuple(int(c) for c in codes),
        proportions=p,
        overall_accuracy=oa,
        overall_accuracy_ci=float(Z95 * np.sqrt(v_oa)),
        users_accuracy=ua,
        users_accuracy_ci=Z95 * np.sqrt(v_ua),
        producers_accuracy=pa,
        producers_accuracy_ci=Z95 * np.sqrt(v_pa),
        area=p_dot_j * area_total,
        area_ci=Z95 * se_p * area_total,
        mapped_area=all_sizes * pixel_area,
        n_per_stratum=n_i.astype(np.int64),
        unsampled=unsampled,
    )


def sample_metrics(map_codes: np.ndarray, ref_codes: np.ndarray, codes: Sequence[int]) -> Metrics:
    """Unweighted confusion-matrix metrics of the sample (rows reference, columns map) via minescape.accuracy."""
    return metrics_from_matrix(confusion_matrix(ref_codes, map_codes, codes), codes)


# --------------------------------------------------------------------------------------------------------------
# drawing points from a map, tile by tile


def stratum_counts(path: str | Path, legend: Legend, *, tile: int = 2048, source: str | None = None) -> np.ndarray:
    """Pixels of each legend class in a class map (int64, legend order), read tile by tile.

    Raises InputError when the map holds codes that are neither classes nor nodata.
    """
    from minescape.geo.grid import iter_tiles
    from minescape.geo.raster import open_class_map, scan_reads

    codes = np.asarray(legend.codes)
    counts = np.zeros(max(max(legend.codes), legend.nodata, 255) + 1, dtype=np.int64)
    with scan_reads(), open_class_map(path) as src:
        for t in iter_tiles(src.width, src.height, size=tile):
            block = src.read(1, window=t.core)
            counts += np.bincount(block.ravel(), minlength=counts.size)[: counts.size]
    found = np.nonzero(counts)[0]
    if not set(found.tolist()) <= set(legend.codes) | {legend.nodata}:
        raise legend.unknown_values(found, path=source or path)
    return counts[codes]


def stratified_points(path: str | Path, n: int, legend: Legend, *, allocation: str = "olofsson",
                      min_per_class: int = 50, seed: int = 0, tile: int = 2048):
    """Draw a stratified random sample of pixel centres from a class map (strata = mapped classes).

    Args:
        path: class map GeoTIFF (any CRS; single band of legend codes).
        n: total number of points.
        legend: the map's legend (nodata pixels are never sampled).
        allocation: ``proportional``, ``equal`` or ``olofsson`` (see :func:`allocate`).
        min_per_class: minimum per stratum for the ``olofsson`` allocation.
        seed: seed of the ``numpy`` generator (same seed and tile size, same points: ranks within a stratum
            follow the tile order).
        tile: tile size in pixels for the two passes (memory ~ tile² bytes).

    Returns:
        ``(points, counts)``: a GeoDataFrame (``point_id``, ``row``, ``col``, ``map_code``, ``map_class``,
        ``ref_code`` (empty), geometry = pixel centre in the map CRS) and the per-class pixel counts.
    """
    import geopandas as gpd

    from minescape.geo.grid import iter_tiles
    from minescape.geo.raster import open_raster, scan_reads

    counts = stratum_counts(path, legend, tile=tile)
    n_h = allocate(counts, n, method=allocation, min_per_class=min_per_class)
    rng = np.random.default_rng(seed)
    chosen = {code: np.sort(rng.choice(int(c), size=int(k), replace=False)) if k else np.empty(0, np.int64)
              for code, c, k in zip(legend.codes, counts, n_h, strict=True)}
    seen = dict.fromkeys(legend.codes, 0)
    rows, cols, vals = [], [], []
    with scan_reads(), open_raster(path) as src:
        transform, crs = src.transform, src.crs
        for t in iter_tiles(src.width, src.height, size=tile):
            block = src.read(1, window=t.core)
            for code in legend.codes:
                ranks = chosen[code]
                if ranks.size == 0:
                    continue
                flat = np.flatnonzero(block == code)
                lo, hi = np.searchsorted(ranks, [seen[code], seen[code] + flat.size])
                if hi > lo:
                    idx = flat[ranks[lo:hi] - seen[code]]
                    r, c = np.divmod(idx, block.shape[1])
                    rows.append(r + int(t.core.row_off))
                    cols.append(c + int(t.core.col_off))
                    vals.append(np.full(r.size, code))
                seen[code] += flat.size
    rows = np.concatenate(rows) if rows else np.empty(0, np.int64)
    cols = np.concatenate(cols) if cols else np.empty(0, np.int64)
    vals = np.concatenate(vals) if vals else np.empty(0, np.int64)
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    xs, ys = (np.asarray(a) for a in _xy(transform, rows, cols))
    gdf = gpd.GeoDataFrame(
        {
            "point_id": np.arange(1, rows.size + 1),
            "row": rows.astype(np.int64),
            "col": cols.astype(np.int64),
            "map_code": vals.astype(np.int64),
            "map_class": legend.lookup_names(vals) if vals.size else np.empty(0, object),
            "ref_code": np.full(rows.size, np.nan),
        },
        geometry=gpd.points_from_xy(xs, ys),
        crs=crs,
    )
    return gdf, counts


def _xy(transform, rows, cols):
    import rasterio.transform

    if len(rows) == 0:
        return np.empty(0), np.empty(0)
    return rasterio.transform.xy(transform, rows, cols, offset="center")


def read_reference_at(points, path: str | Path) -> np.ndarray:
    """Values of a reference class raster at the points' pixel centres (reprojected into its CRS)."""
    from minescape.geo.raster import open_raster

    with open_raster(path) as src:
        pts = points.to_crs(src.crs) if points.crs is not None and src.crs is not None else points
        coords = list(zip(pts.geometry.x, pts.geometry.y, strict=True))
        if not coords:
            return np.empty(0, dtype=np.int64)
        return np.array([v[0] for v in src.sample(coords, indexes=1)], dtype=np.int64)


def export_points(points, out_stem: str | Path) -> tuple[Path, Path]:
    """Write the sample for visual interpretation: ``<stem>.gpkg`` and ``<stem>.csv`` (with lon/lat in WGS84).

    Interpreters fill ``ref_code`` (a legend code) or ``ref_class`` (a class name) and return either file.
    """
    from minescape.atomic import atomic_path
    from minescape.geo.vector import write_gpkg

    out_stem = Path(out_stem)
    gpkg = write_gpkg(points, out_stem.with_suffix(".gpkg"), layer="points")
    wgs = points.to_crs(4326) if points.crs is not None else points
    table = points.drop(columns="geometry").copy()
    table["x"] = points.geometry.x.to_numpy()
    table["y"] = points.geometry.y.to_numpy()
    table["lon"] = np.round(wgs.geometry.x.to_numpy(), 8)
    table["lat"] = np.round(wgs.geometry.y.to_numpy(), 8)
    table["crs"] = points.crs.to_string() if points.crs is not None else ""
    csv = out_stem.with_suffix(".csv")
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")
    return gpkg, csv


def _check_whole(gdf, values, given, column: str, path) -> None:
    """InputError naming the points whose ``column`` is given but not a whole number (``2.5``, ``forest``): cast to
    an integer, 2.5 would silently become class 2."""
    bad = given & ~(values.notna() & (values == np.floor(values)))
    if bad.any():
        ids = gdf.loc[bad, "point_id"].tolist()[:5] if "point_id" in gdf else list(gdf.index[bad][:5])
        raise InputError(f"{column} values {gdf.loc[bad, column].astype(str).tolist()[:5]} (points {ids}) are not "
                         "class codes (whole numbers); leave a point's ref_code empty to skip it", path=path)


def import_points(path: str | Path, legend: Legend):
    """Read interpreted points (GPKG or the CSV of :func:`export_points`) and check their labels.

    Each point needs ``map_code`` and a reference label: ``ref_code`` (a legend code) or ``ref_class`` (a
    class name). Rows without a reference label are dropped (not yet interpreted). Raises InputError naming
    the file, the rows and the bad values when a label is not in the legend.
    """
    import geopandas as gpd
    import pandas as pd

    from minescape.csvfile import read_csv
    from minescape.errors import MissingInputError
    from minescape.geo.vector import read_vector

    path = Path(path)
    if not path.exists():
        raise MissingInputError("file not found", path=path)
    if path.suffix.lower() == ".csv":
        table = read_csv(path, "points CSV", expected="a header with x, y, crs, map_code and ref_code or ref_class")
        need = {"x", "y", "crs"}
        if not need <= set(table.columns):
            raise InputError(f"CSV lacks columns {sorted(need - set(table.columns))}", path=path)
        for axis in ("x", "y"):
            coords = pd.to_numeric(table[axis], errors="coerce")
            if coords.isna().any():
                rows = list(table.index[coords.isna()][:5])
                raise InputError(f"column {axis!r} has missing or non-numeric values (rows {rows})", path=path)
        crs = table["crs"].dropna().iloc[0] if table["crs"].notna().any() else None
        gdf = gpd.GeoDataFrame(table.drop(columns=["crs"]), geometry=gpd.points_from_xy(table["x"], table["y"]),
                               crs=crs)
    else:
        gdf = read_vector(path)
    if "map_code" not in gdf.columns:
        raise InputError("no 'map_code' column (the mapped class of each point)", path=path)
    if "ref_code" not in gdf.columns and "ref_class" in gdf.columns:
        names = gdf["ref_class"]
        bad = sorted({str(v) for v in names.dropna() if str(v) not in legend.names})
        if bad:
            raise InputError(f"reference classes {bad[:5]} are not in the {legend.name} legend "
                             f"({', '.join(legend.names)})", path=path)
        gdf["ref_code"] = [legend.code_of(v) if isinstance(v, str) else np.nan for v in names]
    if "ref_code" not in gdf.columns:
        raise InputError("no 'ref_code' or 'ref_class' column (the interpreted reference labels)", path=path)
    ref = pd.to_numeric(gdf["ref_code"], errors="coerce")
    blank = gdf["ref_code"].isna() | gdf["ref_code"].astype(str).str.strip().isin(["", "nan", "None"])
    _check_whole(gdf, ref, ~blank, "ref_code", path)  # a typo is not "left uninterpreted"
    gdf = gdf[ref.notna()].copy()
    if gdf.empty:
        raise InputError("no interpreted points (every ref_code / ref_class is empty)", path=path)
    gdf["ref_code"] = ref[ref.notna()].astype(np.int64)
    mapped = pd.to_numeric(gdf["map_code"], errors="coerce")
    if mapped.isna().any():
        raise InputError(f"map_code has missing or non-numeric values (rows {list(gdf.index[mapped.isna()][:5])})",
                         path=path)
    _check_whole(gdf, mapped, mapped.notna(), "map_code", path)
    gdf["map_code"] = mapped.astype(np.int64)
    for column in ("ref_code", "map_code"):
        bad_rows = ~gdf[column].isin(legend.codes)
        if bad_rows.any():
            ids = gdf.loc[bad_rows, "point_id"].tolist()[:5] if "point_id" in gdf else gdf.index[bad_rows][:5]
            raise InputError(f"{column} values {sorted(set(gdf.loc[bad_rows, column].tolist()))[:5]} (points "
                             f"{list(ids)}) are not in the {legend.name} legend (codes {legend.codes})"
                             f"{legend.other_legend_hint(gdf[column].tolist())}", path=path)
    return gdf

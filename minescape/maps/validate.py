"""Validation of a large-area map from interpreted sample points, per administrative unit and against area tables.

* :func:`map_class_areas`: mapped area of each class in km² on the WGS84 ellipsoid (tile by tile), the
  stratum sizes of the area-weighted estimators;
* :func:`validate_sample`: confusion matrix, OA, kappa, user's and producer's accuracy of the sample
  (:mod:`minescape.accuracy`) and the area-weighted accuracies and class areas with 95 % confidence intervals
  of Olofsson et al. 2014 (:mod:`minescape.sampling`);
* :func:`oa_per_unit`: agreement of the points falling in each administrative unit (with a Wilson 95 %
  interval) and :func:`oa_map_figure`, a choropleth of it;
* :func:`compare_areas`: mapped class areas per unit against a reference table (relative difference per class);
* :func:`census_agreement`: for two full maps (e.g. WorldCover 2021 vs 2020), the pixel-count confusion matrix
  of every pixel, tile by tile, to check the sampled estimates against the census.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minescape.accuracy import Metrics, confusion_matrix, metrics_from_matrix
from minescape.atomic import atomic_path, atomic_write_text
from minescape.errors import InputError
from minescape.legend import Legend
from minescape.sampling import AreaEstimate, area_weighted_estimates, sample_metrics


def map_class_areas(path: str | Path, legend: Legend, *, tile: int = 2048) -> np.ndarray:
    """Area in km² of each legend class of a class map (legend order), ellipsoidal, read tile by tile."""
    from rasterio.windows import Window

    from minescape.geo.grid import iter_tiles
    from minescape.geo.pixel_area import pixel_areas_m2
    from minescape.geo.raster import open_class_map, scan_reads

    total = np.zeros(256, dtype=np.float64)
    with scan_reads(), open_class_map(path) as src:
        for t in iter_tiles(src.width, src.height, size=tile):
            block = src.read(1, window=t.core)
            h, w = block.shape
            areas = pixel_areas_m2(src.window_transform(Window(t.core.col_off, t.core.row_off, w, h)), src.crs,
                                   rows=h, cols=w)
            total += np.bincount(block.ravel(), weights=np.broadcast_to(areas, (h, w)).ravel(), minlength=256)[:256]
    return total[legend.codes] / 1e6


@dataclass(frozen=True)
class Validation:
    """Sample metrics (unweighted) and area-weighted estimates of one map."""

    metrics: Metrics
    estimates: AreaEstimate
    legend_name: str

    def to_dict(self, legend: Legend) -> dict:
        """JSON-ready summary."""
        return {"legend": self.legend_name, "sample": self.metrics.to_dict(legend.names),
                "area_weighted": self.estimates.to_dict(legend.names), "area_unit": "km2"}


def validate_sample(points, legend: Legend, class_areas_km2: np.ndarray) -> Validation:
    """Validate from points with ``map_code`` and ``ref_code`` and the mapped class areas (km², legend order)."""
    m = np.asarray(points["map_code"], dtype=np.int64)
    r = np.asarray(points["ref_code"], dtype=np.int64)
    if m.size == 0:
        raise InputError("no interpreted point to validate with (every ref_code is empty)")
    return Validation(metrics=sample_metrics(m, r, legend.codes),
                      estimates=area_weighted_estimates(m, r, legend.codes, class_areas_km2, pixel_area=1.0),
                      legend_name=legend.name)


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion ``k / n`` (NaN where ``n`` is 0)."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return centre - half, centre + half


def oa_per_unit(points, units, *, name_field: str = "unit"):
    """Share of points whose map and reference classes agree, per unit (GeoDataFrame of the units with ``n``,
    ``oa``, ``oa_low``, ``oa_high``; NaN where a unit holds no point). A point on the border of two units counts
    once, in the first of them in the layer's order."""
    import geopandas as gpd

    pts = points.to_crs(units.crs) if points.crs != units.crs else points
    joined = gpd.sjoin(pts[["map_code", "ref_code", "geometry"]], units[[name_field, "geometry"]],
                       how="inner", predicate="intersects")
    joined = joined.rename_axis("_point").sort_values(["_point", "index_right"], kind="stable")
    joined = joined[~joined.index.duplicated(keep="first")]
    joined["agree"] = (joined["map_code"] == joined["ref_code"]).astype(int)
    stats = joined.groupby(name_field)["agree"].agg(["sum", "count"])
    out = units.copy()
    k = out[name_field].map(stats["sum"]).fillna(0).to_numpy()
    n = out[name_field].map(stats["count"]).fillna(0).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["n"] = n.astype(int)
        out["oa"] = np.where(n > 0, k / n, np.nan)
    out["oa_low"], out["oa_high"] = wilson_interval(k, n)
    return out


def oa_map_figure(per_unit, *, title: str = "Overall accuracy per unit (sample agreement)"):
    """Choropleth of ``oa`` per unit (units without points grey, hatched); returns a matplotlib Figure.

    Built with :func:`minescape.report.new_figure` (no pyplot: the user's backend and figure registry untouched).
    """
    from minescape.report import new_figure

    fig = new_figure(figsize=(7, 6))
    ax = fig.subplots()
    has = per_unit["n"] > 0
    if (~has).any():
        per_unit[~has].plot(ax=ax, color="0.85", edgecolor="0.5", hatch="//", linewidth=0.5)
    if has.any():
        per_unit[has].plot(ax=ax, column="oa", cmap="RdYlGn", vmin=0.5, vmax=1.0, edgecolor="0.3", linewidth=0.5,
                           legend=True, legend_kwds={"label": "overall accuracy", "shrink": 0.7})
        for _, row in per_unit[has].iterrows():
            c = row.geometry.representative_point()
            ax.annotate(f"{row['oa']:.2f}\nn={row['n']}", (c.x, c.y), ha="center", va="center", fontsize=6)
    ax.set_title(title)
    geographic = per_unit.crs is not None and per_unit.crs.is_geographic
    ax.set_xlabel("longitude (°)" if geographic else "easting (CRS units)")
    ax.set_ylabel("latitude (°)" if geographic else "northing (CRS units)")
    ax.ticklabel_format(useOffset=False, style="plain")
    return fig


def compare_areas(mapped, reference, legend: Legend, *, key: str = "unit"):
    """Relative difference ``(mapped - reference) / reference`` per unit and class (NaN where reference is 0).

    Both tables have a ``key`` column and one column per class name (areas in the same unit, e.g. km²).
    Returns a long table: ``unit, class, mapped, reference, difference, relative_difference``.
    """
    import pandas as pd

    for name, table in (("mapped", mapped), ("reference", reference)):
        if key not in table.columns:
            raise InputError(f"{name} area table has no {key!r} column (columns: {list(table.columns)})")
    classes = [c for c in legend.names if c in reference.columns and c in mapped.columns]
    if not classes:
        raise InputError(f"reference area table has no class column of the {legend.name} legend "
                         f"({', '.join(legend.names)})")
    tables = {}
    for name, table in (("mapped", mapped), ("reference", reference)):
        repeated = sorted(set(table[key][table[key].duplicated()].astype(str)))
        if repeated:
            raise InputError(f"{name} area table lists {key} {repeated[:5]} more than once")
        values = table[classes].apply(pd.to_numeric, errors="coerce")
        bad = values.isna() & table[classes].notna()
        if bad.to_numpy().any():
            row, col = np.argwhere(bad.to_numpy())[0]
            raise InputError(f"{name} area table: {table[classes].iat[row, col]!r} ({key} "
                             f"{table[key].iat[row]}, {classes[col]}) is not a number (areas in km², '.' decimals)")
        tables[name] = values.set_index(table[key])
    m = tables["mapped"].stack().rename("mapped")
    r = tables["reference"].stack().rename("reference")
    both = pd.concat([m, r], axis=1, join="inner").reset_index()
    both.columns = [key, "class", "mapped", "reference"]
    both["difference"] = both["mapped"] - both["reference"]
    with np.errstate(invalid="ignore", divide="ignore"):
        both["relative_difference"] = np.where(both["reference"] > 0, both["difference"] / both["reference"], np.nan)
    return both


def census_agreement(map_path: str | Path, ref_path: str | Path, legend: Legend, *, tile: int = 2048) -> Metrics:
    """Confusion matrix of every pixel of two maps on the same grid (rows reference, columns map), by tiles."""
    from minescape.geo.grid import iter_tiles
    from minescape.geo.raster import open_raster, scan_reads

    cm = np.zeros((len(legend), len(legend)), dtype=np.int64)
    with scan_reads(), open_raster(map_path) as a, open_raster(ref_path) as b:
        if (a.width, a.height) != (b.width, b.height) or not a.transform.almost_equals(b.transform) \
                or a.crs != b.crs:
            raise InputError(f"reference grid ({b.width}x{b.height}, {b.crs}, origin {b.transform.c:g}, "
                             f"{b.transform.f:g}) differs from the map's ({a.width}x{a.height}, {a.crs}, origin "
                             f"{a.transform.c:g}, {a.transform.f:g}): the census compares pixel by pixel",
                             path=ref_path)
        for t in iter_tiles(a.width, a.height, size=tile):
            cm += confusion_matrix(b.read(1, window=t.core), a.read(1, window=t.core), legend.codes)
    return metrics_from_matrix(cm, legend.codes)


#: Outputs written only when asked for (``--admin``; ``--mapped-areas``/``--reference-areas``): removed when a
#: re-run into the folder does not ask, so no accuracy of another run stays beside the new one.
OPTIONAL_OUTPUTS: tuple[str, ...] = ("oa_per_unit.csv", "oa_per_unit.png", "area_comparison.csv")
#: Every file :func:`write_validation` may write in its folder (none of them may be an input of the run).
OUTPUTS: tuple[str, ...] = ("validation.json", "estimates.csv", "confusion_matrix.png", *OPTIONAL_OUTPUTS)


def write_validation(result: Validation, legend: Legend, out_dir: str | Path, *, per_unit=None,
                     area_table=None) -> list[Path]:
    """Write ``validation.json``, ``estimates.csv``, ``confusion_matrix.png``, with ``per_unit``
    ``oa_per_unit.csv`` and ``oa_per_unit.png``, and with ``area_table`` (:func:`compare_areas`)
    ``area_comparison.csv``; an optional output not written this time is removed (:data:`OPTIONAL_OUTPUTS`)."""
    import pandas as pd

    from minescape.report import confusion_matrix_figure, save_figure

    out = Path(out_dir)
    written = [atomic_write_text(out / "validation.json",
                                 json.dumps(_finite(result.to_dict(legend)), indent=2, sort_keys=True,
                                            allow_nan=False, default=_json_default))]
    e = result.estimates
    table = pd.DataFrame({
        "code": legend.codes, "class": legend.names, "n": e.n_per_stratum,
        "mapped_km2": e.mapped_area, "estimated_km2": e.area, "estimated_km2_ci95": e.area_ci,
        "users_accuracy": e.users_accuracy, "users_accuracy_ci95": e.users_accuracy_ci,
        "producers_accuracy": e.producers_accuracy, "producers_accuracy_ci95": e.producers_accuracy_ci})
    with atomic_path(out / "estimates.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    written.append(out / "estimates.csv")
    present = [i for i in range(len(legend)) if result.metrics.matrix[i].sum() or result.metrics.matrix[:, i].sum()]
    cm = result.metrics.matrix[np.ix_(present, present)]
    written.append(save_figure(confusion_matrix_figure(cm, [legend.names[i] for i in present],
                                                       title="Sample confusion matrix"), out / "confusion_matrix.png"))
    if per_unit is not None:
        with atomic_path(out / "oa_per_unit.csv") as tmp:
            per_unit.drop(columns="geometry").to_csv(tmp, index=False, float_format="%.6f")
        written.append(out / "oa_per_unit.csv")
        written.append(save_figure(oa_map_figure(per_unit), out / "oa_per_unit.png"))
    if area_table is not None:
        with atomic_path(out / "area_comparison.csv") as tmp:
            area_table.to_csv(tmp, index=False, float_format="%.6f")
        written.append(out / "area_comparison.csv")
    for name in OPTIONAL_OUTPUTS:
        if out / name not in written:
            (out / name).unlink(missing_ok=True)
    return written


def _finite(value):
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)

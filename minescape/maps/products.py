"""Map products as SinoLC-1 published them: one GeoTIFF per administrative unit, ZIPs, versions, index, areas.

Given a class map and administrative units (polygons with region / province / city attributes):

* each unit is clipped from the map (pixels whose centre lies outside the polygon become nodata) and written
  as ``tiles/Region_Province_City.tif`` (tiled GeoTIFF, legend colours and class names), streamed chunk by
  chunk so memory does not grow with the unit;
* per-unit class areas in km², computed on the WGS84 ellipsoid (:func:`minescape.geo.pixel_area.pixel_areas_m2`), go to
  ``class_areas.csv``;
* the tiles of each province are packed into ``zips/Region_Province.zip``;
* the provinces of each region are grouped, in name order, into versions ``Region_v1``, ``Region_v2``...
  whose ZIPs sum to at most ``size_cap`` bytes (SinoLC-1 used 50 GB per Zenodo version): ``versions.csv``;
* ``index.gpkg`` lists every tile with its attributes, file, ZIP, version, size and areas.

A unit that cannot be produced (outside the map, map values outside the legend, no name) is reported with a
one-line reason in ``failed.csv`` and the others go on.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyproj import CRS

from minescape.atomic import atomic_path, atomic_write_text, prune
from minescape.errors import ConfigError, InputError, NoOverlapError
from minescape.geo.pixel_area import pixel_areas_m2
from minescape.legend import Legend
from minescape.path_identity import check_not_input, check_not_within
from minescape.runner import Unit, run_units

NAME_FIELDS: tuple[str, str, str] = ("region", "province", "city")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: same tiles, same ZIP bytes


def read_admin(path: str | Path, *, fields: Sequence[str] = NAME_FIELDS, layer: str | None = None):
    """Read administrative units and check the naming attributes (InputError listing the missing ones)."""
    from minescape.geo.vector import read_vector

    gdf = read_vector(path, layer=layer)
    return check_admin(gdf, fields=fields, source=str(path))[0]


def check_admin(gdf, *, fields: Sequence[str] = NAME_FIELDS, source: str = "admin layer"):
    """Check the naming attributes and repair geometries; returns ``(gdf, warnings)``."""
    from minescape.geo.vector import repair_geometries

    missing = [f for f in fields if f not in gdf.columns]
    if missing:
        have = [c for c in gdf.columns if c != gdf.geometry.name]
        raise InputError(f"admin layer lacks naming attributes {missing} (it has {have}); name the fields with "
                         f"--region-field/--province-field/--city-field", path=source)
    return repair_geometries(gdf, source=source)


def unit_part(text: object) -> str:
    """One part of a ``Region_Province_City`` name, file-name safe: spaces, underscores (the parts' separator) and
    punctuation become '-', letters of any script are kept. (Site ids use
    :func:`minescape.lulc.pipeline.safe_name`, which keeps '_' and maps to ASCII: a different naming rule.)"""
    return re.sub(r"-+", "-", re.sub(r"[^\w-]|_", "-", str(text).strip())).strip("-")


def unit_stem(region: object, province: object, city: object) -> str:
    """``Region_Province_City`` with each part made file-name safe."""
    return "_".join(unit_part(p) for p in (region, province, city))


def _file_name_clash(taken: dict[tuple[str, ...], tuple[str, ...]], names: tuple[str, str, str]) -> str | None:
    """Why a unit's region or province would share a file name (``Region_vN``, ``Region_Province.zip``) with a
    different region or province already in ``taken`` (file-name parts -> names; "Hai Nan" and "Hai-Nan"), or
    None, after recording the unit's own. The ZIPs and versions are named by :func:`unit_part`, so two such
    names would write one file."""
    keys = [(tuple(unit_part(p) for p in names[:depth]), names[:depth]) for depth in (1, 2)]
    for (safe, raw), what in zip(keys, ("region", "province"), strict=True):
        if taken.get(safe, raw) != raw:
            return (f"{what} {'/'.join(raw)!r} and {'/'.join(taken[safe])!r} give the same file name "
                    f"{'_'.join(safe)}; rename one (only the first is produced)")
    taken.update(keys)
    return None


# --------------------------------------------------------------------------------------------------------------
# one unit


def clip_unit(unit: Unit) -> dict:
    """Clip the map to one unit's polygon, write its GeoTIFF, return its class areas (runner function)."""
    import rasterio.features
    import shapely
    from rasterio.enums import Resampling

    from minescape.geo.grid import Grid
    from minescape.geo.raster import open_raster, open_writer, scan_reads

    a = unit.args
    legend: Legend = a["legend"]
    geom = shapely.from_wkb(a["geometry_wkb"])
    tile = int(a["tile"])
    counts_area = np.zeros(256, dtype=np.float64)
    counts_px = np.zeros(256, dtype=np.int64)
    with scan_reads(), open_raster(a["map"]) as src:
        grid = Grid(src.crs, src.transform, src.width, src.height)
        try:
            window = grid.window_of_bounds(geom.bounds)
        except NoOverlapError:
            raise InputError(f"unit {unit.id} lies outside the map (bounds {tuple(round(v, 5) for v in geom.bounds)}"
                             f" vs map {tuple(round(v, 5) for v in grid.bounds)})") from None
        ugrid = grid.window_grid(window)
        with open_writer(a["out"], ugrid, count=1, dtype="uint8", nodata=legend.nodata, legend=legend,
                         tags={"REGION": str(a["names"][0]), "PROVINCE": str(a["names"][1]),
                               "CITY": str(a["names"][2])}, overviews=Resampling.nearest) as dst:
            for r0 in range(0, ugrid.height, tile):
                for c0 in range(0, ugrid.width, tile):
                    h, w = min(tile, ugrid.height - r0), min(tile, ugrid.width - c0)
                    win = rasterio.windows.Window(int(window.col_off) + c0, int(window.row_off) + r0, w, h)
                    block = src.read(1, window=win)
                    transform = src.window_transform(win)
                    inside = rasterio.features.geometry_mask([geom], out_shape=(h, w), transform=transform,
                                                             invert=True)
                    legend.check_codes(block[inside], source=f"{a['map']} (unit {unit.id})")
                    block = np.where(inside, block, legend.nodata).astype(np.uint8)
                    areas = np.broadcast_to(pixel_areas_m2(transform, src.crs, rows=h, cols=w), (h, w))
                    counts_area += np.bincount(block.ravel(), weights=areas.ravel(), minlength=256)
                    counts_px += np.bincount(block.ravel(), minlength=256)
                    dst.write(block[None], window=rasterio.windows.Window(c0, r0, w, h))
    valid_px = int(sum(counts_px[c] for c in legend.codes))
    if valid_px == 0 and counts_px[legend.nodata] == 0:
        raise InputError(f"unit {unit.id} covers no map pixel")
    return {
        "file": str(a["out"]),
        "bytes": Path(a["out"]).stat().st_size,
        "valid_pixels": valid_px,
        "areas_km2": {int(c): float(counts_area[c] / 1e6) for c in legend.codes},
    }


# --------------------------------------------------------------------------------------------------------------
# the whole product set


@dataclass
class ProductsSummary:
    """What :func:`make_products` wrote and which units failed (one-line reasons)."""

    out: Path
    tiles: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    zips: dict[str, Path] = field(default_factory=dict)
    versions: dict[str, list[str]] = field(default_factory=dict)
    areas_csv: Path | None = None
    index: Path | None = None
    notes: list[str] = field(default_factory=list)


def group_versions(sizes: dict[tuple[str, str], int], *, size_cap: int) -> dict[str, list[tuple[str, str]]]:
    """Group provinces ``(region, province) -> bytes`` into versions ``Region_vN`` under ``size_cap`` bytes.

    Provinces are taken in name order within each region and added to the current version until the next
    would exceed the cap; a province larger than the cap alone forms its own version.
    """
    if size_cap <= 0:
        raise InputError(f"size cap must be > 0 bytes (got {size_cap})")
    versions: dict[str, list[tuple[str, str]]] = {}
    for region in sorted({r for r, _ in sizes}):
        n, used = 1, 0
        for key in sorted(k for k in sizes if k[0] == region):
            if used and used + sizes[key] > size_cap:
                n, used = n + 1, 0
            versions.setdefault(f"{unit_part(region)}_v{n}", []).append(key)
            used += sizes[key]
    return versions


def write_zip(files: Sequence[Path], path: Path) -> Path:
    """A deterministic ZIP (fixed timestamps, sorted names, stored: GeoTIFFs are already compressed)."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in sorted(files, key=lambda p: p.name):
            info = zipfile.ZipInfo(f.name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            with open(f, "rb") as src, zf.open(info, "w") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    return path


#: Segments of unit outlines are cut to this fraction of the unit's bounding-box diagonal before they are moved
#: to another CRS: a straight edge in one CRS is a curve in the other (a parallel of latitude on a UTM map), and
#: its chord cut 0.09 % of a 4° x 1° unit's pixels at 60° N.
SEGMENT_OF_DIAGONAL = 1e-3


def _reprojected(gdf, crs):
    """``gdf`` in ``crs``: outlines densified in their own CRS first (:data:`SEGMENT_OF_DIAGONAL`) when the CRSs
    differ, so the edges follow their curves in ``crs``; in a geographic ``crs``, outlines across 180° as the
    parts either side of it (:func:`_across_antimeridian`)."""
    import shapely

    if gdf.crs is None:
        return gdf
    target = CRS.from_user_input(crs)

    def with_geoms(frame, geoms):
        return frame.set_geometry(type(frame.geometry)(geoms, index=frame.index, crs=frame.crs))

    out = gdf
    if target != CRS.from_user_input(gdf.crs):
        b = gdf.geometry.bounds
        diag = np.hypot(b["maxx"] - b["minx"], b["maxy"] - b["miny"]).to_numpy()
        dense = shapely.segmentize(np.asarray(gdf.geometry.values, dtype=object),
                                   np.maximum(diag * SEGMENT_OF_DIAGONAL, 1e-9))
        out = with_geoms(gdf, dense).to_crs(target)
    if target.is_geographic:
        out = with_geoms(out, _across_antimeridian(np.asarray(out.geometry.values, dtype=object)))
    return out


def _across_antimeridian(geoms: np.ndarray) -> np.ndarray:
    """Lon/lat outlines across 180° as the parts either side of it: those written with longitudes past 180°, and
    those ``to_crs`` wrapped round the globe (a unit across 180° drawn in a Pacific CRS comes out spanning -179°
    to 179°: longitudes below 0 are moved up by 360° where that makes it narrower than 180°)."""
    import shapely

    from minescape.geo.vector import split_antimeridian

    out = split_antimeridian(geoms)  # outlines written with longitudes past 180°
    bounds = shapely.bounds(geoms)
    for k in np.nonzero(bounds[:, 2] - bounds[:, 0] > 180.0)[0]:
        moved = shapely.transform(geoms[k], lambda c: np.where(c[:, :1] < 0, c + [360.0, 0.0], c))
        b = shapely.bounds(moved)
        if b[2] - b[0] < 180.0 and shapely.is_valid(moved):
            out[k] = split_antimeridian(np.array([moved], dtype=object))[0]
    return out


#: The files :func:`make_products` writes in its folder, beside ``tiles/`` and ``zips/`` (which it owns whole).
OUTPUT_FILES: tuple[str, ...] = ("versions.csv", "class_areas.csv", "index.gpkg", "failed.csv", "manifest.json")


def check_outputs(out: Path, map_path: str | Path, admin) -> None:
    """InputError (before any unit runs) when an output of :func:`make_products` in ``out`` would replace the
    map or the admin file (``index.gpkg`` of an earlier run given as the units), or when one of them lies in
    ``tiles/`` or ``zips/``, whose files the run replaces and prunes; however either is spelled."""
    inputs = {"the input MAP": map_path, "the input ADMIN": admin if isinstance(admin, str | Path) else None}
    for name in OUTPUT_FILES:
        check_not_input(out / name, inputs, what=f"OUT/{name}")
    for name in ("tiles", "zips"):
        check_not_within(out / name, inputs, what=f"OUT/{name}")


def make_products(map_path: str | Path, admin, out_dir: str | Path, *, legend: Legend,
                  fields: Sequence[str] = NAME_FIELDS, size_cap: int = 50 * 10**9, tile: int = 2048) -> ProductsSummary:
    """Clip ``map_path`` into the units of ``admin`` and write tiles, ZIPs, versions, index and areas.

    Args:
        map_path: class map GeoTIFF (legend codes; any CRS, geographic or projected).
        admin: a GeoDataFrame or a vector file of unit polygons with region/province/city attributes.
        out_dir: output folder (``tiles/``, ``zips/``, ``versions.csv``, ``index.gpkg``, ``class_areas.csv``,
            ``failed.csv``, ``manifest.json``).
        legend: the map's legend.
        fields: names of the region, province and city attributes.
        size_cap: maximum bytes of the ZIPs of one version.
        tile: chunk size in pixels for clipping (memory ~ tile² x 9 bytes).
    """
    import geopandas as gpd
    import pandas as pd

    from minescape.geo.raster import open_raster
    from minescape.geo.vector import read_vector, write_gpkg
    from minescape.limits import check_alloc, check_positive

    check_positive(tile, "--tile (chunk size in pixels)")  # a bad option for the whole run, before any unit
    check_alloc(tile * tile * 9, f"a {tile:,} px chunk")
    if size_cap < 1:
        raise ConfigError(f"size cap must be > 0 bytes (got {size_cap})")
    out = Path(out_dir)
    check_outputs(out, map_path, admin)
    if isinstance(admin, str | Path):
        gdf, notes = check_admin(read_vector(admin), fields=fields, source=str(admin))
    else:
        gdf, notes = check_admin(admin, fields=fields)
    with open_raster(map_path) as src:
        map_crs = src.crs
    gdf_map = _reprojected(gdf, map_crs) if map_crs is not None and gdf.crs is not None else gdf
    summary = ProductsSummary(out=out, notes=[str(n) for n in notes])
    units: list[Unit] = []
    names_of: dict[str, tuple[str, str, str]] = {}
    file_names: dict[tuple[str, ...], tuple[str, ...]] = {}  # region and province file-name parts -> names
    for idx, row in gdf_map.iterrows():
        names = tuple(row[f] for f in fields)
        if any(v is None or (isinstance(v, float) and np.isnan(v)) or not unit_part(v) for v in names):
            summary.failed[f"feature {idx}"] = f"feature {idx}: empty {'/'.join(fields)} name {names}"
            continue
        stem = unit_stem(*names)
        if stem in names_of:
            summary.failed[f"{stem} (feature {idx})"] = f"duplicate unit name {stem}; only the first is produced"
            continue
        clash = _file_name_clash(file_names, tuple(str(v) for v in names))
        if clash:
            summary.failed[f"{stem} (feature {idx})"] = clash
            continue
        names_of[stem] = tuple(str(v) for v in names)
        units.append(Unit(id=stem, args={"map": str(map_path), "geometry_wkb": row.geometry.wkb, "names": names,
                                         "out": str(out / "tiles" / f"{stem}.tif"), "legend": legend, "tile": tile}))
    run = run_units(units, clip_unit, description="clipping units")
    summary.tiles = run.results
    summary.failed.update(run.failed)

    # ZIPs per province, versions per region
    by_province: dict[tuple[str, str], list[Path]] = {}
    for stem in sorted(run.results):
        region, province, _ = names_of[stem]
        by_province.setdefault((region, province), []).append(Path(run.results[stem]["file"]))
    zip_of: dict[tuple[str, str], Path] = {}
    for key, files in sorted(by_province.items()):
        zip_of[key] = write_zip(files, out / "zips" / f"{unit_part(key[0])}_{unit_part(key[1])}.zip")
    summary.zips = {f"{k[0]}/{k[1]}": v for k, v in zip_of.items()}
    # the run owns its folder: tiles and ZIPs of units no longer in the layer (or failed now) are removed
    inputs = (Path(map_path),) + ((Path(admin),) if isinstance(admin, str | Path) else ())
    prune(out / "tiles", "*.tif", [Path(r["file"]) for r in run.results.values()], protect=inputs)
    prune(out / "zips", "*.zip", list(zip_of.values()), protect=inputs)
    sizes = {k: p.stat().st_size for k, p in zip_of.items()}
    versions = group_versions(sizes, size_cap=size_cap) if sizes else {}
    version_of = {key: v for v, keys in versions.items() for key in keys}
    summary.versions = {v: [f"{r}/{p}" for r, p in keys] for v, keys in versions.items()}
    for key, size in sizes.items():
        if size > size_cap:
            summary.notes.append(f"province {key[0]}/{key[1]} ZIP ({size} bytes) alone exceeds the size cap "
                                 f"({size_cap} bytes); it forms version {version_of[key]} by itself")
    version_rows = [{"version": v, "region": k[0], "province": k[1], "zip": zip_of[k].name, "bytes": sizes[k]}
                    for v, keys in versions.items() for k in keys]
    _write_csv(pd.DataFrame(version_rows, columns=["version", "region", "province", "zip", "bytes"]),
               out / "versions.csv")

    # per-unit class areas and the index
    area_rows, index_rows, geoms = [], [], []
    wgs = _reprojected(gdf, CRS.from_epsg(4326)) if gdf.crs is not None else gdf
    for _, row in wgs.iterrows():
        names = tuple(row[f] for f in fields)
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in names):
            continue
        stem = unit_stem(*names)
        res = run.results.get(stem)
        if res is None or names_of.get(stem) != tuple(str(v) for v in names) or stem in {r["tile"] for r in index_rows}:
            continue
        areas = {legend.name_of(c): round(v, 6) for c, v in res["areas_km2"].items()}
        area_rows.append({"unit": stem, "region": names[0], "province": names[1], "city": names[2], **areas,
                          "total_km2": round(sum(res["areas_km2"].values()), 6)})
        key = (str(names[0]), str(names[1]))
        index_rows.append({"tile": stem, "region": str(names[0]), "province": str(names[1]), "city": str(names[2]),
                           "file": f"tiles/{stem}.tif", "zip": zip_of[key].name, "version": version_of[key],
                           "bytes": res["bytes"], "valid_pixels": res["valid_pixels"],
                           "area_km2": round(sum(res["areas_km2"].values()), 6)})
        geoms.append(row.geometry)
    columns = ["unit", "region", "province", "city", *legend.names, "total_km2"]
    summary.areas_csv = _write_csv(pd.DataFrame(area_rows, columns=columns), out / "class_areas.csv")
    index = gpd.GeoDataFrame(index_rows, geometry=geoms, crs=4326 if gdf.crs is not None else None)
    if index.empty:
        index = gpd.GeoDataFrame({"tile": []}, geometry=gpd.GeoSeries([], crs=4326))
    summary.index = write_gpkg(index, out / "index.gpkg", layer="tiles")
    _write_csv(pd.DataFrame(sorted(summary.failed.items()), columns=["unit", "reason"]), out / "failed.csv")
    atomic_write_text(out / "manifest.json", json.dumps({
        "map": str(map_path), "legend": legend.name, "size_cap_bytes": size_cap,
        "tiles": sorted(run.results), "versions": summary.versions,
        "failed": summary.failed, "notes": summary.notes}, indent=2, sort_keys=True))
    return summary


def _write_csv(df, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")
    return path


def grid_units(bounds: tuple[float, float, float, float], *, nx: int, ny: int, crs="EPSG:4326",
               regions: int = 2, provinces_per_region: int = 2):
    """A synthetic admin layer: ``nx`` x ``ny`` rectangular cities over ``bounds``, grouped into provinces
    (column bands) and regions, with ``region``/``province``/``city`` attributes (tests, demo, benchmarks)."""
    import geopandas as gpd
    import shapely

    left, bottom, right, top = bounds
    dx, dy = (right - left) / nx, (top - bottom) / ny
    n_prov = regions * provinces_per_region
    rows = []
    for j in range(ny):
        for i in range(nx):
            p = min(n_prov - 1, i * n_prov // nx)
            rows.append({"region": f"Region{p // provinces_per_region + 1}",
                         "province": f"Province{p + 1}", "city": f"City{j * nx + i + 1:03d}",
                         "geometry": shapely.box(left + i * dx, top - (j + 1) * dy, left + (i + 1) * dx, top - j * dy)})
    return gpd.GeoDataFrame(rows, crs=crs)

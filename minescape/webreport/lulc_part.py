"""The LULC part of a run folder (``minescape lulc classify`` OUT): sites, class maps, areas, years, accuracy.

Reads ``sites.json`` (one row per site: status, year, rule, map), ``report/run.json`` (per-site results:
scene, date, cloud share, class areas in m², and where the site polygons came from), ``report/metrics.json``
(``lulc evaluate``), the quicklooks and figures under ``report/``. Site polygons come from the sites file the
run recorded; when it is gone, each class map's footprint (its bounds) stands in, and the report says so.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import shapely

from minescape.errors import InputError
from minescape.geo.raster import open_by_name
from minescape.legend import MINING_LULC
from minescape.webreport.accuracy_part import accuracy_tables
from minescape.webreport.contents import FeatureLayer, Figure, Missing, Section, Table
from minescape.webreport.geojson import geometries_geojson
from minescape.webreport.overlay import Overlay, render_overlay
from minescape.webreport.part_json import read_part_json

# result keys that, when a pipeline records them, the popup shows as they are
EXTRA_KEYS = ("composite", "n_scenes", "scenes", "clear_observations", "imagery_notes")
FAILED_COLOR = "#7f7f7f"
NOTES_LISTED = 200  # imagery notes in the run's table (every site's are in its popup and run.json)


def _site_geometries(source: dict | None, missing: list[Missing], title: str) -> dict[str, shapely.Geometry]:
    """``{site id: EPSG:4326 polygon}`` from the sites file recorded in run.json (empty when unavailable)."""
    import warnings

    from minescape.sites import read_sites

    if not source or not source.get("sites"):
        missing.append(
            Missing(
                f"{title}: site polygons",
                "run.json does not record the sites file (older run); class-map footprints are drawn instead",
            )
        )
        return {}
    path = Path(source["sites"])
    if not path.exists():
        missing.append(
            Missing(
                f"{title}: site polygons",
                f"sites file {path} not found; class-map footprints are drawn instead",
            )
        )
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sites, _ = read_sites(path, layer=source.get("layer"), id_field=source.get("id_field"),
                                  point_buffer_m=source.get("point_buffer_m"))
    except (InputError, OSError) as exc:
        missing.append(
            Missing(f"{title}: site polygons", f"{path}: {exc}; class-map footprints are drawn instead")
        )
        return {}
    return {s.id: s.geometry for s in sites}


def _footprint(map_path: Path) -> shapely.Geometry | None:
    """The EPSG:4326 box of a class map (the stand-in for a site polygon), valid as RFC 7946 asks: for a map
    across the antimeridian (``transform_bounds`` gives west > east) two boxes split at 180°, as
    :func:`minescape.sites.site_lonlat` splits a site's geometry."""
    from rasterio.warp import transform_bounds

    from minescape.sites import site_lonlat

    try:
        with open_by_name(map_path) as src:
            west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    except Exception:  # noqa: BLE001 - an unreadable map is reported by the overlay step
        return None
    if west > east:  # across 180°: the box with continuous longitudes (past 180°), then split at 180°
        return site_lonlat(shapely.box(west, south, east + 360.0, north))
    return shapely.box(west, south, east, north)  # a map around a pole spans -180..180 and stays so


def composite_info(map_path: Path, clear_count: Path) -> dict:
    """What a site's class map says about an annual composite, for the click panel.

    The map's ``COMPOSITE`` and ``SCENES`` tags give the method and the scenes used; ``clear_count`` (per
    pixel, the clear observations the composite had, written beside the maps as ``clear_count/<site>.tif``)
    gives ``clear_observations`` as ``"min / median / max"`` over the pixels that have any. Empty for a single
    scene.
    """
    import numpy as np
    import rasterio

    info: dict = {}
    try:
        with open_by_name(map_path) as src:
            tags = src.tags()
    except rasterio.errors.RasterioIOError:
        return info
    if tags.get("COMPOSITE"):
        info["composite"] = tags["COMPOSITE"]
        info["scenes"] = [t for t in tags.get("SCENES", "").split(",") if t]
    if clear_count.exists():
        try:
            with open_by_name(clear_count) as src:
                counts = src.read(1, masked=True).compressed()
        except rasterio.errors.RasterioIOError:
            return info
        counts = counts[counts > 0]
        if counts.size:
            info["clear_observations"] = (f"{int(counts.min())} / {float(np.median(counts)):g} / "
                                          f"{int(counts.max())} (min / median / max per pixel)")
    return info


def _dominant(areas: dict[str, float]) -> str | None:
    areas = {k: v for k, v in areas.items() if v}
    return max(areas, key=areas.get) if areas else None


def _rel(path: Path, report_dir: Path) -> str:
    return Path(os.path.relpath(path, report_dir)).as_posix()


def collect_lulc(folder: Path, report_dir: Path, *, title: str) -> Section:
    """The section of an LULC run folder (see module docstring); ``report_dir`` is where report.html goes."""
    sec = Section(title=title, kind="lulc", folder=folder)
    rows = read_part_json(folder / "sites.json", f"{_rel(folder / 'sites.json', report_dir)}", sec.missing)
    run = read_part_json(
        folder / "report" / "run.json", _rel(folder / "report" / "run.json", report_dir), sec.missing
    )
    if rows is not None and not isinstance(rows, list):
        sec.missing.append(Missing("sites.json", "not a list of sites"))
    if not isinstance(rows, list):
        rows = []
    run = run if isinstance(run, dict) else {}
    results = run.get("results") if isinstance(run.get("results"), dict) else {}
    rows = [r for r in rows if isinstance(r, dict) and r.get("id") is not None]
    if not rows and not results:
        sec.missing.append(Missing(title, "no sites recorded (the run wrote no sites.json rows)"))
    sec.facts += [
        ("classifier", str(run.get("classifier", "unknown"))),
        ("sites", str(len(rows))),
        ("classified", str(sum(r.get("status") == "ok" for r in rows))),
    ]
    geoms = _site_geometries(run.get("source"), sec.missing, title) if rows else {}
    features: list[dict] = []
    geom_list: list[shapely.Geometry] = []
    overlays: dict[str, Overlay] = {}
    failures: list[tuple] = []
    imagery_notes: list[tuple] = []
    area_total: Counter = Counter()
    years: Counter = Counter()
    rules: Counter = Counter()
    footprints = 0
    for r in rows:
        sid = str(r["id"])
        status = r.get("status") or "unknown"
        res = results.get(sid) if isinstance(results.get(sid), dict) else {}
        if status != "ok":
            failures.append((sid, status, r.get("reason") or ""))
        imagery_notes += [(sid, str(n)) for n in (res.get("imagery_notes") or [])]
        if sid.startswith("feature ") and sid not in geoms:
            continue  # a feature dropped while reading: no geometry, listed under failures
        map_path = folder / r["map"] if r.get("map") else None
        geom = geoms.get(sid)
        if geom is None and map_path is not None and map_path.exists():
            geom = _footprint(map_path)
            footprints += geom is not None
        if geom is None:
            sec.missing.append(Missing(f"site {sid}", "no polygon (not in the sites file, no class map)"))
            continue
        areas = {k: float(v) for k, v in (res.get("area_m2") or {}).items() if isinstance(v, (int, float))}
        area_total.update(areas)
        if r.get("year") is not None:
            years[int(r["year"])] += 1
            rules[str(r.get("rule"))] += 1
        dom = _dominant(areas)
        props = {
            "id": sid,
            "status": status,
            "year": r.get("year"),
            "rule": r.get("rule"),
            "reason": r.get("reason"),
            "scene": r.get("scene") or res.get("scene"),
            "scene_date": res.get("scene_date"),
            "cloud_share": res.get("cloud_share"),
            "areas": areas,
            "dominant": dom,
            "color": MINING_LULC.by_name(dom).hex if dom in MINING_LULC.names else FAILED_COLOR,
        }
        if map_path is not None and map_path.exists():
            props.update(composite_info(map_path, folder / "clear_count" / f"{map_path.stem}.tif"))
        for key in EXTRA_KEYS:
            if res.get(key) is not None:
                props[key] = res[key]
        if r.get("map"):  # quicklooks are named like the maps: report/quicklooks/<safe id>.png
            ql = folder / "report" / "quicklooks" / f"{Path(r['map']).stem}.png"
            if ql.exists():
                props["quicklook"] = _rel(ql, report_dir)
        if status == "ok" and map_path is not None:
            if map_path.exists():
                try:
                    overlays[sid] = render_overlay(map_path, name=sid, style="classes", max_px=512)
                except InputError as exc:
                    sec.missing.append(Missing(_rel(map_path, report_dir), str(exc)))
            else:
                sec.missing.append(Missing(_rel(map_path, report_dir), "class map not found"))
        features.append({"type": "Feature", "properties": props})
        geom_list.append(geom)
    from minescape.publish.regions import world9_region

    points = shapely.point_on_surface(geom_list) if geom_list else []
    for f, g, pt in zip(features, geometries_geojson(geom_list), points, strict=True):
        f["geometry"] = g
        f["properties"]["region"] = world9_region(pt.x, pt.y)  # the page of a run too big for one
    note = f"{footprints} site(s) drawn as their class map's bounds" if footprints else ""
    if features:
        sec.layers.append(
            FeatureLayer(
                name=f"{title}: sites", features=features, kind="sites", site_overlays=overlays, note=note
            )
        )
    if area_total:
        total = sum(area_total.values()) or 1.0
        sec.tables.append(
            Table(
                "Area per class",
                ("class", "area (m²)", "area (ha)", "share"),
                tuple(
                    (
                        name,
                        round(area_total.get(name, 0.0), 1),
                        round(area_total.get(name, 0.0) / 1e4, 2),
                        f"{100 * area_total.get(name, 0.0) / total:.1f} %",
                    )
                    for name in MINING_LULC.names
                ),
            )
        )
    if years:
        sec.tables.append(
            Table(
                "Year distribution (sites per year)",
                ("year", "sites"),
                tuple((str(y), n) for y, n in sorted(years.items())),
                note="year rules: " + ", ".join(f"{k} {v}" for k, v in sorted(rules.items())),
            )
        )
    if failures or run.get("read_notes"):
        sec.tables.append(
            Table(
                "Failures",
                ("site", "status", "reason"),
                tuple(failures),
                note="; ".join(map(str, run.get("read_notes") or []))[:2000],
            )
        )
    if imagery_notes:  # what reading the imagery decided (e.g. an offset the pixels contradict), site by site
        sites_with = len({sid for sid, _ in imagery_notes})
        sec.tables.append(
            Table(
                "Imagery notes",
                ("site", "note"),
                tuple(imagery_notes[:NOTES_LISTED]),
                note=f"{sites_with} site(s) with notes"
                + (f"; the first {NOTES_LISTED} of {len(imagery_notes)} listed (all in report/run.json)"
                   if len(imagery_notes) > NOTES_LISTED else ""),
            )
        )
    metrics = folder / "report" / "metrics.json"
    if metrics.exists():
        m = read_part_json(metrics, _rel(metrics, report_dir), sec.missing)
        if isinstance(m, dict):
            sec.tables += accuracy_tables(m, title="Accuracy against the reference")
    sec.figures += [Figure(p.stem.replace("_", " "), p) for p in sorted((folder / "report").glob("*.png"))]
    return sec


"""The release part (``minescape publish`` OUT): area per class per region and the year distribution from the
GeoPackage shards (attributes only, read through GDAL's ``/vsizip/``), skipped sites from ``manifest.json``,
and the class polygons for the map (per region).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from minescape.legend import Legend
from minescape.webreport.contents import FeatureLayer, Missing, Section, Table
from minescape.webreport.geojson import geometries_geojson
from minescape.webreport.part_json import read_part_json


def _shards(folder: Path, manifest: dict) -> list[tuple[str, str]]:
    """``(region, GDAL path)`` of every shard the manifest lists."""
    out = []
    for region, info in (manifest.get("regions") or {}).items():
        zip_path = folder / str(info.get("zip", ""))
        for f in info.get("files") or []:
            out.append((str(region), f"/vsizip/{zip_path}/{f['name']}"))
    return out


def collect_release(folder: Path, *, title: str, max_features: int) -> Section:
    """The section of a release folder; a region with more than ``max_features`` polygons is counted in the
    tables but not drawn.
    """
    import pyogrio

    sec = Section(title=title, kind="release", folder=folder)
    manifest = read_part_json(folder / "manifest.json", "manifest.json", sec.missing)
    if not isinstance(manifest, dict):
        return sec
    legend = Legend.from_dict(manifest["legend"]) if isinstance(manifest.get("legend"), dict) else None
    sec.facts += [
        (k, str(manifest.get(k)))
        for k in ("dataset", "producer", "crs", "sites", "features")
        if manifest.get(k) is not None
    ]
    area: dict[tuple[str, str], float] = defaultdict(float)
    by_region: dict[str, list] = defaultdict(list)
    for region, gdal_path in _shards(folder, manifest):
        try:
            df = pyogrio.read_dataframe(
                gdal_path, layer=Path(gdal_path).stem, columns=["index_n", "class_name", "area_m2", "year"]
            )
        except Exception as exc:  # noqa: BLE001 - any unreadable shard is reported, the others shown
            sec.missing.append(Missing(gdal_path.removeprefix("/vsizip/"), str(exc).splitlines()[0][:160]))
            continue
        for name, a in df.groupby("class_name")["area_m2"].sum().items():
            area[(region, str(name))] += float(a)
        by_region[region].append(df)
    regions = sorted({r for r, _ in area})
    classes = legend.names if legend else sorted({c for _, c in area})
    if area:
        rows = [
            (
                c,
                *(round(area.get((r, c), 0.0) / 1e4, 2) for r in regions),
                round(sum(area.get((r, c), 0.0) for r in regions) / 1e4, 2),
            )
            for c in classes
        ]
        sec.tables.append(
            Table("Area per class and region (ha)", ("class", *regions, "all regions"), tuple(rows))
        )
    years = (manifest.get("summary") or {}).get("year") or {}
    if years:
        sec.tables.append(
            Table(
                "Year distribution",
                ("year", "features", "area (ha)"),
                tuple(
                    (str(y), v.get("features"), round(float(v.get("area_m2", 0)) / 1e4, 2))
                    for y, v in sorted(years.items())
                ),
            )
        )
    skipped = manifest.get("skipped") or []
    if skipped:
        sec.tables.append(
            Table(
                "Skipped sites",
                ("site", "reason"),
                tuple(
                    (str(s.get("site", s.get("path", ""))), str(s.get("reason", "")))
                    if isinstance(s, dict)
                    else (str(s), "")
                    for s in skipped
                ),
            )
        )
    colors = {c.name: c.hex for c in legend} if legend else {}
    for region, frames in sorted(by_region.items()):
        n = sum(len(f) for f in frames)
        if n > max_features:
            sec.missing.append(
                Missing(
                    f"{region} polygons",
                    f"{n} features, over the {max_features} drawn on one page; the tables still count them",
                )
            )
            continue
        feats = []
        geoms = []
        for df in frames:
            for row, g in zip(df.itertuples(index=False), df.geometry.values, strict=True):
                feats.append(
                    {
                        "type": "Feature",
                        "properties": {
                            "id": int(row.index_n),
                            "class_name": row.class_name,
                            "area_m2": float(row.area_m2),
                            "year": int(row.year),
                            "region": region,
                            "color": colors.get(row.class_name, "#555555"),
                        },
                    }
                )
                geoms.append(g)
        for f, g in zip(feats, geometries_geojson(geoms), strict=True):
            f["geometry"] = g
        sec.layers.append(FeatureLayer(name=f"{title}: {region}", features=feats, kind="classes"))
    return sec

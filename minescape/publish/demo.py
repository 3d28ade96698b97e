"""Demo stage: publish the synthetic region's site maps as a release and inspect it."""

from __future__ import annotations

import json
from pathlib import Path

from minescape.errors import InputError
from minescape.geo.vector import read_vector
from minescape.publish.inspect import inspect_release
from minescape.publish.release import publish
from minescape.publish.sample_maps import clip_truth_to_sites


def _lulc_maps(ctx) -> Path | None:
    """The LULC stage's per-site maps folder, if it ran."""
    maps = ctx.outputs.get("lulc_maps")
    if maps:
        maps = Path(maps) if not isinstance(maps, (list, tuple)) else Path(maps[0]).parent
        if maps.is_dir() and any(maps.glob("*.tif")):
            return maps
    return None


def _truth_maps(ctx, stage: Path) -> tuple[Path, str]:
    """The synthetic truth clipped to each site (the publish input contract)."""
    region = ctx.region
    year = json.loads(Path(region.manifest).read_text())["config"]["dcm_years"][-1]
    out = stage / "maps"
    clip_truth_to_sites(region.truth_lulc, read_vector(region.sites), out, year=year, id_column="site_id")
    return out, "the synthetic truth clipped to each site"


def run(ctx) -> list[str]:
    """Publish with a small cap (several shards per region) and inspect; returns summary lines."""
    stage = ctx.stage_dir("publish")
    release = stage / "release"
    maps, summary, note = _lulc_maps(ctx), None, []
    if maps is not None:
        try:
            summary = publish(maps, release, max_features=50, progress=False)
            source = "the LULC stage's class maps"
        except InputError as exc:
            note = [f"the LULC stage's maps could not be published ({exc}); used the truth instead"]
    if summary is None:
        maps, source = _truth_maps(ctx, stage)
        summary = publish(maps, release, max_features=50, progress=False)
    report = inspect_release(release)
    ctx.outputs["release"] = release
    lines = [
        f"{release}: {summary.features:,} polygons from {summary.manifest['sites']} sites ({source}) in "
        f"{len(summary.files)} GeoPackages of <= 50 features, {len(summary.zips)} regional ZIP(s), "
        "manifest.json, README.md; each GPKG has a QGIS style by class_name",
        f"inspect: {len(report.files)} files, {report.features:,} features, "
        + ("no violations" if report.ok
           else f"{len(report.violations)} violations, first: {report.violations[0]}"),
    ]
    areas = summary.manifest["summary"]["class"]
    top = sorted(areas.items(), key=lambda kv: -kv[1]["area_m2"])[:3]
    lines.append("largest classes: " + ", ".join(f"{k} {v['area_m2'] / 1e6:.2f} km²" for k, v in top))
    return lines + note

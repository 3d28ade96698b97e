"""The change part of a run folder (``change detect`` or ``change predict`` OUT): the change mask, the change
probability and the index difference as overlays, and the run's figures from ``detect.json``.
"""

from __future__ import annotations

from pathlib import Path

from minescape.errors import InputError
from minescape.geo.raster import open_by_name
from minescape.webreport.contents import Missing, Section, Table
from minescape.webreport.overlay import Style, render_overlay
from minescape.webreport.part_json import read_part_json

# file, layer name, style: drawn in this order (the mask last, on top)
CHANGE_RASTERS: tuple[tuple[str, str, Style], ...] = (
    ("difference.tif", "index difference (T2 - T1)", "diverging"),
    ("change_probability.tif", "change probability", "ramp"),
    ("change_mask.tif", "change mask", "change"),
)


# tags of a deep model's change_probability.tif the report shows, with their labels
PREDICT_TAGS: tuple[tuple[str, str], ...] = (
    ("arch", "arch"),
    ("threshold", "threshold"),
    ("model", "model"),
    ("cloud_mask", "cloud mask"),
    ("coregistration_shift_px", "co-registration shift (px)"),
    ("scene_notes", "scene notes"),
)


def _band_name(path: Path) -> str | None:
    """The first band's description of a GeoTIFF (``dSAVI``, ``CVA`` ...), None when unreadable or unnamed."""
    import rasterio

    try:
        with open_by_name(path) as src:
            return src.descriptions[0]
    except rasterio.errors.RasterioIOError:
        return None


def collect_change(folder: Path, *, title: str) -> Section:
    """The section of a change output folder: overlays of the rasters present, detect.json's figures."""
    sec = Section(title=title, kind="change", folder=folder)
    for name, label, style in CHANGE_RASTERS:
        path = folder / name
        if path.exists():
            if name == "difference.tif" and _band_name(path) == "CVA":  # a magnitude, not a signed difference
                label, style = "change-vector magnitude", "magnitude"
            try:
                sec.overlays.append(render_overlay(path, name=f"{title}: {label}", style=style))
            except InputError as exc:
                sec.missing.append(Missing(name, str(exc)))
    prob = folder / "change_probability.tif"
    if prob.exists():  # a deep model's output: its tags name the model and its threshold
        import rasterio

        try:
            with open_by_name(prob) as src:
                tags = src.tags()
        except rasterio.errors.RasterioIOError:
            tags = {}
        sec.facts += [(label, tags[k]) for k, label in PREDICT_TAGS if tags.get(k)]
    if not (folder / "change_mask.tif").exists():
        sec.missing.append(Missing(f"{title}: change_mask.tif", "not found (the run did not finish?)"))
    stats_path = folder / "detect.json"
    if stats_path.exists():
        s = read_part_json(stats_path, "detect.json", sec.missing)
        if isinstance(s, dict) and s:
            rows = [
                ("method", s.get("method")),
                ("direction", s.get("direction")),
                ("threshold rule", s.get("threshold_rule")),
                ("threshold", s.get("threshold")),
                (
                    "changed area (ha)",
                    None if s.get("changed_area_m2") is None else round(float(s["changed_area_m2"]) / 1e4, 2),
                ),
                ("changed area (m²)", s.get("changed_area_m2")),
                (
                    "changed / loss / gain pixels",
                    f"{s.get('changed_pixels')} / {s.get('loss_pixels')} / {s.get('gain_pixels')}",
                ),
                ("valid pixels", s.get("valid_pixels")),
                ("co-registration shift (px)", s.get("coregistration_shift_px")),
                ("cloud mask", s["cloud_mask"].get("description") if isinstance(s.get("cloud_mask"), dict) else None),
                ("scene notes", "; ".join(map(str, s["scene_notes"])) if s.get("scene_notes") else None),
                ("date 1", Path(str(s.get("t1", ""))).name),
                ("date 2", Path(str(s.get("t2", ""))).name),
                ("CRS", s.get("crs")),
            ]
            sec.tables.append(
                Table(
                    "Change detection", ("measure", "value"), tuple((k, v) for k, v in rows if v is not None)
                )
            )
    return sec

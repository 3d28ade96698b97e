"""Find what a run folder holds and gather it into a :class:`RunContents` value.

A run folder is recognised by its marker files, in the folder itself and in sub-folders up to
``MAX_DEPTH`` levels down (so the demo's output folder gives one report of every stage):

========================  ==============================================================
marker                    part
========================  ==============================================================
``sites.json``            LULC run (``lulc classify``)
``detect.json``,          change run (``change detect``, ``change predict``)
``change_mask.tif``,
``change_probability.tif``
``manifest.json`` with    release (``publish``)
``regions``
``validation.json``       validation of a large-area map (``map validate``)
``manifest.json`` with    map products (``map products``: per-unit GeoTIFF tiles, class
``tiles``, ``versions``   areas in ``class_areas.csv``)
and ``size_cap_bytes``
========================  ==============================================================

A ``map predict`` output is one GeoTIFF with no marker file beside it, so it is not recognised on its own; its
``map products`` folder is.

Nothing here raises on a broken or partial run: what cannot be shown becomes a :class:`Missing` row.
"""

from __future__ import annotations

import os
from pathlib import Path

from minescape.errors import InputError, MissingInputError
from minescape.unfinished import MARKER, unfinished_reason
from minescape.webreport.accuracy_part import collect_validation
from minescape.webreport.change_part import collect_change
from minescape.webreport.contents import Missing, RunContents
from minescape.webreport.lulc_part import collect_lulc
from minescape.webreport.maps_part import collect_products, is_products_manifest
from minescape.webreport.part_json import read_part_json
from minescape.webreport.release_part import collect_release

MAX_DEPTH = 3
REPORT_FILES = "report_files"
SKIP_DIRS = {REPORT_FILES, "quicklooks", "clear_count", "T1", "T2", "Change", "scenes", "tiles",
             "ndvi_tiles"}
CHANGE_MARKERS = ("detect.json", "change_mask.tif", "change_probability.tif")
MAX_RELEASE_FEATURES = 20_000  # class polygons of one release region drawn (measured: see docs/report.md)
MAX_PRODUCT_TILES = 500  # map-product tiles drawn on the map, read decimated (measured: see docs/report.md)


def _manifest_kind(folder: Path) -> str | None:
    """``release`` or ``products`` for the ``manifest.json`` of ``publish`` or ``map products``, else None."""
    m = read_part_json(folder / "manifest.json", "manifest.json", [])  # not a manifest of ours: no part
    if isinstance(m, dict) and "regions" in m and "legend" in m:
        return "release"
    return "products" if is_products_manifest(m) else None


def find_parts(run_dir: Path) -> list[tuple[str, Path]]:
    """``(kind, folder)`` of every recognised part in folder order (lulc, change, release or products,
    validation)."""
    parts: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(run_dir):
        folder = Path(root)
        depth = len(folder.relative_to(run_dir).parts)
        dirs[:] = (
            sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            if depth < MAX_DEPTH
            else []
        )
        names = set(files)
        if MARKER in names:  # a run into this folder did not finish: shown as missing, its outputs not drawn
            parts.append(("unfinished", folder))
            dirs[:] = []
            continue
        if "sites.json" in names:
            parts.append(("lulc", folder))
            # a LULC run's maps/ holds one class map per site (80,000 in the global run), never a part; a folder
            # called maps/ elsewhere (the demo's map stage) is searched
            dirs[:] = [d for d in dirs if d != "maps"]
        if names.intersection(CHANGE_MARKERS):
            parts.append(("change", folder))
        if "manifest.json" in names and (kind := _manifest_kind(folder)):
            parts.append((kind, folder))
        if "validation.json" in names:
            parts.append(("validation", folder))
    return parts


def run_inputs(run_dir: Path) -> dict[str, list[Path]]:
    """The inputs the runs in ``run_dir`` recorded, by what a message calls them: the date 1 and date 2 scenes of a
    change run (``detect.json``), the sites file of an LULC run (``report/run.json``) and the scenes its sites were
    classified from (``sites.json``). What a record does not say, or cannot be read, is left out."""
    found: dict[str, list[Path]] = {}

    def add(role: str, value) -> None:
        if isinstance(value, str) and value:
            found.setdefault(role, []).append(Path(value))

    for kind, folder in find_parts(run_dir):
        if kind == "change":
            info = read_part_json(folder / "detect.json", "detect.json", [])
            if isinstance(info, dict):
                add(f"the date 1 scene of the run in {folder}", info.get("t1"))
                add(f"the date 2 scene of the run in {folder}", info.get("t2"))
        elif kind == "lulc":
            run = read_part_json(folder / "report" / "run.json", "run.json", [])
            if isinstance(run, dict) and isinstance(run.get("source"), dict):
                add(f"the sites file of the run in {folder}", run["source"].get("sites"))
            rows = read_part_json(folder / "sites.json", "sites.json", [])
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, dict):
                    add(f"a scene of the run in {folder}", row.get("scene"))
    return found


def collect_run(
    run_dir: str | Path,
    *,
    report_dir: str | Path | None = None,
    max_release_features: int = MAX_RELEASE_FEATURES,
    max_product_tiles: int = MAX_PRODUCT_TILES,
) -> RunContents:
    """Everything a report of ``run_dir`` shows.

    Args:
        run_dir: the output folder of a run (or a folder holding several, like the demo's).
        report_dir: where the report is written (relative links to quicklooks start there); default run_dir.
        max_release_features: class polygons of a release region drawn on the main page at most.
        max_product_tiles: tiles of a map-products folder drawn on the map at most.

    Raises:
        MissingInputError: ``run_dir`` does not exist. InputError: it is not a folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise MissingInputError("run folder not found", path=run_dir)
    if not run_dir.is_dir():
        raise InputError("not a run folder (a file)", path=run_dir)
    report_dir = Path(report_dir) if report_dir is not None else run_dir
    contents = RunContents(run_dir=run_dir, title=f"minescape report: {run_dir.resolve().name}")
    parts = find_parts(run_dir)
    if not parts:
        contents.missing.append(
            Missing(
                str(run_dir),
                "no run outputs found: none of sites.json (lulc classify), "
                "detect.json / change_mask.tif (change detect, predict), manifest.json "
                "(publish, map products), validation.json (map validate) in the folder or below",
            )
        )
    for kind, folder in parts:
        rel = folder.relative_to(run_dir).as_posix()
        title = f"{kind}: {rel}" if rel != "." else kind
        if kind == "unfinished":
            contents.missing.append(Missing(str(folder), unfinished_reason(folder) or "did not finish"))
        elif kind == "lulc":
            contents.sections.append(collect_lulc(folder, report_dir, title=title))
        elif kind == "change":
            contents.sections.append(collect_change(folder, title=title))
        elif kind == "release":
            contents.sections.append(collect_release(folder, title=title, max_features=max_release_features))
        elif kind == "products":
            contents.sections.append(collect_products(folder, title=title, max_tiles=max_product_tiles))
        else:
            contents.sections.append(collect_validation(folder, title=title))
    return contents

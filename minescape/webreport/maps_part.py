"""The map-products part (``minescape map products`` OUT): the legend, the tiles and their class areas, and the
tiles as one class-map overlay.

Reads ``manifest.json`` (tiles, legend name, source map, versions, failed units, notes), each tile's GeoTIFF header
(``tiles/Region_Province_City.tif``: size, CRS, pixel size, the ``REGION``/``PROVINCE``/``CITY`` tags) and
``class_areas.csv`` (per-tile class areas in km² on the WGS84 ellipsoid, as ``map products`` computed them: they are
read, never recomputed). For the map, at most ``max_tiles`` tiles are read decimated (GDAL uses their overviews)
into one mosaic whose longer side is ``max_px`` pixels, drawn by the one overlay mechanism
(:func:`minescape.webreport.overlay.render_overlay`), so memory follows the PNG, not the product.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from rasterio.crs import CRS
from rasterio.errors import RasterioError

from minescape.errors import InputError
from minescape.geo.raster import open_raster
from minescape.legend import Legend, get_legend
from minescape.webreport.contents import Missing, Section, Table
from minescape.webreport.overlay import Overlay, render_overlay
from minescape.webreport.part_json import read_part_json

AREA_UNIT = "km²"


def is_products_manifest(manifest: object) -> bool:
    """Whether a parsed ``manifest.json`` is the one ``map products`` writes (``tiles``, ``versions``, a size cap)."""
    return isinstance(manifest, dict) and {"tiles", "versions", "size_cap_bytes"} <= manifest.keys()


def _gb(n: object) -> str:
    """A size in bytes as ``"50 GB"`` (10^9 bytes), or as given when not a number."""
    return f"{n / 1e9:g} GB" if isinstance(n, int | float) and not isinstance(n, bool) else str(n)


@dataclass(frozen=True)
class TileHeader:
    """What a product tile's GeoTIFF header says.

    Attributes:
        path: the tile file.
        names: ``(region, province, city)`` from its ``REGION``/``PROVINCE``/``CITY`` tags (None when absent).
        width, height: pixels.
        crs: its CRS (rasterio).
        bounds: ``(left, bottom, right, top)`` in ``crs`` units.
        res: pixel ``(width, height)`` in ``crs`` units (degrees for a geographic CRS).
        nbytes: file size in bytes.
    """

    path: Path
    names: tuple[str | None, str | None, str | None]
    width: int
    height: int
    crs: CRS
    bounds: tuple[float, float, float, float]
    res: tuple[float, float]
    nbytes: int

    @classmethod
    def read(cls, path: Path) -> TileHeader:
        """The header of ``path``. Raises InputError: not found, not a readable raster, or no CRS."""
        with open_raster(path) as src:
            if src.crs is None:
                raise InputError("tile has no CRS; cannot place it", path=path)
            tags = src.tags()
            return cls(path, (tags.get("REGION"), tags.get("PROVINCE"), tags.get("CITY")), src.width, src.height,
                       src.crs, tuple(src.bounds), (abs(src.res[0]), abs(src.res[1])), path.stat().st_size)

    @property
    def pixel_size(self) -> str:
        """``"1 x 1 m"`` or ``"0.000833333 x 0.000833333 °"``: width x height in the CRS's unit."""
        unit = "°" if self.crs.is_geographic else {"metre": "m", "meter": "m"}.get(self.crs.linear_units,
                                                                                   self.crs.linear_units)
        return f"{self.res[0]:g} x {self.res[1]:g} {unit}"

    @property
    def row(self) -> tuple:
        """The tile's row of the Tiles table."""
        return (self.path.stem, *self.names, f"{self.width} x {self.height}", _crs_label(self.crs),
                self.pixel_size, round(self.nbytes / 1e6, 3))


def _crs_label(crs: CRS) -> str:
    """``EPSG:32650``, or the CRS's name when it has no EPSG code."""
    from pyproj import CRS as ProjCRS

    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else ProjCRS.from_wkt(crs.to_wkt()).name


TILE_COLUMNS = ("tile", "region", "province", "city", "size (px)", "CRS", "pixel size", "file (MB)")


def _tile_headers(folder: Path, stems: list[str], missing: list[Missing]) -> list[TileHeader]:
    """The headers of the readable tiles ``tiles/<stem>.tif``; each unreadable one becomes a Missing row."""
    out = []
    for stem in stems:
        try:
            out.append(TileHeader.read(folder / "tiles" / f"{stem}.tif"))
        except InputError as exc:
            missing.append(Missing(f"tiles/{stem}.tif", str(exc).splitlines()[0][:200]))
    return out


def _area_tables(folder: Path, stems: list[str], legend: Legend | None, missing: list[Missing]) -> list[Table]:
    """The legend with the total area of each class, and the area per class and tile, from ``class_areas.csv``."""
    from minescape.csvfile import read_csv

    try:
        df = read_csv(folder / "class_areas.csv", "class area table")
    except InputError as exc:
        missing.append(Missing("class_areas.csv", str(exc).splitlines()[0][:200]))
        df = None
    if df is not None and "unit" not in df.columns:
        missing.append(Missing("class_areas.csv", f"no 'unit' column (it has {list(df.columns)[:8]})"))
        df = None
    classes = legend.names if legend else ([] if df is None else [
        c for c in df.columns if c not in ("unit", "region", "province", "city", "total_km2")])
    by_unit: dict[str, dict] = {}
    if df is not None:
        absent = [c for c in classes if c not in df.columns]
        if absent:
            missing.append(Missing("class_areas.csv", f"no column for class(es) {absent}; counted as 0"))
        import pandas as pd

        values = {}
        for c in classes:
            v = pd.to_numeric(df[c], errors="coerce") if c in df.columns else pd.Series(0.0, index=df.index)
            bad = v.isna() & (df[c].notna() if c in df.columns else False)
            if bad.any():
                missing.append(Missing("class_areas.csv", f"column {c!r}: {int(bad.sum())} value(s) that are not "
                                       "numbers, counted as 0"))
            values[c] = v.fillna(0.0).astype(float).tolist()
        for k, unit in enumerate(df["unit"].astype(str)):
            by_unit[unit] = {c: values[c][k] for c in classes}
        unlisted = [s for s in stems if s not in by_unit]
        if unlisted:
            missing.append(Missing("class_areas.csv", f"no areas for {len(unlisted)} tile(s): "
                                   f"{', '.join(unlisted[:5])}{' ...' if len(unlisted) > 5 else ''}"))
    listed = [s for s in stems if s in by_unit]
    total = {c: sum(by_unit[s][c] for s in listed) for c in classes}
    grand = sum(total.values())
    tables = []
    if legend is not None:
        tables.append(Table(
            f"Legend and area in all tiles ({AREA_UNIT}, WGS84 ellipsoid)",
            ("code", "class", "colour", f"area ({AREA_UNIT})", "share (%)"),
            tuple((c.code, c.name, c.hex, round(total[c.name], 6) if by_unit else None,
                   round(100 * total[c.name] / grand, 3) if grand else None) for c in legend),
            note=f"nodata code {legend.nodata}" + ("" if by_unit else "; no class areas (see What is missing)"),
        ))
    if listed:
        shown = [c for c in classes if total[c] > 0]
        tables.append(Table(
            f"Area per class and tile ({AREA_UNIT})",
            ("tile", *shown, "total"),
            tuple((s, *(round(by_unit[s][c], 6) for c in shown), round(sum(by_unit[s].values()), 6))
                  for s in listed) + (("all tiles", *(round(total[c], 6) for c in shown), round(grand, 6)),),
            note="classes with no area in any tile are left out; the legend table lists every class",
        ))
    return tables


def _mosaic_overlay(tiles: list[TileHeader], legend: Legend, *, name: str, max_px: int) -> Overlay:
    """``tiles`` (of one CRS) read decimated into one class raster of at most ``max_px`` pixels a side, with
    pixels no smaller than the tiles' (nearest neighbour; GDAL reads the overviews), rendered as a ``classes``
    overlay."""
    import rasterio.merge
    from rasterio.enums import Resampling

    from minescape.geo.raster import Raster, write_raster

    left, bottom = min(t.bounds[0] for t in tiles), min(t.bounds[1] for t in tiles)
    right, top = max(t.bounds[2] for t in tiles), max(t.bounds[3] for t in tiles)
    res = max((right - left) / max_px, (top - bottom) / max_px, max(max(t.res) for t in tiles))
    with contextlib.ExitStack() as stack:  # opened by name (geo.raster.open_raster), as every reader opens rasters
        sources = [stack.enter_context(open_raster(t.path)) for t in tiles]
        data, transform = rasterio.merge.merge(sources, res=(res, res), nodata=legend.nodata,
                                               resampling=Resampling.nearest)
    with tempfile.TemporaryDirectory(prefix="minescape-report-") as tmp:
        mosaic = write_raster(Raster(data[:1], tiles[0].crs, transform, legend.nodata), Path(tmp) / "mosaic.tif",
                              legend=legend)
        ov = render_overlay(mosaic, name=name, style="classes", max_px=max_px)
    return replace(ov, source=tiles[0].path.parent)


def collect_products(folder: Path, *, title: str, max_tiles: int, max_px: int = 1024) -> Section:
    """The section of a ``map products`` output folder; at most ``max_tiles`` tiles are drawn on the map (the
    tables list and count them all), as one overlay with a longer side of at most ``max_px`` pixels."""
    sec = Section(title=title, kind="products", folder=folder)
    manifest = read_part_json(folder / "manifest.json", "manifest.json", sec.missing)
    if manifest is None:
        return sec
    if not is_products_manifest(manifest):
        sec.missing.append(Missing("manifest.json", "not a map products manifest (no tiles, versions, size cap)"))
        return sec
    stems = [str(s) for s in manifest.get("tiles") or []]
    legend = None
    try:
        legend = get_legend(str(manifest.get("legend")))
    except InputError as exc:
        sec.missing.append(Missing("manifest.json: legend", f"{exc}; no legend colours or map overlay"))
    versions = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else {}
    failed = manifest.get("failed") if isinstance(manifest.get("failed"), dict) else {}
    sec.facts += [
        ("class map", str(manifest.get("map"))),
        ("legend", f"{legend.name} ({len(legend)} classes)" if legend else str(manifest.get("legend"))),
        ("tiles", str(len(stems))),
        ("versions", f"{len(versions)} (ZIPs of at most {_gb(manifest['size_cap_bytes'])} each)"),
        ("failed units", str(len(failed))),
    ]
    sec.facts += [("note", str(n)) for n in manifest.get("notes") or []]
    readable = _tile_headers(folder, stems, sec.missing)
    sec.tables += _area_tables(folder, stems, legend, sec.missing)
    sec.tables.append(Table("Tiles", TILE_COLUMNS, tuple(t.row for t in readable)))
    if versions:
        sec.tables.append(Table("Versions", ("version", "provinces"),
                                tuple((str(v), ", ".join(map(str, p))) for v, p in versions.items())))
    if failed:
        sec.tables.append(Table("Failed units", ("unit", "reason"),
                                tuple((str(u), str(r)) for u, r in sorted(failed.items()))))
    if legend is None or not readable:
        return sec
    drawn = readable[:max_tiles]
    if len(readable) > max_tiles:
        sec.missing.append(Missing(f"{title}: map", f"{len(readable)} tiles, over the {max_tiles} drawn on the "
                                   f"map; the first {max_tiles} are drawn, the tables list them all"))
    crs = drawn[0].crs
    same = [t for t in drawn if t.crs == crs]
    other = [t.path.stem for t in drawn if t.crs != crs]
    if other:
        sec.missing.append(Missing(f"{title}: map", f"{len(other)} tile(s) in another CRS than "
                                   f"{_crs_label(crs)} not drawn: {', '.join(other[:5])}"))
    try:
        sec.overlays.append(_mosaic_overlay(same, legend, name=f"{title}: class map "
                                            f"({len(same)} tile{'s' if len(same) != 1 else ''})", max_px=max_px))
    except (InputError, RasterioError, ValueError) as exc:  # a tile whose header reads but whose pixels do not
        sec.missing.append(Missing(f"{title}: map", str(exc).splitlines()[0][:200]))
        return sec
    sec.facts.append(("map", f"{len(same)} of {len(stems)} tiles drawn, read decimated "
                             f"(longer side at most {max_px} px)"))
    return sec

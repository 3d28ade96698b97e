"""The report of a ``map products`` folder: legend, tiles, class areas (km², ellipsoidal), the class-map overlay,
and broken or partial folders as Missing rows."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from pyproj import Geod, Transformer
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.geo.raster import read_raster
from minescape.legend import SINOLC1
from minescape.webreport.collect import collect_run, find_parts
from minescape.webreport.write import write_report

from .test_report import page_data

runner = CliRunner()


class _Tables(HTMLParser):
    """``{h3 title: [[cell text, ...], ...]}`` of the page's tables, the header row first."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._title: str | None = None
        self._in_h3 = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "h3":
            self._in_h3, self._title = True, ""
        elif tag == "tr" and self._title is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "h3":
            self._in_h3 = False
            self.tables[self._title] = []
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._title].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in_h3:
            self._title += data
        elif self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[dict[str, str]]]:
    """The page's tables as lists of ``{column: cell text}``."""
    p = _Tables()
    p.feed(html)
    return {t: [dict(zip(rows[0], r, strict=True)) for r in rows[1:]] for t, rows in p.tables.items() if rows}


def number(text: str) -> float:
    return float(text.replace(",", ""))


def expected_areas_km2(tile: Path) -> dict[str, float]:
    """Class areas of a tile whose every pixel is valid, computed apart from minescape's pixel areas: the share
    of each class's pixels times the geodesic area (pyproj, WGS84) of the tile's densified footprint."""
    r = read_raster(tile)
    codes = r.data[0]
    assert codes.size > 0 and not (codes == SINOLC1.nodata).any()  # every pixel is a class: shares are exact
    footprint = shapely.segmentize(shapely.box(*r.bounds), 1.0)
    to_ll = Transformer.from_crs(r.crs, "EPSG:4326", always_xy=True)
    ll = shapely.transform(footprint, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    area = abs(Geod(ellps="WGS84").geometry_area_perimeter(ll)[0]) / 1e6
    counts = np.bincount(codes.ravel(), minlength=256)
    return {c.name: area * counts[c.code] / codes.size for c in SINOLC1}


def test_products_folder_report(products_run):
    manifest = json.loads((products_run / "manifest.json").read_text())
    stems = manifest["tiles"]
    assert len(stems) == 4 and find_parts(products_run) == [("products", products_run)]
    res = runner.invoke(app, ["report", str(products_run)])
    assert res.exit_code == 0, res.output
    html = (products_run / "report.html").read_text()
    assert 'data-kind="products"' in html and "What is missing" not in html
    t = tables(html)

    # the legend: every SinoLC-1 class with its code and colour
    legend = t["Legend and area in all tiles (km², WGS84 ellipsoid)"]
    assert [(int(r["code"]), r["class"], r["colour"]) for r in legend] == [(c.code, c.name, c.hex) for c in SINOLC1]

    # the tiles: names, region/province/city, size, CRS and pixel size as the GeoTIFFs hold them
    tiles = {r["tile"]: r for r in t["Tiles"]}
    assert sorted(tiles) == sorted(stems)
    for stem in stems:
        raster = read_raster(products_run / "tiles" / f"{stem}.tif")
        row = tiles[stem]
        assert (row["region"], row["province"], row["city"]) == tuple(stem.split("_"))
        assert row["size (px)"] == f"{raster.data.shape[2]} x {raster.data.shape[1]}"
        assert row["CRS"] == "EPSG:32650" and row["pixel size"] == "1 x 1 m"

    # per-class areas per tile and in total match an independent computation
    per_tile = {r["tile"]: r for r in t["Area per class and tile (km²)"]}
    expected = {s: expected_areas_km2(products_run / "tiles" / f"{s}.tif") for s in stems}
    shown = [c for c in SINOLC1.names if c in per_tile[stems[0]]]
    assert len(shown) >= 3  # several classes present, each with an area > 0 somewhere
    for stem in stems:
        for c in SINOLC1.names:
            exp = expected[stem][c]
            got = number(per_tile[stem][c]) if c in shown else 0.0
            assert got == pytest.approx(exp, rel=1e-3, abs=2e-6), (stem, c)
        assert number(per_tile[stem]["total"]) == pytest.approx(sum(expected[stem].values()), rel=1e-4)
    total = {c: sum(e[c] for e in expected.values()) for c in SINOLC1.names}
    assert sum(v > 0 for v in total.values()) >= 3
    for row in legend:
        assert number(row["area (km²)"]) == pytest.approx(total[row["class"]], rel=1e-3, abs=5e-6)
    for c in shown:
        assert number(per_tile["all tiles"][c]) == pytest.approx(total[c], rel=1e-3, abs=5e-6)

    # one class-map overlay of the tiles, in legend colours, where the tiles are
    data = page_data(html)
    assert [im["style"] for im in data["images"]] == ["classes"]
    img = np.array(Image.open(products_run / data["images"][0]["src"]).convert("RGBA"))
    opaque = img[..., 3] > 0
    assert opaque.sum() > 1000
    assert {tuple(v) for v in img[opaque][:, :3]} <= {tuple(c.color) for c in SINOLC1}
    south, west, north, east = data["images"][0]["bounds"]
    bounds = read_raster(products_run / "tiles" / f"{stems[0]}.tif").bounds
    lon, lat = Transformer.from_crs("EPSG:32650", "EPSG:4326", always_xy=True).transform(
        (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
    assert south < lat < north and west < lon < east
    items = dict(data["legends"][0]["items"])
    assert items and all(SINOLC1.by_name(n).hex == h for n, h in items.items())


def test_broken_products_folder(products_run, tmp_path):
    broken = tmp_path / "products"
    shutil.copytree(products_run, broken, ignore=shutil.ignore_patterns("report*"))
    stems = json.loads((broken / "manifest.json").read_text())["tiles"]
    bad = broken / "tiles" / f"{stems[1]}.tif"
    assert bad.exists()
    bad.write_text("not a GeoTIFF")
    res = runner.invoke(app, ["report", str(broken)])
    assert res.exit_code == 0, res.output
    html = (broken / "report.html").read_text()
    missing = [m for m in collect_run(broken).all_missing if m.what == f"tiles/{bad.name}"]
    assert len(missing) == 1 and "What is missing" in html and f"tiles/{bad.name}" in html
    t = tables(html)
    assert sorted(r["tile"] for r in t["Tiles"]) == sorted(set(stems) - {bad.stem})  # the others are listed
    assert bad.stem in {r["tile"] for r in t["Area per class and tile (km²)"]}  # its areas come from the CSV
    data = page_data(html)
    assert len(data["images"]) == 1 and "(3 tiles)" in data["images"][0]["name"]  # the readable ones drawn

    # more tiles than drawn: said, and the tables still list every tile
    capped = collect_run(broken, max_product_tiles=2)
    assert any("over the 2 drawn" in m.why for m in capped.all_missing)
    assert ("map", "2 of 4 tiles drawn, read decimated (longer side at most 1024 px)") in capped.sections[0].facts

    # no area table, a manifest that is not JSON: rows of what is missing, never an exception
    (broken / "class_areas.csv").unlink()
    assert any(m.what == "class_areas.csv" for m in collect_run(broken).all_missing)
    (broken / "manifest.json").write_text("{not json")
    res = write_report(broken)
    assert "no run outputs found" in " ".join(m.why for m in res.missing)


def test_a_folder_named_maps_is_searched_unless_it_is_a_lulc_runs(products_run, tmp_path):
    """The demo writes its map stage to ``maps/`` (products, validation); a LULC run's ``maps/`` holds only class
    maps. A products folder under ``maps/`` is found; under a LULC run's ``maps/`` it is not looked for."""
    import shutil

    outer = tmp_path / "demo"
    shutil.copytree(products_run, outer / "maps" / "products")
    assert find_parts(outer) == [("products", outer / "maps" / "products")]
    (outer / "sites.json").write_text("{}", encoding="utf-8")
    assert find_parts(outer) == [("lulc", outer)]

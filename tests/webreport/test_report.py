"""``minescape report`` without a browser: what a real run's report holds, overlays, bad input."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from PIL import Image
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.legend import MINING_LULC
from minescape.webreport.collect import collect_run
from minescape.webreport.overlay import render_overlay
from minescape.webreport.render import format_number
from minescape.webreport.write import write_report

runner = CliRunner()


def page_data(html: str) -> dict:
    """The JSON object the page script reads."""
    m = re.search(r"window\.MINESCAPE_REPORT = (\{.*?\});</script>", html, re.S)
    assert m, "no report data in the page"
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_lulc_report_contents(lulc_run):
    html = (lulc_run / "report.html").read_text()
    rows = json.loads((lulc_run / "sites.json").read_text())
    run = json.loads((lulc_run / "report" / "run.json").read_text())
    assert len(rows) == 2 and run["source"]["sites"].endswith("sites.gpkg")
    data = page_data(html)
    feats = [f for layer in data["layers"] if layer["kind"] == "sites" for f in layer["features"]["features"]]
    assert sorted(f["properties"]["id"] for f in feats) == sorted(r["id"] for r in rows)
    for f in feats:
        p, res = f["properties"], run["results"][f["properties"]["id"]]
        assert p["year"] == res["year"] and p["rule"] == res["year_rule"] and p["scene"] == res["scene"]
        assert p["areas"] == res["area_m2"] and sum(p["areas"].values()) > 0
        assert (lulc_run / p["quicklook"]).exists()
        # coordinates rounded to 1e-6 degrees
        xy = np.array(
            f["geometry"]["coordinates"][0]
            if f["geometry"]["type"] == "Polygon"
            else f["geometry"]["coordinates"][0][0]
        )
        assert len(xy) > 4 and np.allclose(xy, np.round(xy, 6), atol=1e-9)
    # the area table sums the run's areas, per class, in m2 and ha
    total = {c: sum(r["area_m2"][c] for r in run["results"].values()) for c in MINING_LULC.names}
    assert total["Vegetation"] > 0
    for c in MINING_LULC.names:
        assert f'<td>{c}</td><td class="num">{format_number(round(total[c], 1))}</td>' in html
    assert "Year distribution" in html and "Confusion matrix" in html and "kappa" in html
    assert 'src="report/confusion_matrix.png"' in html
    # every resource the page loads is a relative local path: no scheme, no CDN
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert "://" not in src and not src.startswith("//"), src
        assert (lulc_run / src).exists(), src
    assert "What is missing" not in html


def test_site_overlay_has_legend_colours(lulc_run):
    path = sorted((lulc_run / "maps").glob("*.tif"))[0]
    ov = render_overlay(path, name="x", style="classes")
    img = np.array(Image.open(io.BytesIO(ov.png)).convert("RGBA"))
    opaque = img[..., 3] > 0
    assert opaque.sum() > 100 and (~opaque).sum() > 0  # the site and transparent nodata around it
    colours = {tuple(v) for v in img[opaque][:, :3]}
    assert colours <= {tuple(c.color) for c in MINING_LULC}
    south, west, north, east = ov.bounds
    assert -90 < south < north < 90 and -180 < west < east < 180


def test_change_report(small_region, tmp_path):
    out = tmp_path / "change"
    res = runner.invoke(app, ["change", "detect", str(small_region.t1), str(small_region.t2), str(out)])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and (out / "report.html").exists()
    data = page_data((out / "report.html").read_text())
    styles = sorted(im["style"] for im in data["images"])
    assert styles == ["change", "diverging"]
    # the line says what the page shows (before: "0 sites on the map" for a change run)
    assert f"report: {out / 'report.html'} (2 map layers)" in res.output
    mask_png = next(out / im["src"] for im in data["images"] if im["style"] == "change")
    img = np.array(Image.open(mask_png).convert("RGBA"))
    assert (img[..., 3] > 0).sum() > 0  # changed pixels drawn
    res = runner.invoke(
        app,
        ["change", "detect", str(small_region.t1), str(small_region.t2), str(tmp_path / "c2"), "--no-report"],
    )
    assert res.exit_code == 0 and not (tmp_path / "c2" / "report.html").exists()
    # a CVA run's difference is a magnitude (>= 0): drawn from 0 with the sequential map, as its QML
    res = runner.invoke(app, ["change", "detect", str(small_region.t1), str(small_region.t2), str(tmp_path / "cva"),
                              "--method", "CVA"])
    assert res.exit_code == 0, res.output
    data = page_data((tmp_path / "cva" / "report.html").read_text())
    magnitude = [im for im in data["images"] if im["style"] == "magnitude"]
    assert len(magnitude) == 1 and "change-vector magnitude" in magnitude[0]["name"]
    from minescape.webreport.overlay import render_overlay

    overlay = render_overlay(tmp_path / "cva" / "difference.tif", name="cva", style="magnitude")
    assert overlay.legend[0][0] == "0.00" and float(overlay.legend[-1][0]) > 0  # from 0, not from -max


def test_release_report(lulc_run, tmp_path):
    from minescape.publish.release import publish

    publish(lulc_run / "maps", tmp_path / "release", max_features=40, progress=False)
    manifest = json.loads((tmp_path / "release" / "manifest.json").read_text())
    res = write_report(tmp_path / "release")
    data = page_data(res.path.read_text())
    feats = [
        f for layer in data["layers"] if layer["kind"] == "classes" for f in layer["features"]["features"]
    ]
    assert len(feats) == manifest["features"] > 0
    html = res.path.read_text()
    assert "Area per class and region (ha)" in html and "Year distribution" in html
    contents = collect_run(tmp_path / "release", max_release_features=1)
    assert any("polygons" in m.what for m in contents.all_missing)  # too many for one page: said, not drawn


def test_failed_run_still_reports(failed_run):
    html = (failed_run / "report.html").read_text()
    assert "Failures" in html and "no_dcm.tif" in html
    data = page_data(html)
    feats = [f for layer in data["layers"] for f in layer["features"]["features"]]
    assert len(feats) == 2 and all(f["properties"]["status"] == "failed" for f in feats)


def test_empty_and_broken_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["report", str(empty)])
    assert res.exit_code == 0, res.output
    html = (empty / "report.html").read_text()
    assert "What is missing" in html and "no run outputs found" in html
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sites.json").write_text("[{not json")
    res = runner.invoke(app, ["report", str(broken)])
    assert res.exit_code == 0 and "sites.json" in res.output and "is not valid JSON" in res.output
    assert "is not valid JSON" in (broken / "report.html").read_text()


@pytest.mark.parametrize("what", ["missing", "file"])
def test_bad_run_dir(tmp_path, what):
    target = tmp_path / "nope"
    if what == "file":
        target.write_text("x")
    res = runner.invoke(app, ["report", str(target)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert (
        str(target) in res.output and ("not found" if what == "missing" else "not a run folder") in res.output
    )


def test_rerun_replaces_report(lulc_run, tmp_path):
    out = tmp_path / "elsewhere"
    first = write_report(lulc_run, out_dir=out)
    files = sorted(p.relative_to(out) for p in (out / "report_files").rglob("*"))
    second = write_report(lulc_run, out_dir=out)
    assert first.path.read_bytes() == second.path.read_bytes()  # reproducible
    assert sorted(p.relative_to(out) for p in (out / "report_files").rglob("*")) == files
    assert not [p for p in Path(out).iterdir() if p.name.startswith((".tmp", ".old"))]


def test_big_release_gets_region_pages(lulc_run, tmp_path):
    from minescape.publish.release import publish

    publish(lulc_run / "maps", tmp_path / "release", max_features=40, progress=False)
    n = json.loads((tmp_path / "release" / "manifest.json").read_text())["features"]
    assert n > 10
    res = write_report(
        tmp_path / "release", max_page_features=10
    )  # as if the release were too big for a page
    # (one region here, so the per-region cap stays at its default)
    main = page_data(res.path.read_text())
    assert not [layer for layer in main["layers"] if layer["kind"] == "classes"]
    pages = sorted(tmp_path.joinpath("release").glob("report_*_*.html"))
    assert pages and f'href="{pages[0].name}"' in res.path.read_text()
    drawn = sum(
        len(layer["features"]["features"]) for p in pages for layer in page_data(p.read_text())["layers"]
    )
    assert drawn == n  # every polygon is on its region's page (one region here, under the per-region cap)
    assert 'href="report.html"' in pages[0].read_text()


def test_lulc_classify_no_report(small_region, tmp_path):
    from tests.webreport.conftest import lulc_args

    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "lulc",
            "classify",
            str(small_region.sites),
            str(out),
            *lulc_args(small_region),
            "--site",
            "S01",
            "--no-quicklook",
            "--no-report",
        ],
        env={"MINESCAPE_PROGRESS": "0"},
    )
    assert res.exit_code == 0, res.output
    assert (
        (out / "sites.json").exists() and not (out / "report.html").exists() and "report:" not in res.output
    )
    # the run owns its folder: a report of an earlier run there is removed, not left beside the new outputs
    args = ["lulc", "classify", str(small_region.sites), str(out), *lulc_args(small_region), "--site", "S01",
            "--no-quicklook"]
    res = runner.invoke(app, args, env={"MINESCAPE_PROGRESS": "0"})
    assert res.exit_code == 0 and (out / "report.html").is_file() and (out / "report_files").is_dir()
    res = runner.invoke(app, [*args, "--no-report"], env={"MINESCAPE_PROGRESS": "0"})
    assert res.exit_code == 0, res.output
    assert not (out / "report.html").exists() and not (out / "report_files").exists()
    assert "removed the earlier report" in res.output


def test_big_run_gets_region_pages(lulc_run, tmp_path):
    rows = json.loads((lulc_run / "sites.json").read_text())
    res = write_report(lulc_run, out_dir=tmp_path / "r", max_page_features=1)  # as if the run were too big
    assert (res.layers, res.sites, len(res.pages)) == (1, len(rows), 1)  # the sites layer; one region
    assert res.describe() == f"1 map layer, {len(rows)} sites, one page per region (1 page)"
    main = page_data(res.path.read_text())
    assert main["layers"] == [] and "one page per region" in res.path.read_text()
    pages = sorted((tmp_path / "r").glob("report_*_*.html"))
    assert [p.name for p in pages] == [
        "report_00_oceania.html"
    ]  # the synthetic region lies in Western Australia
    data = page_data(pages[0].read_text())
    feats = [f for layer in data["layers"] for f in layer["features"]["features"]]
    assert sorted(f["properties"]["id"] for f in feats) == sorted(r["id"] for r in rows)
    assert sum(len(layer["overlays"]) for layer in data["layers"]) == len(rows)  # class maps go with them


def test_composite_and_clear_observations(lulc_run, tmp_path):
    """A site classified from an annual composite: the map's COMPOSITE/SCENES tags and the per-pixel clear
    count raster beside the maps (``clear_count/<site>.tif``) reach the click panel."""
    import shutil

    import rasterio

    from minescape.geo.raster import Raster, read_raster, write_raster

    run = tmp_path / "run"
    shutil.copytree(lulc_run, run, ignore=shutil.ignore_patterns("report.html", "report_files"))
    site = json.loads((run / "sites.json").read_text())[0]
    with rasterio.open(run / site["map"], "r+") as dst:
        dst.update_tags(COMPOSITE="median", SCENES="a.tif,b.tif,c.tif")
    cls = read_raster(run / site["map"])
    counts = np.where(cls.data[0] > 0, 1 + (np.arange(cls.data[0].size).reshape(cls.data[0].shape) % 3), 0)
    assert set(np.unique(counts[counts > 0])) == {1, 2, 3}
    write_raster(Raster(counts.astype(np.uint8), cls.crs, cls.transform, 0),
                 run / "clear_count" / f"{Path(site['map']).stem}.tif")
    data = page_data(write_report(run).path.read_text())
    feats = [f for layer in data["layers"] for f in layer["features"]["features"]]
    props = {f["properties"]["id"]: f["properties"] for f in feats}
    p = props[site["id"]]
    assert p["composite"] == "median" and p["scenes"] == ["a.tif", "b.tif", "c.tif"]
    assert p["clear_observations"].startswith("1 / 2 / 3")
    other = [v for k, v in props.items() if k != site["id"]]
    assert other and all("composite" not in v and "clear_observations" not in v for v in other)


def test_sites_from_points_are_classified_and_drawn_as_discs(small_region, tmp_path):
    """``--point-buffer``: mine points (here a point inside each synthetic site) become sites of that radius; each
    is classified over about pi r² of 10 m pixels, and the report draws the discs it classified, not the points."""
    from minescape.geo.raster import read_raster
    from minescape.sites import read_sites
    from tests.webreport.conftest import lulc_args

    sites, _ = read_sites(small_region.sites)
    points = gpd.GeoDataFrame({"site_id": [s.id for s in sites]},
                              geometry=[shapely.point_on_surface(s.geometry) for s in sites], crs="EPSG:4326")
    points.to_file(tmp_path / "mines.geojson")
    out = tmp_path / "run"
    args = ["lulc", "classify", str(tmp_path / "mines.geojson"), str(out), *lulc_args(small_region), "--no-quicklook"]
    res = runner.invoke(app, args)
    assert res.exit_code == 3 and "--point-buffer METRES makes a site" in res.output  # points alone: dropped
    res = runner.invoke(app, [*args, "--point-buffer", "200"])
    assert res.exit_code == 0, res.output
    run = json.loads((out / "report" / "run.json").read_text())
    assert run["source"]["point_buffer_m"] == 200 and sorted(run["results"]) == sorted(s.id for s in sites)
    for sid in run["results"]:
        classes = read_raster(out / "maps" / f"{sid}.tif").data[0]
        assert abs(int((classes > 0).sum()) - np.pi * 200**2 / 100) < 0.05 * np.pi * 200**2 / 100
    data = page_data((out / "report.html").read_text())
    feats = [f for layer in data["layers"] if layer["kind"] == "sites" for f in layer["features"]["features"]]
    assert len(feats) == len(sites) and all(f["geometry"]["type"] == "Polygon" for f in feats)
    assert all(len(f["geometry"]["coordinates"][0]) == 65 for f in feats)  # the 64-vertex discs, closed


def test_part_json_is_read_size_checked_and_only_from_regular_files(tmp_path):
    """A run folder is a user's: the report reads its JSON through minescape.jsonfile (regular files only, sizes
    checked before reading), and a problem is a Missing row, never an exception."""
    from minescape.jsonfile import MAX_JSON_BYTES
    from minescape.webreport.part_json import read_part_json

    (tmp_path / "ok.json").write_text('[{"a": 1}]')
    (tmp_path / "detect.json").mkdir()  # a folder where a file should be
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:  # sparse: larger than the limit without writing it
        fh.truncate(MAX_JSON_BYTES + 1)
    missing = []
    assert read_part_json(tmp_path / "ok.json", "ok", missing) == [{"a": 1}] and missing == []
    assert read_part_json(tmp_path / "detect.json", "detect", missing) is None
    assert read_part_json(big, "big", missing) is None
    assert read_part_json(tmp_path / "nope.json", "nope", missing) is None
    assert [m.what for m in missing] == ["detect", "big", "nope"]
    assert "not a regular file" in missing[0].why and "larger than the limit" in missing[1].why
    assert missing[2].why == "not found"

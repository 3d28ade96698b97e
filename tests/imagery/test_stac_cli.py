"""``lulc classify|train`` and ``change detect`` with --stac through real loopback servers: same maps as from the
same items on disk, the API unreachable (exit 2, nothing written), a server killed mid-run (exit 3, reasons) and
the resumed run, bad catalogues each in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.cli.common import EXIT_PARTIAL, EXIT_USER_ERROR

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _args(files):
    return ["--dcm", str(files.dcm_dh), "--dcm-year", str(files.dcm_year), "--no-quicklook"]


def _maps(out: Path) -> dict[str, np.ndarray]:
    out_maps = {}
    for p in sorted((out / "maps").glob("*.tif")):
        with rasterio.open(p) as src:
            out_maps[p.stem] = src.read(1)
    return out_maps


def test_classify_server_equals_files(stac_region, loopback, tmp_path, monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    _, files, stac = stac_region
    http, disk, pc = tmp_path / "http", tmp_path / "disk", tmp_path / "pc"
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(http), "--stac", loopback.stac_url,
                              "--collection", "sentinel-2-l2a", *_args(files)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(disk), "--stac", str(stac.earth_search),
                              *_args(files)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(pc), "--stac", str(stac.planetary_computer),
                              *_args(files)])
    assert res.exit_code == 0, res.output
    a, c = _maps(http), _maps(pc)  # disk's maps: compared as bytes below
    assert sorted(a) == ["S01", "S02"] and all((m > 0).sum() > 1000 for m in a.values())
    for sid in a:
        assert (http / "maps" / f"{sid}.tif").read_bytes() == (disk / "maps" / f"{sid}.tif").read_bytes()
        np.testing.assert_array_equal(a[sid], c[sid])  # the other convention: same pixels (ids differ in tags)
    with rasterio.open(http / "maps" / "S01.tif") as src:
        tags = src.tags()
    assert tags["COMPOSITE"] == "median" and tags["N_SCENES"] == "3" and tags["SCENES"].count("_L2A") == 3
    with rasterio.open(http / "clear_count" / "S01.tif") as src:
        cc = src.read(1)
    assert cc.max() == 3 and (cc < 3).any()  # per-pixel counts: clouds and shadows took some observations
    from tests.imagery.test_window_reader import _log

    log = _log(loopback.log)
    assert log and all(e["status"] in (200, 206) for e in log)
    # a rerun into the same folder reads nothing twice (window cache)
    n = len(log)
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(http), "--stac", loopback.stac_url,
                              "--collection", "sentinel-2-l2a", *_args(files)])
    assert res.exit_code == 0 and len(_log(loopback.log)) == n


def test_composite_choices_and_train(stac_region, tmp_path, monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    _, files, stac = stac_region
    for method in ("clearest", "medoid"):
        out = tmp_path / method
        res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(out), "--stac",
                                  str(stac.planetary_computer), "--composite", method, "--site", "S01", *_args(files)])
        assert res.exit_code == 0, res.output
        with rasterio.open(out / "maps" / "S01.tif") as src:
            assert src.tags()["COMPOSITE"] == method
    # local scenes through the same engine: --composite median over every local scene of the site's year
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(tmp_path / "local"), "-s",
                              str(files.scene_dir), "--composite", "median", "--site", "S01", *_args(files)])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "local" / "maps" / "S01.tif") as src:
        assert src.tags()["COMPOSITE"] == "median" and int(src.tags()["N_SCENES"]) >= 1
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(tmp_path / "both"), "-s",
                              str(files.scene_dir), "--stac", str(stac.planetary_computer), *_args(files)])
    assert res.exit_code == EXIT_USER_ERROR and "either --scenes or --stac" in res.output
    model = tmp_path / "model.json"
    res = runner.invoke(app, ["lulc", "train", str(files.sites), str(model), "--stac", str(stac.planetary_computer),
                              "--dcm", str(files.dcm_dh), "--dcm-year", str(files.dcm_year), "--labels",
                              str(files.truth_lulc), "--rounds", "10", "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert model.exists() and any((tmp_path / "cache").rglob("*.npy"))
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(tmp_path / "scl"), "--stac",
                              str(stac.planetary_computer), "--scl-mask", "0,1,3,8,9,10,4,5,6", "--site", "S01",
                              *_args(files)])  # everything masked: the site is reported, the run goes on
    assert res.exit_code == EXIT_PARTIAL and "site S01: clear fraction 0.00" in res.output
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(tmp_path / "scl2"), "--stac",
                              str(stac.planetary_computer), "--scl-mask", "0,12", *_args(files)])
    assert res.exit_code == EXIT_USER_ERROR and "invalid SCL classes [12]" in res.output
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(tmp_path / "x"), "--composite", "mean",
                              "--stac", str(stac.planetary_computer), *_args(files)])
    assert res.exit_code == EXIT_USER_ERROR and "auto, median, clearest, medoid" in res.output


def test_min_clear_reports_the_site(stac_region, tmp_path, monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    _, files, stac = stac_region
    out = tmp_path / "o"
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(out), "--stac", str(stac.planetary_computer),
                              "--max-cloud", "100", "--composite", "clearest", "--min-clear", "0.999", *_args(files)])
    # with every pixel of a site clear in some scene, no site can fail; with the clearest scene alone, some do
    assert res.exit_code == EXIT_PARTIAL, res.output
    rows = {r["id"]: r for r in json.loads((out / "sites.json").read_text())}
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert failed and all("clear fraction" in r["reason"] and "< 1.00" in r["reason"] for r in failed)


def test_api_unreachable_writes_nothing(stac_region, tmp_path, monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    from minescape.imagery.loopback import free_port

    _, files, _ = stac_region
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "never"
    res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(out), "--stac", url, "--collection",
                              "sentinel-2-l2a", *_args(files)])
    assert res.exit_code == EXIT_USER_ERROR
    assert res.output.count("\n") == 1 and f"{url}: STAC API unreachable after 4 tries" in res.output
    assert not out.exists()
    with rasterio.open(files.dcm_dh) as src:
        bbox = ",".join(f"{v:.6f}" for v in transform_bounds(src.crs, "EPSG:4326", *src.bounds))
    res = runner.invoke(app, ["change", "detect", str(out), "--stac", url, "--collection", "sentinel-2-l2a",
                              "--bbox", bbox, "--t1", "2017", "--t2", "2024"])
    assert res.exit_code == EXIT_USER_ERROR and "STAC API unreachable" in res.output and not out.exists()


def test_change_detect_from_catalogue(stac_region, loopback, tmp_path, monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    _, files, _ = stac_region
    with rasterio.open(files.dcm_dh) as src:
        bbox = ",".join(f"{v:.6f}" for v in transform_bounds(src.crs, "EPSG:4326", *src.bounds))
    out = tmp_path / "chg"
    res = runner.invoke(app, ["change", "detect", str(out), "--stac", loopback.stac_url, "--collection",
                              "sentinel-2-l2a", "--bbox", bbox, "--t1", "2017", "--t2", "2024", "--truth",
                              str(files.truth_change)])
    assert res.exit_code == 0, res.output
    assert "2017 median composite of 3 scenes" in res.output and "2024 median composite of 3 scenes" in res.output
    f1 = float(res.output.split("vs truth: F1 ")[1].split()[0])
    assert f1 > 0.8  # the synthetic change is found from composites of cloudy scenes
    with rasterio.open(out / "composites" / "T1_2017.tif") as a, rasterio.open(out / "composites" / "T2_2024.tif") as b:
        assert a.crs == b.crs and a.transform == b.transform and a.shape == b.shape  # one grid
        assert a.tags()["N_SCENES"] == "3" and a.descriptions[0] == "B02"
        assert a.overviews(1) == b.overviews(1) != []  # QGIS draws the composites zoomed out from overviews
        qml = (out / "composites" / "T1_2017.qml").read_text()  # and opens them in true colour
        red, green, blue = (a.descriptions.index(band) + 1 for band in ("B04", "B03", "B02"))
        assert f'redBand="{red}" greenBand="{green}" blueBand="{blue}"' in qml and red != 1
    with rasterio.open(out / "change_mask.tif") as m:
        assert m.overviews(1) != []


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MINESCAPE_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, "-c", "from minescape.cli.app import main; main()", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def four_sites(tmp_path_factory):
    """A region of 4 sites in the STAC layout (killing the servers after the first site leaves later ones)."""
    from minescape.synthetic import RegionConfig, make_region, write_region
    from minescape.synthetic_stac import write_stac_region

    root = tmp_path_factory.mktemp("four")
    region = make_region(RegionConfig(seed=3, width=320, height=240, n_sites=4, dcm_years=(2019,)))
    files = write_region(region, root / "region")
    stac = write_stac_region(region, root / "stac", scenes_per_year=3, years=(2019,))
    return files, stac


def test_server_killed_mid_run_then_resume(four_sites, tmp_path):
    from minescape.imagery.loopback import serve_catalogue

    files, stac = four_sites
    out, run_dir = tmp_path / "out", tmp_path / "run"
    lb = serve_catalogue(stac.earth_search, stac.assets, tmp_path)
    try:
        args = ["lulc", "classify", str(files.sites), str(out), "--stac", lb.stac_url, "--collection",
                "sentinel-2-l2a", "--run-dir", str(run_dir), *_args(files)]
        proc = _cli(*args)
        first = out / "maps" / "S01.tif"
        t0 = time.monotonic()
        while not first.exists() and proc.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(0.005)
        lb.stop()  # both servers killed mid-run
        text, _ = proc.communicate(timeout=300)
        assert proc.returncode == EXIT_PARTIAL, text
        rows = {r["id"]: r for r in json.loads((out / "sites.json").read_text())}
        assert rows["S01"]["status"] == "ok" and rows["S04"]["status"] == "failed"
        failed = [r for r in rows.values() if r["status"] == "failed"]
        assert all("unreachable" in r["reason"] and "127.0.0.1" in r["reason"]
                   for r in failed), [r["reason"] for r in failed]
        assert "Traceback" not in text
        done_before = {sid for sid, r in rows.items() if r["status"] == "ok"}
        stamps = {sid: (out / "maps" / f"{sid}.tif").stat().st_mtime_ns for sid in done_before}
        lb.restart()  # same ports, same URLs
        proc = _cli(*args)
        text, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, text
        rows = json.loads((out / "sites.json").read_text())
        assert all(r["status"] == "ok" for r in rows) and len(rows) == 4
        journal = [json.loads(line) for line in (run_dir / "units.jsonl").read_text().splitlines()]
        for sid in done_before:  # finished sites were not read again: one journal entry, map untouched
            assert [e["status"] for e in journal if e["id"] == sid] == ["done"]
            assert (out / "maps" / f"{sid}.tif").stat().st_mtime_ns == stamps[sid]
        for sid in {"S01", "S02", "S03", "S04"} - done_before:
            assert [e["status"] for e in journal if e["id"] == sid] == ["failed", "done"]
    finally:
        lb.stop()


def test_bad_catalogues_one_line(stac_region, tmp_path, monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    _, files, stac = stac_region
    data = json.loads(stac.planetary_computer.read_text())
    base = stac.planetary_computer.parent

    def write(name, features):
        for f in features:
            for a in f["assets"].values():
                if "://" not in a["href"] and not a["href"].startswith("/"):
                    a["href"] = str((base / a["href"]).resolve())
        p = tmp_path / name
        p.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        return p

    def run(path, out):
        res = runner.invoke(app, ["lulc", "classify", str(files.sites), str(tmp_path / out), "--stac", str(path),
                                  "--site", "S01", *_args(files)])
        assert "Traceback" not in res.output
        return res

    feats = json.loads(json.dumps(data["features"]))
    feats[0]["assets"]["B04"]["href"] = str(tmp_path / "gone" / "B04.tif")
    for f in feats:
        f["properties"]["datetime"] = f["properties"]["datetime"].replace(f["properties"]["datetime"][:4], "2018")
    res = run(write("404.json", feats), "o404")
    assert res.exit_code == EXIT_PARTIAL and "gone/B04.tif: asset B04: file not found" in res.output
    feats = json.loads(json.dumps(data["features"]))
    for f in feats:
        f["assets"].pop("B12")
    res = run(write("noband.json", feats), "onoband")
    assert (res.exit_code == EXIT_PARTIAL and "missing bands ['B12']" in res.output
            and "STAC item S2A_MSIL2A_" in res.output)
    feats = json.loads(json.dumps(data["features"]))
    for f in feats:
        f["properties"].pop("proj:epsg")
    res = run(write("noepsg.json", feats), "onoepsg")
    assert res.exit_code == EXIT_PARTIAL and "noepsg.json: STAC item S2A_MSIL2A_" in res.output
    assert "no proj:epsg" in res.output
    bad = tmp_path / "notjson.json"
    bad.write_text("<html>502 Bad Gateway</html>")
    res = run(bad, "onotjson")
    assert res.exit_code == EXIT_USER_ERROR and "notjson.json: STAC ItemCollection is not valid JSON" in res.output
    assert not (tmp_path / "onotjson").exists()

"""The CLI through Typer's runner on real temporary files."""

import pytest
from typer.testing import CliRunner

from minescape import __version__
from minescape.cli.app import app

runner = CliRunner()


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group)
    stack = [(click_group, list(prefix))]
    while stack:
        cmd, path = stack.pop()
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append((sub, path + [name]))


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_help_on_every_command():
    paths = list(_commands(app))
    assert ["synth"] in paths and ["demo"] in paths
    for path in paths:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "Usage" in res.output


def test_synth_writes_region(tmp_path):
    res = runner.invoke(app, ["synth", str(tmp_path / "r"), "--width", "200", "--height", "160", "--sites", "1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "region.json").exists() and (tmp_path / "r" / "dcm_dh.tif").exists()


def test_user_error_is_one_line_exit_2(tmp_path):
    from minescape.cli.common import handle_errors
    from minescape.geo.raster import read_raster

    @handle_errors
    def boom():
        read_raster(tmp_path / "nope.tif")

    import typer

    with pytest.raises(typer.Exit) as exc:
        boom()
    assert exc.value.exit_code == 2


def test_bad_option_value_exit_2(tmp_path):
    res = runner.invoke(app, ["synth", str(tmp_path / "r"), "--width", "10"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output and "64 x 64" in res.output


@pytest.mark.parametrize("args", [
    ["synth", "{tmp}/s", "--seed", "-1"],
    ["map", "sample", "{tmp}/m.tif", "{tmp}/p", "--n", "5", "--seed", "-1"],
    ["map", "sample", "{tmp}/m.tif", "{tmp}/p", "--n", "5", "--min-per-class", "-1"],
    ["map", "train", "{tmp}/i.tif", "{tmp}/u.pt", "--labels", "{tmp}/l.tif", "--seed", "-1"],
    ["lulc", "classify", "{tmp}/s.gpkg", "{tmp}/o", "-s", "{tmp}", "--dcm", "{tmp}/d.tif", "--majority", "0"],
    ["lulc", "classify", "{tmp}/s.gpkg", "{tmp}/o", "-s", "{tmp}", "--dcm", "{tmp}/d.tif", "--mmu", "-5"],
])
def test_numbers_out_of_range_are_refused_before_anything_runs(tmp_path, args):
    """Negative seeds and counts reached numpy as tracebacks (or, for --mmu and --majority, passed silently):
    refused by the option itself, naming it, exit 2, nothing written."""
    res = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"Invalid value for '{args[-2]}'" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_console_script_error_is_one_line_on_stderr(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("minescape")
    proc = subprocess.run([str(exe), "synth", str(tmp_path / "r"), "--sites", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "n_sites" in lines[0]
    assert "Traceback" not in proc.stderr


def test_python_dash_m_is_the_same_command_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "minescape", "synth", str(tmp_path / "r"), "--sites", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "n_sites" in lines[0]
    helped = subprocess.run([sys.executable, "-m", "minescape", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "Usage: minescape " in helped.stdout and "__main__" not in helped.stdout


def test_legend_command_exports():
    res = runner.invoke(app, ["legend", "sinolc1", "--format", "clr"])
    assert res.exit_code == 0
    assert "12 250 230 160 255 Moss and lichen" in res.output.splitlines()
    res = runner.invoke(app, ["legend", "nope"])
    assert res.exit_code == 2 and "mining_lulc" in res.output
    res = runner.invoke(app, ["legend", "change", "--format", "xml"])
    assert res.exit_code == 2 and "clr" in res.output


def test_many_failed_sites_print_a_bounded_list(small_region, tmp_path):
    """The 100 real mine polygons against the synthetic region's DCM (on another continent), with one synthetic
    site among them: 100 sites fail, exit 3; the first FAILURES_SHOWN are printed one by one and the rest in one
    line naming sites.json, which lists them all. Without the synthetic site no site meets the DCM: that is one
    line, exit 2, before any site runs."""
    import json

    import geopandas as gpd
    import pandas as pd

    from minescape.cli.common import FAILURES_SHOWN
    from tests.conftest import shared_path

    polygons = shared_path("mining-polygons", "mining_polygons_combined_demo.gpkg")
    real = gpd.read_file(polygons)
    ours = gpd.read_file(small_region.sites).iloc[:1].to_crs(real.crs)
    ours["id"] = ours["site_id"]
    mixed = pd.concat([real, ours[["id", "geometry"]]], ignore_index=True)
    gpd.GeoDataFrame(mixed, crs=real.crs).to_file(tmp_path / "mixed.gpkg")
    args = ["-s", str(small_region.scene_dir), "--dcm", str(small_region.dcm_dh), "--dcm-year",
            str(small_region.dcm_year), "--no-report", "--no-quicklook"]
    out = tmp_path / "out"
    res = runner.invoke(app, ["lulc", "classify", str(tmp_path / "mixed.gpkg"), str(out), *args])
    assert res.exit_code == 3, res.output
    rows = json.loads((out / "sites.json").read_text())
    assert len(rows) == 101 and sum(r["status"] == "failed" for r in rows) == 100
    lines = [ln for ln in res.output.splitlines() if ln.startswith("failed: ")]
    assert len(lines) == FAILURES_SHOWN + 1 < len(rows)
    assert all("lies outside the DCM year raster" in ln for ln in lines[:-1])
    assert lines[-1] == f"failed: {100 - FAILURES_SHOWN} more (all of them in {out / 'sites.json'})"
    res = runner.invoke(app, ["lulc", "classify", str(polygons), str(tmp_path / "none"), *args])
    assert res.exit_code == 2 and "failed: " not in res.output, res.output
    assert f"{small_region.dcm_year}: none of the 100 sites meets the DCM year raster (its extent" in res.output
    assert not (tmp_path / "none").exists()  # refused before any site ran: not even an empty folder


def test_warnings_are_one_line_each(small_region, tmp_path):
    """A sites layer with an empty geometry: the dropped feature is one 'warning: ...' line, not Python's two-line
    form with the source file, line number and code."""
    import geopandas as gpd
    import shapely

    sites = gpd.read_file(small_region.sites)
    sites.loc[len(sites)] = {**sites.iloc[0].to_dict(), "geometry": shapely.Polygon(), "site_id": "EMPTY"}
    sites.to_file(tmp_path / "sites.gpkg")
    res = runner.invoke(app, ["lulc", "scenes", str(tmp_path / "sites.gpkg"), str(tmp_path / "plan.csv"), "-s",
                              str(small_region.scene_dir), "--dcm", str(small_region.dcm_dh), "--dcm-year",
                              str(small_region.dcm_year)], env={"MINESCAPE_PROGRESS": "0"})
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("warning:")]
    # named as QGIS shows it (the GeoPackage fid) with its id
    assert lines == [f"warning: sites.gpkg: feature {len(sites)} (site_id 'EMPTY') has empty geometry; dropped"], \
        res.output
    assert "UserWarning" not in res.output and ".py:" not in res.output

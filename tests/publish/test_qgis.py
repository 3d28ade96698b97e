"""The shards open in QGIS itself, styled by class_name with the legend's colours; a change difference opens with
its colour ramp (skipped without QGIS)."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from minescape.legend import MINING_LULC

SCRIPT = Path(__file__).parent / "qgis" / "open_in_qgis.py"


def _qgis_python() -> str | None:
    """A Python with QGIS's bindings (Debian's python3-qgis lives beside the system python3)."""
    for exe in ("/usr/bin/python3", shutil.which("python3")):
        if exe and subprocess.run([exe, "-c", "import qgis.core"], capture_output=True).returncode == 0:
            return exe
    return None


QGIS_PYTHON = _qgis_python()


@pytest.mark.skipif(QGIS_PYTHON is None, reason="QGIS Python bindings not installed (Debian: python3-qgis)")
def test_shard_opens_in_qgis_with_its_default_style(release, tmp_path):
    with zipfile.ZipFile(sorted(release.glob("*.zip"))[0]) as zf:
        name = sorted(zf.namelist())[0]
        zf.extract(name, tmp_path)
    png = tmp_path / "shard.png"
    proc = subprocess.run([QGIS_PYTHON, str(SCRIPT), str(tmp_path / name), str(png)], capture_output=True,
                          text=True, timeout=120, env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path),
                               "XDG_RUNTIME_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["valid"] and report["features"] > 0 and report["crs"] == "EPSG:4326"
    assert report["fields"] == ["fid", "index_n", "class_name", "area_m2", "year"]
    assert report["renderer"] == "categorizedSymbol" and report["attribute"] == "class_name"
    expected = [[c.name, "#{:02x}{:02x}{:02x}".format(*c.color[:3])] for c in MINING_LULC.classes]
    assert report["categories"] == expected
    assert report["rendered"] and png.stat().st_size > 1000
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Warning")]
    assert warnings == []  # e.g. no "GeoPackage version ... partially supported", no bad datetime


@pytest.mark.skipif(QGIS_PYTHON is None, reason="QGIS Python bindings not installed (Debian: python3-qgis)")
def test_difference_opens_in_qgis_with_its_ramp(small_region, tmp_path):
    """QGIS applies difference.qml, the style beside difference.tif, when it opens the raster."""
    from minescape.change.difference import detect_files
    from minescape.geo.raster_style import style_path

    res = detect_files(small_region.t1, small_region.t2, tmp_path / "out")
    assert style_path(res.difference).exists()
    proc = subprocess.run([QGIS_PYTHON, str(SCRIPT.with_name("open_raster_in_qgis.py")), str(res.difference)],
                          capture_output=True, text=True, timeout=120,
                          env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["valid"] and report["renderer"] == "singlebandpseudocolor"
    assert len(report["stops"]) == 9 and report["stops"][0][1] == "#67001f" and report["stops"][-1][1] == "#053061"
    assert report["stops"][0][0] == -report["stops"][-1][0] < 0

"""Fixtures of the report tests: real run folders (the small synthetic region through the CLI; the map tests'
synthetic SinoLC-1 scene through ``map products``) and a headless Chromium from Debian's packages driven by
Selenium (skipped, with the missing binary named, when absent).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minescape.cli.app import app

runner = CliRunner()
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def lulc_args(region) -> list[str]:
    """The inputs of ``lulc classify`` for a synthetic region."""
    return ["-s", str(region.scene_dir), "--dcm", str(region.dcm_dh), "--dcm-year", str(region.dcm_year)]


@pytest.fixture(scope="session")
def lulc_run(small_region, tmp_path_factory) -> Path:
    """``lulc classify`` (rules, quicklooks, report by default), then ``lulc evaluate`` and ``report``."""
    out = tmp_path_factory.mktemp("lulc") / "run"
    res = runner.invoke(
        app,
        ["lulc", "classify", str(small_region.sites), str(out), *lulc_args(small_region)],
        env={"MINESCAPE_PROGRESS": "0"},
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["lulc", "evaluate", str(out), str(small_region.truth_lulc)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="session")
def failed_run(small_region, tmp_path_factory) -> Path:
    """A run whose every site failed (the DEM-change raster does not exist): exit 3, a report all the same."""
    root = tmp_path_factory.mktemp("failed")
    args = lulc_args(small_region)
    args[args.index("--dcm") + 1] = str(root / "no_dcm.tif")
    out = root / "run"
    res = runner.invoke(
        app, ["lulc", "classify", str(small_region.sites), str(out), *args], env={"MINESCAPE_PROGRESS": "0"}
    )
    assert res.exit_code == 3, res.output
    return out


@pytest.fixture(scope="session")
def products_run(tmp_path_factory) -> Path:
    """``map products`` of the synthetic SinoLC-1 truth map of the map tests (``hr_scene``: 240 x 180 px, 1 m,
    EPSG:32650) over 2 x 2 synthetic cities (one region, two provinces): four ``Region_Province_City.tif``
    tiles, ``class_areas.csv`` and ``manifest.json``."""
    from minescape.maps.products import grid_units
    from minescape.maps.synthetic_hr import HRConfig, make_scene, write_scene

    root = tmp_path_factory.mktemp("products")
    scene = make_scene(HRConfig(seed=1, width=240, height=180))
    truth = write_scene(scene, root / "scene")["truth"]
    units = grid_units(scene.truth.bounds, nx=2, ny=2, crs=scene.truth.crs, regions=1, provinces_per_region=2)
    units.to_file(root / "admin.gpkg")
    out = root / "products"
    res = runner.invoke(app, ["map", "products", str(truth), str(root / "admin.gpkg"), str(out)],
                        env={"MINESCAPE_PROGRESS": "0"})
    assert res.exit_code == 0, res.output
    return out


def _browser_missing() -> str | None:
    if shutil.which("chromium") is None:
        return "chromium not found on PATH (Debian: apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER.exists():
        return f"chromedriver not found at {CHROMEDRIVER} (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -r requirements.lock)"
    return None


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package) through the system chromedriver; browser console logs kept.

    Selenium Manager is never asked for a driver (the Service names /usr/bin/chromedriver and SE_OFFLINE is
    set), so nothing is downloaded.
    """
    reason = _browser_missing()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-extensions",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()

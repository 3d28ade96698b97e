"""``minescape demo --stac`` on a small region: the catalogue is served on loopback, sites are classified from
median composites, and the composite scores at least as well as the clearest scene."""

from __future__ import annotations

import json

from rich.console import Console

from minescape.demo import run_demo


def test_demo_stac_stage(tmp_path, small_region_config):
    report = run_demo(tmp_path, console=Console(quiet=True), config=small_region_config,
                      stages=(("stac", "minescape.imagery.demo"),))
    assert "stac" in report and len(report["stac"]["lines"]) == 3
    summary = json.loads((tmp_path / "stac" / "summary.json").read_text())
    s = summary["scores"]
    assert s["median"]["overall_accuracy"] >= s["clearest"]["overall_accuracy"] > 0.5
    assert 0 < summary["bytes_transferred"] < 2 * summary["assets_bytes"]
    assert sorted(p.name for p in (tmp_path / "stac" / "median" / "maps").glob("*.tif")) == ["S01.tif", "S02.tif"]

"""The issue's figures on the default synthetic region (6 sites), split by site: LightGBM trained on the truth of
S01-S03, scored on S04-S06 (and the rules on the same held-out sites). Slow: the region takes ~10-25 s to make."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from minescape.demo import DemoContext


@pytest.mark.slow
def test_demo_stage_figures(tmp_path, monkeypatch):
    import json

    from minescape.lulc import demo
    from minescape.synthetic import RegionConfig, generate

    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    region = generate(tmp_path / "region", RegionConfig(seed=42))
    ctx = DemoContext(region=region, out=tmp_path / "demo", seed=42, console=Console(quiet=True))
    lines = demo.run(ctx)
    assert len(lines) == 4
    summary = json.loads((tmp_path / "demo" / "lulc" / "summary.json").read_text())
    assert summary["train_sites"] == ["S01", "S02", "S03"] and summary["test_sites"] == ["S04", "S05", "S06"]
    assert summary["model"]["overall_accuracy"] >= 0.90 and summary["model"]["kappa"] >= 0.85
    assert summary["rules"]["overall_accuracy"] >= 0.75
    assert not summary["failed"]
    maps = Path(ctx.outputs["lulc_maps"])
    assert sorted(p.stem for p in maps.glob("*.tif")) == [f"S0{i}" for i in range(1, 7)]
    assert ctx.outputs["lulc_sites"] == region.sites

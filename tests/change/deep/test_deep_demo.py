"""The demo stage trains, predicts and exports on a (small) synthetic region and says what it wrote."""

from __future__ import annotations

from rich.console import Console

from minescape.demo import DemoContext
from minescape.geo.raster import read_raster


def test_demo_stage(small_region, tmp_path):
    from minescape.change.deep import demo as demo_deep

    ctx = DemoContext(region=small_region, out=tmp_path, seed=42, console=Console(quiet=True))
    lines = demo_deep.run(ctx)
    assert len(lines) == 2 and "F1 of change" in lines[1]
    mask = read_raster(ctx.outputs["change_deep_mask"])
    truth = read_raster(small_region.truth_change)
    assert mask.shape == truth.shape and mask.crs == truth.crs
    assert (tmp_path / "change_deep" / "model" / "model.json").exists()
    assert (tmp_path / "change_deep" / "model" / "model.onnx").exists()
    f1 = float(lines[1].split("known change ")[1].split(",")[0])
    assert f1 > 0.5, lines

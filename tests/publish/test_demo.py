"""The publish demo stage on the small synthetic region (truth clipped to the sites)."""

from __future__ import annotations

from rich.console import Console

from minescape.demo import DemoContext
from minescape.publish import demo


def test_demo_stage(small_region, tmp_path):
    ctx = DemoContext(region=small_region, out=tmp_path, seed=7, console=Console(quiet=True))
    lines = demo.run(ctx)
    assert "no violations" in lines[1]
    release = ctx.outputs["release"]
    assert (release / "manifest.json").exists() and list(release.glob("*.zip"))
    # a LULC output folder that cannot be published falls back to the truth
    bad = tmp_path / "lulc"
    bad.mkdir()
    (bad / "x.tif").write_bytes(b"no")
    ctx.outputs["lulc_maps"] = bad
    lines = demo.run(ctx)
    assert "no violations" in lines[1] and "used the truth instead" in lines[-1]

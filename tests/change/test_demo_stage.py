"""The change demo stage on the small synthetic region: outputs for later stages and honest figures."""

from rich.console import Console

from minescape.change import demo
from minescape.change.datasets import load_patch_dataset
from minescape.demo import DemoContext


def test_stage_writes_detection_patches_and_scores(small_region, tmp_path):
    ctx = DemoContext(region=small_region, out=tmp_path, seed=42, console=Console(quiet=True))
    lines = demo.run(ctx)
    assert len(lines) == 3 and "F1 0.9" in lines[1]
    records = load_patch_dataset(ctx.outputs["change_patches"])
    assert records and all(r.mask is not None for r in records)
    pair = ctx.outputs["change_pair"]
    assert pair["mask"].exists() and pair["difference"].exists() and pair["truth"] == small_region.truth_change
    # 260 x 220 px is a single 512 px split block: all patches are train, no test F1
    assert {r.split for r in records} == {"train"} and ctx.outputs["change_index_test_f1"] is None

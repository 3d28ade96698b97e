"""Demo stage: index change detection on the synthetic pair (detect -> patches -> evaluate)."""

from __future__ import annotations

import json

from minescape.change.difference import DetectOptions, detect_files
from minescape.change.metrics import change_matrix, evaluate_files, pool
from minescape.change.patches import PatchOptions, patches_from_files


def run(ctx) -> list[str]:
    """Detect change between the synthetic T1 (2017) and T2 (2024), cut patches, score against the truth.

    Writes under ``<out>/change``: ``detect/`` (change_mask.tif, difference.tif, detect.json) and
    ``patches/`` (T1/, T2/, Change/, split.csv, manifest.json; 128 px patches labelled with the known change).
    Sets ``ctx.outputs["change_patches"]`` (the patch folder), ``ctx.outputs["change_pair"]``
    (``{"t1", "t2", "truth", "mask", "difference"}`` paths) and ``ctx.outputs["change_index_test_f1"]``
    (pooled F1 of the index method on the test-split patches: the figure deep models compare against).
    """
    from minescape.change.datasets import load_patch_dataset, read_patch
    from minescape.geo.raster import read_raster

    out = ctx.stage_dir("change")
    region = ctx.region
    options = DetectOptions(method="SAVI", direction="both", threshold="otsu", opening=1, closing=1,
                            min_area_m2=500.0)
    det = detect_files(region.t1, region.t2, out / "detect", options=options)
    scores = evaluate_files(det.mask, region.truth_change)
    # patches labelled with the known change (training data for the deep models)
    summary = patches_from_files(region.t1, region.t2, region.truth_change, out / "patches",
                                 options=PatchOptions(size=128, seed=ctx.seed))
    # the index method on the test-split patches, per patch and pooled
    manifest = {p["name"]: p for p in json.loads((summary.root / "manifest.json").read_text())["patches"]}
    mask = read_raster(det.mask).data[0]
    per = {}
    for rec in load_patch_dataset(summary.root):
        if rec.split == "test":
            _, _, truth = read_patch(rec)
            e = manifest[rec.name]
            pred = mask[e["row"]:e["row"] + e["size"], e["col"]:e["col"] + e["size"]]
            per[rec.name] = change_matrix(truth.data[0], pred)
    test_f1 = pool(per).pooled.f1 if per else None  # a region smaller than 3 split blocks has no test split
    ctx.outputs["change_patches"] = summary.root
    ctx.outputs["change_pair"] = {"t1": region.t1, "t2": region.t2, "truth": region.truth_change,
                                  "mask": det.mask, "difference": det.difference}
    ctx.outputs["change_index_test_f1"] = test_f1
    s = det.stats
    return [
        f"{det.mask}: SAVI(2024) - SAVI(2017), Otsu threshold {s['threshold']:.3f}, "
        f"{s['changed_area_m2'] / 1e4:.1f} ha changed ({s['loss_pixels']} loss / {s['gain_pixels']} gain px)",
        f"against the known change: F1 {scores.f1:.3f}, precision {scores.precision:.3f}, "
        f"recall {scores.recall:.3f}, IoU {scores.iou:.3f}, kappa {scores.kappa:.3f}",
        f"{summary.root}: {summary.n_patches} patches of 128 x 128 px (train {summary.counts['train']}, "
        f"val {summary.counts['val']}, test {summary.counts['test']}; {summary.changed} with change), "
        f"split by spatial blocks; index method on the {len(per)} test patches: "
        + (f"pooled F1 {test_f1:.3f}" if per else "no test split in so small a region"),
    ]

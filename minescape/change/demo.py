"""Demo stage: index change detection on the synthetic pair (detect -> patches -> evaluate)."""

from __future__ import annotations

from minescape.change.difference import DetectOptions, detect_files
from minescape.change.metrics import evaluate_files
from minescape.change.patches import PatchOptions, patches_from_files


def run(ctx) -> list[str]:
    """Detect change between the synthetic T1 (2017) and T2 (2024), cut patches, score against the truth.

    Writes under ``<out>/change``: ``detect/`` (change_mask.tif, difference.tif, detect.json) and
    ``patches/`` (T1/, T2/, Change/, split.csv, manifest.json; 128 px patches labelled with the known change).
    Sets ``ctx.outputs["change_patches"]`` (the patch folder) and ``ctx.outputs["change_pair"]``
    (``{"t1", "t2", "truth", "mask", "difference"}`` paths).
    """
    out = ctx.stage_dir("change")
    region = ctx.region
    options = DetectOptions(method="SAVI", direction="both", threshold="otsu", opening=1, closing=1,
                            min_area_m2=500.0)
    det = detect_files(region.t1, region.t2, out / "detect", options=options)
    scores = evaluate_files(det.mask, region.truth_change)
    # patches labelled with the known change (training data for the deep models)
    summary = patches_from_files(region.t1, region.t2, region.truth_change, out / "patches",
                                 options=PatchOptions(size=128, seed=ctx.seed))
    ctx.outputs["change_patches"] = summary.root
    ctx.outputs["change_pair"] = {"t1": region.t1, "t2": region.t2, "truth": region.truth_change,
                                  "mask": det.mask, "difference": det.difference}
    s = det.stats
    return [
        f"{det.mask}: SAVI(2024) - SAVI(2017), Otsu threshold {s['threshold']:.3f}, "
        f"{s['changed_area_m2'] / 1e4:.1f} ha changed ({s['loss_pixels']} loss / {s['gain_pixels']} gain pixels)",
        f"against the known change: F1 {scores.f1:.3f}, precision {scores.precision:.3f}, recall {scores.recall:.3f}, "
        f"IoU {scores.iou:.3f}, kappa {scores.kappa:.3f}",
        f"{summary.root}: {summary.n_patches} patches of 128 x 128 px (train {summary.counts['train']}, "
        f"val {summary.counts['val']}, test {summary.counts['test']}; {summary.changed} with change), "
        f"split by spatial blocks",
    ]

"""Demo stage: train a tiny FC-Siam-diff for a few steps on the synthetic pair, predict the whole pair with it
(tiled, streamed), export it to ONNX, and score the mask against the known change."""

from __future__ import annotations

from minescape.geo.raster import read_raster

DEMO_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


def run(ctx) -> list[str]:
    """Train (seconds), predict, export; returns lines saying what was written and how good it is."""
    import torch

    from minescape.change.deep.infer import predict_scene
    from minescape.change.deep.model import load_model
    from minescape.change.deep.onnx_backend import export_onnx
    from minescape.change.deep.train import Sample, TrainConfig, change_scores, holdout_split, train
    from minescape.compute import Compute
    from minescape.errors import ConfigError
    from minescape.sentinel2 import open_scene, read_stack

    torch.set_num_threads(1)  # the demo shares the machine; one thread avoids oversubscription
    out = ctx.stage_dir("change_deep")
    s1 = open_scene(ctx.region.t1)
    bands = [b for b in DEMO_BANDS if b in s1.band_files]
    t1 = read_stack(s1, bands=bands)
    t2 = read_stack(ctx.region.t2, bands=bands, grid=t1.grid)
    truth = read_raster(ctx.region.truth_change).data[0]
    lab = truth.copy()
    lab[~(t1.valid_mask() & t2.valid_mask())] = 255
    tr, va = holdout_split([Sample("synthetic", t1.data, t2.data, lab)], fraction=0.25)
    cfg = TrainConfig(arch="fc-siam-diff", crop=64, batch_size=4, epochs=3, steps_per_epoch=6, lr=2e-3,
                      seed=ctx.seed, val_tile=128, device="cpu", precision="fp32", threads=1)
    res = train(tr, va, out / "model", bands=bands, config=cfg,
                training_data={"dataset": "minescape synthetic region", "scenes": [ctx.region.t1.name,
                                                                                   ctx.region.t2.name],
                               "validation": "a 25% border strip (side chosen by change share)"})
    tile = min(256, min(t1.shape) // 16 * 16)  # the region may be smaller than one default tile
    model = load_model(res.model_path)
    pred = predict_scene(model, ctx.region.t1, ctx.region.t2, out / "change_probability.tif",
                         out / "change_mask.tif", tile=tile, overlap=32, compute=Compute(threads=1))
    try:
        onnx_note = f"ONNX {export_onnx(model).name}"
    except ConfigError as exc:  # the optional onnx package is missing: skip this step, say so
        onnx_note = f"ONNX export skipped ({exc})"
    mask = read_raster(pred.mask).data[0]
    ok = (truth != 255) & (mask != 255)
    f1_all = change_scores(mask[ok] == 1, truth[ok] == 1)["f1"]
    ctx.outputs["change_deep_model"] = res.model_path
    ctx.outputs["change_deep_mask"] = pred.mask
    ctx.outputs["change_deep_probability"] = pred.probability
    return [
        f"{res.model_path}: FC-Siam-diff on {len(bands)} bands, {res.epochs_run} epochs x {cfg.steps_per_epoch} "
        f"steps ({res.seconds:.1f} s on CPU), threshold {res.threshold:.2f} chosen on a held-out strip "
        f"(validation F1 {res.val_f1:.2f}); card "
        f"{res.card_path.name}; {onnx_note}",
        f"{pred.mask}: change mask (0/1/255) and {pred.probability.name}, {pred.tiles} blended tiles; "
        f"F1 of change vs the known change {f1_all:.2f}, "
        f"{pred.changed_fraction:.1%} flagged",
    ]

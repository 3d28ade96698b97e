"""Demo stage: a small version of ``minescape map`` train, predict, products, sample and validate.

On a synthetic 1 m scene (SinoLC-1 classes) with a 10 m and a noisier 30 m label product: weakly supervised
U-Net training (agreement labels, one self-training round), tiled blended prediction to a COG, products over
a 2 x 2 grid of synthetic admin units, a stratified sample labelled from the known truth, and validation.
"""

from __future__ import annotations

from minescape.accuracy import evaluate
from minescape.legend import SINOLC1


def run(ctx) -> list[str]:
    """Run the stage; returns lines saying what was written and what it shows."""
    from minescape.geo.raster import read_raster
    from minescape.maps.boundary import boundary_f1
    from minescape.maps.products import grid_units, make_products, unit_stem
    from minescape.maps.synthetic_hr import HRConfig, make_scene, write_scene
    from minescape.maps.tiled import predict_tiled, unet_predictor
    from minescape.maps.train import TrainConfig, save_checkpoint
    from minescape.maps.validate import map_class_areas, oa_per_unit, validate_sample, write_validation
    from minescape.maps.weak import train_weak, upsample_labels
    from minescape.sampling import export_points, read_reference_at, stratified_points

    out = ctx.stage_dir("maps")
    scene = make_scene(HRConfig(seed=ctx.seed, width=210, height=180))
    files = write_scene(scene, out / "scene")
    weak = train_weak(scene.image, [scene.label_10m, scene.label_30m], SINOLC1,
                      config=TrainConfig(epochs=4, steps_per_epoch=20, seed=ctx.seed), finetune_epochs=1)
    ckpt = save_checkpoint(weak.model, out / "unet.pt")
    pred = predict_tiled(files["image"], unet_predictor(weak.model, window=96, stride=64), out / "map.tif",
                         legend=SINOLC1, tile=128)
    truth = scene.truth.data[0]
    mapped = read_raster(pred.path).data[0]
    low = upsample_labels(scene.label_10m, scene.image.grid, SINOLC1).data[0]
    oa_hr, oa_lr = (evaluate(truth, a, SINOLC1.codes).overall_accuracy for a in (mapped, low))
    bf_hr, bf_lr = (boundary_f1(truth, a, tolerance=2)["f1"] for a in (mapped, low))

    units = grid_units(scene.image.bounds, nx=2, ny=2, crs=scene.image.crs, regions=1, provinces_per_region=2)
    prod = make_products(pred.path, units, out / "products", legend=SINOLC1, size_cap=10**6)
    points, _ = stratified_points(pred.path, 200, SINOLC1, allocation="olofsson", min_per_class=15, seed=ctx.seed)
    points["ref_code"] = read_reference_at(points, files["truth"])  # the known truth plays the interpreter
    export_points(points, out / "sample")
    result = validate_sample(points, SINOLC1, map_class_areas(pred.path, SINOLC1))
    units["unit"] = [unit_stem(r.region, r.province, r.city) for r in units.itertuples()]
    write_validation(result, SINOLC1, out / "validation", per_unit=oa_per_unit(points, units))
    ctx.outputs["maps_cog"] = pred.path
    ctx.outputs["maps_checkpoint"] = ckpt
    e = result.estimates
    return [
        f"{ckpt}: U-Net trained from 10 m + 30 m labels (agree on {weak.agreement_share:.0%} of pixels, "
        f"self-training relabelled {weak.relabel_share:.0%})",
        f"{pred.path}: tiled blended COG ({pred.tiles} tiles); vs truth OA {oa_hr:.3f} and boundary F1 (2 px) "
        f"{bf_hr:.3f}, against {oa_lr:.3f} / {bf_lr:.3f} for the upsampled 10 m labels",
        f"{prod.out}: {len(prod.tiles)} unit tiles, {len(prod.zips)} province ZIPs, versions "
        f"{sorted(prod.versions)}, index.gpkg, class_areas.csv (km², ellipsoidal)",
        f"{out / 'validation'}: {len(points)} stratified points; area-weighted OA {e.overall_accuracy:.3f} ± "
        f"{e.overall_accuracy_ci:.3f} (95 %), OA per unit map oa_per_unit.png",
    ]

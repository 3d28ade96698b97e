"""``minescape map ...``: large-area maps (tiled prediction, weak supervision, products, sampling, validation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from minescape.cli.common import PREDICT_THREADS_HELP, handle_errors, print_failures, unit_lines
from minescape.progress import err_console

app = typer.Typer(help="Large-area land-cover maps: predict (tiled COG), train (low-to-high weak supervision), "
                       "products (per-unit tiles, ZIPs, versions, areas), sample and validate.",
                  no_args_is_help=True)


#: Rough throughput of a whole-map class count (uint8 read by blocks), pixels per second on one core.
SCAN_PX_PER_S = 20_000_000


def _fields(region: str, province: str, city: str) -> tuple[str, str, str]:
    return region, province, city


@app.command("predict")
@handle_errors
def predict(
    image: Path = typer.Argument(..., help="Input imagery GeoTIFF (bands, any CRS; nodata honoured)."),
    model: Path = typer.Argument(..., help="U-Net checkpoint (.pt) written by 'minescape map train'."),
    out: Path = typer.Argument(..., help="Output class-map COG."),
    tile: int = typer.Option(1024, help="Core tile size in pixels (memory is bounded by it)."),
    window: int = typer.Option(256, help="Network window in pixels."),
    stride: int = typer.Option(0, help="Window lattice step in pixels (0 = 3/4 of the window)."),
    force: bool = typer.Option(False, "--force", help="Run even when the image is estimated to take longer "
                                                      "than 24 h (the estimate is printed first)."),
    device: str = typer.Option("auto", help="auto (CUDA when torch sees a GPU), cpu or cuda."),
    precision: str = typer.Option("fp32", help="fp32, bf16 (a compiled bf16 network on a CPU, autocast "
                                               "on CUDA) or auto (bf16 on CUDA and on CPUs with native bf16)."),
    threads: int | None = typer.Option(None, help=PREDICT_THREADS_HELP),
) -> None:
    """Classify IMAGE tile by tile with blended overlapping windows and write a COG with overviews."""
    from minescape.compute import resolve_compute
    from minescape.limits import check_positive
    from minescape.maps.tiled import predict_plan, predict_tiled, unet_predictor
    from minescape.maps.train import load_checkpoint
    from minescape.path_identity import check_not_input

    check_positive(tile, "--tile (core tile size in pixels)")
    check_positive(window, "--window (pixels)", minimum=8)
    check_positive(stride, "--stride (pixels; 0 = 3/4 of the window)", minimum=0)
    check_not_input(out, {"the input IMAGE": image, "the input MODEL": model}, what="OUT")
    compute = resolve_compute(device, precision, threads)
    err_console.print(predict_plan(image, force=force).line(str(image)), markup=False, highlight=False)
    ckpt = load_checkpoint(model)
    res = predict_tiled(image, unet_predictor(ckpt, window=window, stride=stride or None, compute=compute), out,
                        legend=ckpt.legend, tile=tile, force=force)
    shares = ", ".join(f"{ckpt.legend.name_of(c)} {n}" for c, n in res.class_pixels.items())
    typer.echo(f"wrote {res.path} ({res.width}x{res.height} px, {res.tiles} tiles; pixels: {shares}; "
               f"nodata {res.nodata_pixels})")


@app.command("train")
@handle_errors
def train(
    image: Path = typer.Argument(..., help="High-resolution imagery GeoTIFF (held in memory: a training area)."),
    out: Path = typer.Argument(..., help="Checkpoint to write (.pt)."),
    labels: list[Path] = typer.Option(..., "--labels", help="Low-resolution label product(s); repeat the option. "
                                                            "With several, only pixels where they agree are used."),
    legend: str = typer.Option("sinolc1", help="Legend of the labels (sinolc1, worldcover, mining_lulc...)."),
    epochs: int = typer.Option(10, help="Epochs of the first round."),
    steps: int = typer.Option(30, help="Steps per epoch."),
    self_train: bool = typer.Option(True, help="Run one self-training round relabelling confident pixels."),
    confidence: float = typer.Option(0.9, help="Minimum probability to relabel a pixel in self-training."),
    seed: int = typer.Option(0, min=0, help="Random seed (same seed, same weights)."),
    device: str = typer.Option("auto", help="auto (CUDA when torch sees a GPU), cpu or cuda."),
    precision: str = typer.Option("auto", help="fp32, bf16 (autocast) or auto (bf16 on CUDA, fp32 on a CPU)."),
) -> None:
    """Train a U-Net on high-resolution IMAGE from low-resolution label products (low-to-high)."""
    from minescape.compute import resolve_compute
    from minescape.geo.raster import read_raster
    from minescape.legend import get_legend
    from minescape.maps.train import TrainConfig, save_checkpoint
    from minescape.maps.weak import train_weak
    from minescape.path_identity import check_not_input

    resolve_compute(device, precision, 1, workload="map-training")  # a bad choice: one line before reading
    check_not_input(out, {"the input IMAGE": image, "the --labels input": labels}, what="OUT")
    lg = get_legend(legend)
    img = read_raster(image)
    if img.nodata is not None and not np.isnan(img.nodata):
        img = img.with_data(np.where(img.data == img.nodata, np.nan, img.data.astype(np.float32)), nodata=np.nan,
                            band_names=img.band_names)
    products = [read_raster(p) for p in labels]
    res = train_weak(img, products, lg, config=TrainConfig(epochs=epochs, steps_per_epoch=steps, seed=seed,
                                                        device=device, precision=precision),
                     self_training=self_train, confidence=confidence, names=[str(p) for p in labels])
    save_checkpoint(res.model, out)
    typer.echo(f"wrote {out} (labels agree on {res.agreement_share:.1%} of pixels; self-training relabelled "
               f"{res.relabel_share:.1%}; final loss {res.model.history[-1]:.3f})")


@app.command("products")
@handle_errors
def products(
    map_path: Path = typer.Argument(..., help="Class map GeoTIFF."),
    admin: Path = typer.Argument(..., help="Administrative units (GPKG/GeoJSON polygons)."),
    out: Path = typer.Argument(..., help="Output folder."),
    legend: str = typer.Option("sinolc1", help="Legend of the map."),
    region_field: str = typer.Option("region", help="Attribute holding the region name."),
    province_field: str = typer.Option("province", help="Attribute holding the province name."),
    city_field: str = typer.Option("city", help="Attribute holding the city name."),
    size_cap_gb: float = typer.Option(50.0, help="Maximum size of one region version in GB (10^9 bytes)."),
    tile: int = typer.Option(2048, help="Chunk size in pixels."),
) -> None:
    """Clip MAP per unit (Region_Province_City.tif), ZIP per province, versions, index GPKG, class areas (km²)."""
    from minescape.errors import UnitFailed
    from minescape.legend import get_legend
    from minescape.maps.products import make_products

    res = make_products(map_path, admin, out, legend=get_legend(legend),
                        fields=_fields(region_field, province_field, city_field),
                        size_cap=int(size_cap_gb * 1e9), tile=tile)
    typer.echo(f"wrote {len(res.tiles)} tiles, {len(res.zips)} province ZIPs, {len(res.versions)} versions, "
               f"{res.index} and {res.areas_csv}")
    for note in res.notes:
        err_console.print(f"note: {note}", markup=False)
    print_failures(unit_lines(res.failed), record=out / "failed.csv")
    if res.failed:
        raise UnitFailed(f"{len(res.failed)} of {len(res.failed) + len(res.tiles)} units failed (see {out}/failed.csv)")


@app.command("sample")
@handle_errors
def sample(
    map_path: Path = typer.Argument(..., help="Class map GeoTIFF (strata = mapped classes)."),
    out: Path = typer.Argument(..., help="Output stem: writes <stem>.gpkg and <stem>.csv."),
    n: int = typer.Option(500, help="Total number of points."),
    allocation: str = typer.Option("olofsson", help="proportional, equal or olofsson."),
    min_per_class: int = typer.Option(50, min=0, help="Minimum points per class (olofsson allocation)."),
    legend: str = typer.Option("sinolc1", help="Legend of the map."),
    seed: int = typer.Option(0, min=0, help="Random seed (same seed, same points)."),
    reference: Path = typer.Option(None, help="Optional reference map: fill ref_code from it instead of by eye."),
    force: bool = typer.Option(False, "--force", help="Run even when the map is estimated to take longer than 24 h."),
) -> None:
    """Draw a stratified random sample for visual interpretation (fill ref_code or ref_class, then validate)."""
    from minescape.legend import get_legend
    from minescape.limits import plan_raster
    from minescape.path_identity import check_not_input

    for suffix in (".gpkg", ".csv"):  # export_points writes <stem>.gpkg and <stem>.csv
        check_not_input(out.with_suffix(suffix), {"the input MAP": map_path, "the --reference map": reference},
                        what=f"OUT ({suffix})")
    err_console.print(plan_raster(map_path, px_per_second=SCAN_PX_PER_S, force=force).line(str(map_path)),
                      markup=False, highlight=False)
    from minescape.sampling import export_points, read_reference_at, stratified_points

    lg = get_legend(legend)
    points, counts = stratified_points(map_path, n, lg, allocation=allocation, min_per_class=min_per_class, seed=seed)
    if reference is not None:
        ref = read_reference_at(points, reference)
        points["ref_code"] = np.where(np.isin(ref, lg.codes), ref, np.nan)
    gpkg, csv = export_points(points, out)
    typer.echo(f"wrote {len(points)} points to {gpkg} and {csv} ({allocation} allocation over "
               f"{int((counts > 0).sum())} classes)")


@app.command("validate")
@handle_errors
def validate(
    map_path: Path = typer.Argument(..., help="The class map that was sampled."),
    points: Path = typer.Argument(..., help="Interpreted points (GPKG or CSV with ref_code or ref_class)."),
    out: Path = typer.Argument(..., help="Output folder."),
    legend: str = typer.Option("sinolc1", help="Legend of the map."),
    admin: Path = typer.Option(None, help="Administrative units for OA per unit (map figure)."),
    region_field: str = typer.Option("region", help="Region attribute of the units."),
    province_field: str = typer.Option("province", help="Province attribute of the units."),
    city_field: str = typer.Option("city", help="City attribute of the units."),
    mapped_areas: Path = typer.Option(None, help="class_areas.csv from 'minescape map products'."),
    reference_areas: Path = typer.Option(None, help="Reference area table per unit (unit + class columns, km²)."),
    force: bool = typer.Option(False, "--force", help="Run even when the map is estimated to take longer than 24 h."),
) -> None:
    """Confusion matrix, OA, kappa, UA/PA, area-weighted estimates with 95 % CIs, OA per unit, area comparison."""
    from minescape.csvfile import read_csv
    from minescape.errors import InputError
    from minescape.legend import get_legend
    from minescape.limits import plan_raster
    from minescape.maps.products import read_admin, unit_stem
    from minescape.maps.validate import (
        OUTPUTS,
        compare_areas,
        map_class_areas,
        oa_per_unit,
        validate_sample,
        write_validation,
    )
    from minescape.path_identity import check_not_input
    from minescape.sampling import import_points

    lg = get_legend(legend)
    if (mapped_areas is None) != (reference_areas is None):  # before anything is read or written
        raise InputError("give both --mapped-areas and --reference-areas to compare areas")
    inputs = {"the input MAP": map_path, "the input POINTS": points, "the --admin units": admin,
              "the --mapped-areas table": mapped_areas, "the --reference-areas table": reference_areas}
    for name in OUTPUTS:
        check_not_input(out / name, inputs, what=f"OUT/{name}")
    tables = None
    if mapped_areas is not None:
        tables = (read_csv(mapped_areas, "mapped area table"), read_csv(reference_areas, "reference area table"))
    pts = import_points(points, lg)
    plan_raster(map_path, px_per_second=SCAN_PX_PER_S, force=force)  # the class areas scan the whole map
    result = validate_sample(pts, lg, map_class_areas(map_path, lg))
    per_unit = None
    if admin is not None:
        fields = _fields(region_field, province_field, city_field)
        units = read_admin(admin, fields=fields)
        units["unit"] = [unit_stem(*(r[f] for f in fields)) for _, r in units.iterrows()]
        per_unit = oa_per_unit(pts, units)
    table = compare_areas(*tables, lg) if tables is not None else None  # its problems before anything is written
    written = write_validation(result, lg, out, per_unit=per_unit, area_table=table)
    e = result.estimates
    typer.echo(f"n={result.metrics.n} points: OA {result.metrics.overall_accuracy:.3f} (sample), kappa "
               f"{result.metrics.kappa:.3f}; area-weighted OA {e.overall_accuracy:.3f} ± {e.overall_accuracy_ci:.3f} "
               f"(95 %); wrote {', '.join(p.name for p in written)} in {out}")
    if e.unsampled:
        names = ", ".join(lg.name_of(c) for c in e.unsampled)
        typer.echo(f"warning: no interpreted point in the stratum of {names} ({e.unsampled_area:.3f} km² mapped): "
                   "the area-weighted estimates cover the other strata only", err=True)




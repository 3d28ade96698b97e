"""``minescape change ...``: bi-temporal change detection (index methods, refinement, patches, metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from minescape.cli.common import OverviewsOpt, handle_errors
from minescape.cli.report import NoReportOpt, write_run_report
from minescape.cli.stac_options import CollectionOpt, CompositeOpt, MaxCloudOpt, MinClearOpt, SclMaskOpt, StacOpt

app = typer.Typer(help="Bi-temporal change detection: detect, refine, patches, evaluate; deep models: "
                       "train, predict, export.", no_args_is_help=True)
refine_app = typer.Typer(help="Manual refinement: export change candidates to a GPKG for QGIS, burn the edits "
                              "back into the mask.", no_args_is_help=True)
app.add_typer(refine_app, name="refine")

ENCODING_HELP = "Label encoding: auto (detect from the values), 0-1, 1-2 or 0-255 (no change, change)."


def _bands(text: str | None) -> tuple[str, ...] | None:
    return tuple(b.strip().upper() for b in text.split(",") if b.strip()) if text else None


@app.command("detect")
@handle_errors
def detect(
    paths: list[Path] = typer.Argument(..., metavar="T1 T2 OUT", help="Date 1 scene (multi-band GeoTIFF or a "
                                       "one-file-per-band folder), date 2 scene (any CRS/resolution: warped onto "
                                       "date 1's grid) and the output folder (change_mask.tif, difference.tif, "
                                       "detect.json); with --stac only OUT."),
    method: str = typer.Option("SAVI", help="SAVI, NDVI, NDWI, BSI, MNDWI, NDBI (index T2 - T1) or CVA."),
    direction: str = typer.Option("both", help="both, loss (index decrease) or gain (index increase)."),
    threshold: str = typer.Option("otsu", help="otsu, fixed or percentile."),
    value: float | None = typer.Option(None, help="Threshold for 'fixed'; percentile (0-100) for 'percentile'."),
    opening: int = typer.Option(1, help="Opening disc radius (pixels); 0 = none."),
    closing: int = typer.Option(1, help="Closing disc radius (pixels); 0 = none."),
    min_area: float = typer.Option(0.0, help="Minimum change area (m², ellipsoidal)."),
    cva_bands: str | None = typer.Option(None, help="Comma-separated bands for CVA (default: all common)."),
    window: int = typer.Option(1024, "--tile", "--window",
                               help="Tile (processing window) size in pixels: memory scales with it. --window is "
                                    "its former name."),
    coregister: bool = typer.Option(False, "--coregister/--no-coregister",
                                    help="Move date 2 onto date 1 by a sub-pixel shift (phase correlation) first."),
    mask_clouds: bool = typer.Option(False, "--mask-clouds/--no-mask-clouds",
                                     help="Nodata where a date has a cloud: from the change of the cirrus band "
                                          "B10 where both dates have it (L1C), else from their SCL layers (L2A)."),
    overviews: bool = OverviewsOpt,
    truth: Path | None = typer.Option(None, help="Known change mask: print scores against it."),
    truth_encoding: str = typer.Option("auto", help=ENCODING_HELP),
    force: bool = typer.Option(False, "--force", help="Run even when the pair is estimated to take longer "
                                                      "than 24 h."),
    report: bool = NoReportOpt,
    stac: StacOpt = None,
    collection: CollectionOpt = None,
    max_cloud: MaxCloudOpt = 20.0,
    composite: CompositeOpt = "median",
    min_clear: MinClearOpt = None,
    scl_mask: SclMaskOpt = None,
    bbox: str | None = typer.Option(None, "--bbox", help="With --stac: area as west,south,east,north (degrees; "
                                     "west > east crosses 180°, as STAC writes it)."),
    year1: int | None = typer.Option(None, "--t1", help="With --stac: year of date 1 (e.g. 2017)."),
    year2: int | None = typer.Option(None, "--t2", help="With --stac: year of date 2 (e.g. 2024)."),
    threads: int | None = typer.Option(None, "--workers", "--threads",
                                       help="Processes computing tiles in parallel (default: one per 4 "
                                            "tiles, up to every core this process may use); the outputs are "
                                            "the same bytes for any number. --threads is its former name."),
) -> None:
    """Change mask (0/1/255 with colour table) and difference raster of a pair, streamed by windows.

    With --stac, both dates are annual cloud-masked composites of the --bbox area built from the catalogue
    (OUT/composites/T1_<year>.tif, T2_<year>.tif and their clear counts), then compared as a pair.
    """
    from minescape.change.difference import DetectOptions, detect_files
    from minescape.threads import resolve_threads
    from minescape.unfinished import running

    if stac is None and len(paths) == 3:  # with --stac the dates are composites this command writes
        _check_detect_outputs(paths[2], {"the input T1": paths[0], "the input T2": paths[1], "the --truth mask": truth})
    elif stac is not None and len(paths) == 1:
        _check_detect_outputs(paths[0], {"the --truth mask": truth})
    if stac is None and len(paths) != 3:
        from minescape.errors import InputError

        raise InputError(f"give T1 T2 OUT (got {len(paths)} paths); or --stac URL --bbox ... --t1 Y --t2 Y OUT")
    workers = None if threads is None else resolve_threads(threads, what="--workers")
    options = DetectOptions(method=method, direction=direction, threshold=threshold, value=value,
                            opening=opening, closing=closing, min_area_m2=min_area, cva_bands=_bands(cva_bands))
    if stac is not None and len(paths) != 1:
        from minescape.errors import InputError

        raise InputError(f"with --stac give only OUT (got {len(paths)} paths)")
    with running(paths[-1], "minescape change detect"):  # until the mask, difference and detect.json are this run's
        if stac is not None:
            t1, t2, out = _stac_pair(paths, stac, collection, max_cloud, composite, min_clear, scl_mask, bbox,
                                     year1, year2)
        else:
            t1, t2, out = paths
        res = detect_files(t1, t2, out, options=options, window=window, progress=True, coregister=coregister,
                           force=force, workers=workers, mask_clouds=mask_clouds, overviews=overviews)
    s = res.stats
    if s.get("coregistration_shift_px") is not None:
        dy, dx = s["coregistration_shift_px"]
        typer.echo(f"co-registration: date 2 moved by ({dy:+.2f}, {dx:+.2f}) px (rows, cols)")
    if s.get("cloud_mask"):
        typer.echo(f"cloud mask: {s['cloud_mask']['description']}")
    typer.echo(f"wrote {res.mask} and {res.difference}: threshold {s['threshold']:.4f}, "
               f"{s['changed_pixels']} changed pixels ({s['changed_area_m2'] / 1e4:.2f} ha)")
    if truth is not None:
        from minescape.change.metrics import evaluate_files

        sc = evaluate_files(res.mask, truth, truth_encoding=truth_encoding)
        typer.echo(_scores_line("vs truth", sc))
    write_run_report(out, report=report)


@refine_app.command("export")
@handle_errors
def refine_export(
    mask: Path = typer.Argument(..., help="Change mask (0/1/255) from 'change detect'."),
    out: Path = typer.Argument(..., help="GeoPackage to write (layer 'candidates')."),
    difference: Path | None = typer.Option(None, help="Difference raster: adds mean_diff and direction."),
    min_pixels: int = typer.Option(1, help="Skip candidate regions smaller than this (pixels)."),
) -> None:
    """Change candidates as polygons for editing in QGIS (delete, keep, redraw, add; status=reject drops)."""
    import pyogrio

    from minescape.change.refine import LAYER, export_candidates
    from minescape.path_identity import check_not_input
    from minescape.unfinished import check_finished_output

    check_not_input(out, {"the input MASK": mask, "the --difference raster": difference}, what="OUT")
    check_finished_output(mask)  # not the mask of a change run that did not finish
    path = export_candidates(mask, out, difference=difference, min_pixels=min_pixels)
    n = pyogrio.read_info(path, layer=LAYER)["features"]  # by name: the file also holds its QGIS style table
    typer.echo(f"wrote {path}: {n} candidate polygons (layer '{LAYER}')")


@refine_app.command("burn")
@handle_errors
def refine_burn(
    edited: Path = typer.Argument(..., help="Edited GeoPackage (or any polygon layer)."),
    mask: Path = typer.Argument(..., help="The mask whose grid and nodata the result takes."),
    out: Path = typer.Argument(..., help="Refined mask to write (0/1/255)."),
    layer: str | None = typer.Option(None, help="Layer name (default 'candidates' or the only layer)."),
) -> None:
    """Burn the kept polygons of an edited layer into a final mask on the pair's grid."""
    from minescape.change.refine import burn_edits
    from minescape.path_identity import check_not_input

    check_not_input(out, {"the input EDITED": edited, "the input MASK": mask}, what="OUT")
    info = burn_edits(edited, mask, out, layer=layer)
    typer.echo(f"wrote {out}: {info['features']} polygons, {info['changed_pixels']} changed pixels "
               f"({info['changed_area_m2'] / 1e4:.2f} ha)")


@app.command("patches")
@handle_errors
def patches(
    t1: Path = typer.Argument(..., help="Date 1 scene."),
    t2: Path = typer.Argument(..., help="Date 2 scene."),
    mask: Path = typer.Argument(..., help="Change mask (any binary encoding, any grid: read onto the pair's)."),
    out: Path = typer.Argument(..., help="Dataset folder (T1/, T2/, Change/, split.csv, manifest.json)."),
    size: int = typer.Option(128, help="Patch side (pixels)."),
    stride: int | None = typer.Option(None, help="Step between patches (pixels; default = size)."),
    padding: str = typer.Option("flush", help="flush, nodata or reflect."),
    max_nodata: float = typer.Option(0.5, help="Drop patches with a larger nodata share."),
    balance: bool = typer.Option(False, help="Keep as many unchanged patches as changed ones."),
    block: int | None = typer.Option(None, help="Split block side (pixels; default 4 x size)."),
    fractions: str = typer.Option("0.7,0.15,0.15", help="train,val,test shares."),
    seed: int = typer.Option(0, min=0, help="Seed of the split and balancing draws."),
    prefix: str = typer.Option("", help="Prefix of patch names."),
    bands: str | None = typer.Option(None, help="Comma-separated bands (default all common)."),
    mask_encoding: str = typer.Option("auto", help=ENCODING_HELP),
    compress: str = typer.Option("none", help="Image compression: none, deflate, lzw, zstd."),
    force: bool = typer.Option(False, "--force", help="Run even when the pair is estimated to take longer "
                                                      "than 24 h."),
) -> None:
    """Cut a pair and its mask into georeferenced patches with spatial-block train/val/test splits."""
    from minescape.change.patches import PatchOptions, patches_from_files
    from minescape.errors import ConfigError
    from minescape.unfinished import check_finished_output

    check_finished_output(mask)  # not the mask of a change run that did not finish

    try:
        fr = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise ConfigError(f"invalid fractions {fractions!r}; expected e.g. 0.7,0.15,0.15") from None
    options = PatchOptions(size=size, stride=stride, padding=padding, max_nodata=max_nodata, balance=balance,
                           block=block, fractions=fr, seed=seed, prefix=prefix, compress=compress)
    s = patches_from_files(t1, t2, mask, out, options=options, bands=_bands(bands), mask_encoding=mask_encoding,
                           progress=True, force=force)
    typer.echo(f"wrote {s.n_patches} patches to {s.root} (train {s.counts['train']}, val {s.counts['val']}, "
               f"test {s.counts['test']}; {s.changed} changed, {s.unchanged} unchanged; dropped "
               f"{s.dropped_nodata} mostly nodata, {s.dropped_straddle} across splits, {s.dropped_balance} "
               f"by balancing)")


def _stac_pair(paths, stac, collection, max_cloud, composite, min_clear, scl_mask, bbox, year1,
                                 year2):
    """Build both composites from the catalogue; returns ``(t1_path, t2_path, out)``."""
    from minescape.cli.stac_options import scl_classes, stac_query
    from minescape.errors import ConfigError, InputError
    from minescape.imagery.pair import composite_pair
    from minescape.imagery.settings import ImagerySettings, make_source, resolve_method
    from minescape.imagery.stac_search import check_catalogue

    if len(paths) != 1:
        raise InputError(f"with --stac give only OUT (got {len(paths)} paths)")
    if bbox is None or year1 is None or year2 is None:
        raise InputError("with --stac give --bbox west,south,east,north --t1 YEAR --t2 YEAR")
    try:
        box = tuple(float(v) for v in bbox.split(","))
    except ValueError:
        raise ConfigError(f"invalid --bbox {bbox!r}; expected west,south,east,north in degrees") from None
    if len(box) != 4:
        raise ConfigError(f"invalid --bbox {bbox!r}; expected 4 numbers west,south,east,north")
    out = paths[0]
    query = stac_query(stac, collection, max_cloud)
    check_catalogue(query)  # unreachable: one line, exit 2, nothing written
    settings = ImagerySettings.from_dict({"max_cloud": max_cloud, "cache_dir": str(out / ".window-cache"),
                                          **({"min_clear": min_clear} if min_clear is not None else {}),
                                          **({"scl_mask": scl_classes(scl_mask)} if scl_mask else {})})
    source = make_source({"source": query.source, "collection": query.collection}, [], settings)
    pc = composite_pair(source, box, year1, year2, out, method=resolve_method(composite, from_catalogue=True),
                        min_clear=settings.min_clear)
    for key in ("t1", "t2"):
        info = pc.info[key]
        typer.echo(f"{info['path']}: {info['year']} {pc.info['method']} composite of {len(info['scenes'])} scenes, "
                   f"clear fraction {info['clear_fraction']:.2f}")
        for note in info.get("notes", ()):  # what reading decided (a catalogue offset the pixels contradict)
            typer.echo(f"  note: {note}")
    return pc.t1, pc.t2, out


def _files_in(path: Path) -> list[Path]:
    """The files of ``path`` when it is a folder (the masks a folder evaluation reads), else none."""
    return [p for p in path.iterdir() if p.is_file()] if path.is_dir() else []


#: The files ``change detect`` writes in OUT (:func:`minescape.change.difference.detect_files`).
DETECT_OUTPUTS = ("change_mask.tif", "difference.tif", "detect.json")


def _check_detect_outputs(out: Path, inputs: dict) -> None:
    """No input of ``change detect`` may be one of the files it writes in OUT (however spelled)."""
    from minescape.path_identity import check_not_input

    for name in DETECT_OUTPUTS:
        check_not_input(out / name, inputs, what=f"OUT/{name}")


def _scores_line(name: str, s) -> str:
    return (f"{name}: F1 {s.f1:.3f}  precision {s.precision:.3f}  recall {s.recall:.3f}  IoU {s.iou:.3f}  "
            f"OA {s.overall_accuracy:.4f}  kappa {s.kappa:.3f}  ({s.n} px)")


@app.command("evaluate")
@handle_errors
def evaluate(
    pred: Path = typer.Argument(..., help="Predicted change mask, or a folder of masks."),
    truth: Path = typer.Argument(..., help="Reference mask, or a folder (files matched by name)."),
    pred_encoding: str = typer.Option("auto", help=ENCODING_HELP),
    truth_encoding: str = typer.Option("auto", help=ENCODING_HELP),
    out: Path | None = typer.Option(None, help="Write the scores as JSON here."),
    errors: Path | None = typer.Option(None, "--errors", help="Write an error map on the reference's grid: "
                                       "change found, false alarms, missed change (GeoTIFF with a colour table "
                                       "for QGIS); a .tif for one mask, a folder (one map per image) for folders."),
) -> None:
    """Precision, recall, F1, IoU (change class), OA and kappa; per image and pooled for folders."""
    from minescape.atomic import atomic_write_text
    from minescape.change.metrics import compares_folders, evaluate_paths
    from minescape.path_identity import check_not_input, check_separate_outputs
    from minescape.unfinished import check_finished_output

    for mask in (pred, truth):  # a mask of a change detect/predict run that did not finish
        check_finished_output(mask)
    if out is not None:  # --errors is checked by evaluate_paths
        check_not_input(out, {"the input PRED": pred, "the input TRUTH": truth,
                              "a mask of PRED": _files_in(pred), "a mask of TRUTH": _files_in(truth)}, what="--out")
    check_separate_outputs({"--out": out, "--errors": errors},
                           replaced=["--errors"] if compares_folders(pred, truth) else [])
    ev = evaluate_paths(pred, truth, pred_encoding=pred_encoding, truth_encoding=truth_encoding, errors=errors)
    if len(ev.per_image) > 1:
        for name, s in ev.per_image.items():
            typer.echo(_scores_line(name, s))
        typer.echo(f"mean F1 over {len(ev.per_image)} images: {ev.mean_f1:.3f}")
    typer.echo(_scores_line("pooled", ev.pooled))
    if out is not None:
        atomic_write_text(out, json.dumps(ev.to_dict(), indent=2))
    if errors is not None:
        typer.echo(f"error maps: {errors}" + ("/<name>.tif" if compares_folders(pred, truth) else ""))


# The deep-learning commands (train, predict, export) live in minescape.cli.change_deep.
try:
    from minescape.cli.change_deep import register as _register_deep
except ModuleNotFoundError as _exc:
    if _exc.name != "minescape.cli.change_deep":
        raise
else:
    _register_deep(app)

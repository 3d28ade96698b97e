"""``minescape lulc ...``: mining land use/land cover per site (classify, train, evaluate, rules)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from minescape.cli.common import (
    RunDirOpt,
    SchedulerOpt,
    WorkersOpt,
    executor_from_options,
    handle_errors,
    print_failures,
    unit_lines,
)
from minescape.cli.report import NoReportOpt, write_run_report
from minescape.cli.stac_options import (
    CollectionOpt,
    CompositeOpt,
    MaxCloudOpt,
    MinClearOpt,
    SclMaskOpt,
    StacOpt,
    check_scenes,
    imagery_config,
    stac_query,
)

app = typer.Typer(help="Mining land use/land cover per site: classify (rules or a LightGBM model), train, "
                       "evaluate.", no_args_is_help=True)

PointBufferOpt = typer.Option(None, "--point-buffer", help="Sites from point features (mine "
                              "locations): the disc of this many metres around each point; without it points are "
                              "dropped.", metavar="METRES")
ScenesOpt = typer.Option(None, "--scenes", "-s", help="Scene file, folder or local STAC JSON (repeatable); or "
                                                     "use --stac.")


DcmOpt = typer.Option(..., "--dcm", help="DEM change: a DLR TanDEM-X DCM delivery (folder searched recursively "
                                          "for tile ZIPs or unzipped tiles, or one tile ZIP), or a prepared "
                                          "change raster in metres (then give --dcm-year).")
DcmYearOpt = typer.Option(None, "--dcm-year", help="Later-acquisition-year raster, with a prepared --dcm raster "
                                                    "(a DLR delivery carries its DATE layer).")
DcmMapOpt = typer.Option("last", "--dcm-map", help="DLR delivery: 'last' (change to the newest acquisition) or "
                                                    "'first' (to the oldest).")
DcmHaiOpt = typer.Option(5.0, "--dcm-max-hai", help="DLR delivery: mask pixels whose height accuracy "
                                                     "indication (HAI) exceeds this many metres.")
DcmCimOpt = typer.Option(None, "--dcm-keep-cim", help="DLR delivery: change-indication-mask (CIM) class to keep "
                                                       "(repeatable; default 1 and 4).")
MethodOpt = typer.Option("default", "--method", help="'default' (LightGBM, neighbourhood features, rules, MMU) or "
                                                      "'published' (the published method as a preset: "
                                                      "docs/lulc.md).")


def _dcm_config(dcm_map: str, max_hai: float, keep_cim: list[int] | None, method: str) -> dict:
    cfg = {"dcm_map": dcm_map, "dcm_max_hai": max_hai, "method": method}
    if keep_cim:
        cfg["dcm_keep_cim"] = list(keep_cim)
    if method == "published":
        from minescape.lulc.published import PRESET_CONFIG

        cfg.update(PRESET_CONFIG)
    return cfg


def _full_config(base: dict, composite: str, max_cloud: float, min_clear: float | None, scl_mask: str | None,
                 dcm_map: str, max_hai: float, keep_cim: list[int] | None, method: str) -> dict:
    """The pipeline config from the options: a preset (``--method published``) sets its own composite
    (median) unless ``--composite`` names one explicitly."""
    cfg = {**base, **imagery_config(composite, max_cloud, min_clear, scl_mask),
           **_dcm_config(dcm_map, max_hai, keep_cim, method)}
    if composite != "auto":
        cfg["composite"] = composite
    return cfg


def _config(mmu: float, majority: int, window: int, rules: Path | None, quicklook: bool = True) -> dict:
    cfg: dict = {"mmu_m2": mmu, "majority": majority, "window": window, "quicklook": quicklook}
    if rules is not None:
        from minescape.jsonfile import read_json
        from minescape.lulc.rules import load_rules

        load_rules(rules)  # checked here, where a problem can name the file
        cfg["rules"] = read_json(rules, "rules file")
    return cfg


#: The files ``lulc classify`` writes (or removes as stale) in OUT, and its folders of per-site files (their names
#: come from site ids: an input there may be replaced by a site's output).
CLASSIFY_FILES = ("sites.json", "report.html", "report/run.json", "report/timings.json", "report/metrics.json",
                  "report/confusion_matrix.png")
CLASSIFY_FOLDERS = ("maps", "clear_count", "report/quicklooks")


def _check_run_folder(out: Path, inputs: dict, run_dir: Path | None = None) -> None:
    """No input of ``lulc classify`` may be one of the files it writes in OUT or lie in its per-site folders,
    however spelled; OUT itself may be the scene folder (its outputs are never read as scenes). ``--run-dir`` may
    be none of those files and folders, nor lie in a per-site folder."""
    from minescape.path_identity import check_not_input, check_not_within, check_separate_outputs

    for name in CLASSIFY_FILES:
        check_not_input(out / name, inputs, what=f"OUT/{name}")
    for name in CLASSIFY_FOLDERS:
        check_not_within(out / name, inputs, what=f"OUT/{name}")
    folders = {f"OUT/{name}": out / name for name in CLASSIFY_FOLDERS}
    check_separate_outputs({"OUT": out, **{f"OUT/{name}": out / name for name in CLASSIFY_FILES}, **folders,
                            "--run-dir": run_dir}, replaced=folders)


@app.command("classify")
@handle_errors
def classify_cmd(
    sites: Path = typer.Argument(..., help="Mining-area polygons (GPKG, GeoJSON, Shapefile)."),
    out: Path = typer.Argument(..., help="Output folder: maps/<site>.tif, sites.json, report/."),
    scenes: list[Path] | None = ScenesOpt,
    dcm: Path = DcmOpt,
    dcm_year: Path | None = DcmYearOpt,
    dcm_map: str = DcmMapOpt,
    dcm_max_hai: float = DcmHaiOpt,
    dcm_keep_cim: list[int] | None = DcmCimOpt,
    method: str = MethodOpt,
    model: str = typer.Option("rules", "--model", help="'rules' (knowledge-based) or a model JSON from 'lulc train'."),
    layer: str | None = typer.Option(None, "--layer", help="Layer of a multi-layer GPKG (e.g. maus_polygons)."),
    id_field: str | None = typer.Option(None, "--id-field", help="Field holding site ids (default site_id/id, "
                                                                   "else a hash of the geometry)."),
    site: list[str] | None = typer.Option(None, "--site", help="Only this site id (repeatable)."),
    point_buffer: float | None = PointBufferOpt,
    mmu: float = typer.Option(300.0, "--mmu", min=0.0, help="Minimum mapping unit in m² (0 = off)."),
    majority: int = typer.Option(1, "--majority", min=1, help="Majority filter window in pixels (1 = off)."),
    window: int = typer.Option(5, "--window", help="Neighbourhood statistics window in pixels (odd)."),
    rules: Path | None = typer.Option(None, "--rules", help="JSON overriding rule thresholds."),
    quicklook: bool = typer.Option(True, help="Write report/quicklooks/<site>.png."),
    stac: StacOpt = None,
    collection: CollectionOpt = None,
    max_cloud: MaxCloudOpt = 20.0,
    composite: CompositeOpt = "auto",
    min_clear: MinClearOpt = None,
    scl_mask: SclMaskOpt = None,
    workers: WorkersOpt = 1,
    scheduler: SchedulerOpt = None,
    run_dir: RunDirOpt = None,
    report: bool = NoReportOpt,
) -> None:
    """Classify each site into the 7 mining classes: one class-map GeoTIFF per site with the legend colours.

    Exit code 3 when some sites failed (each listed with its reason in OUT/sites.json).
    """
    from minescape.lulc.pipeline import classify_sites

    scenes = check_scenes(scenes, stac)
    _check_run_folder(out, {"the input SITES": sites, "a --scenes input": scenes, "the --dcm input": dcm,
                            "the --dcm-year raster": dcm_year, "the --rules file": rules,
                            "the --model file": None if model == "rules" else Path(model)}, run_dir)
    cfg = _full_config(_config(mmu, majority, window, rules, quicklook), composite, max_cloud, min_clear, scl_mask,
                       dcm_map, dcm_max_hai, dcm_keep_cim, method)
    summary = classify_sites(sites, scenes, dcm, dcm_year, out, classifier=model, config=cfg,
                             executor=executor_from_options(workers, scheduler, run_dir), layer=layer,
                             id_field=id_field, site_ids=site or None, point_buffer_m=point_buffer,
                             stac=stac_query(stac, collection, max_cloud))
    typer.echo(f"{out / 'maps'}: {len(summary.results)} class maps; {out / 'sites.json'}; {out / 'report'}")
    print_failures(unit_lines(summary.failed), record=out / "sites.json")
    write_run_report(out, report=report)
    summary.raise_for_failures("sites")


@app.command("train")
@handle_errors
def train_cmd(
    sites: Path = typer.Argument(..., help="Mining-area polygons."),
    model_out: Path = typer.Argument(..., help="Model JSON to write."),
    scenes: list[Path] | None = ScenesOpt,
    dcm: Path = DcmOpt,
    dcm_year: Path | None = DcmYearOpt,
    dcm_map: str = DcmMapOpt,
    dcm_max_hai: float = DcmHaiOpt,
    dcm_keep_cim: list[int] | None = DcmCimOpt,
    method: str = MethodOpt,
    labels: Path | None = typer.Option(None, "--labels", help="Label raster, labelled polygons or points; "
                                                                 "without it the rules' confident pixels "
                                                                 "(weak labels)."),
    class_field: str | None = typer.Option(None, "--class-field",
                                           help="Class field of vector labels (codes or names)."),
    site: list[str] | None = typer.Option(None, "--site", help="Train on this site id (repeatable; default all)."),
    layer: str | None = typer.Option(None, "--layer", help="Layer of the sites file."),
    id_field: str | None = typer.Option(None, "--id-field", help="Field holding site ids."),
    point_buffer: float | None = PointBufferOpt,
    per_class: int = typer.Option(2000, "--per-class", help="Pixels sampled per class and site."),
    rounds: int = typer.Option(60, "--rounds", help="LightGBM boosting rounds."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed."),
    window: int = typer.Option(5, "--window", help="Neighbourhood statistics window in pixels (odd)."),
    rules: Path | None = typer.Option(None, "--rules", help="JSON overriding rule thresholds (weak labels)."),
    stac: StacOpt = None,
    collection: CollectionOpt = None,
    max_cloud: MaxCloudOpt = 20.0,
    composite: CompositeOpt = "auto",
    min_clear: MinClearOpt = None,
    scl_mask: SclMaskOpt = None,
    cache: Path | None = typer.Option(None, "--cache", help="Folder caching windows fetched from --stac."),
) -> None:
    """Train a LightGBM pixel classifier from labels (or weak labels) on the chosen sites; print importances."""
    from minescape.lulc.model import importance_table, save_model
    from minescape.lulc.pipeline import train_from_sites
    from minescape.path_identity import check_not_in_folder, check_not_input, check_separate_outputs

    scenes = check_scenes(scenes, stac)
    check_not_input(model_out, {"the input SITES": sites, "a --scenes input": scenes, "the --dcm input": dcm,
                                "the --dcm-year raster": dcm_year, "the --labels input": labels,
                                "the --rules file": rules}, what="MODEL_OUT")
    check_not_in_folder(model_out, {"the --scenes folder": scenes}, what="MODEL_OUT",
                        because="whose files the next run reads as scenes (a model JSON as a STAC item)")
    check_separate_outputs({"MODEL_OUT": model_out, "--cache": cache})
    res = train_from_sites(sites, scenes, dcm, dcm_year, labels=labels, class_field=class_field,
                           site_ids=site or None, layer=layer, id_field=id_field, per_class=per_class,
                           point_buffer_m=point_buffer,
                           rounds=rounds, seed=seed,
                           config=_full_config(_config(0.0, 1, window, rules), composite, max_cloud, min_clear,
                                               scl_mask, dcm_map, dcm_max_hai, dcm_keep_cim, method),
                           stac=stac_query(stac, collection, max_cloud), cache_dir=cache)
    from minescape.lulc.forest import ForestModel, save_forest

    (save_forest if isinstance(res.model, ForestModel) else save_model)(res.model, model_out)
    samples = ", ".join(f"{k} {v}" for k, v in res.model.meta["samples"].items())
    typer.echo(f"{model_out}: trained on {len(res.sites_used)} sites ({samples})")
    typer.echo("feature importance (gain share): " + ", ".join(f"{f} {v:.3f}"
                                                               for f, v in importance_table(res.model, top=10)))
    print_failures(unit_lines(res.sites_failed), word="skipped")


@app.command("evaluate")
@handle_errors
def evaluate_cmd(
    maps: Path = typer.Argument(..., help="Output folder of 'lulc classify' (or its maps/ folder)."),
    reference: Path = typer.Argument(..., help="Label raster, or labelled points/polygons."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default MAPS/report)."),
    site: list[str] | None = typer.Option(None, "--site", help="Score only this site (repeatable): the test "
                                                                  "sites of a split by site."),
    class_field: str | None = typer.Option(None, "--class-field", help="Class field of vector references."),
    layer: str | None = typer.Option(None, "--layer", help="Layer of a vector reference."),
) -> None:
    """Accuracy against reference labels: confusion matrix, OA, kappa, PA/UA, F1, IoU (JSON + PNG)."""
    from minescape.lulc.evaluate import EVALUATION_FILES, evaluate_maps
    from minescape.path_identity import check_not_input

    report = out or ((maps / "report") if maps.is_dir() else maps.parent / "report")
    for name in EVALUATION_FILES:
        check_not_input(report / name, {"the input MAPS": maps, "the input REFERENCE": reference},
                        what=f"{'--out' if out else 'the report folder'}/{name}")
    res = evaluate_maps(maps, reference, site_ids=site or None, class_field=class_field, layer=layer,
                        out_dir=report)
    typer.echo(f"{len(res['sites'])} sites, n={res['n']}: OA {res['overall_accuracy']:.4f}, kappa {res['kappa']:.4f}")
    for name in res["classes"]:
        pa, ua, f1 = res["producers_accuracy"][name], res["users_accuracy"][name], res["f1"][name]
        typer.echo(f"  {name:24s} PA {_f(pa)}  UA {_f(ua)}  F1 {_f(f1)}")
    typer.echo(f"{report / 'metrics.json'}, {report / 'confusion_matrix.png'}")


def _f(v) -> str:
    return "  -  " if v is None else f"{v:.3f}"


@app.command("scenes")
@handle_errors
def scenes_cmd(
    sites: Path = typer.Argument(..., help="Mining-area polygons (GPKG, GeoJSON, Shapefile)."),
    out: Path = typer.Argument(..., help="CSV to write: per site its year and the scenes of that year."),
    scenes: list[Path] | None = ScenesOpt,
    dcm: Path = DcmOpt,
    dcm_year: Path | None = DcmYearOpt,
    dcm_map: str = DcmMapOpt,
    dcm_max_hai: float = DcmHaiOpt,
    dcm_keep_cim: list[int] | None = DcmCimOpt,
    stac: StacOpt = None,
    collection: CollectionOpt = None,
    max_cloud: MaxCloudOpt = 20.0,
    composite: CompositeOpt = "auto",
    layer: str | None = typer.Option(None, "--layer", help="Layer of a multi-layer GPKG."),
    id_field: str | None = typer.Option(None, "--id-field", help="Field holding site ids."),
    site: list[str] | None = typer.Option(None, "--site", help="Only this site id (repeatable)."),
    point_buffer: float | None = PointBufferOpt,
) -> None:
    """Plan a classify run without reading imagery: per site, its year (from the DCM) and the scenes of that year
    a run would consider (a STAC search, or the local scenes over it), with dates and cloud cover; sites that would
    fail, and why."""
    from minescape.atomic import atomic_write_text
    from minescape.lulc.scene_plan import plan_csv, plan_run, summary_line
    from minescape.path_identity import check_not_input

    scenes = check_scenes(scenes, stac)
    check_not_input(out, {"the input SITES": sites, "a --scenes input": scenes, "the --dcm input": dcm,
                          "the --dcm-year raster": dcm_year}, what="OUT")
    cfg = {**imagery_config(composite, max_cloud, None),
           **_dcm_config(dcm_map, dcm_max_hai, dcm_keep_cim, "default")}
    plans, notes = plan_run(sites, scenes, dcm, dcm_year, config=cfg, layer=layer, id_field=id_field,
                            site_ids=site or None, stac=stac_query(stac, collection, max_cloud),
                            point_buffer_m=point_buffer)
    atomic_write_text(out, plan_csv(plans))
    typer.echo(f"{out}: {summary_line(plans)}")
    print_failures([p.problem for p in plans if p.problem] + [str(n) for n in notes if n.dropped],
                   word="no imagery", record=out)


@app.command("rules")
@handle_errors
def rules_cmd() -> None:
    """Print the knowledge-based rules' default thresholds (JSON) to copy and edit for --rules."""
    from minescape.lulc.rules import default_rules

    typer.echo(json.dumps(default_rules(), indent=2))

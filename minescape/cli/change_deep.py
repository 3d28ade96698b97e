"""``minescape change train|predict|export``: deep change networks (Siamese CNNs on CPU or CUDA).

Registered into the ``change`` group by :mod:`minescape.cli.change`. torch is imported inside the commands so
``minescape --help`` stays fast. The commands only parse options and call :mod:`minescape.change.deep`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from minescape.cli.common import PREDICT_THREADS_HELP, OverviewsOpt, handle_errors
from minescape.cli.report import NoReportOpt, write_run_report
from minescape.errors import ConfigError
from minescape.progress import err_console


def _list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


DEVICE_HELP = "auto (CUDA when torch sees a GPU), cpu or cuda."
PRECISION_HELP = ("fp32, bf16 (autocast) or auto: bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), "
                  "fp32 elsewhere.")
TRAIN_THREADS_HELP = "torch threads (default: every core this process may use; the weights depend on the number)."


def register(app: typer.Typer) -> None:  # noqa: C901 - three commands defined in one place
    """Add ``train``, ``predict`` and ``export`` to the ``change`` group."""

    @app.command("train")
    @handle_errors
    def train_cmd(
        out: Path = typer.Argument(..., help="Output folder: model.pt, model.json (model card), checkpoint.pt."),
        oscd: Path | None = typer.Option(None, help="OSCD root (images/, train_labels/)."),
        cities: str | None = typer.Option(None, help="OSCD training cities, comma-separated (default all)."),
        val_cities: str | None = typer.Option(None, help="OSCD validation cities (default: bottom rows of "
                                                            "each training city)."),
        patches: Path | None = typer.Option(None, help="Patch dataset (T1/, T2/, Change/ or Mudança/, "
                                                          "split.csv)."),
        t1: Path | None = typer.Option(None, help="Date 1 scene (stack file or band folder)."),
        t2: Path | None = typer.Option(None, help="Date 2 scene (warped onto date 1's grid)."),
        truth: Path | None = typer.Option(None, help="Change raster on date 1's grid (with --t1/--t2)."),
        bands: str | None = typer.Option(None, help="Bands, comma-separated (default all available)."),
        arch: str = typer.Option("siam-att", help="fc-ef, fc-siam-conc, fc-siam-diff, siam-att, or fc-ef-x2 (two "
                                                  "FC-EF trained at once, each on half of a batch; even batch size)."),
        epochs: int = typer.Option(30, help="Maximum epochs."),
        steps: int = typer.Option(50, help="Steps (batches) per epoch."),
        batch_size: int = typer.Option(8, help="Crops per batch."),
        crop: int = typer.Option(64, help="Crop size in pixels (multiple of 16)."),
        lr: float = typer.Option(1e-3, help="Learning rate (AdamW, cosine decay)."),
        lr_epochs: int = typer.Option(50, help="Epochs of the cosine learning-rate decay (then 5 % of --lr)."),
        lr_schedule: str = typer.Option("epochs", help="Cosine decay over --lr-epochs (epochs) or over "
                                                       "--max-minutes of training time (time)."),
        norm: str = typer.Option("global", help="Input normalisation, stored with the model: global (training "
                                                "mean/std) or per-image (each date by its own statistics)."),
        ema: float = typer.Option(0.0, help="Validate and keep an EMA of the weights (decay per step, e.g. "
                                            "0.99; 0 = off)."),
        tta: bool = typer.Option(False, help="Choose the threshold on flip-averaged validation probabilities; "
                                             "predict then averages 4 flips by default."),
        loss: str = typer.Option("wce+dice", help="wce, dice, focal or wce+dice."),
        patience: int = typer.Option(8, help="Early stopping: epochs without a better validation F1."),
        keep_from_epoch: int = typer.Option(1, help="First epoch whose weights may be kept as the best (a floor "
                                                     "against an early validation peak; 1 = any)."),
        threshold_beta: float = typer.Option(1.0, help="The threshold maximises the validation F-beta of change: "
                                                       "1 = F1; 0.5 weighs precision twice as much as recall "
                                                       "(fewer false alarms in places training never saw)."),
        average_from: float = typer.Option(0.0, help="Keep the average of the epoch-end weights (the EMA's with "
                                                     "--ema) after this fraction of training (of --max-minutes "
                                                     "if set, else of --epochs), not the best validation epoch "
                                                     "(e.g. 0.5; 0 = off)."),
        val_fraction: float = typer.Option(0.2, help="Held-out bottom fraction of rows when there is no "
                                                     "validation set."),
        max_minutes: float | None = typer.Option(None, help="Stop after this much training time."),
        seed: int = typer.Option(0, min=0, help="Random seed (same seed and data, same model)."),
        resume: bool = typer.Option(False, help="Continue from OUT/checkpoint.pt."),
        threads: int | None = typer.Option(None, help=TRAIN_THREADS_HELP),
        device: str = typer.Option("auto", help=DEVICE_HELP),
        precision: str = typer.Option("auto", help=PRECISION_HELP),
        coregister: bool = typer.Option(False, help="Move each pair's date 2 onto date 1 by its sub-pixel shift "
                                                    "(phase correlation) before training; stored, so predict "
                                                    "does the same (--oscd, --t1/--t2)."),
        jitter: float = typer.Option(0.0, help="Radiometric augmentation: per-date, per-band random gain and "
                                               "offset of this size (normalised units, e.g. 0.1; 0 = off)."),
        clouds: float = typer.Option(0.0, help="Share of training crops that get a synthetic cloud and its shadow "
                                               "in one date, labelled no change (e.g. 0.3; 0 = off; Sentinel-2 "
                                               "bands and global normalisation)."),
    ) -> None:
        """Train a change network; the decision threshold is chosen on validation data and stored."""
        from minescape.change.deep import train as T
        from minescape.compute import resolve_compute
        from minescape.path_identity import check_not_input
        from minescape.sentinel2 import ALL_BANDS

        # bad choices: one line, before reading
        resolve_compute(device, precision, threads, workload="change-training")
        for name in ("model.pt", "model.json", "checkpoint.pt", "train_log.json"):  # what train writes in OUT
            check_not_input(out / name, {"the --t1 scene": t1, "the --t2 scene": t2, "the --truth raster": truth},
                            what=f"OUT/{name}")
        sources = [x is not None for x in (oscd, patches, t1)]
        if sum(sources) != 1:
            raise ConfigError("give exactly one training source: --oscd, --patches or --t1/--t2/--truth")
        if coregister and patches is not None:
            raise ConfigError("--coregister works on scenes (--oscd, --t1/--t2), not on cut patches")
        band_list = _list(bands)
        val: list = []
        if oscd is not None:
            from minescape.change.datasets import oscd_cities

            band_list = band_list or list(ALL_BANDS)
            names = _list(cities) or [c for c in oscd_cities(oscd) if c not in (_list(val_cities) or [])]
            samples = T.samples_from_oscd(oscd, names, bands=band_list)
            if val_cities:
                val = T.samples_from_oscd(oscd, _list(val_cities), bands=band_list)
            data = {"dataset": "OSCD", "root": str(oscd), "train_cities": names,
                    "val_cities": _list(val_cities) or f"bottom {val_fraction:.0%} of rows"}
        elif patches is not None:
            from minescape.change.datasets import load_patch_dataset

            band_list = band_list or list(T.patch_band_names(patches))
            splits = {r.split for r in load_patch_dataset(patches)}
            samples = T.samples_from_patches(patches, split="train" if "train" in splits else None, bands=band_list)
            if "val" in splits:
                val = T.samples_from_patches(patches, split="val", bands=band_list)
            data = {"dataset": "patches", "root": str(patches), "train_patches": len(samples),
                    "val_patches": len(val) if val else f"bottom {val_fraction:.0%} of rows of each patch"}
        else:
            if t2 is None or truth is None:
                raise ConfigError("--t1 needs --t2 and --truth")
            samples, found = T.samples_from_scenes(t1, t2, truth, bands=band_list)
            band_list = list(found)
            data = {"dataset": "scene pair", "t1": str(t1), "t2": str(t2), "truth": str(truth),
                    "validation": f"bottom {val_fraction:.0%} of rows"}
        if coregister:
            samples, shifts = T.coregister_samples(samples, band_list)
            if val:
                val, more = T.coregister_samples(val, band_list)
                shifts.update(more)
            data["coregistration_shift_px"] = {k: [round(v[0], 2), round(v[1], 2)] for k, v in shifts.items()}
            for name, (dy, dx) in shifts.items():
                typer.echo(f"co-registered {name}: date 2 moved by ({dy:+.2f}, {dx:+.2f}) px")
        if not val:
            samples, val = T.holdout_split(samples, fraction=val_fraction)
        cfg = T.TrainConfig(arch=arch, epochs=epochs, steps_per_epoch=steps, batch_size=batch_size, crop=crop,
                            lr=lr, lr_epochs=lr_epochs, lr_schedule=lr_schedule, loss=loss, patience=patience,
                            keep_from_epoch=keep_from_epoch, max_minutes=max_minutes, seed=seed, threads=threads,
                            norm=norm, ema=ema, tta=tta, jitter=jitter, clouds=clouds, coregister=coregister,
                            device=device, precision=precision, average_from=average_from,
                            threshold_beta=threshold_beta)
        res = T.train(samples, val, out, bands=band_list, config=cfg, resume=resume, training_data=data)
        typer.echo(f"wrote {res.model_path} and {res.card_path.name}: {arch}, {len(band_list)} bands, "
                   f"{res.epochs_run} epochs (best {res.best_epoch}), validation F1 {res.val_f1:.3f} at "
                   f"threshold {res.threshold:.2f}, {res.seconds:.0f} s on {res.compute}")

    @app.command("predict")
    @handle_errors
    def predict_cmd(
        model: str = typer.Argument(..., help="model.pt written by `minescape change train`; several, "
                                              "comma-separated, form an ensemble that averages probabilities.",
                                    metavar="MODEL[,MODEL...]"),
        t1: Path = typer.Argument(..., help="Date 1: reflectance GeoTIFF stack or Sentinel-2 scene."),
        t2: Path = typer.Argument(..., help="Date 2 (same kind; scenes are warped onto date 1's grid)."),
        out: Path = typer.Argument(..., help="Output folder: change_probability.tif, change_mask.tif, report.html."),
        tile: int = typer.Option(512, help="Largest tile in pixels (multiple of 16); tiles are fitted to the "
                                           "pair, so none is computed twice for nothing."),
        overlap: int = typer.Option(32, help="Tile overlap in pixels (blended)."),
        threshold: float | None = typer.Option(None, help="Decision threshold (default: the model's; for an "
                                                             "ensemble the mean of the models')."),
        backend: str = typer.Option("torch", help="torch or onnx (needs `minescape change export` first)."),
        threads: int | None = typer.Option(None, help=PREDICT_THREADS_HELP),
        device: str = typer.Option("auto", help=DEVICE_HELP),
        precision: str = typer.Option("auto", help=PRECISION_HELP),
        tta: bool | None = typer.Option(None, "--tta/--no-tta", help="Average 4 flips per tile (default: "
                                                                        "as the model's threshold was chosen)."),
        coregister: bool | None = typer.Option(None, "--coregister/--no-coregister",
                                                  help="Move date 2 onto date 1 by its sub-pixel shift first "
                                                       "(default: as the model was trained)."),
        mask_clouds: bool = typer.Option(False, "--mask-clouds/--no-mask-clouds",
                                         help="Write nodata where a date has a cloud: from the change of the "
                                              "cirrus band B10 where both dates have it (L1C), else from their "
                                              "SCL layers (L2A; shadows too)."),
        overviews: bool = OverviewsOpt,
        report: bool = NoReportOpt,
    ) -> None:
        """Predict a change probability GeoTIFF and a 0/1/255 change mask on the pair's grid.

        The model's stored normalisation (global or per-image) is applied."""
        from minescape.change.deep.infer import predict_scene
        from minescape.change.deep.model import load_model
        from minescape.compute import resolve_compute
        from minescape.path_identity import check_not_input
        from minescape.unfinished import running

        compute = resolve_compute(device, precision, threads)
        paths = [Path(p.strip()) for p in model.split(",") if p.strip()]
        inputs = {"the input MODEL": paths, "the ONNX export of MODEL": [p.with_suffix(".onnx") for p in paths],
                  "the input T1": t1, "the input T2": t2}
        for name in ("change_probability.tif", "change_mask.tif"):
            check_not_input(out / name, inputs, what=f"OUT/{name}")
        models = [load_model(p) for p in paths]
        with running(out, "minescape change predict"):  # until the probability and the mask are this run's
            res = predict_scene(models, t1, t2, out / "change_probability.tif", out / "change_mask.tif", tile=tile,
                                overlap=overlap, threshold=threshold, backend=backend, compute=compute, tta=tta,
                                coregister=coregister, mask_clouds=mask_clouds, overviews=overviews)
        moved = "" if res.shift is None else f", date 2 moved by ({res.shift[0]:+.2f}, {res.shift[1]:+.2f}) px"
        ens = f", ensemble of {res.models} models" if res.models > 1 else ""
        ens += f"; cloud mask: {res.clouds}" if res.clouds else ""
        ens += f"; {res.tiles_skipped} tiles all nodata or cloud, not run" if res.tiles_skipped else ""
        typer.echo(f"wrote {res.mask} and {res.probability.name}: {res.pixels} pixels in {res.tiles} tiles, "
                   f"threshold {res.threshold:.2f}, {res.changed_fraction:.2%} changed{moved}{ens} "
                   f"[{compute.describe() if backend == 'torch' else 'onnxruntime'}]")
        for note in res.notes:
            err_console.print(f"note: {note}", markup=False, highlight=False)
        write_run_report(out, report=report)

    @app.command("export")
    @handle_errors
    def export_cmd(
        model: Path = typer.Argument(..., help="model.pt to export."),
        out: Path | None = typer.Option(None, help="Output .onnx (default beside the model)."),
        tolerance: float = typer.Option(1e-4, help="Largest allowed torch/onnxruntime logit difference."),
    ) -> None:
        """Export a model to ONNX and check onnxruntime against torch."""
        from minescape.change.deep.model import load_model
        from minescape.change.deep.onnx_backend import export_onnx, max_abs_difference, require
        from minescape.path_identity import check_not_input

        if out is not None:
            check_not_input(out, {"the input MODEL": model}, what="--out")
        require("onnx")  # before loading anything: one line when the optional package is missing
        m = load_model(model)
        path = export_onnx(m, out, tolerance=tolerance)
        typer.echo(f"wrote {path}: max |torch - onnxruntime| = {max_abs_difference(m, path):.1e} (tolerance "
                   f"{tolerance:.0e})")

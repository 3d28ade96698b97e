"""Change-detection scores: precision, recall, F1 and IoU of the change class, OA and kappa; per image and pooled.

Built on :mod:`minescape.accuracy` (confusion matrices over the CHANGE codes 0 and 1; nodata 255 in
either map is ignored). *Pooled* scores come from the sum of the per-image confusion matrices (every
pixel weighs the same), not from averaging per-image scores; the mean of per-image F1 is reported too.
Files in any binary encoding (0/1, 1/2, 0/255; declared or detected) are compared window by window on
the truth's grid (the prediction is read onto it, warped with nearest resampling if needed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minescape.accuracy import confusion_matrix, metrics_from_matrix
from minescape.errors import InputError, MissingInputError
from minescape.geo.grid import Grid, iter_tiles

CODES = (0, 1)


@dataclass(frozen=True)
class ChangeScores:
    """Scores of the change class (1) from a 2 x 2 confusion matrix (rows truth, columns prediction).

    Attributes are NaN where undefined (e.g. precision with nothing predicted as change).
    """

    matrix: np.ndarray
    precision: float
    recall: float
    f1: float
    iou: float
    overall_accuracy: float
    kappa: float

    @property
    def n(self) -> int:
        """Pixels compared."""
        return int(self.matrix.sum())

    def to_dict(self) -> dict:
        """JSON-ready values (NaN -> None), with tp/fp/fn/tn counts."""
        (tn, fp), (fn, tp) = self.matrix.tolist()

        def f(v):
            return None if v != v else round(float(v), 6)

        return {"precision": f(self.precision), "recall": f(self.recall), "f1": f(self.f1), "iou": f(self.iou),
                "overall_accuracy": f(self.overall_accuracy), "kappa": f(self.kappa), "n": self.n,
                "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def scores_from_matrix(matrix: np.ndarray) -> ChangeScores:
    """Scores from a 2 x 2 confusion matrix over codes (0, 1)."""
    m = metrics_from_matrix(np.asarray(matrix), CODES)
    return ChangeScores(np.asarray(matrix, dtype=np.int64), float(m.users_accuracy[1]),
                        float(m.producers_accuracy[1]), float(m.f1[1]), float(m.iou[1]), m.overall_accuracy,
                        m.kappa)


def change_matrix(truth: np.ndarray, pred: np.ndarray, *, valid: np.ndarray | None = None) -> np.ndarray:
    """2 x 2 confusion matrix of CHANGE-coded arrays (255 and any other value ignored)."""
    return confusion_matrix(truth, pred, CODES, valid=valid)


def change_scores(truth: np.ndarray, pred: np.ndarray, *, valid: np.ndarray | None = None) -> ChangeScores:
    """Scores of a CHANGE-coded prediction (0/1, 255 nodata) against the truth (same coding, same shape)."""
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise InputError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    return scores_from_matrix(change_matrix(truth, pred, valid=valid))


@dataclass(frozen=True)
class Evaluation:
    """Per-image scores, pooled scores (summed matrices) and the mean of per-image F1."""

    per_image: dict[str, ChangeScores]
    pooled: ChangeScores
    mean_f1: float

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {"per_image": {k: v.to_dict() for k, v in self.per_image.items()},
                "pooled": self.pooled.to_dict(), "mean_f1": None if self.mean_f1 != self.mean_f1 else self.mean_f1}


def pool(per_image: dict[str, np.ndarray | ChangeScores]) -> Evaluation:
    """Pooled evaluation from per-image matrices or scores."""
    scores = {k: (v if isinstance(v, ChangeScores) else scores_from_matrix(v)) for k, v in per_image.items()}
    if not scores:
        raise InputError("nothing to evaluate: no image pairs")
    total = sum(s.matrix for s in scores.values())
    f1s = [s.f1 for s in scores.values() if s.f1 == s.f1]
    return Evaluation(scores, scores_from_matrix(total), float(np.mean(f1s)) if f1s else float("nan"))


def error_codes(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per pixel, how a CHANGE-coded prediction agrees with the truth, in the
    :data:`~minescape.legend.CHANGE_ERRORS` codes: 0 no change agreed, 1 change found, 2 false alarm, 3 missed
    change; 255 where either is neither 0 nor 1 (nodata). uint8, the arrays' shape."""
    t1, p1 = truth == 1, pred == 1
    out = np.where(t1, np.where(p1, 1, 3), np.where(p1, 2, 0)).astype(np.uint8)
    out[~(((truth == 0) | t1) & ((pred == 0) | p1))] = 255
    return out


def evaluate_files(pred: str | Path, truth: str | Path, *, pred_encoding: str = "auto",
                   truth_encoding: str = "auto", window: int = 2048,
                   errors: str | Path | None = None) -> ChangeScores:
    """Score a prediction file against a truth file, window by window (memory: one window).

    Both may use any binary encoding (declared, or detected from the values present; file nodata is
    ignored). The prediction is read onto the truth's grid: same-size files without CRS are taken as
    aligned; others are warped with nearest resampling (pixels outside the prediction are ignored).

    Args:
        errors: also write the error map here (:func:`error_codes` on the truth's grid, a GeoTIFF with the
            :data:`~minescape.legend.CHANGE_ERRORS` colour table and names, written atomically), with its QGIS
            style beside it (``<errors>.qml``: the class names in QGIS's legend).

    Raises:
        InputError: unexpected mask values, unknown encodings, rasters that cannot be aligned.
    """
    import contextlib
    import warnings

    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning

    from minescape.change.labels import decode_binary, scan_mask_file
    from minescape.change.pairs import common_grid, read_on_grid
    from minescape.geo.raster import open_raster, open_writer, read_raster, scan_reads
    from minescape.legend import CHANGE_ERRORS

    pred, truth = Path(pred), Path(truth)
    t_enc, t_fill = scan_mask_file(truth, encoding=truth_encoding)
    p_enc, p_fill = scan_mask_file(pred, encoding=pred_encoding)
    with open_raster(truth) as src:
        grid = Grid(src.crs, src.transform, src.width, src.height)
    with open_raster(pred) as src:
        pgrid = Grid(src.crs, src.transform, src.width, src.height)
    direct = pgrid.crs is None or grid.crs is None  # no georeferencing: pixel-aligned by size only
    # the error map's grid: the truth's, or the prediction's where only it is georeferenced (OSCD's labels)
    out_grid = pgrid if grid.crs is None and pgrid.crs else grid
    if direct and pgrid.shape != grid.shape:
        raise InputError(f"is {pgrid.height}x{pgrid.width} pixels and the truth {truth.name} "
                         f"{grid.height}x{grid.width}, and one has no CRS: cannot align them", path=pred)
    if not direct:  # NoOverlapError naming both files when the footprints are disjoint
        common_grid(grid, pgrid, names=(str(truth), str(pred)))
    matrix = np.zeros((2, 2), dtype=np.int64)
    tags = {"PREDICTION": str(pred), "REFERENCE": str(truth), "UNITS": "change_errors class code"}
    writer = (open_writer(errors, out_grid, count=1, dtype="uint8", nodata=CHANGE_ERRORS.nodata,
                          legend=CHANGE_ERRORS, tags=tags, overviews=Resampling.nearest)
              if errors is not None else contextlib.nullcontext())
    with scan_reads(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # an error map of two files without a CRS
        with writer as dst:
            for tile in iter_tiles(grid.width, grid.height, size=window):
                t = decode_binary(read_raster(truth, window=tile.core).data[0], encoding=t_enc, nodata=t_fill,
                                  source=str(truth))
                if direct:
                    p_raw = read_raster(pred, window=tile.core).data[0]
                else:
                    p_raw = read_on_grid(pred, grid, window=tile.core, fill=p_fill).data[0]
                p = decode_binary(p_raw, encoding=p_enc, nodata=p_fill, source=str(pred))
                matrix += change_matrix(t, p)
                if dst is not None:
                    dst.write(error_codes(t, p)[None], window=tile.core)
    if errors is not None:  # QGIS lists "False alarm", "Missed change"..., not the codes
        from minescape.geo.raster_style import write_legend_style

        write_legend_style(errors, CHANGE_ERRORS)
    return scores_from_matrix(matrix)


def match_files(pred_dir: str | Path, truth_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """Pair prediction and truth files of two folders by file stem (``.tif``/``.tiff``/``.png``)."""
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    for d in (pred_dir, truth_dir):
        if not d.is_dir():
            raise MissingInputError("folder not found", path=d)
    exts = (".tif", ".tiff", ".png")

    def files(d: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(d.iterdir()) if p.suffix.lower() in exts and not p.name.startswith(".")}

    preds, truths = files(pred_dir), files(truth_dir)
    common = sorted(set(preds) & set(truths))
    if not common:
        raise InputError(f"no file names in common with {truth_dir} ({len(preds)} predictions, {len(truths)} "
                         f"truths)", path=pred_dir)
    missing = sorted(set(truths) - set(preds))
    if missing:
        raise InputError(f"{len(missing)} truth files have no prediction (e.g. {missing[0]!r})", path=pred_dir)
    return [(k, preds[k], truths[k]) for k in common]


def compares_folders(pred: str | Path, truth: str | Path) -> bool:
    """Whether :func:`evaluate_paths` compares folders (per image, error maps ``<errors>/<name>.tif``) rather
    than two files."""
    return Path(pred).is_dir() or Path(truth).is_dir()


def evaluate_paths(pred: str | Path, truth: str | Path, *, pred_encoding: str = "auto",
                   truth_encoding: str = "auto", names: Sequence[str] | None = None,
                   errors: str | Path | None = None) -> Evaluation:
    """Evaluate a file against a file, or a folder against a folder (per file and pooled).

    Args:
        errors: write error maps (:func:`evaluate_files`, each with its ``.qml``): this GeoTIFF for a file,
            ``errors/<name>.tif`` per image for folders (the run owns that folder: error maps of images no longer
            evaluated are removed, with their styles).
            It may be neither input, however spelled (the maps would replace the masks:
            :func:`minescape.path_identity.check_not_input`).
    """
    from minescape.atomic import prune
    from minescape.path_identity import check_not_input

    pred, truth = Path(pred), Path(truth)
    folders = compares_folders(pred, truth)
    if errors is not None:  # however spelled: a symlink to PRED, PRED/../PRED
        check_not_input(errors, {"the masks being evaluated in PRED": pred,
                                 "the masks being evaluated in TRUTH": truth}, what="--errors")
    if folders:
        pairs: Iterable[tuple[str, Path, Path]] = match_files(pred, truth)
    else:
        pairs = [(pred.stem, pred, truth)]

    def error_map(name: str) -> Path | None:
        if errors is None:
            return None
        return Path(errors) / f"{name}.tif" if folders else Path(errors)

    per = {name: evaluate_files(p, t, pred_encoding=pred_encoding, truth_encoding=truth_encoding,
                                errors=error_map(name))
           for name, p, t in pairs if names is None or name in names}
    if errors is not None and folders:
        from minescape.geo.raster_style import style_path

        kept = [error_map(name) for name in per]
        prune(errors, "*.tif", keep=kept, protect=(pred, truth))
        prune(errors, "*.qml", keep=[style_path(m) for m in kept], protect=(pred, truth))
    return pool(per)

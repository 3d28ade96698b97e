"""Accuracy of per-site class maps against a label raster or labelled points, and the run report.

Each map (``OUT/maps/<site>.tif``) is compared on its own grid: a reference raster is resampled (nearest) onto
it window by window, points are looked up at their pixel. Pixels outside the site (nodata 0) never count.
Scores are pooled over the chosen sites (a site-based, spatial test set) and given per site too. The report is
a JSON file and a confusion-matrix PNG (:mod:`minescape.report`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from minescape.accuracy import metrics_from_matrix
from minescape.atomic import atomic_write_text
from minescape.errors import InputError, MissingInputError
from minescape.geo.raster import open_raster, read_raster
from minescape.legend import MINING_LULC
from minescape.lulc.labels import is_vector, labels_on, read_vector_labels
from minescape.unfinished import check_finished


def find_maps(maps: str | Path | Sequence[str | Path]) -> dict[str, Path]:
    """Site id (``SITE_ID`` tag, else file stem) -> map path, for a maps folder, a run folder or files."""
    if isinstance(maps, (str, Path)):
        root = Path(maps)
        if not root.exists():
            raise MissingInputError("maps folder not found", path=root)
        if root.is_dir():
            folder = root / "maps" if (root / "maps").is_dir() else root
            check_finished(folder.parent if folder.name == "maps" else folder)  # not maps of a stopped run
            paths = sorted(folder.glob("*.tif"))
        else:
            paths = [root]
    else:
        paths = [Path(p) for p in maps]
    out: dict[str, Path] = {}
    for p in paths:
        if p.name.startswith(".tmp-"):
            continue
        with open_raster(p) as src:
            sid = src.tags().get("SITE_ID") or p.stem
        out[sid] = p
    if not out:
        raise InputError("no class maps (*.tif) found", path=maps if isinstance(maps, (str, Path)) else None)
    return out


def evaluate_maps(
    maps: str | Path | Sequence[str | Path],
    reference: str | Path,
    *,
    site_ids: Sequence[str] | None = None,
    class_field: str | None = None,
    layer: str | None = None,
    out_dir: str | Path | None = None,
    title: str = "Mining LULC",
) -> dict:
    """Score class maps against ``reference`` (label raster, or labelled points/polygons).

    Args:
        maps: a run folder, its ``maps`` folder or map files.
        reference: label raster (MINING_LULC codes) or a vector with a class field (codes or names).
        site_ids: score only these sites (e.g. the held-out test sites).
        class_field, layer: for vector references.
        out_dir: write ``metrics.json`` and ``confusion_matrix.png`` there.
        title: figure title.

    Returns:
        The metrics dict: pooled scores (OA, kappa, PA/UA, F1, IoU, confusion matrix) and ``per_site`` OA/n.
    """
    found = find_maps(maps)
    if site_ids is not None:
        missing = [s for s in site_ids if s not in found]
        if missing:
            raise InputError(f"no map for sites {missing}; maps exist for {sorted(found)}")
        found = {s: found[s] for s in site_ids}
    ref = read_vector_labels(reference, class_field=class_field, layer=layer) if is_vector(reference) \
        else Path(reference)
    codes = MINING_LULC.codes
    total = np.zeros((len(codes), len(codes)), dtype=np.int64)
    per_site = {}
    for sid, path in found.items():
        cmap = read_raster(path)
        truth = labels_on(ref, cmap.grid)
        pred = cmap.data[0]
        m = _matrix(truth, pred, codes)
        total += m
        n = int(m.sum())
        per_site[sid] = {"n": n, "overall_accuracy": float(np.trace(m) / n) if n else None}
    metrics = metrics_from_matrix(total, codes)
    result = {"reference": str(reference), "sites": sorted(found), **metrics.to_dict(MINING_LULC.names),
              "per_site": per_site}
    if metrics.n == 0:
        raise InputError("no reference pixel or point falls on a mapped pixel of the chosen sites", path=reference)
    if out_dir is not None:
        write_report(result, out_dir, title=title)
    return result


def _matrix(truth: np.ndarray, pred: np.ndarray, codes) -> np.ndarray:
    from minescape.accuracy import confusion_matrix

    return confusion_matrix(truth, pred, codes)


#: What :func:`write_report` writes in a run's ``report/``: the accuracy of that run's maps, which a new
#: ``lulc classify`` into the folder makes stale (:func:`minescape.lulc.pipeline.remove_stale` removes them).
EVALUATION_FILES: tuple[str, str] = ("metrics.json", "confusion_matrix.png")


def write_report(result: dict, out_dir: str | Path, *, title: str = "Mining LULC") -> dict[str, Path]:
    """``metrics.json`` and ``confusion_matrix.png`` (:data:`EVALUATION_FILES`) under ``out_dir``."""
    from minescape.report import confusion_matrix_figure, save_figure

    out_dir = Path(out_dir)
    js = atomic_write_text(out_dir / EVALUATION_FILES[0], json.dumps(result, indent=1))
    fig = confusion_matrix_figure(np.asarray(result["confusion_matrix"]), result["classes"],
                                  title=f"{title}: OA {result['overall_accuracy']:.3f}, kappa {result['kappa']:.3f} "
                                        f"(n={result['n']})")
    png = save_figure(fig, out_dir / EVALUATION_FILES[1])
    return {"json": js, "png": png}


def map_tags(path: str | Path) -> dict[str, str]:
    """The GeoTIFF tags of a class map."""
    with open_raster(path) as src:
        return src.tags()

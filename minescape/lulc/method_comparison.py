"""The published-method preset against our default method on held-out sites of one region.

Both methods train on the truth of the same training sites and classify the held-out sites from the same
scenes and the same DCM (a DLR delivery or the two prepared rasters); both are scored with
:func:`minescape.lulc.evaluate.evaluate_maps` (OA, kappa, per-class F1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from minescape.atomic import atomic_write_text

METHODS = ("default", "published")


def compare_methods(sites: str | Path, scenes: Sequence[str | Path], dcm: str | Path, truth: str | Path,
                    out_dir: str | Path, *, train_ids: Sequence[str], test_ids: Sequence[str],
                    dcm_year: str | Path | None = None, seed: int = 0, per_class: int = 2000) -> dict:
    """Train and classify with both methods; returns and writes ``OUT/comparison.json``:
    ``{method: {overall_accuracy, kappa, f1: {class: value}, n, samples}}`` plus the site split."""
    from minescape.lulc.evaluate import evaluate_maps
    from minescape.lulc.forest import ForestModel, save_forest
    from minescape.lulc.model import save_model
    from minescape.lulc.pipeline import classify_sites, train_from_sites
    from minescape.lulc.published import PRESET_CONFIG

    out = Path(out_dir)
    result: dict = {"train_sites": list(train_ids), "test_sites": list(test_ids)}
    for method in METHODS:
        cfg = dict(PRESET_CONFIG) if method == "published" else {}
        trained = train_from_sites(sites, scenes, dcm, dcm_year, labels=truth, site_ids=train_ids, seed=seed,
                                   per_class=per_class, config=cfg)
        path = out / method / "model.json"
        (save_forest if isinstance(trained.model, ForestModel) else save_model)(trained.model, path)
        run = classify_sites(sites, scenes, dcm, dcm_year, out / method, classifier=path, site_ids=test_ids,
                             config={**cfg, "quicklook": False})
        ev = evaluate_maps(out / method, truth, site_ids=test_ids, out_dir=out / method / "report",
                           title=f"{method} method, held-out sites")
        result[method] = {"overall_accuracy": ev["overall_accuracy"], "kappa": ev["kappa"], "f1": ev["f1"],
                          "n": ev["n"], "samples": trained.model.meta["samples"], "failed": run.failed}
    atomic_write_text(out / "comparison.json", json.dumps(result, indent=1))
    return result


def comparison_table(result: dict) -> str:
    """A Markdown table: OA, kappa and per-class F1, one column per method."""
    classes = list(result["default"]["f1"])

    def f(v):
        return "–" if v is None else f"{v:.3f}"

    lines = ["| metric | default (LightGBM, 25 features, MMU) | published preset (RF, 11 features, 7x7 "
             "majority) |", "|---|---|---|"]
    for key, name in (("overall_accuracy", "OA"), ("kappa", "kappa")):
        lines.append(f"| {name} | {f(result['default'][key])} | {f(result['published'][key])} |")
    for c in classes:
        lines.append(f"| F1 {c} | {f(result['default']['f1'].get(c))} | {f(result['published']['f1'].get(c))} |")
    return "\n".join(lines)

"""Demo stage: mining LULC on the synthetic region (rules, LightGBM trained on some sites, held-out scores)."""

from __future__ import annotations

import json
from pathlib import Path

from minescape.atomic import atomic_write_text

TRAIN_FRACTION = 0.5


def split_sites(site_ids: list[str]) -> tuple[list[str], list[str]]:
    """Train on the first half of the sites (file order), test on the rest: a split by site, never by pixel."""
    n_train = max(1, int(round(len(site_ids) * TRAIN_FRACTION)))
    return site_ids[:n_train], site_ids[n_train:] or site_ids[-1:]


def run(ctx) -> list[str]:
    """Classify every site with the rules; train LightGBM on the training sites' truth; classify and score the
    held-out sites with both classifiers. Sets ``ctx.outputs["lulc_maps"]`` and ``["lulc_sites"]``."""
    from minescape.lulc.evaluate import evaluate_maps
    from minescape.lulc.model import importance_table, save_model
    from minescape.lulc.pipeline import classify_sites, train_from_sites
    from minescape.sites import read_sites

    region = ctx.region
    out = Path(ctx.stage_dir("lulc"))
    sites, _ = read_sites(region.sites)
    train_ids, test_ids = split_sites([s.id for s in sites])
    scenes = [region.scene_dir]
    # the DCM as DLR delivers it (tile ZIPs); a region written before minescape.dcm has only the two rasters
    dcm, dcm_year = (region.dcm, None) if region.dcm is not None else (region.dcm_dh, region.dcm_year)

    rules_run = classify_sites(region.sites, scenes, dcm, dcm_year, out / "rules")
    trained = train_from_sites(region.sites, scenes, dcm, dcm_year, labels=region.truth_lulc,
                               site_ids=train_ids, seed=ctx.seed)
    model_path = save_model(trained.model, out / "model.json")
    model_run = classify_sites(region.sites, scenes, dcm, dcm_year, out / "model",
                               classifier=model_path, site_ids=test_ids)
    rules_eval = evaluate_maps(out / "rules", region.truth_lulc, site_ids=test_ids, out_dir=out / "rules" / "report",
                               title="Rules, held-out sites")
    model_eval = evaluate_maps(out / "model", region.truth_lulc, site_ids=test_ids, out_dir=out / "model" / "report",
                               title="LightGBM, held-out sites")
    summary = {"train_sites": train_ids, "test_sites": test_ids,
               "rules": {"overall_accuracy": rules_eval["overall_accuracy"], "kappa": rules_eval["kappa"]},
               "model": {"overall_accuracy": model_eval["overall_accuracy"], "kappa": model_eval["kappa"]},
               "failed": {**rules_run.failed, **model_run.failed}}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    ctx.outputs["lulc_maps"] = out / "rules" / "maps"
    ctx.outputs["lulc_sites"] = region.sites
    ctx.outputs["lulc_model"] = model_path
    years = ", ".join(f"{k} {v['year']} ({v['year_rule']})" for k, v in sorted(rules_run.results.items()))
    top = ", ".join(f"{f} {v:.2f}" for f, v in importance_table(trained.model, top=3))
    return [
        f"{out / 'rules' / 'maps'}: {len(rules_run.results)} site class maps (knowledge-based rules); "
        f"site years: {years}",
        f"{model_path}: LightGBM trained on the truth of sites {', '.join(train_ids)}; top features {top}",
        f"held-out sites {', '.join(test_ids)}: rules OA {rules_eval['overall_accuracy']:.3f} kappa "
        f"{rules_eval['kappa']:.3f}; LightGBM OA {model_eval['overall_accuracy']:.3f} kappa {model_eval['kappa']:.3f} "
        f"({out / 'model' / 'report' / 'confusion_matrix.png'})",
        f"quicklooks (imagery beside class map): {out / 'rules' / 'report' / 'quicklooks'}",
    ]

"""Leave-cities-out experiment on OSCD: deep change networks against the SAVI-difference + Otsu index method.

The 8 labelled OSCD cities in ``../shared/data/oscd`` are split into 4 folds of 2 test cities (a seeded
permutation). For each fold and model, a network is trained on the other 6 cities (their bottom 20 % of rows
held out for validation: early stopping and the decision threshold), then predicts the 2 test cities, which
it never saw. Pooled F1 of the change class is computed over all 8 cities' test predictions (each city is
tested exactly once). The index method (|SAVI(t2) - SAVI(t1)|, Otsu threshold per city, no training) is scored
on the same pixels. Test cities are never used for any choice.

Not run by CI. Run in the background with one thread::

    nohup .venv/bin/python experiments/oscd_deep.py --out /tmp/deep6/oscd > /tmp/deep6/oscd.log 2>&1 &

It writes ``results.json`` (per city, per fold, per model) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MINESCAPE_PROGRESS", "0")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minescape.change.datasets import oscd_cities, read_oscd_city  # noqa: E402
from minescape.change.infer import predict_arrays, torch_runner  # noqa: E402
from minescape.change.models import load_model  # noqa: E402
from minescape.change.train import (  # noqa: E402
    TrainConfig,
    best_threshold,
    change_scores,
    holdout_split,
    samples_from_pairs,
    train,
)
from minescape.indices import savi  # noqa: E402
from minescape.sentinel2 import ALL_BANDS  # noqa: E402

# minutes of training per fold (wall time incl. validation) for each model, prioritising the strongest
BUDGET = {"siam-att": 4.5, "fc-siam-diff": 4.0, "fc-ef": 1.0, "fc-siam-conc": 1.0}


def index_method(pair) -> np.ndarray:
    """Binary change (bool) from |SAVI(t2) - SAVI(t1)| with an Otsu threshold; NaN-safe."""
    from skimage.filters import threshold_otsu

    d = np.abs(savi(pair.t2.band("B08"), pair.t2.band("B04")) - savi(pair.t1.band("B08"), pair.t1.band("B04")))
    ok = np.isfinite(d)
    thr = threshold_otsu(d[ok])
    return np.where(ok, d >= thr, False)


def pooled(rows: list[dict]) -> dict:
    tp = sum(r["tp"] for r in rows)
    fp = sum(r["fp"] for r in rows)
    fn = sum(r["fn"] for r in rows)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
            "iou": tp / (tp + fp + fn) if tp + fp + fn else 0.0, "tp": tp, "fp": fp, "fn": fn}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "oscd"))
    ap.add_argument("--out", default="/tmp/deep6/oscd")
    ap.add_argument("--models", default="siam-att,fc-siam-diff,fc-ef,fc-siam-conc")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every training budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cities = oscd_cities(args.root)
    pairs = {c: read_oscd_city(args.root, c, bands=ALL_BANDS) for c in cities}
    order = [cities[i] for i in np.random.default_rng(args.seed).permutation(len(cities))]
    per_fold = int(np.ceil(len(order) / args.folds))
    folds = [order[i * per_fold:(i + 1) * per_fold] for i in range(args.folds)]
    print(f"folds (test cities): {folds}", flush=True)

    results: dict = {"folds": folds, "index": {}, "models": {}, "budget_minutes": {}}
    for c in cities:
        pred = index_method(pairs[c])
        lab = pairs[c].label.data[0]
        ok = lab != 255
        results["index"][c] = change_scores(pred[ok], lab[ok] == 1)
    results["index"]["pooled"] = pooled([results["index"][c] for c in cities])
    print(f"index method (SAVI diff + Otsu) pooled F1 {results['index']['pooled']['f1']:.3f}", flush=True)

    models = args.models.split(",")
    for arch in models:
        minutes = BUDGET.get(arch, 2.0) * args.scale
        results["budget_minutes"][arch] = minutes
        res = results["models"].setdefault(arch, {"cities": {}, "oracle_cities": {}, "folds": []})
        for k, test in enumerate(folds):
            t0 = time.perf_counter()
            train_cities = [c for c in cities if c not in test]
            samples = samples_from_pairs([pairs[c] for c in train_cities])
            tr, va = holdout_split(samples, fraction=0.2, side="bottom")
            cfg = TrainConfig(arch=arch, crop=64, batch_size=8, epochs=200, steps_per_epoch=30, lr=1e-3,
                              loss="wce+dice", patience=1000, seed=args.seed, max_minutes=minutes, threads=args.threads)
            r = train(tr, va, out / arch / f"fold{k}", bands=ALL_BANDS, config=cfg,
                      training_data={"dataset": "OSCD", "train_cities": train_cities,
                                     "validation": "bottom 20% rows of each training city", "test_cities": test})
            model = load_model(r.model_path)
            runner = torch_runner(model.net)
            for c in test:
                p = pairs[c]
                prob = predict_arrays(runner, p.t1.data, p.t2.data, mean=model.mean, std=model.std, tile=256,
                                      overlap=32)
                lab = p.label.data[0]
                ok = (lab != 255) & np.isfinite(prob)
                res["cities"][c] = change_scores(prob[ok] >= model.threshold, lab[ok] == 1)
                # oracle: the threshold that would be best on this test city (NOT a valid result; context only)
                ot, _, om = best_threshold(prob, lab)
                res["oracle_cities"][c] = dict(om, threshold=ot)
            res["folds"].append({"test": test, "val_f1": r.val_f1, "threshold": r.threshold,
                                 "epochs": r.epochs_run, "best_epoch": r.best_epoch, "seconds": r.seconds,
                                 "test_f1": {c: res["cities"][c]["f1"] for c in test}})
            print(f"{arch} fold {k} test {test}: val F1 {r.val_f1:.3f} thr {r.threshold:.2f} epochs {r.epochs_run} "
                  f"(best {r.best_epoch}) test F1 {[round(res['cities'][c]['f1'], 3) for c in test]} "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
            res["pooled"] = pooled([res["cities"][c] for c in res["cities"]])
            res["pooled_oracle"] = pooled([res["oracle_cities"][c] for c in res["oracle_cities"]])
            (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"{arch}: pooled F1 {res['pooled']['f1']:.3f} (index {results['index']['pooled']['f1']:.3f}, "
              f"ratio {res['pooled']['f1'] / max(results['index']['pooled']['f1'], 1e-9):.1f}x)", flush=True)

    print("\ncity           index  " + "  ".join(f"{m:>12s}" for m in models))
    for c in cities:
        print(f"{c:14s} {results['index'][c]['f1']:.3f}  " +
              "  ".join(f"{results['models'][m]['cities'].get(c, {}).get('f1', float('nan')):12.3f}" for m in models))
    print(f"{'pooled':14s} {results['index']['pooled']['f1']:.3f}  " +
          "  ".join(f"{results['models'][m]['pooled']['f1']:12.3f}" for m in models))
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

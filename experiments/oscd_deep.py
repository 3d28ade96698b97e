"""Leave-cities-out experiment on OSCD: deep change networks against the SAVI-difference + Otsu index method.

The labelled OSCD cities in ``../shared/data/oscd`` (10 since beirut and cupertino joined; the session 1-4 figures
in docs/deep-change.md were measured on the first 8) are split into folds of test cities (a seeded permutation;
``--folds 10`` is leave one city out). For each fold and model, a network is trained on the other cities (their
bottom 20 % of rows held out for validation: early stopping and the decision threshold), then predicts the test
cities, which it never saw. Pooled F1 of the change class is computed over all cities' test predictions (each
city is tested exactly once). The index method (|SAVI(t2) - SAVI(t1)|, Otsu threshold per city, no training) is scored
on the same pixels. Test cities are never used for any choice.

Not run by CI. The GPU counterpart (no geo stack on the device, one prepared run) is ``experiments/oscd_gpu/``.
Run in the background with one thread::

    nohup .venv/bin/python experiments/oscd_deep.py --out /tmp/deep6/oscd > /tmp/deep6/oscd.log 2>&1 &

The issue-6 configuration (one model, 13.5 min/fold, 55 min of training in all; pooled F1 0.230)::

    nohup .venv/bin/python experiments/oscd_deep.py --out /tmp/deep6/final --models fc-siam-diff --budget 13.5 \
        --lr-by-time --epochs 500 --steps 40 --ema 0.99 --tta --bands all --threads 1 --save-probs \
        > /tmp/deep6/final.log 2>&1 &

The session-3 configuration adds co-registration of date 2 and radiometric jitter (pooled F1 0.269 with seed 0,
0.205 and 0.214 with seeds 1 and 2, which also change the fold partition)::

    nohup .venv/bin/python experiments/oscd_deep.py --out /tmp/deep7/B --models fc-siam-diff --budget 13.5 \
        --lr-by-time --epochs 500 --steps 40 --ema 0.99 --tta --bands all --threads 1 --save-probs \
        --coreg --jitter 0.1 > /tmp/deep7/B.log 2>&1 &

Session 4 uses the whole 2-core CPU for the 60-minute budget: ``--parallel 2`` trains two folds at once, one
process and one thread each (earlier runs trained one fold at a time on 1 thread, half the CPU)::

    nohup .venv/bin/python experiments/oscd_deep.py --out /tmp/deep8/X --models fc-siam-diff --budget 27 \
        --lr-by-time --epochs 1000 --steps 40 --ema 0.99 --tta --bands all --threads 1 --parallel 2 \
        --save-probs --coreg --jitter 0.1 > /tmp/deep8/X.log 2>&1 &

Session 9 scored synthetic clouds in training (``--clouds 0.3``; pooled F1 0.299 against the recipe's 0.432,
``experiments/oscd_cpu_loo10_clouds/``)::

    nohup .venv/bin/python experiments/oscd_deep.py --out /tmp/deep11/clouds --models fc-ef --folds 10 --budget 9 \
        --lr-by-time --epochs 1000 --steps 40 --ema 0.99 --tta --bands all --threads 1 --parallel 2 \
        --save-probs --coreg --jitter 0.1 --clouds 0.3 > /tmp/deep11/clouds.log 2>&1 &

The bf16 recipe (sessions 10 and 12: seeds 0, 1, 2 scored pooled F1 0.482, 0.493, 0.288;
``experiments/oscd_cpu_loo10_bf16*``; ``oscd_seed_ensemble.py`` scores seeds together)::

    nohup .venv/bin/python experiments/oscd_deep.py --out /work/runs/bf16_seed1 --models fc-ef --folds 10 \
        --budget 9 --lr-by-time --epochs 1000 --steps 40 --ema 0.99 --tta --bands all --threads 1 --parallel 2 \
        --save-probs --coreg --jitter 0.1 --precision bf16 --seed 1 > /work/runs/bf16_seed1.log 2>&1 &

It writes ``results.json`` (per city, per fold, per model), ``f1_by_city.png`` and ``val_f1_by_epoch.png`` and
prints a table
(``--plot RESULTS.json`` redraws the figure of an earlier run). Options select the input
normalisation (``--norm per-image``), bands, crop/batch, a fixed epoch count with a cosine learning-rate schedule
over it (``--epochs``), a weight EMA, flip test-time augmentation, and one training budget for every model
(``--budget`` minutes per fold, a hard wall-time cap). ``--save-probs`` keeps each fold's validation and test
probability maps (``probs.npz``) for later analysis of threshold rules, which must be chosen on validation only.
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

from minescape.change.coregister import coregister_pair  # noqa: E402
from minescape.change.datasets import oscd_cities, read_oscd_city  # noqa: E402
from minescape.change.deep.infer import predict_arrays  # noqa: E402
from minescape.change.deep.model import load_model  # noqa: E402
from minescape.change.deep.runner import torch_runner  # noqa: E402
from minescape.change.deep.train import (  # noqa: E402
    TrainConfig,
    best_threshold,
    change_scores,
    holdout_split,
    samples_from_pairs,
    train,
)
from minescape.indices import savi  # noqa: E402
from minescape.sentinel2 import ALL_BANDS  # noqa: E402

BAND_SETS = {"all": tuple(ALL_BANDS), "rgbn": ("B02", "B03", "B04", "B08"),
             "10m20m": ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")}

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


def plot_results(results: dict, path: Path) -> Path:
    """Bar chart of F1 per test city and pooled: the index method and each model (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["models"])
    cities = sorted(c for c in results["index"] if not c.startswith("pooled"))
    names = cities + ["pooled"]
    series = {"index (SAVI + Otsu)": [results["index"][c]["f1"] for c in cities] + [results["index"]["pooled"]["f1"]]}
    for m in models:
        r = results["models"][m]
        series[m] = [r["cities"].get(c, {}).get("f1", np.nan) for c in cities] + [r.get("pooled", {}).get("f1", np.nan)]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(series)
    for i, (label, vals) in enumerate(series.items()):
        ax.bar(np.arange(len(names)) + (i - (len(series) - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("F1 of change (unseen city)")
    ax.set_ylim(0, 1)
    ax.axhline(0.45, color="grey", lw=0.8, ls="--", label="goal: pooled F1 0.45")
    ax.set_title("OSCD leave-cities-out: F1 per test city")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(out: Path, models: list[str], folds: list[list[str]]) -> Path:
    """Validation F1 per epoch of every fold's training (from each model card's history), one panel per model
    (PNG beside results.json): shows whether a fold was still improving when its budget ran out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 3.6), squeeze=False)
    for ax, arch in zip(axes[0], models):
        for k, test in enumerate(folds):
            card = out / arch / f"fold{k}" / "model.json"
            if not card.exists():
                continue
            history = json.loads(card.read_text()).get("history") or []
            f1 = [h.get("val_f1", np.nan) for h in history]
            ax.plot(np.arange(1, len(f1) + 1), f1, label=f"fold {k} (test {'+'.join(test)})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation F1 (held-out rows of the training cities)")
        ax.set_title(arch)
        ax.set_ylim(0, max(0.5, ax.get_ylim()[1]))
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "val_f1_by_epoch.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

def load_pairs(args: argparse.Namespace) -> dict:
    """All OSCD cities (13 bands), date 2 co-registered onto date 1 with ``--coreg``."""
    cities = oscd_cities(args.root)
    pairs = {c: read_oscd_city(args.root, c, bands=ALL_BANDS) for c in cities}
    if args.coreg:
        for c in cities:
            pairs[c], shift = coregister_pair(pairs[c])
            print(f"co-registered {c}: date 2 moved by ({shift[0]:+.2f}, {shift[1]:+.2f}) px", flush=True)
    return pairs


_WORKER_PAIRS: dict | None = None  # a worker process's cities, read at its first fold


def run_fold(args: argparse.Namespace, folds: list[list[str]], arch: str, k: int, minutes: float,
             pairs: dict | None = None) -> dict:
    """Train ``arch`` on every city outside fold ``k``, predict the fold's test cities; return the fold's scores.

    Runs in the main process or in a worker process (then ``pairs`` is None and the cities are read once per
    worker, at its first fold).
    """
    import torch

    global _WORKER_PAIRS
    torch.set_num_threads(args.threads)
    if pairs is None:
        _WORKER_PAIRS = _WORKER_PAIRS or load_pairs(args)
        pairs = _WORKER_PAIRS
    bands = BAND_SETS[args.bands]
    out = Path(args.out)
    test = folds[k]
    t0 = time.perf_counter()
    train_cities = [c for c in pairs if c not in test]
    samples = samples_from_pairs([pairs[c] for c in train_cities], bands=bands)
    tr, va = holdout_split(samples, fraction=0.2, side="bottom")
    cfg = TrainConfig(arch=arch, crop=args.crop, batch_size=args.batch, epochs=args.epochs,
                      steps_per_epoch=args.steps, lr=args.lr,
                      lr_epochs=args.epochs if args.epochs < 200 else 50,
                      loss=args.loss, patience=1000, keep_from_epoch=args.keep_from_epoch, seed=args.seed,
                      average_from=args.average_from, threshold_beta=args.threshold_beta,
                      max_minutes=minutes,
                      threads=args.threads, norm=args.norm, ema=args.ema, tta=args.tta,
                      jitter=args.jitter, clouds=args.clouds, coregister=args.coreg, precision=args.precision,
                      lr_schedule="time" if args.lr_by_time else "epochs",
                      model_kwargs={} if args.dropout is None else {"dropout": args.dropout})
    r = train(tr, va, out / arch / f"fold{k}", bands=bands, config=cfg, progress=False,
              training_data={"dataset": "OSCD", "train_cities": train_cities,
                             "validation": "bottom 20% rows of each training city", "test_cities": test})
    model = load_model(r.model_path)
    runner = torch_runner(model.net)
    saved = {}
    if args.save_probs:  # validation maps of the final model (for threshold-rule analysis on validation)
        for s in va:
            saved["val:" + s.name] = predict_arrays(runner, s.t1, s.t2, mean=model.mean, std=model.std,
                                                    tile=256, overlap=32, norm=model.norm,
                                                    tta=model.tta).astype(np.float16)
            saved["vallab:" + s.name] = s.label
    cities, oracle = {}, {}
    for c in test:
        p = pairs[c]
        x1, x2 = p.t1.select(bands).data, p.t2.select(bands).data
        prob = predict_arrays(runner, x1, x2, mean=model.mean, std=model.std, tile=256,
                              overlap=32, norm=model.norm, tta=model.tta)
        if args.save_probs:
            saved["test:" + c] = prob.astype(np.float16)
        lab = p.label.data[0]
        ok = (lab != 255) & np.isfinite(prob)
        cities[c] = change_scores(prob[ok] >= model.threshold, lab[ok] == 1)
        # oracle: the threshold that would be best on this test city (NOT a valid result; context only)
        ot, _, om = best_threshold(prob, lab)
        oracle[c] = dict(om, threshold=ot)
    if saved:
        np.savez_compressed(out / arch / f"fold{k}" / "probs.npz", **saved)
    return {"fold": k, "test": test, "val_f1": r.val_f1, "threshold": r.threshold,
            "epochs": r.epochs_run, "best_epoch": r.best_epoch, "seconds": r.seconds,
            "wall_seconds": time.perf_counter() - t0, "test_f1": {c: cities[c]["f1"] for c in test},
            "cities": cities, "oracle_cities": oracle}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "oscd"))
    ap.add_argument("--out", default="/tmp/deep6/oscd")
    ap.add_argument("--models", default="siam-att,fc-siam-diff,fc-ef,fc-siam-conc")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every training budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    ap.add_argument("--parallel", type=int, default=1,
                    help="folds trained at once, one process each (2 x 1 thread uses both cores of this CPU)")
    ap.add_argument("--budget", type=float, default=None,
                    help="training minutes per fold for every model (hard cap; default: the BUDGET table)")
    ap.add_argument("--norm", default="global", choices=("global", "per-image"))
    ap.add_argument("--bands", default="all", choices=sorted(BAND_SETS))
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30, help="training steps per epoch (one validation per epoch)")
    ap.add_argument("--epochs", type=int, default=200,
                    help="epochs; the cosine learning-rate schedule runs over them (default 200, schedule 50)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-by-time", action="store_true",
                    help="cosine learning-rate decay over the time budget (completes whatever the machine load)")
    ap.add_argument("--loss", default="wce+dice")
    ap.add_argument("--ema", type=float, default=0.0, help="weight EMA decay per step (0 = off)")
    ap.add_argument("--tta", action="store_true", help="flip TTA for the final threshold choice and the test")
    ap.add_argument("--dropout", type=float, default=None)
    ap.add_argument("--keep-from-epoch", type=int, default=1,
                    help="first epoch a fold may keep as its best (default 1: any)")
    ap.add_argument("--threshold-beta", type=float, default=1.0,
                    help="each fold's threshold maximises this validation F-beta (1 = F1)")
    ap.add_argument("--average-from", type=float, default=0.0,
                    help="keep the average of the epoch-end weights after this fraction of the budget (0 = off)")
    ap.add_argument("--only-folds", default=None, help="comma-separated fold numbers to run (screens)")
    ap.add_argument("--save-probs", action="store_true")
    ap.add_argument("--coreg", action="store_true",
                    help="co-register date 2 onto date 1 (sub-pixel phase correlation) for every method")
    ap.add_argument("--jitter", type=float, default=0.0, help="radiometric augmentation (per-date gain/offset)")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="training precision (auto: fp32 on a CPU; bf16 autocast trains about 1.5x more steps "
                         "per second on a CPU with native bf16)")
    ap.add_argument("--clouds", type=float, default=0.0,
                    help="share of training crops given a synthetic cloud and shadow in one date (no change)")
    ap.add_argument("--plot", default=None, help="only redraw f1_by_city.png beside this results.json")
    args = ap.parse_args()
    if args.plot:
        done = json.loads(Path(args.plot).read_text())
        print(plot_results(done, Path(args.plot).with_name("f1_by_city.png")))
        print(plot_curves(Path(args.plot).parent, list(done["models"]), done["folds"]))
        return

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"config: {vars(args)}", flush=True)
    pairs = load_pairs(args)
    cities = list(pairs)
    order = [cities[i] for i in np.random.default_rng(args.seed).permutation(len(cities))]
    per_fold = int(np.ceil(len(order) / args.folds))
    folds = [order[i * per_fold:(i + 1) * per_fold] for i in range(args.folds)]
    print(f"folds (test cities): {folds}", flush=True)

    run_folds = [int(k) for k in args.only_folds.split(",")] if args.only_folds else list(range(len(folds)))
    results: dict = {"folds": folds, "run_folds": run_folds, "config": vars(args), "threads": args.threads,
                     "index": {}, "models": {}, "budget_minutes": {}}
    for c in cities:
        pred = index_method(pairs[c])
        lab = pairs[c].label.data[0]
        ok = lab != 255
        results["index"][c] = change_scores(pred[ok], lab[ok] == 1)
    results["index"]["pooled"] = pooled([results["index"][c] for c in cities])
    print(f"index method (SAVI diff + Otsu) pooled F1 {results['index']['pooled']['f1']:.3f}", flush=True)

    models = args.models.split(",")
    jobs = []
    for arch in models:
        minutes = (args.budget if args.budget is not None else BUDGET.get(arch, 2.0)) * args.scale
        results["budget_minutes"][arch] = minutes
        results["models"].setdefault(arch, {"cities": {}, "oracle_cities": {}, "folds": []})
        jobs += [(arch, k, minutes) for k in run_folds]

    def collect(arch: str, fold: dict) -> None:
        res = results["models"][arch]
        res["cities"].update(fold.pop("cities"))
        res["oracle_cities"].update(fold.pop("oracle_cities"))
        res["folds"].append(fold)
        res["folds"].sort(key=lambda f: f["fold"])
        res["train_minutes_total"] = sum(f["seconds"] for f in res["folds"]) / 60
        res["pooled"] = pooled([res["cities"][c] for c in res["cities"]])
        res["pooled_oracle"] = pooled([res["oracle_cities"][c] for c in res["oracle_cities"]])
        print(f"{arch} fold {fold['fold']} test {fold['test']}: val F1 {fold['val_f1']:.3f} "
              f"thr {fold['threshold']:.2f} epochs {fold['epochs']} (best {fold['best_epoch']}) test F1 "
              f"{[round(v, 3) for v in fold['test_f1'].values()]} [{fold['wall_seconds']:.0f} s]", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))

    if args.parallel > 1:  # one process per fold, args.threads each: uses the whole CPU for the budget
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.parallel, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(run_fold, args, folds, arch, k, minutes): arch for arch, k, minutes in jobs}
            for fut in as_completed(futures):
                collect(futures[fut], fut.result())
    else:
        for arch, k, minutes in jobs:
            collect(arch, run_fold(args, folds, arch, k, minutes, pairs))
    for arch in models:
        res = results["models"][arch]
        idx = pooled([results["index"][c] for c in res["cities"]])  # same test cities as the model
        results["index"]["pooled_" + arch] = idx
        print(f"{arch}: pooled F1 {res['pooled']['f1']:.3f} P {res['pooled']['precision']:.3f} "
              f"R {res['pooled']['recall']:.3f} (index on the same cities {idx['f1']:.3f}, "
              f"ratio {res['pooled']['f1'] / max(idx['f1'], 1e-9):.1f}x); oracle-threshold F1 "
              f"{res['pooled_oracle']['f1']:.3f} (context only); training {res['train_minutes_total']:.1f} min "
              f"in {args.parallel} process(es) of {args.threads} thread(s)", flush=True)

    print("\ncity           index  " + "  ".join(f"{m:>12s}" for m in models))
    for c in cities:
        print(f"{c:14s} {results['index'][c]['f1']:.3f}  " +
              "  ".join(f"{results['models'][m]['cities'].get(c, {}).get('f1', float('nan')):12.3f}" for m in models))
    print(f"{'pooled':14s} {results['index']['pooled']['f1']:.3f}  " +
          "  ".join(f"{results['models'][m]['pooled']['f1']:12.3f}" for m in models))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"figures: {plot_results(results, out / 'f1_by_city.png')}, {plot_curves(out, models, folds)}")


if __name__ == "__main__":
    main()

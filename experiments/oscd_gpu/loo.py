"""Leave-one-city-out on one GPU: the CPU recipe, all 10 folds at once, one or more networks per fold.

Each fold is one process (1 CPU thread, the shared GPU): it trains ``--members`` networks one after the other on
the 9 other cities with the CPU recipe of ``experiments/oscd_deep.py`` (all 13 bands, co-registered, crops of
64 px, batches of 8, wce+dice, EMA 0.99, jitter 0.1, cosine learning rate over the time budget, the bottom 20 % of
each training city's rows for validation, the threshold chosen there on flip-averaged probabilities), then
predicts its test city with the 4 flips. The driver scores every member alone and the ensemble as ``change
predict`` with several models computes it: the mean of the members' probabilities against the mean of their
thresholds. Nothing is chosen on a test city.

Runs where only numpy and torch are installed (the geo stack is blocked, as in ``run.py``); the data are the
arrays ``prepare.py`` writes. Results: ``--out``/``results.json`` and ``log.txt``.

    python experiments/oscd_gpu/loo.py --data .gpu/oscd10.npz --out $OUT/loo --member-seconds 130
    python experiments/oscd_gpu/loo.py --data .gpu/oscd10.npz --out /tmp/loo-cpu --tiny   # a CPU check

The H100 run of 2026-11-26 (``results_h100/``) used the defaults: ten processes at once reached only 9 steps/s
each, so three networks per fold got 1,400 steps each (ensemble: pooled F1 0.324). The H200 run of session 13
(``results_h200_run3/``, through ``run_loo.sh``) trained one network per fold for the whole budget with 16 crops
per step (``--members fc-ef:0 --batch 16 --steps 200 --keep-from-epoch 4``): 4,000 steps at 8.6 steps/s per
process, pooled F1 0.455.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

for _mod in ("rasterio", "geopandas", "shapely", "pyproj", "fiona"):  # prove the deep package needs none
    sys.modules[_mod] = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

# minescape.sentinel2.ALL_BANDS, spelled out: that module needs rasterio
ALL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
GROUPS = {"10": (("B02", "B03", "B04", "B08"), 1), "20": (("B05", "B06", "B07", "B8A", "B11", "B12"), 2),
          "60": (("B01", "B09", "B10"), 6)}


def load_cities(path: Path, tiny: bool) -> dict:
    """The prepared cities as training samples: 13 bands in ``ALL_BANDS`` order on the 10 m grid (the 20 m and
    60 m bands resampled bilinearly from their block means), reflectance, NaN = nodata; label 0/1, 255 ignored."""
    import torch
    from prepare import unpack
    from torch.nn import functional as F

    from minescape.change.deep.train import Sample

    data = np.load(path)
    cities = sorted({k.split("__")[0] for k in data.files})
    out = {}
    for c in cities:
        label = unpack(data[f"{c}__label"])
        h, w = label.shape
        dates = []
        for name in ("t1", "t2"):
            bands: dict[str, np.ndarray] = {}
            for key, (names, f) in GROUPS.items():
                q = unpack(data[f"{c}__{name}{key}"])
                if f == 1:
                    up = q.astype(np.float32)
                else:
                    up = F.interpolate(torch.from_numpy(q.astype(np.float32))[None], scale_factor=float(f),
                                       mode="bilinear", align_corners=False)[0, :, :h, :w].numpy()
                    up[np.repeat(np.repeat(q == 0, f, axis=1), f, axis=2)[:, :h, :w]] = 0
                bands.update(zip(names, up))
            q = np.stack([bands[b] for b in ALL_BANDS])
            dates.append(np.where(q > 0, q / 10000, np.nan).astype(np.float32))
        if tiny:
            dates, label = [d[:, :128, :128] for d in dates], label[:128, :128]
        out[c] = Sample(c, dates[0], dates[1], label)
    return out


def run_fold(args: argparse.Namespace) -> None:
    """One fold: train the members, predict the validation strips and the test city; write ``fold_<city>.npz``
    (probabilities as float16, labels) and ``fold_<city>.json`` (per-member figures)."""
    import torch

    from minescape.change.deep.infer import predict_arrays
    from minescape.change.deep.model import load_model
    from minescape.change.deep.runner import flip_batch_for, torch_runner
    from minescape.change.deep.train import TrainConfig, change_scores, holdout_split, train
    from minescape.compute import resolve_compute

    torch.set_num_threads(1)
    out = Path(args.out)
    cities = load_cities(Path(args.data), args.tiny)
    city = args.fold
    tr, va = holdout_split([s for c, s in cities.items() if c != city], fraction=0.2, side="bottom")
    test = cities[city]
    compute = resolve_compute(args.device, "auto", workload="change-training")
    members = [m.split(":") for m in args.members.split(",")]
    saved: dict[str, np.ndarray] = {"test_label": test.label}
    for s in va:
        saved[f"val_label:{s.name}"] = s.label
    rows = []
    tile = 64 if args.tiny else 1024
    for i, (arch, seed) in enumerate(members):
        left = args.end_time - time.time() - args.reserve * (len(members) - i)
        seconds = min(args.member_seconds, left / (len(members) - i))
        if seconds < (1 if args.tiny else 20):
            print(f"fold {city}: no time left for member {i} ({arch}:{seed})", flush=True)
            break
        cfg = TrainConfig(arch=arch, crop=32 if args.tiny else args.crop, batch_size=args.batch, epochs=100_000,
                          steps_per_epoch=3 if args.tiny else args.steps, lr=args.lr, lr_epochs=50, loss="wce+dice",
                          lr_schedule="time", max_minutes=seconds / 60, patience=100_000, seed=int(seed),
                          keep_from_epoch=args.keep_from_epoch, threshold_beta=args.threshold_beta,
                          threads=1, norm="global", ema=0.99, tta=True, jitter=0.1, coregister=True,
                          val_tile=tile, device=args.device, precision="auto")
        t0 = time.time()
        res = train(tr, va, out / f"fold_{city}" / f"m{i}", bands=ALL_BANDS, config=cfg, progress=False,
                    training_data={"dataset": "OSCD (prepared arrays)", "test_city": city,
                                   "validation": "bottom 20% rows of each training city"})
        model = load_model(res.model_path)
        runner = torch_runner(model.net, compute)
        fb = flip_batch_for(compute)

        def prob(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
            return predict_arrays(runner, t1, t2, mean=model.mean, std=model.std, tile=tile,
                                  overlap=16 if args.tiny else 64, norm=model.norm, tta=True, flip_batch=fb)

        p = prob(test.t1, test.t2)
        saved[f"test:{i}"] = p.astype(np.float16)
        for s in va:
            saved[f"val:{i}:{s.name}"] = prob(s.t1, s.t2).astype(np.float16)
        ok = (test.label != 255) & np.isfinite(p)
        sc = change_scores(p[ok] >= model.threshold, test.label[ok] == 1)
        log = json.loads(res.log_path.read_text())
        row = {"member": i, "arch": arch, "seed": int(seed), "budget_seconds": round(seconds, 1),
               "train_seconds": log["train_seconds"], "steps": log["steps_this_run"],
               "steps_per_second": log["steps_per_second"], "peak_gpu_memory_mb": log.get("peak_gpu_memory_mb"),
               "epochs": res.epochs_run, "best_epoch": res.best_epoch, "val_f1": res.val_f1,
               "threshold": res.threshold, "wall_seconds": round(time.time() - t0, 1),
               **{k: sc[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")}}
        rows.append(row)
        print("fold", city, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        np.savez(out / f"fold_{city}.npz", **saved)
        (out / f"fold_{city}.json").write_text(json.dumps({"city": city, "compute": res.compute,
                                                           "members": rows}, indent=2))


def pooled(counts: list[tuple[int, int, int]]) -> dict:
    tp, fp, fn = (sum(c[i] for c in counts) for i in range(3))
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"precision": p, "recall": r, "f1": 2 * tp / max(2 * tp + fp + fn, 1), "tp": tp, "fp": fp, "fn": fn}


def aggregate(out: Path, cities: list[str], beta: float = 1.0) -> dict:
    """Per member and for the ensemble: per-city and pooled scores of the saved folds."""
    from minescape.change.deep.train import best_threshold, change_scores

    per: dict[str, dict] = {}
    for city in cities:
        j, z = out / f"fold_{city}.json", out / f"fold_{city}.npz"
        if not (j.exists() and z.exists()):
            continue
        fold = json.loads(j.read_text())
        data = np.load(z)
        lab = data["test_label"]
        members = [m for m in fold["members"] if f"test:{m['member']}" in data.files]
        for m in members:
            per.setdefault(f"m{m['member']}:{m['arch']}:{m['seed']}", {})[city] = {
                k: m[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn", "threshold", "val_f1", "steps",
                                  "steps_per_second", "epochs", "best_epoch", "train_seconds",
                                  "peak_gpu_memory_mb")}
        if len(members) < 2:
            continue
        name = f"ensemble of {len(members)}"
        p = np.mean([data[f"test:{m['member']}"].astype(np.float32) for m in members], axis=0)
        thr = float(np.mean([m["threshold"] for m in members]))
        ok = (lab != 255) & np.isfinite(p)
        sc = change_scores(p[ok] >= thr, lab[ok] == 1)
        # context: the ensemble's own threshold chosen on its validation strips (flip-averaged)
        vals = sorted(k.split(":", 1)[1] for k in data.files if k.startswith("val_label:"))
        vp = np.concatenate([np.mean([data[f"val:{m['member']}:{v}"].astype(np.float32) for m in members],
                                     axis=0).ravel() for v in vals])
        vl = np.concatenate([data[f"val_label:{v}"].ravel() for v in vals])
        vthr, vf1, _ = best_threshold(vp, vl, beta=beta)
        sv = change_scores(p[ok] >= vthr, lab[ok] == 1)
        per.setdefault(name, {})[city] = {**{k: sc[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")},
                                          "threshold": thr, "val_threshold": vthr, "val_f1": vf1,
                                          "f1_at_val_threshold": sv["f1"],
                                          "counts_at_val_threshold": [sv["tp"], sv["fp"], sv["fn"]]}
    res = {}
    for name, rows in per.items():
        res[name] = {"cities": rows, "pooled": pooled([(r["tp"], r["fp"], r["fn"]) for r in rows.values()]),
                     "n_cities": len(rows), "lowest_precision": min((r["precision"], c) for c, r in rows.items())}
        if name.startswith("ensemble"):
            res[name]["pooled_at_val_threshold"] = pooled([tuple(r["counts_at_val_threshold"])
                                                           for r in rows.values()])
    return res


def validation_probabilities(out: Path, cities: list[str]) -> dict[str, np.ndarray]:
    """Every member's validation-strip probabilities as uint8 (``round(255 p)``; NaN, where an input pixel was
    invalid, as 0), keyed ``<test city>:val:<member>:<validation city>``: 1 byte a pixel, so a run's strips (about
    8 Mpix for 10 folds) come back from a device under its 16 MiB file limit and threshold rules chosen on
    validation (``experiments/oscd_threshold_rules.py``) can be rescored here with the cloud mask. The grid of
    0.02 thresholds those rules use is coarser than the 1/255 quantisation."""
    saved: dict[str, np.ndarray] = {}
    for c in cities:
        z = out / f"fold_{c}.npz"
        if not z.exists():
            continue
        data = np.load(z)
        for k in data.files:
            if k.startswith("val:"):
                p = np.nan_to_num(data[k].astype(np.float32), nan=0.0)
                saved[f"{c}:{k}"] = np.round(np.clip(p, 0.0, 1.0) * 255).astype(np.uint8)
    return saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--members", default="fc-ef:0,fc-ef:1,fc-ef:2", help="arch:seed, comma-separated")
    ap.add_argument("--member-seconds", type=float, default=130.0, help="training budget of each member (s)")
    ap.add_argument("--steps", type=int, default=200, help="steps per epoch (validation after each)")
    ap.add_argument("--crop", type=int, default=64, help="crop size (px; the CPU recipe: 64)")
    ap.add_argument("--batch", type=int, default=8, help="crops per step (the CPU recipe: 8)")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (the CPU recipe: 1e-3)")
    ap.add_argument("--threshold-beta", type=float, default=1.0,
                    help="each member's threshold maximises this validation F-beta (1 = F1; the CPU recipe: 0.5)")
    ap.add_argument("--keep-from-epoch", type=int, default=1,
                    help="first epoch that may be kept as the best (the CPU recipe's floor: 20 epochs of 40 steps)")
    ap.add_argument("--concurrent", type=int, default=0,
                    help="folds trained at once (default all; one GPU time-slices between processes, so their "
                         "steps/s add up to about 90 at 8 x 64 px: see results_h100/steps_bench.json)")
    ap.add_argument("--deadline", type=float, default=480.0, help="seconds from start by which all must end")
    ap.add_argument("--reserve", type=float, default=15.0, help="seconds kept per member for its predictions")
    ap.add_argument("--only", default=None, help="comma-separated cities (default: all)")
    ap.add_argument("--tiny", action="store_true", help="a CPU check: small corners of the cities, few steps")
    ap.add_argument("--fold", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--end-time", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.fold is not None:
        run_fold(args)
        return
    start = time.time()
    from prepare import unpack  # noqa: F401  (fail here, not in ten workers)

    data = np.load(args.data)
    cities = sorted({k.split("__")[0] for k in data.files})
    if args.only:
        cities = [c for c in cities if c in args.only.split(",")]
    sampler = None
    try:
        sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used",
                                    "--format=csv,noheader,nounits", "-lms", "500"],
                                   stdout=open(out / "smi.csv", "w"), stderr=subprocess.DEVNULL)
    except (FileNotFoundError, OSError):
        pass
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    at_once = args.concurrent or len(cities)
    codes: dict = {}
    for i in range(0, len(cities), at_once):  # waves of folds; each wave gets its share of the time left
        wave = cities[i:i + at_once]
        waves_left = -(-(len(cities) - i) // at_once)
        end = time.time() + (start + args.deadline - time.time()) / waves_left
        procs = {}
        for c in wave:
            cmd = [sys.executable, __file__, "--data", args.data, "--out", str(out), "--device", args.device,
                   "--members", args.members, "--member-seconds", str(args.member_seconds),
                   "--steps", str(args.steps), "--crop", str(args.crop), "--batch", str(args.batch),
                   "--lr", str(args.lr), "--reserve", str(args.reserve),
                   "--keep-from-epoch", str(args.keep_from_epoch), "--threshold-beta", str(args.threshold_beta),
                   "--fold", c, "--end-time", str(end)]
            if args.tiny:
                cmd.append("--tiny")
            procs[c] = subprocess.Popen(cmd, env=env, stdout=open(out / f"fold_{c}.log", "w"),
                                        stderr=subprocess.STDOUT)
        for c, p in procs.items():
            try:
                codes[c] = p.wait(timeout=max(end + 60 - time.time(), 1))
            except subprocess.TimeoutExpired:
                p.kill()
                codes[c] = "killed"
    if sampler is not None:
        sampler.terminate()
    results = {"config": vars(args), "exit_codes": codes, "wall_seconds": round(time.time() - start, 1),
               "scores": aggregate(out, cities, args.threshold_beta)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    test_probs = {}  # every member's test probabilities (float16), for ensembles with runs made elsewhere
    for c in cities:
        z = out / f"fold_{c}.npz"
        if z.exists():
            data = np.load(z)
            test_probs.update({f"{c}:{k}": data[k] for k in data.files if k.startswith("test:")})
    np.savez_compressed(out / "test_probs.npz", **test_probs)
    np.savez_compressed(out / "val_probs.npz", **validation_probabilities(out, cities))
    for c in cities:  # the workers' last lines (errors included) into the log
        lines = (out / f"fold_{c}.log").read_text(errors="replace").splitlines()
        print(f"--- {c} (exit {codes[c]})", *[ln for ln in lines if "━" not in ln][-6:], sep="\n")
    for name, r in results["scores"].items():
        pl = r["pooled"]
        print(f"{name:24s} cities {r['n_cities']:2d} pooled F1 {pl['f1']:.3f} (P {pl['precision']:.3f} "
              f"R {pl['recall']:.3f}) lowest precision {r['lowest_precision'][0]:.3f} ({r['lowest_precision'][1]})"
              + (f"; at its validation threshold {r['pooled_at_val_threshold']['f1']:.3f}"
                 if "pooled_at_val_threshold" in r else ""))
    print("wall", results["wall_seconds"], "s", flush=True)


if __name__ == "__main__":
    main()

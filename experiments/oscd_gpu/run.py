"""GPU proof of the deep change package: training steps/s, inference Mpix/s (bf16 and fp32), peak memory, and a
leave-one-city-out run over the 10 OSCD cities prepared by ``prepare.py`` (one network, fixed threshold 0.5).

Runs where only numpy and torch are installed: the geo stack is blocked on purpose, so this also proves that
``minescape.change.deep`` trains and predicts without it. Results go to ``--out`` (``results.json``).

    python experiments/oscd_gpu/run.py --data .gpu/oscd10.npz --out $OUT --fold-seconds 24
    python experiments/oscd_gpu/run.py --data /tmp/gpu16/oscd10.npz --out /tmp/gpu16/cpu --tiny   # CPU check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

for _mod in ("rasterio", "geopandas", "shapely", "pyproj", "fiona"):  # prove the deep package needs none
    sys.modules[_mod] = None  # type: ignore[assignment]


BANDS = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"]


def load_cities(path: Path, tiny: bool) -> dict:
    """The prepared cities as training samples: 10 bands (4 at 10 m, 6 resampled bilinearly from 20 m)."""
    import torch
    from torch.nn import functional as F

    from minescape.change.deep.train import Sample

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from prepare import unpack

    data = np.load(path)
    cities = sorted({k.split("__")[0] for k in data.files})
    out = {}
    for c in cities:
        label = unpack(data[f"{c}__label"])
        h, w = label.shape
        dates = []
        for name in ("t1", "t2"):
            b10 = unpack(data[f"{c}__{name}10"]).astype(np.float32)
            q20 = unpack(data[f"{c}__{name}20"])
            b20 = F.interpolate(torch.from_numpy(q20.astype(np.float32))[None], scale_factor=2.0, mode="bilinear",
                                align_corners=False)[0, :, :h, :w].numpy()
            b20[np.repeat(np.repeat(q20 == 0, 2, axis=1), 2, axis=2)[:, :h, :w]] = 0
            q = np.concatenate([b10, b20])
            dates.append(np.where(q > 0, q / 10000, np.nan).astype(np.float32))
        if tiny:
            dates, label = [d[:, :160, :160] for d in dates], label[:160, :160]
        out[c] = Sample(c, dates[0], dates[1], label)
    return out


def smi_sampler(out: Path):
    try:
        return subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used",
                                 "--format=csv,noheader,nounits", "-lms", "250"], stdout=open(out, "w"),
                                stderr=subprocess.DEVNULL)
    except (FileNotFoundError, OSError):
        return None


def smi_summary(path: Path, t0: float, t1: float) -> dict:
    """Mean and max GPU utilisation (%) and max memory (MiB) of the samples taken between two wall times."""
    import datetime as dt

    util, mem = [], []
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        try:
            ts, u, m = (x.strip() for x in line.split(","))
            t = dt.datetime.strptime(ts, "%Y/%m/%d %H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        if t0 <= t <= t1:
            util.append(float(u))
            mem.append(float(m))
    if not util:
        return {}
    return {"gpu_util_mean_pct": round(float(np.mean(util)), 1), "gpu_util_max_pct": max(util),
            "gpu_mem_max_mib": max(mem), "samples": len(util)}


def bench_inference(device: str, size: int, tile: int, smi: Path) -> list[dict]:
    """Network-only and end-to-end (``predict_arrays``) inference speed of an untrained 13-band FC-Siam-diff."""
    import torch

    from minescape.change.deep.infer import predict_arrays
    from minescape.change.deep.model import build_model
    from minescape.change.deep.runner import torch_runner
    from minescape.compute import resolve_compute

    rng = np.random.default_rng(0)
    t1 = rng.uniform(0.02, 0.4, (13, size, size)).astype(np.float32)
    t2 = (t1 + rng.normal(0, 0.02, t1.shape)).astype(np.float32)
    mean, std = np.full(13, 0.2, np.float32), np.full(13, 0.1, np.float32)  # 13 bands, as issue 18 measures
    rows = []
    for precision in ("bf16", "fp32"):
        compute = resolve_compute(device, precision)
        torch.manual_seed(0)
        net = build_model("fc-siam-diff", 13)
        run = torch_runner(net, compute)
        predict_arrays(run, t1[:, :tile, :tile], t2[:, :tile, :tile], mean=mean, std=std, tile=tile, overlap=0)
        # the network alone: a batch of 4 tiles already on the device
        x = torch.randn(4, 13, tile, tile, device=compute.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), compute.autocast():
            net(x, x)
            if compute.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                net(x, x)
            if compute.device == "cuda":
                torch.cuda.synchronize()
            net_s = (time.perf_counter() - t0) / 5
        for tta in (False, True):
            if compute.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            w0 = time.time()
            t0 = time.perf_counter()
            predict_arrays(run, t1, t2, mean=mean, std=std, tile=tile, overlap=min(32, tile // 4), tta=tta)
            sec = time.perf_counter() - t0
            row = {"precision": compute.precision, "tta": tta, "pixels": size * size, "seconds": round(sec, 3),
                   "mpix_per_s": round(size * size / sec / 1e6, 3),
                   "network_only_mpix_per_s": round(4 * tile * tile / net_s / 1e6, 2), "tile": tile}
            if compute.device == "cuda":
                row["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            row.update(smi_summary(smi, w0, time.time()))
            rows.append(row)
            print("inference", row, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", default="fc-ef", help="one network, or several comma-separated: each is trained "
                                                     "per fold and scored alone and as an ensemble (mean prob.)")
    ap.add_argument("--skip-inference", action="store_true")
    ap.add_argument("--skip-final", action="store_true")
    ap.add_argument("--fold-seconds", type=float, default=24.0)
    ap.add_argument("--final-seconds", type=float, default=40.0)
    ap.add_argument("--deadline", type=float, default=420.0, help="skip what would end after this (s)")
    ap.add_argument("--tiny", action="store_true", help="a CPU check: small crops of the cities, few steps")
    args = ap.parse_args()
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    from minescape.change.deep.infer import predict_arrays
    from minescape.change.deep.model import load_model
    from minescape.change.deep.runner import torch_runner
    from minescape.change.deep.train import TrainConfig, change_scores, holdout_split, train
    from minescape.compute import resolve_compute

    compute = resolve_compute(args.device, "auto", training=True)
    env = {"torch": torch.__version__, "device": compute.describe(),
           "gpu": torch.cuda.get_device_name(0) if compute.device == "cuda" else None,
           "blocked_modules": ["rasterio", "geopandas", "shapely", "pyproj", "fiona"]}
    print(env, flush=True)
    smi = out / "smi.csv"
    sampler = smi_sampler(smi) if compute.device == "cuda" else None
    results: dict = {"env": env, "config": vars(args)}
    try:
        if not args.skip_inference:
            results["inference"] = bench_inference(compute.device, 192 if args.tiny else 4096,
                                                   64 if args.tiny else 1024, smi)
        archs = args.arch.split(",")
        cities = load_cities(Path(args.data), args.tiny)
        cfg = TrainConfig(arch=archs[0], crop=32 if args.tiny else 128, batch_size=4 if args.tiny else 32,
                          epochs=2 if args.tiny else 10_000, steps_per_epoch=3 if args.tiny else 150,
                          lr=1e-3, lr_schedule="epochs" if args.tiny else "time",
                          max_minutes=None if args.tiny else args.fold_seconds / 60, patience=10_000, ema=0.99,
                          jitter=0.1, seed=0, val_tile=64 if args.tiny else 1024, device=args.device,
                          precision="auto")
        names = archs + (["ensemble"] if len(archs) > 1 else [])
        folds: dict = {n: {} for n in names}
        pooled = {n: [0, 0, 0] for n in names}
        for city in cities:
            if time.perf_counter() - start + len(archs) * args.fold_seconds + 10 > args.deadline:
                print("deadline: skipping fold", city, flush=True)
                continue
            tr, va = holdout_split([s for c, s in cities.items() if c != city], fraction=0.1)
            test = cities[city]
            probs = {}
            for arch in archs:
                w0 = time.time()
                res = train(tr, va, out / "folds" / city / arch, bands=BANDS,
                            config=TrainConfig(**{**cfg.__dict__, "arch": arch}), training_data={"fold": city})
                model = load_model(res.model_path)
                probs[arch] = predict_arrays(torch_runner(model.net, compute), test.t1, test.t2, mean=model.mean,
                                             std=model.std, tile=64 if args.tiny else 1024,
                                             overlap=16 if args.tiny else 64, tta=True)
                log = json.loads(res.log_path.read_text())
                folds[arch][city] = {"steps": log["steps_this_run"], "steps_per_second": log["steps_per_second"],
                                     "train_seconds": log["train_seconds"],
                                     "peak_gpu_memory_mb": log.get("peak_gpu_memory_mb"), "val_f1": res.val_f1,
                                     **smi_summary(smi, w0, time.time())}
            if len(archs) > 1:
                probs["ensemble"] = np.mean([probs[a] for a in archs], axis=0)
                folds["ensemble"][city] = {}
            for name in names:
                ok = (test.label != 255) & np.isfinite(probs[name])
                sc = change_scores(probs[name][ok] >= 0.5, test.label[ok] == 1)
                folds[name][city].update({k: sc[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")})
                pooled[name] = [pooled[name][0] + sc["tp"], pooled[name][1] + sc["fp"], pooled[name][2] + sc["fn"]]
                print("fold", city, name, {k: (round(v, 3) if isinstance(v, float) else v)
                                           for k, v in folds[name][city].items()}, flush=True)
            results["loo"] = {n: {"folds": folds[n],
                                  "pooled_f1": (2 * pooled[n][0]
                                                / max(2 * pooled[n][0] + pooled[n][1] + pooled[n][2], 1)),
                                  "pooled_precision": pooled[n][0] / max(pooled[n][0] + pooled[n][1], 1),
                                  "pooled_recall": pooled[n][0] / max(pooled[n][0] + pooled[n][2], 1)}
                              for n in names}
            (out / "results.json").write_text(json.dumps(results, indent=2))
        if not args.skip_final and time.perf_counter() - start + args.final_seconds + 10 < args.deadline:
            tr, va = holdout_split(list(cities.values()), fraction=0.1)
            final = train(tr, va, out / "final", bands=BANDS,
                          config=TrainConfig(**{**cfg.__dict__, "max_minutes": None if args.tiny else
                                                args.final_seconds / 60}),
                          training_data={"dataset": "OSCD, all 10 cities (bottom/top/side 10 % strips held out)"})
            results["final"] = json.loads(final.log_path.read_text())
    finally:
        if sampler is not None:
            sampler.terminate()
        results["wall_seconds"] = round(time.perf_counter() - start, 1)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    print("pooled F1", {n: round(v["pooled_f1"], 3) for n, v in results.get("loo", {}).items()},
          "wall", results["wall_seconds"], flush=True)


if __name__ == "__main__":
    main()

"""Training steps per second on one GPU for a few batch shapes, one process alone and several at once: how to
spend the GPU in a leave-one-city-out run (``loo.py`` ran ten 8 x 64² processes at once: 9 steps/s each).

    python experiments/oscd_gpu/steps_bench.py --data .gpu/oscd10.npz --seconds 15
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loo import ALL_BANDS, load_cities  # noqa: E402  (also blocks the geo stack)


def one(data: str, batch: int, crop: int, seconds: float, tiny: bool, arch: str = "fc-ef") -> dict:
    """Train ``arch`` for ``seconds`` with ``batch`` crops of ``crop`` px; steps/s and pixels/s of training."""
    import torch

    from minescape.change.deep.train import TrainConfig, holdout_split, train

    torch.set_num_threads(1)
    cities = load_cities(Path(data), tiny)
    tr, va = holdout_split(list(cities.values()), fraction=0.2, side="bottom")
    va = [s for s in va if s.name.startswith("paris")]  # a small validation set: the bench is about steps
    cfg = TrainConfig(arch=arch, crop=crop, batch_size=batch, epochs=100_000, steps_per_epoch=50,
                      lr_schedule="time", max_minutes=seconds / 60, patience=100_000, ema=0.99, tta=False,
                      jitter=0.1, val_tile=64 if tiny else 1024, device="auto", threads=1)
    res = train(tr, va, f"/tmp/steps_bench/{os.getpid()}_{batch}_{crop}", bands=ALL_BANDS, config=cfg,
                progress=False)
    log = json.loads(res.log_path.read_text())
    sps = log["steps_per_second"]
    return {"arch": arch, "batch": batch, "crop": crop, "steps_per_second": sps, "steps": log["steps_this_run"],
            "mpix_per_s": round(sps * batch * crop * crop / 1e6, 2), "peak_gpu_memory_mb":
            log.get("peak_gpu_memory_mb"), "epoch_seconds": log["epoch_seconds"][:3]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--plan", default=None,
                    help="comma-separated [ARCH:]BATCHxCROP, each alone (default: 8x64,32x128,128x128 and 4 x 8x64 "
                         "at once; ARCH defaults to fc-ef)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        arch, _, shape = args.one.rpartition(":")
        b, c = (int(v) for v in shape.split("x"))
        print("RESULT", json.dumps(one(args.data, b, c, args.seconds, args.tiny, arch or "fc-ef")), flush=True)
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    plan = [("alone", ["8x64"]), ("alone", ["32x128"]), ("alone", ["128x128"]), ("4 at once", ["8x64"] * 4)]
    if args.tiny:
        plan = [("alone", ["8x32"]), ("2 at once", ["8x32"] * 2)]
    if args.plan:
        plan = [("alone", [s]) for s in args.plan.split(",")]
    out = []
    for label, shapes in plan:
        t0 = time.time()
        procs = [subprocess.Popen([sys.executable, __file__, "--data", args.data, "--seconds", str(args.seconds),
                                   "--one", s] + (["--tiny"] if args.tiny else []), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for s in shapes]
        rows = []
        for p in procs:
            text = p.communicate()[0]
            got = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
            rows.append(json.loads(got[0][7:]) if got else {"error": text.strip().splitlines()[-3:]})
        out.append({"run": label, "processes": rows, "wall_seconds": round(time.time() - t0, 1)})
        print(label, rows, flush=True)
    Path(os.environ.get("STEPS_BENCH_OUT", "/tmp/steps_bench.json")).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""fp32 vs bf16 on this CPU with a real trained model: the same pooled F1 on the 10 OSCD cities (to 0.002) and
probabilities within 1e-3? Uses the model trained on the H200 (``final_model.pt`` of the GPU run; pass its path).

    PYTHONPATH=$PWD .venv/bin/python experiments/oscd_gpu/bf16_check.py MODEL.pt [--tta]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from minescape.change.datasets import oscd_cities, read_oscd_city
    from minescape.change.deep.infer import predict_scene
    from minescape.change.deep.model import load_model
    from minescape.compute import resolve_compute
    from minescape.geo.raster import read_raster

    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--oscd", default=str(ROOT.parent / "shared" / "data" / "oscd"))
    ap.add_argument("--tta", action="store_true")
    args = ap.parse_args()
    model = load_model(args.model)
    sums = {"fp32": [0, 0, 0], "bf16": [0, 0, 0]}
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for city in oscd_cities(args.oscd):
            label = read_oscd_city(args.oscd, city, bands=("B02",)).label.data[0]
            probs = {}
            for prec in ("fp32", "bf16"):
                folder = Path(args.oscd) / "images" / city
                res = predict_scene(model, folder / "imgs_1", folder / "imgs_2", Path(tmp) / f"{prec}_p.tif",
                                    Path(tmp) / f"{prec}_m.tif", tile=256, tta=args.tta,
                                    compute=resolve_compute("cpu", prec))
                probs[prec] = read_raster(res.probability).data[0]
                ok = (label != 255) & np.isfinite(probs[prec])
                pred, truth = probs[prec][ok] >= 0.5, label[ok] == 1
                tp, fp, fn = int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())
                sums[prec] = [a + b for a, b in zip(sums[prec], (tp, fp, fn))]
            ok = np.isfinite(probs["fp32"]) & np.isfinite(probs["bf16"])
            d = float(np.abs(probs["fp32"] - probs["bf16"])[ok].max())
            worst = max(worst, d)
            print(city, "max |dp|", f"{d:.2e}", flush=True)
    f1 = {k: 2 * tp / max(2 * tp + fp + fn, 1) for k, (tp, fp, fn) in sums.items()}
    out = {"pooled_f1_at_0.5": f1, "f1_difference": abs(f1["fp32"] - f1["bf16"]), "max_abs_dp": worst,
           "tta": args.tta, "note": "model trained on all 10 cities (not a held-out score): this checks precision"}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""The best validation epoch of an ``--average-from`` leave-one-city-out run, scored as the run scored its average.

A run of ``oscd_deep.py --average-from F --save-probs`` keeps, per fold, the average of the late epochs' weights
(``model.pt``) and, in ``checkpoint.pt``, the weights of its best validation epoch (``best_state``). Both come from
the same training trajectory, so scoring both is a paired comparison of the two ways of choosing what to keep, with
no other difference. This script rebuilds each fold's best-epoch network, chooses its threshold on the fold's
validation rows with flip averaging (as training does), predicts the fold's test city with flip averaging, and
writes a run folder in the ``oscd_deep.py`` layout (``results.json``, ``fc-ef/fold<k>/probs.npz`` with
``test:<city>``, ``model.json`` with the threshold) that ``oscd_cirrus_mask.py`` and ``oscd_threshold_rules.py``
read as ``cpu:<folder>``.

    .venv/bin/python experiments/oscd_average_vs_best.py /work/runs/avg_seed3 --out /work/runs/avg_seed3_best
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MINESCAPE_PROGRESS", "0")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from oscd_deep import BAND_SETS, load_pairs  # noqa: E402

from minescape.change.deep.infer import predict_arrays  # noqa: E402
from minescape.change.deep.model import load_model, load_payload  # noqa: E402
from minescape.change.deep.runner import torch_runner  # noqa: E402
from minescape.change.deep.train import (  # noqa: E402
    CHECKPOINT_FORMAT,
    change_scores,
    holdout_split,
    samples_from_pairs,
    validate,
)
from minescape.compute import resolve_compute  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="an oscd_deep.py --average-from run folder")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    res = json.loads((args.run / "results.json").read_text())
    cfg = res["config"]
    pairs = load_pairs(argparse.Namespace(root=cfg["root"], coreg=cfg["coreg"]))
    bands = BAND_SETS[cfg["bands"]]
    # validation in the precision training validated in (bf16 on a bf16 CPU), as train() chooses its threshold
    compute = resolve_compute("cpu", cfg["precision"], cfg["threads"], workload="change-training")
    rows = []
    for k, test in enumerate(res["folds"]):
        (city,) = test
        fold = args.run / "fc-ef" / f"fold{k}"
        model = load_model(fold / "model.pt")
        ck = load_payload(fold / "checkpoint.pt", formats=(CHECKPOINT_FORMAT,))
        state = ck["meta"]["state"]
        model.net.load_state_dict(ck["best_state"])
        model.net.eval()
        _, va = holdout_split(samples_from_pairs([pairs[c] for c in pairs if c != city], bands=bands),
                              fraction=0.2, side="bottom")
        thr, val_f1, _ = validate(model.net, va, model.mean, model.std, norm=model.norm, tta=True, compute=compute)
        runner = torch_runner(model.net)  # the test city as oscd_deep.py predicts it
        saved = {}
        for s in va:  # validation maps, as oscd_deep.py --save-probs keeps them (threshold-rule analysis)
            saved["val:" + s.name] = predict_arrays(runner, s.t1, s.t2, mean=model.mean, std=model.std, tile=256,
                                                    overlap=32, norm=model.norm, tta=True).astype(np.float16)
            saved["vallab:" + s.name] = s.label
        p = pairs[city]
        prob = predict_arrays(runner, p.t1.select(bands).data, p.t2.select(bands).data,
                              mean=model.mean, std=model.std, tile=256, overlap=32, norm=model.norm, tta=True)
        lab = p.label.data[0]
        ok = (lab != 255) & np.isfinite(prob)
        sc = change_scores(prob[ok] >= thr, lab[ok] == 1)
        out = args.out / "fc-ef" / f"fold{k}"
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "probs.npz", **saved, **{f"test:{city}": prob.astype(np.float16)})
        (out / "model.json").write_text(json.dumps({"threshold": thr, "best_epoch": state["best_epoch"],
                                                    "val_f1": val_f1}) + "\n")
        rows.append({"fold": k, "test": city, "best_epoch": state["best_epoch"], "threshold": thr,
                     "val_f1": val_f1, **{m: sc[m] for m in ("precision", "recall", "f1", "tp", "fp", "fn")}})
        print(f"fold {k} {city}: best epoch {state['best_epoch']} thr {thr:.2f} val F1 {val_f1:.3f} "
              f"test P {sc['precision']:.3f} R {sc['recall']:.3f} F1 {sc['f1']:.3f}", flush=True)
    tp, fp, fn = (sum(r[m] for r in rows) for m in ("tp", "fp", "fn"))
    pooled = 2 * tp / (2 * tp + fp + fn)
    print(f"best epochs: pooled F1 {pooled:.3f}")
    (args.out / "results.json").write_text(json.dumps({"folds": res["folds"], "source": str(args.run),
                                                       "kept": "best validation epoch (from checkpoint.pt)",
                                                       "pooled_f1": pooled, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

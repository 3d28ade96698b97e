"""Score leave-one-city-out runs of different seeds alone and as the ensemble ``change predict`` computes.

Reads two or more output folders of ``oscd_deep.py --save-probs`` (leave-one-city-out, same architecture,
different ``--seed``, which also orders the folds differently: members are matched by test city): each fold's
saved test probabilities (``<run>/<arch>/fold<k>/probs.npz``, ``test:<city>``) and its threshold
(``model.json``). The ensemble averages the members' probabilities and thresholds at the mean of their
thresholds, as ``change predict`` does with several ``--model`` (its default). Prints per-city precision /
recall / F1 for each member and the ensemble and writes them to ``--out`` (JSON). Not run by CI.

    .venv/bin/python experiments/oscd_seed_ensemble.py /work/runs/bf16_seed1 /work/runs/bf16_seed2 \
        --out experiments/oscd_cpu_loo10_bf16_seeds12/results.json
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

from oscd_deep import pooled  # noqa: E402

from minescape.change.datasets import read_oscd_city  # noqa: E402
from minescape.change.deep.train import change_scores  # noqa: E402
from minescape.sentinel2 import ALL_BANDS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="oscd_deep.py output folders (--save-probs)")
    ap.add_argument("--arch", default="fc-ef")
    ap.add_argument("--oscd", default=str(ROOT.parent / "shared" / "data" / "oscd"))
    ap.add_argument("--out", type=Path, required=True, help="results JSON to write")
    args = ap.parse_args()
    # the seed also shuffles the folds: match the members' folds by their test cities
    fold_of = [{c: k for k, test in enumerate(json.loads((r / "results.json").read_text())["folds"]) for c in test}
               for r in args.runs]
    if any(set(f) != set(fold_of[0]) for f in fold_of):
        raise SystemExit("the runs do not test the same cities")
    if any(len([c for c in f if f[c] == f[city]]) != 1 for f in fold_of for city in f):
        raise SystemExit("leave-one-city-out runs only (one test city per fold)")
    names = [r.name for r in args.runs] + [f"ensemble of {len(args.runs)}"]
    rows: dict[str, dict[str, dict]] = {n: {} for n in names}
    for city in sorted(fold_of[0]):
        dirs = [r / args.arch / f"fold{f[city]}" for r, f in zip(args.runs, fold_of, strict=True)]
        thr = [json.loads((d / "model.json").read_text())["threshold"] for d in dirs]
        lab = read_oscd_city(args.oscd, city, bands=ALL_BANDS).label.data[0]
        probs = [np.load(d / "probs.npz")[f"test:{city}"].astype(np.float32) for d in dirs]
        ens = np.mean(probs, axis=0)
        for name, p, t in zip(names, probs + [ens], thr + [float(np.mean(thr))], strict=True):
            ok = (lab != 255) & np.isfinite(p)
            rows[name][city] = dict(change_scores(p[ok] >= t, lab[ok] == 1), threshold=t)
    result = {"runs": [str(r) for r in args.runs], "arch": args.arch, "scores": {}}
    for name in names:
        result["scores"][name] = {"cities": rows[name], "pooled": pooled(list(rows[name].values()))}
    cities = sorted(rows[names[0]])
    print(f"{'city':12s} " + "  ".join(f"{n[:22]:>22s}" for n in names))
    for c in cities + ["pooled"]:
        cells = []
        for n in names:
            s = result["scores"][n]["pooled"] if c == "pooled" else rows[n][c]
            cells.append(f"{s['precision']:.3f}/{s['recall']:.3f}/{s['f1']:.3f}".rjust(22))
        print(f"{c:12s} " + "  ".join(cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

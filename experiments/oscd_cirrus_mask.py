"""Leave-one-city-out runs rescored with the cirrus-band cloud mask (``change predict --mask-clouds``).

Each fold's saved test probabilities are scored as they were (the fold's threshold) and again with the pixels of
:func:`minescape.change.cirrus_mask.cirrus_mask` set to no change (what ``--mask-clouds`` writes as nodata, scored
here as a miss wherever it hides a changed pixel). Two layouts are read:

* ``gpu:<folder>``: ``experiments/oscd_gpu/loo.py`` output (``test_probs.npz`` with ``<city>:test:0``,
  ``fold_<city>.json`` with the member's threshold);
* ``cpu:<folder>``: ``oscd_deep.py --save-probs`` output (``fc-ef/fold<k>/probs.npz`` with ``test:<city>``,
  ``model.json``; folds matched by test city).

Members given as ``name=kind:folder``; ``--ensemble name=a+b`` adds the average of members a and b (threshold:
the mean of theirs, as ``change predict`` does). Writes per-city precision / recall / F1 with and without the mask
and the pooled figures to ``--out``. Not run by CI (the probabilities are not committed: 7.5 MB a run).

    .venv/bin/python experiments/oscd_cirrus_mask.py gpu0=gpu:/work/runs/gpu_run3 gpu1=gpu:/work/runs/gpu_seed1 \
        --ensemble gpu0+gpu1=gpu0+gpu1 --out experiments/oscd_cirrus_mask/results.json
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

from minescape.change.cirrus_mask import cirrus_change, cirrus_mask  # noqa: E402
from minescape.change.datasets import read_oscd_city  # noqa: E402
from minescape.change.deep.train import change_scores  # noqa: E402
from minescape.geo.raster import Raster  # noqa: E402


def load_member(spec: str, cities: list[str]) -> dict[str, tuple[np.ndarray, float]]:
    """``{city: (test probabilities, threshold)}`` of one leave-one-city-out run."""
    kind, folder = spec.split(":", 1)
    folder = Path(folder)
    out = {}
    if kind == "gpu":
        probs = np.load(folder / "test_probs.npz")
        for c in cities:
            thr = json.loads((folder / f"fold_{c}.json").read_text())["members"][0]["threshold"]
            out[c] = (probs[f"{c}:test:0"].astype(np.float32), float(thr))
    elif kind == "cpu":
        folds = json.loads((folder / "results.json").read_text())["folds"]
        for k, test in enumerate(folds):
            (c,) = test
            d = folder / "fc-ef" / f"fold{k}"
            out[c] = (np.load(d / "probs.npz")[f"test:{c}"].astype(np.float32),
                      float(json.loads((d / "model.json").read_text())["threshold"]))
    else:
        raise SystemExit(f"unknown layout {kind!r} (gpu or cpu)")
    return out


def city_mask(oscd: Path, city: str, date1: Raster, threshold: float | None = None) -> np.ndarray:
    """The cloud mask on date 1's 10 m grid (the label's), placed from the pair grid."""
    d = oscd / "images" / city
    m = cirrus_mask(d / "imgs_1", d / "imgs_2", **({} if threshold is None else {"threshold": threshold}))
    col, row = ~date1.transform * (m.grid.transform.c, m.grid.transform.f)  # pair origin in date 1's pixels
    return m.window(-int(round(row)), -int(round(col)), *date1.shape)


def score(rows: dict, name: str, city: str, p: np.ndarray, thr: float, lab: np.ndarray, mask: np.ndarray,
          fold_mask: np.ndarray) -> None:
    ok = (lab != 255) & np.isfinite(p)
    for variant, pred in (("as run", p >= thr), ("cloud mask", (p >= thr) & ~mask),
                          ("cloud mask, threshold from the training cities", (p >= thr) & ~fold_mask)):
        s = change_scores(pred[ok], lab[ok] == 1)
        rows.setdefault(name, {}).setdefault(variant, {})[city] = {k: int(s[k]) for k in ("tp", "fp", "fn")}


def summary(cities: dict) -> dict:
    tp, fp, fn = (sum(v[k] for v in cities.values()) for k in ("tp", "fp", "fn"))
    per = {c: {"precision": round(v["tp"] / max(v["tp"] + v["fp"], 1), 3),
               "recall": round(v["tp"] / max(v["tp"] + v["fn"], 1), 3),
               "f1": round(2 * v["tp"] / max(2 * v["tp"] + v["fp"] + v["fn"], 1), 3), **v} for c, v in cities.items()}
    low = min(per, key=lambda c: per[c]["precision"])
    return {"pooled_f1": round(2 * tp / (2 * tp + fp + fn), 3), "precision": round(tp / (tp + fp), 3),
            "recall": round(tp / (tp + fn), 3), "lowest_precision": [low, per[low]["precision"]], "cities": per}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("members", nargs="+", help="name=gpu:<folder> or name=cpu:<folder>")
    ap.add_argument("--ensemble", action="append", default=[], help="name=a+b[+c]: average of named members")
    ap.add_argument("--oscd", type=Path, default=ROOT.parent / "shared" / "data" / "oscd")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--figure", type=Path, help="PNG: paris, both dates, the mask and one member's alarms")
    ap.add_argument("--figure-member", help="the member drawn (default the first)")
    args = ap.parse_args()
    cities = sorted(p.name for p in (args.oscd / "images").iterdir() if (p / "imgs_1").is_dir())
    members = {n: load_member(s, cities) for n, s in (m.split("=", 1) for m in args.members)}
    ensembles = {n: e.split("+") for n, e in (x.split("=", 1) for x in args.ensemble)}
    rows: dict = {}
    masked = {}
    # a threshold that never sees the test city: the largest 99.9th percentile of the statistic over the nine
    # training cities of its fold (clear pairs set the noise level; a cloudy one raises it)
    p999 = {}
    for city in cities:
        d = args.oscd / "images" / city
        _, dev, _ = cirrus_change(d / "imgs_1", d / "imgs_2")
        p999[city] = float(np.nanpercentile(dev, 99.9))
    fold_threshold = {c: max(v for k, v in p999.items() if k != c) for c in cities}
    for city in cities:
        pair = read_oscd_city(args.oscd, city, bands=["B02"])
        lab = pair.label.data[0]
        mask = city_mask(args.oscd, city, pair.t1)
        fold_mask = city_mask(args.oscd, city, pair.t1, threshold=fold_threshold[city])
        masked[city] = round(float(mask[lab != 255].mean()) * 100, 2)
        for name, run in members.items():
            p, thr = run[city]
            score(rows, name, city, p, thr, lab, mask, fold_mask)
        for name, parts in ensembles.items():
            p = np.mean([members[m][city][0] for m in parts], axis=0)
            thr = float(np.mean([members[m][city][1] for m in parts]))
            score(rows, name, city, p, thr, lab, mask, fold_mask)
    print("99.9th percentile per city:", {c: round(v, 4) for c, v in p999.items()})
    print("fold thresholds:", {c: round(v, 4) for c, v in fold_threshold.items()})
    result = {"masked_percent": masked, "p999_per_city": p999, "fold_threshold": fold_threshold,
              "members": args.members, "ensembles": args.ensemble,
              "runs": {n: {v: summary(c) for v, c in r.items()} for n, r in rows.items()}}
    print("masked %:", masked)
    for n, r in result["runs"].items():
        for v, s in r.items():
            print(f"{n:12s} {v[:22]:22s} pooled F1 {s['pooled_f1']:.3f} (P {s['precision']:.3f} R {s['recall']:.3f}) "
                  f"lowest precision {s['lowest_precision'][1]:.3f} ({s['lowest_precision'][0]}) "
                  + " ".join(f"{c[:4]} {v['precision']:.3f}" for c, v in s["cities"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.figure:
        name = args.figure_member or next(iter(members))
        draw(args.oscd, "paris", members[name]["paris"], name, args.figure)


def draw(oscd: Path, city: str, member: tuple[np.ndarray, float], name: str, out: Path) -> None:
    """Both dates in true colour, date 2 with the mask's outline, and the member's alarms: hits green, false
    alarms the mask removes yellow, false alarms it keeps red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    pair = read_oscd_city(oscd, city, bands=["B04", "B03", "B02"])
    lab = pair.label.data[0]
    mask = city_mask(oscd, city, pair.t1)
    p, thr = member
    alarm = (p >= thr) & (lab != 255)
    rgb = [np.clip(np.moveaxis(r.data, 0, -1) / 0.25, 0, 1) for r in (pair.t1, pair.t2)]
    edge = mask & ~ndimage.binary_erosion(mask)
    d2 = rgb[1].copy()
    d2[edge] = (0, 1, 1)
    show = np.full(lab.shape + (3,), 0.93)
    show[lab == 1] = (0.6, 0.6, 0.6)
    show[alarm & (lab == 1)] = (0.1, 0.6, 0.1)
    show[alarm & (lab == 0) & mask] = (0.95, 0.75, 0.0)
    show[alarm & (lab == 0) & ~mask] = (0.85, 0.1, 0.1)
    n = {k: int(v.sum()) for k, v in (("hits", alarm & (lab == 1)), ("masked", alarm & (lab == 0) & mask),
                                      ("kept", alarm & (lab == 0) & ~mask))}
    fig, ax = plt.subplots(1, 3, figsize=(13, 5.2), constrained_layout=True)
    for a, img, title in ((ax[0], rgb[0], f"{city}, date 1"), (ax[1], d2, "date 2, cloud mask outlined (cyan)"),
                          (ax[2], show, f"{name}: hits {n['hits']} (green), label grey;\nfalse alarms masked "
                                        f"{n['masked']} (yellow), kept {n['kept']} (red)")):
        a.imshow(img, interpolation="nearest")
        a.set_title(title, fontsize=9)
        a.set_axis_off()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print("wrote", out, out.stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()

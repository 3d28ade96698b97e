"""Where the leave-one-city-out false alarms are: paris (clouds in date 2) and saclay_e (fields that changed crop).

Reads the test probabilities a leave-one-city-out run kept (``oscd_deep.py --save-probs``: ``<loo>/<arch>/fold<k>/
probs.npz`` and each fold's ``model.json`` for its threshold) and draws, per city, both dates (true colour), the
label, the probability and the false alarms at the fold's threshold. It also prints where the false alarms fall:
pixels vegetated in either date (NDVI > 0.4) and pixels the spectral cloud test of
:mod:`minescape.imagery.cloud_mask` flags in either date. Not run by CI.

    .venv/bin/python experiments/oscd_false_alarms.py /tmp/deep10/loo --out docs/img/oscd_false_alarms.png
    .venv/bin/python experiments/oscd_false_alarms.py /work/runs/gpu_x2 --cities aguasclaras --blobs 6 \
        --out docs/img/oscd_aguasclaras_false_alarms.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minescape.change.datasets import read_oscd_city
    from minescape.imagery.cloud_mask import spectral_clear
    from minescape.sentinel2 import ALL_BANDS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("loo", type=Path, help="output folder of an oscd_deep.py run with --save-probs, or of "
                                           "experiments/oscd_gpu/loo.py (test_probs.npz, fold_<city>.json)")
    ap.add_argument("--arch", default="fc-ef")
    ap.add_argument("--cities", default="paris,saclay_e")
    ap.add_argument("--oscd", default=str(ROOT.parent / "shared" / "data" / "oscd"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "oscd_false_alarms.png")
    ap.add_argument("--blobs", type=int, default=0,
                    help="instead: the N largest false-alarm blobs of the first city, 40 x 40 px each (both dates "
                         "and the alarms over date 2)")
    args = ap.parse_args()
    if args.blobs:
        draw_blobs(args)
        return
    gpu = (args.loo / "test_probs.npz").exists()  # experiments/oscd_gpu/loo.py's layout (folds.tgz unpacked)
    if not gpu:
        results = json.loads((args.loo / "results.json").read_text())
        fold_of = {c: k for k, test in enumerate(results["folds"]) for c in test}
    cities = args.cities.split(",")
    b = list(ALL_BANDS)
    fig, axes = plt.subplots(len(cities), 4, figsize=(16, 4.2 * len(cities)), squeeze=False)
    for row, city in zip(axes, cities):
        if gpu:
            prob = np.load(args.loo / "test_probs.npz")[f"{city}:test:0"].astype(np.float32)
            thr = json.loads((args.loo / f"fold_{city}.json").read_text())["members"][0]["threshold"]
        else:
            folder = args.loo / args.arch / f"fold{fold_of[city]}"
            prob = np.load(folder / "probs.npz")[f"test:{city}"].astype(np.float32)
            thr = json.loads((folder / "model.json").read_text())["threshold"]
        pair = read_oscd_city(args.oscd, city, bands=ALL_BANDS)
        label = pair.label.data[0]
        ok = (label != 255) & np.isfinite(prob)
        pred = (prob >= thr) & ok
        fa, hit = pred & (label == 0), pred & (label == 1)

        def ndvi(x):
            return (x[b.index("B08")] - x[b.index("B04")]) / (x[b.index("B08")] + x[b.index("B04")] + 1e-6)

        veg = (ndvi(pair.t1.data) > 0.4) | (ndvi(pair.t2.data) > 0.4)
        cloud = np.zeros_like(veg)
        for x in (pair.t1.data, pair.t2.data):
            cloud |= ~spectral_clear(x[b.index("B02")], x[b.index("B11")])
        print(f"{city}: threshold {thr:.2f}, precision {hit.sum() / max(pred.sum(), 1):.3f}, false alarms "
              f"{int(fa.sum())} ({fa[veg].sum() / max(fa.sum(), 1):.0%} vegetated in either date, "
              f"{fa[cloud].sum() / max(fa.sum(), 1):.0%} flagged by the spectral cloud test)")
        for ax, x, title in ((row[0], pair.t1.data, "date 1"), (row[1], pair.t2.data, "date 2")):
            rgb = np.stack([x[b.index(q)] for q in ("B04", "B03", "B02")], -1)
            ax.imshow(np.clip(np.nan_to_num(rgb) / 0.3, 0, 1))
            ax.set_title(f"{city}, {title}")
        row[2].imshow(np.where(label == 255, np.nan, label), cmap="gray", vmin=0, vmax=1)
        row[2].set_title(f"label: {int((label == 1).sum())} changed px")
        overlay = np.zeros(label.shape + (3,))
        overlay[..., 0] = fa
        overlay[..., 1] = hit
        row[3].imshow(prob, cmap="gray", vmin=0, vmax=1)
        row[3].imshow(overlay, alpha=0.6 * (fa | hit))
        row[3].set_title(f"probability\nred: false alarms ({int(fa.sum())}), green: hits ({int(hit.sum())})")
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=45)
    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(colors=96).save(args.out, optimize=True)  # a palette PNG: 4x smaller
    print(f"wrote {args.out}")


def load_probs(loo: Path, city: str, arch: str) -> tuple[np.ndarray, float]:
    """``(test probabilities, threshold)`` of ``city`` from either run layout."""
    if (loo / "test_probs.npz").exists():
        return (np.load(loo / "test_probs.npz")[f"{city}:test:0"].astype(np.float32),
                float(json.loads((loo / f"fold_{city}.json").read_text())["members"][0]["threshold"]))
    results = json.loads((loo / "results.json").read_text())
    k = next(i for i, test in enumerate(results["folds"]) if city in test)
    folder = loo / arch / f"fold{k}"
    return (np.load(folder / "probs.npz")[f"test:{city}"].astype(np.float32),
            float(json.loads((folder / "model.json").read_text())["threshold"]))


def draw_blobs(args: argparse.Namespace) -> None:
    """The largest false-alarm blobs of one city up close: date 1, date 2, and date 2 with the false alarms (red)
    and the labelled change (green); prints each blob's red / NIR / SWIR1 change."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    from scipy import ndimage

    from minescape.change.datasets import read_oscd_city
    from minescape.sentinel2 import ALL_BANDS

    city = args.cities.split(",")[0]
    b = list(ALL_BANDS)
    prob, thr = load_probs(args.loo, city, args.arch)
    pair = read_oscd_city(args.oscd, city, bands=ALL_BANDS)
    label = pair.label.data[0]
    fa = (prob >= thr) & (label == 0)
    blobs, n = ndimage.label(fa)
    sizes = ndimage.sum(fa, blobs, np.arange(1, n + 1))
    order = np.argsort(-sizes, kind="stable")[:args.blobs]
    boxes = ndimage.find_objects(blobs)

    def rgb(x):
        return np.clip(np.nan_to_num(np.stack([x[b.index(q)] for q in ("B04", "B03", "B02")], -1)) / 0.3, 0, 1)

    r1, r2 = rgb(pair.t1.data), rgb(pair.t2.data)
    fig, axes = plt.subplots(3, len(order), figsize=(3 * len(order), 9.4), squeeze=False)
    for j, i in enumerate(order):
        box = boxes[i]
        cy, cx = (box[0].start + box[0].stop) // 2, (box[1].start + box[1].stop) // 2
        y0 = min(max(cy - 20, 0), label.shape[0] - 40)
        x0 = min(max(cx - 20, 0), label.shape[1] - 40)
        win = np.s_[y0:y0 + 40, x0:x0 + 40]
        overlay = np.zeros((40, 40, 3))
        overlay[..., 0], overlay[..., 1] = fa[win], label[win] == 1
        axes[0, j].imshow(r1[win])
        axes[1, j].imshow(r2[win])
        axes[2, j].imshow(r2[win])
        axes[2, j].imshow(overlay, alpha=0.55 * (fa[win] | (label[win] == 1)))
        axes[0, j].set_title(f"{int(sizes[i])} false alarms\nrow {cy}, col {cx}")
        px = blobs == i + 1
        d = {q: (float(np.nanmean(pair.t1.data[b.index(q)][px])), float(np.nanmean(pair.t2.data[b.index(q)][px])))
             for q in ("B04", "B08", "B11")}
        print(f"blob at row {cy}, col {cx}: {int(sizes[i])} px, labelled change in its 40 px window: "
              f"{int((label[win] == 1).sum())} px; " + ", ".join(f"{q} {a:.3f} -> {c:.3f}" for q, (a, c) in d.items()))
    for ax, name in zip(axes[:, 0], ("date 1", "date 2", "date 2, false alarms red, label green")):
        ax.text(-3, 20, name, rotation=90, va="center", ha="right", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"{city}: the {len(order)} largest false-alarm blobs at threshold {thr:.2f} (40 x 40 px = 400 m)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=60)
    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(colors=128).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Where the leave-one-city-out false alarms are: paris (clouds in date 2) and saclay_e (fields that changed crop).

Reads the test probabilities a leave-one-city-out run kept (``oscd_deep.py --save-probs``: ``<loo>/<arch>/fold<k>/
probs.npz`` and each fold's ``model.json`` for its threshold) and draws, per city, both dates (true colour), the
label, the probability and the false alarms at the fold's threshold. It also prints where the false alarms fall:
pixels vegetated in either date (NDVI > 0.4) and pixels the spectral cloud test of
:mod:`minescape.imagery.cloud_mask` flags in either date. Not run by CI.

    .venv/bin/python experiments/oscd_false_alarms.py /tmp/deep10/loo --out docs/img/oscd_false_alarms.png
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
    ap.add_argument("loo", type=Path, help="output folder of an oscd_deep.py run with --save-probs")
    ap.add_argument("--arch", default="fc-ef")
    ap.add_argument("--cities", default="paris,saclay_e")
    ap.add_argument("--oscd", default=str(ROOT.parent / "shared" / "data" / "oscd"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "oscd_false_alarms.png")
    args = ap.parse_args()
    results = json.loads((args.loo / "results.json").read_text())
    fold_of = {c: k for k, test in enumerate(results["folds"]) for c in test}
    cities = args.cities.split(",")
    b = list(ALL_BANDS)
    fig, axes = plt.subplots(len(cities), 4, figsize=(16, 4.2 * len(cities)), squeeze=False)
    for row, city in zip(axes, cities):
        k = fold_of[city]
        folder = args.loo / args.arch / f"fold{k}"
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


if __name__ == "__main__":
    main()

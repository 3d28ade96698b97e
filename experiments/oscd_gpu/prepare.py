"""Prepare the 10 OSCD cities as arrays for a machine without the geo stack (the GPU proof run).

Each city: both dates on date 1's 10 m grid, date 2 co-registered onto date 1 (``minescape.change.coregister``,
as ``--coregister`` does), with the change label (0/1, 255 = ignore). To fit the device's transfer (64 MiB with
the repository), each band travels at its native resolution: the 10 m bands as they are, the 20 m bands as 2 x 2
and the 60 m bands as 6 x 6 means of the 10 m-resampled bands (``loo.py`` resamples them back bilinearly; the
older ``run.py`` reads only the 10 m and 20 m bands), as uint16 reflectance x 10000 (0 = nodata), delta-coded
along rows and LZMA-compressed (``pack``/``unpack``): 60.3 MB for the 10 cities. The index method's pooled F1 on
the same leave-one-city-out folds (it needs no training, so each city is simply scored: default SAVI/Otsu and the
best option CVA 10 m / 95th percentile) is computed here on the CPU and written beside it (``prepared.json``).

    PYTHONPATH=$PWD .venv/bin/python experiments/oscd_gpu/prepare.py --out .gpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
BANDS_60M = ("B01", "B09", "B10")


def pack(a: np.ndarray) -> np.ndarray:
    """An integer array as uint8 bytes: a header (dtype, shape) and the LZMA of its row-wise deltas."""
    import lzma

    d = np.diff(a.astype(np.int32), axis=-1, prepend=0).astype(np.int32)
    head = json.dumps({"dtype": str(a.dtype), "shape": list(a.shape)}).encode().ljust(256)
    return np.frombuffer(head + lzma.compress(d.astype(np.int16 if a.dtype == np.uint16 else np.int16).tobytes()),
                         np.uint8)


def unpack(b: np.ndarray) -> np.ndarray:
    """The inverse of :func:`pack`."""
    import lzma

    raw = b.tobytes()
    head = json.loads(raw[:256].decode())
    d = np.frombuffer(lzma.decompress(raw[256:]), np.int16).reshape(head["shape"]).astype(np.int32)
    return (np.cumsum(d, axis=-1) & 0xFFFF if head["dtype"] == "uint16" else np.cumsum(d, axis=-1)).astype(
        head["dtype"])


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """``(C, H, W)`` uint16 -> ``f`` x ``f`` block means ``(C, ceil(H/f), ceil(W/f))`` (edge rows/cols repeated;
    0 = nodata wherever one of the block's pixels is 0)."""
    c, h, w = a.shape
    p = np.pad(a, ((0, 0), (0, -h % f), (0, -w % f)), mode="edge").astype(np.float64)
    blocks = p.reshape(c, p.shape[1] // f, f, p.shape[2] // f, f)
    m = blocks.mean(axis=(2, 4))
    m[(blocks == 0).any(axis=(2, 4))] = 0
    return np.round(m).astype(np.uint16)


def main() -> None:
    from minescape.change.coregister import coregister_pair
    from minescape.change.datasets import oscd_cities, read_oscd_city
    from minescape.sentinel2 import ALL_BANDS

    ap = argparse.ArgumentParser()
    ap.add_argument("--oscd", default=str(ROOT.parent / "shared" / "data" / "oscd"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays, shifts, index = {}, {}, {}
    sums = {"default": [0, 0, 0], "best": [0, 0, 0]}
    for city in oscd_cities(args.oscd):
        pair = read_oscd_city(args.oscd, city, bands=ALL_BANDS)
        pair, shift = coregister_pair(pair)
        shifts[city] = [round(shift[0], 2), round(shift[1], 2)]
        t1, t2 = pair.t1.data, pair.t2.data
        valid = np.isfinite(t1).all(0) & np.isfinite(t2).all(0)
        label = pair.label.data[0].astype(np.uint8).copy()
        label[~valid] = 255
        for name, a in (("t1", t1), ("t2", t2)):
            q = np.where(np.isfinite(a), np.clip(np.round(a * 10000), 1, 65535), 0).astype(np.uint16)
            arrays[f"{city}__{name}10"] = pack(q[[ALL_BANDS.index(b) for b in BANDS_10M]])
            arrays[f"{city}__{name}20"] = pack(block_mean(q[[ALL_BANDS.index(b) for b in BANDS_20M]], 2))
            arrays[f"{city}__{name}60"] = pack(block_mean(q[[ALL_BANDS.index(b) for b in BANDS_60M]], 6))
        arrays[f"{city}__label"] = pack(label)
        # the index method (default `change detect`: SAVI difference, Otsu) on the same co-registered pixels
        index[city] = score = index_method(pair, label)
        for k in ("default", "best"):
            sums[k] = [a + b for a, b in zip(sums[k], (score[k]["tp"], score[k]["fp"], score[k]["fn"]))]
        print(city, t1.shape, "shift", shifts[city], "index F1 default", round(score["default"]["f1"], 3),
              "best", round(score["best"]["f1"], 3), flush=True)
    np.savez(out / "oscd10.npz", **arrays)
    pooled = {k: 2 * tp / max(2 * tp + fp + fn, 1) for k, (tp, fp, fn) in sums.items()}
    (out / "prepared.json").write_text(json.dumps({"bands": list(BANDS_10M + BANDS_20M + BANDS_60M), "scale": 10000,
                                                   "coregistration_shift_px": shifts,
                                                   "index_method": {"pooled_f1": pooled, "cities": index}},
                                                  indent=2))
    print("index method pooled F1", {k: round(v, 3) for k, v in pooled.items()})


def index_method(pair, label: np.ndarray) -> dict:
    """The index method on one co-registered pair, scored on pixels labelled 0/1: the default
    (`change detect`: SAVI difference, Otsu) and the best measured option (CVA over the 10 m bands, 95th
    percentile, as in ``tests/change/test_oscd_baseline.py``)."""
    from minescape.change.deep.train import change_scores
    from minescape.change.difference import DetectOptions, detect

    out = {}
    ten_m = ("B02", "B03", "B04", "B08")
    t1, t2 = pair.t1.select(ten_m), pair.t2.select(ten_m)
    for name, opts in (("default", DetectOptions()),
                       ("best", DetectOptions(method="CVA", threshold="percentile", value=95.0))):
        mask = detect(t1, t2, options=opts).mask.data[0]
        ok = (label != 255) & (mask != 255)
        out[name] = change_scores(mask[ok] == 1, label[ok] == 1)
    return out


if __name__ == "__main__":
    main()

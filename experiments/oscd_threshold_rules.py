"""Which decision threshold would lift every city's precision to 0.15? Leave-one-city-out runs rescored.

The per-city goal of issue 16 (precision >= 0.15 in every unseen city) fails in single runs at aguasclaras (0.10-0.14)
or saclay_e. Each fold's threshold is chosen on validation rows of its nine training cities (pooled F1). This script
asks whether another threshold rule, still blind to the test city, would meet the goal without losing the pooled F1:

* ``fold``: the threshold each fold chose (as run);
* ``fixed T``: one threshold for every fold (T chosen here looking at the test cities: context only, not a result);
* ``val-F1.0`` / ``val-F0.5`` / ``val-F0.7``: per fold, the threshold maximising the pooled F-beta of its
  validation rows with the cloud mask applied (val-F1.0 is the as-run rule but for the mask; beta < 1 weighs
  precision more, as ``change train --threshold-beta`` does; CPU runs, and GPU runs from session 17 on, whose
  ``loo.py`` brings back ``val_probs.npz``);
* ``val-floor F``: per fold, the highest-F1 threshold at which every validation city with change reaches precision F
  (its validation rows only; the rows are small, so this rule is noisy);
* ``oof-pooled`` / ``oof-floor F``: per fold, a threshold chosen on the other nine cities' *test* probabilities (each
  from the model of its own fold, which saw the test city in training: a weaker separation than nested
  cross-validation, which would cost 90 trainings).

Every rule is scored with the cloud mask (``--mask-clouds``), as :mod:`experiments.oscd_cirrus_mask` does. Members
are read as there (``name=cpu:<folder>`` / ``name=gpu:<folder>``); the probabilities are not committed (7.5 MB a run).
Writes ``results.json`` and ``precision_by_threshold.png`` (per city, precision against the threshold, one line a
run, each fold's own threshold marked) to ``--out``.

    .venv/bin/python experiments/oscd_threshold_rules.py cpu1=cpu:/work/runs/bf16_seed1 gpu1=gpu:/work/runs/gpu_seed1 \
        --out experiments/oscd_threshold_rules
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

from oscd_cirrus_mask import city_mask, load_member  # noqa: E402

from minescape.change.datasets import read_oscd_city  # noqa: E402

GRID = np.round(np.arange(0.30, 0.981, 0.02), 2)
GOAL = 0.15


def counts(p: np.ndarray, truth: np.ndarray, ok: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """``[len(grid), 3]`` true positives, false positives, false negatives of ``p >= t`` on pixels ``ok``."""
    p, t = p[ok], truth[ok] == 1
    return np.array([[int(((a := p >= th) & t).sum()), int((a & ~t).sum()), int((t & ~a).sum())] for th in grid],
                    dtype=float)


def f1(c: np.ndarray) -> np.ndarray:
    return 2 * c[..., 0] / np.maximum(2 * c[..., 0] + c[..., 1] + c[..., 2], 1)


def fbeta(c: np.ndarray, beta: float) -> np.ndarray:
    """F-beta of change (beta < 1 weighs precision more)."""
    b2 = beta * beta
    return (1 + b2) * c[..., 0] / np.maximum((1 + b2) * c[..., 0] + b2 * c[..., 2] + c[..., 1], 1)


def precision(c: np.ndarray) -> np.ndarray:
    return c[..., 0] / np.maximum(c[..., 0] + c[..., 1], 1)


def floor_choice(cities: np.ndarray, floor: float) -> int:
    """Grid index: the highest pooled F1 among thresholds at which every city reaches ``floor`` precision, else the
    threshold with the best worst-city precision."""
    ok = (precision(cities) >= floor).all(0)
    if ok.any():
        return int(np.argmax(np.where(ok, f1(cities.sum(0)), -1.0)))
    return int(np.argmax(precision(cities).min(0)))


def val_counts(folder: Path, test_city: str, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Validation-row counts of a CPU run's fold (``probs.npz`` keys ``val:<city>:val``), cloud mask applied."""
    folds = json.loads((folder / "results.json").read_text())["folds"]
    k = [f[0] for f in folds].index(test_city)
    z = np.load(folder / "fc-ef" / f"fold{k}" / "probs.npz")
    out = {}
    for key in z.files:
        if not key.startswith("val:"):
            continue
        city = key.split(":")[1]
        lab = z[f"vallab:{city}:val"]
        lab = lab.reshape(lab.shape[-2:])
        p = z[key].astype(np.float32).reshape(lab.shape)
        mask = masks[city][-lab.shape[0]:, :]  # the validation rows are the bottom of the city
        if (lab == 1).sum():
            out[city] = counts(p, lab, (lab != 255) & ~mask)
    return out or None


def gpu_val_counts(folder: Path, test_city: str, labels: dict[str, np.ndarray],
                   masks: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Validation-strip counts of a GPU run's fold (``val_probs.npz`` from ``loo.py``, uint8 keys
    ``<test>:val:0:<city>``, member 0), cloud mask applied; None when the run kept no validation probabilities
    (runs before session 17). The strips are the bottom rows of each training city, as on the CPU."""
    path = folder / "val_probs.npz"
    if not path.exists():
        return None
    z = np.load(path)
    out = {}
    prefix = f"{test_city}:val:0:"
    for key in z.files:
        if not key.startswith(prefix):
            continue
        city = key[len(prefix):].split(":")[0]  # the strip is named "<city>:val"
        p = z[key].astype(np.float32) / 255.0
        lab = labels[city][-p.shape[0]:, :]
        if lab.shape != p.shape:
            raise SystemExit(f"{path}: {key} is {p.shape}, the bottom of {city}'s label {lab.shape}")
        if (lab == 1).sum():
            out[city] = counts(p, lab, (lab != 255) & ~masks[city][-p.shape[0]:, :])
    return out or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("members", nargs="+", help="name=gpu:<folder> or name=cpu:<folder>")
    ap.add_argument("--oscd", type=Path, default=ROOT.parent / "shared" / "data" / "oscd")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cities = sorted(p.name for p in (args.oscd / "images").iterdir() if (p / "imgs_1").is_dir())
    labels, masks = {}, {}
    for c in cities:
        pair = read_oscd_city(args.oscd, c, bands=["B02"])
        labels[c] = pair.label.data[0]
        masks[c] = city_mask(args.oscd, c, pair.t1)
    results: dict = {"grid": GRID.tolist(), "runs": {}}
    curves: dict[str, dict[str, np.ndarray]] = {}
    chosen: dict[str, dict[str, float]] = {}
    for spec in args.members:
        name, where = spec.split("=", 1)
        run = load_member(where, cities)
        C = {c: counts(run[c][0].reshape(labels[c].shape), labels[c], (labels[c] != 255) & ~masks[c])
             for c in cities}
        curves[name] = {c: precision(C[c]) for c in cities}
        chosen[name] = {c: run[c][1] for c in cities}
        rules: dict[str, dict[str, np.ndarray]] = {}
        as_run = {}
        for c in cities:
            lab, p, thr = labels[c], run[c][0].reshape(labels[c].shape), run[c][1]
            as_run[c] = counts(p, lab, (lab != 255) & ~masks[c], grid=np.array([thr]))[0]
        rules["fold"] = as_run
        for t in (0.7, 0.8, 0.85, 0.9):
            i = int(np.argmin(np.abs(GRID - t)))
            rules[f"fixed {t:.2f} (context only)"] = {c: C[c][i] for c in cities}
        for fl in (0.2, 0.3):
            rules[f"oof-floor {fl}"] = {k: C[k][floor_choice(np.stack([C[c] for c in cities if c != k]), fl)]
                                        for k in cities}
        rules["oof-pooled"] = {k: C[k][int(np.argmax(f1(sum(C[c] for c in cities if c != k))))] for k in cities}
        folder = Path(where.split(":", 1)[1])
        vals = ({k: val_counts(folder, k, masks) for k in cities} if where.startswith("cpu:")
                else {k: gpu_val_counts(folder, k, labels, masks) for k in cities})
        if all(v is not None for v in vals.values()):
            for fl in (0.2, 0.3):
                rules[f"val-floor {fl}"] = {k: C[k][floor_choice(np.stack(list(vals[k].values())), fl)]
                                            for k in cities}
            for beta in (1.0, 0.5, 0.7):
                rules[f"val-F{beta}"] = {k: C[k][int(np.argmax(fbeta(sum(vals[k].values()), beta)))]
                                         for k in cities}
        out = {}
        for rule, per_city in rules.items():
            tot = sum(per_city.values())
            prec = {c: round(float(precision(v)), 3) for c, v in per_city.items()}
            low = min(prec, key=prec.get)
            out[rule] = {"pooled_f1": round(float(f1(tot)), 3), "lowest_precision": [low, prec[low]],
                         "cities_below_goal": sorted(c for c, v in prec.items() if v < GOAL), "precision": prec}
            print(f"{name:8s} {rule:28s} pooled F1 {f1(tot):.3f}  lowest {low} {prec[low]:.3f}  below "
                  f"{GOAL}: {out[rule]['cities_below_goal']}")
        results["runs"][name] = {"source": where, "rules": out}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    draw(curves, chosen, cities, args.out / "precision_by_threshold.png")


def draw(curves: dict, chosen: dict, cities: list[str], path: Path) -> None:
    """Per city: precision (cloud mask applied) against the threshold, one line a run, its fold's threshold
    marked; the goal as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 5, figsize=(15, 6), sharex=True, sharey=True, constrained_layout=True)
    colours = plt.cm.tab10(np.arange(len(curves)))
    for ax, city in zip(axes.ravel(), cities):
        for (name, per_city), col in zip(curves.items(), colours):
            y = per_city[city]
            ax.plot(GRID, y, color=col, lw=1.2, label=name)
            t = chosen[name][city]
            ax.plot([t], [np.interp(t, GRID, y)], "o", color=col, ms=4)
        ax.axhline(GOAL, color="k", ls="--", lw=0.8)
        ax.set_title(city)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("threshold")
    for ax in axes[:, 0]:
        ax.set_ylabel("precision (cloud mask)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle("OSCD leave one city out: precision of each unseen city against the decision threshold "
                 "(dot: the fold's own threshold; dashed: goal 0.15)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

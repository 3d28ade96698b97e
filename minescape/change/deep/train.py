"""Training change networks (CPU or CUDA) from scenes (ChangePair) or patch datasets.

A training sample is a pair of co-registered reflectance stacks and a CHANGE-legend label (0, 1, 255 ignore).
Each step draws ``batch_size`` random ``crop`` x ``crop`` windows (half of them centred near a changed pixel,
which counters the rarity of change), applies the same random flips / 90-degree rotations (and, optionally,
a swap of the two dates) to both dates and the mask, and minimises a class-balanced loss
(weighted binary cross-entropy, Dice, focal, or ``wce+dice``). Per-band mean and standard deviation come from
the training pixels of both dates and are stored with the model. After each epoch the network predicts the
validation scenes (tiled, like :mod:`minescape.change.deep.infer`); the threshold maximising the pooled F1 of the
change class on validation pixels is recorded; training stops early when that F1 stops improving.

Randomness is drawn from generators seeded by ``(seed, epoch)``, so a run resumed from its checkpoint after
epoch ``k`` continues exactly like an uninterrupted run (``max_minutes`` aside, which cuts on wall time). Batches
are built on the training device (:mod:`minescape.change.deep.batches`). ``model.pt`` and ``model.json`` hold
no timings, so the same data, seed and device give the same bytes; timings go to ``train_log.json``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from minescape.compute import Compute, resolve_compute
from minescape.errors import ConfigError, InputError, check_choice

LOSSES: tuple[str, ...] = ("wce", "dice", "focal", "wce+dice")
CHECKPOINT_FORMAT = "minescape-change-checkpoint/2"


@dataclass(frozen=True)
class Sample:
    """One training/validation scene or patch: ``t1``/``t2`` ``(C,H,W)`` float32 reflectance (NaN nodata),
    ``label`` ``(H,W)`` uint8 in the CHANGE legend (255 = ignore)."""

    name: str
    t1: np.ndarray
    t2: np.ndarray
    label: np.ndarray

    def __post_init__(self) -> None:
        if self.t1.shape != self.t2.shape or self.t1.ndim != 3 or self.label.shape != self.t1.shape[1:]:
            raise InputError(f"sample {self.name!r}: shapes differ (t1 {self.t1.shape}, t2 {self.t2.shape}, "
                             f"label {self.label.shape})")


@dataclass(frozen=True)
class TrainConfig:
    """Training options (sizes in pixels, time in minutes)."""

    arch: str = "siam-att"
    model_kwargs: dict = field(default_factory=dict)
    crop: int = 64
    batch_size: int = 8
    epochs: int = 30
    steps_per_epoch: int = 50
    lr: float = 1e-3
    lr_epochs: int = 50  # cosine decay of the learning rate over this many epochs (then 5 % of lr)
    lr_schedule: str = "epochs"  # "epochs" (over lr_epochs) or "time" (over max_minutes of training time)
    weight_decay: float = 1e-4
    loss: str = "wce+dice"
    pos_weight: float | None = None  # None: sqrt of the training no-change/change ratio, clipped to [1, 30]
    focus_change: float = 0.5  # fraction of crops centred near a changed pixel
    swap_dates: bool = True
    patience: int = 8
    keep_from_epoch: int = 1  # the first epoch whose weights may be kept as the best (a floor against an early
    # validation peak of a barely trained network; 1 = any epoch)
    seed: int = 0
    max_minutes: float | None = None
    val_tile: int = 256
    threads: int | None = None
    device: str = "auto"  # auto (CUDA when torch sees one), cpu or cuda
    precision: str = "auto"  # fp32, bf16 or auto (bf16 on CUDA and on CPUs with native bf16)
    norm: str = "global"  # "global" (training-set mean/std) or "per-image" (each date by its own statistics)
    ema: float = 0.0  # > 0: validate and keep an exponential moving average of the weights (decay per step)
    tta: bool = False  # final threshold on flip-averaged validation probabilities (stored; predict does the same)
    jitter: float = 0.0  # > 0: per-date, per-band random gain and offset (in std units) on normalised crops
    clouds: float = 0.0  # > 0: this share of crops gets a synthetic cloud and shadow in one date (no change)
    coregister: bool = False  # the samples' date 2 was co-registered (recorded; predict then does the same)
    threshold_beta: float = 1.0  # the final threshold maximises the validation F-beta of change: 1 = F1; < 1
    # weighs precision more (0.5: precision counts twice as much as recall); epochs are still compared by F1
    average_from: float = 0.0  # > 0: the model kept is the uniform average of the epoch-end weights (the EMA's if
    # ema) of every epoch after this fraction of training (of max_minutes if set, else of epochs), instead of the
    # best validation epoch; 0 = keep the best epoch

    def __post_init__(self) -> None:
        from minescape.change.deep.clouds import check_clouds
        from minescape.change.deep.model import ARCHITECTURES
        from minescape.change.deep.norm import NORMS
        from minescape.compute import DEVICES, PRECISIONS

        check_choice(self.arch, ARCHITECTURES, what="architecture")
        check_choice(self.loss, LOSSES, what="loss")
        if self.crop < 16 or self.crop % 16:
            raise ConfigError(f"crop must be a multiple of 16 pixels and >= 16 (got {self.crop})")
        for name in ("batch_size", "epochs", "steps_per_epoch", "patience", "keep_from_epoch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.keep_from_epoch > self.epochs:
            raise ConfigError(f"keep_from_epoch ({self.keep_from_epoch}) is after the last epoch ({self.epochs})")
        if not 0.0 <= self.focus_change <= 1.0:
            raise ConfigError(f"focus_change must be in [0, 1] (got {self.focus_change})")
        check_choice(self.device, DEVICES, what="device")
        check_choice(self.precision, PRECISIONS, what="precision")
        check_choice(self.norm, NORMS, what="normalisation")
        check_choice(self.lr_schedule, ("epochs", "time"), what="learning-rate schedule")
        if self.lr_schedule == "time" and not self.max_minutes:
            raise ConfigError("lr_schedule 'time' needs max_minutes")
        if not 0.0 <= self.jitter < 1.0:
            raise ConfigError(f"jitter must be in [0, 1) (got {self.jitter})")
        check_clouds(self.clouds, self.norm)
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1) (got {self.ema})")
        if not 0.1 <= self.threshold_beta <= 10.0:
            raise ConfigError(f"threshold_beta must be in [0.1, 10] (got {self.threshold_beta})")
        if not 0.0 <= self.average_from < 1.0:
            raise ConfigError(f"average_from must be in [0, 1) (got {self.average_from})")


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` wrote and measured."""

    model_path: Path
    card_path: Path
    checkpoint_path: Path
    threshold: float
    val_f1: float
    epochs_run: int
    best_epoch: int
    history: list[dict]
    seconds: float
    log_path: Path | None = None
    compute: str = ""


# ------------------------------------------------------------------------------------------ samples
def samples_from_pairs(pairs, *, bands: Sequence[str] | None = None) -> list[Sample]:
    """Samples from :class:`~minescape.change.datasets.ChangePair` objects (labels required)."""
    out = []
    for p in pairs:
        if p.label is None:
            raise InputError(f"pair {p.name!r} has no change label; training needs one")
        t1, t2 = (p.t1, p.t2) if bands is None else (p.t1.select(bands), p.t2.select(bands))
        out.append(Sample(p.name, t1.data.astype(np.float32), t2.data.astype(np.float32),
                          _ignore_invalid(p.label.data[0], t1.data, t2.data)))
    return out


def _ignore_invalid(label: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    lab = label.astype(np.uint8).copy()
    lab[~(np.isfinite(t1).all(0) & np.isfinite(t2).all(0))] = 255
    return lab


def samples_from_patches(root: str | Path, *, split: str | None = None,
                         bands: Sequence[str] | None = None) -> list[Sample]:
    """Samples from a patch dataset (``T1/``, ``T2/``, ``Change/`` or ``Mudança/``), optionally one split.

    Band selection uses the patch files' band descriptions: a requested band they lack is an InputError naming
    the file and the missing bands. Only files without descriptions fall back to their band order, and must then
    have exactly the requested number of bands.
    """
    from minescape.change.datasets import load_patch_dataset, read_patch

    records = [r for r in load_patch_dataset(root) if split is None or r.split == split]
    out = []
    for rec in records:
        t1, t2, mask = read_patch(rec)
        if mask is None:
            raise InputError("patch has no change mask; training needs one", path=rec.t1)
        a1, a2 = t1.data, t2.data
        if bands is not None:
            a1, a2 = _patch_bands(t1, rec.t1, bands), _patch_bands(t2, rec.t2, bands)
        out.append(Sample(rec.name, a1.astype(np.float32), a2.astype(np.float32),
                          _ignore_invalid(mask.data[0], a1, a2)))
    if not out:
        raise InputError(f"no patches in split {split!r}", path=root)
    return out


def _patch_bands(image, path: Path, bands: Sequence[str]) -> np.ndarray:
    """``bands`` of one patch image (a Raster): by its band descriptions, or, for a file without any, its bands
    in file order when their number is the requested one. InputError naming ``path`` otherwise."""
    names = [b for b in (image.band_names or ()) if b]
    if names:
        missing = [b for b in bands if b not in names]
        if missing:
            raise InputError(f"patch lacks bands {missing} (it has {names}); training asks for {list(bands)}",
                             path=path)
        return image.select(bands).data
    if image.count != len(bands):
        raise InputError(f"patch has {image.count} unnamed bands; training asks for {len(bands)} {list(bands)}",
                         path=path)
    return image.data


def patch_band_names(root: str | Path) -> tuple[str, ...]:
    """Band names of a patch dataset (from the first patch's band descriptions, else ``band1..bandN``)."""
    from minescape.change.datasets import load_patch_dataset, read_patch

    t1, _, _ = read_patch(load_patch_dataset(root)[0])
    return tuple(t1.band_names) if t1.band_names else tuple(f"band{i + 1}" for i in range(t1.count))


def samples_from_oscd(root: str | Path, cities: Sequence[str], *, bands: Sequence[str]) -> list[Sample]:
    """Samples from OSCD cities (both dates on date 1's 10 m grid, reflectance)."""
    from minescape.change.datasets import read_oscd_city

    return samples_from_pairs([read_oscd_city(root, c, bands=bands) for c in cities])


def samples_from_scenes(t1: str | Path, t2: str | Path, truth: str | Path, *,
                        bands: Sequence[str] | None = None) -> tuple[list[Sample], tuple[str, ...]]:
    """One sample from two Sentinel-2 scenes (date 2 warped onto date 1's 10 m grid) and a change raster read
    onto date 1's grid (nearest; any CRS, or none if it has date 1's size, as OSCD's labels; any binary
    encoding, decoded to the CHANGE legend; outside it: ignored), as ``change patches`` reads its mask.
    Returns ``(samples, bands)``."""
    from minescape.change.labels import decode_binary, scan_mask_file
    from minescape.change.pairs import read_on_grid
    from minescape.imagery.local_scenes import open_one_scene
    from minescape.legend import CHANGE
    from minescape.sentinel2 import read_stack

    s1, s2 = open_one_scene(t1), open_one_scene(t2)
    bands = tuple(bands) if bands else tuple(b for b in s1.bands if b in s2.band_files)
    r1 = read_stack(s1, bands=bands)
    r2 = read_stack(s2, bands=bands, grid=r1.grid)
    encoding, fill = scan_mask_file(truth)  # its encoding, and a value that marks pixels outside it
    lab = read_on_grid(truth, r1.grid, fill=fill)  # a truth on another grid lands where it belongs
    codes = decode_binary(lab.data[0], encoding=encoding, nodata=fill, source=str(truth))
    if (codes == CHANGE.nodata).all():
        raise InputError(f"change raster does not cover date 1 ({Path(t1).name}): no labelled pixel on its grid",
                         path=truth)
    return [Sample(Path(t1).stem, r1.data, r2.data, _ignore_invalid(codes, r1.data, r2.data))], bands


def coregister_samples(samples: Sequence[Sample], bands: Sequence[str]) -> tuple[list[Sample], dict]:
    """Each sample's date 2 moved onto date 1 by its own sub-pixel shift (phase correlation, bilinear).

    Pixels that the shift brings in from outside a scene become NaN and their label 255 (ignored).
    Returns ``(samples, {name: (dy, dx) px})``; InputError naming the sample if a shift exceeds
    :data:`minescape.change.coregister.MAX_SHIFT`.
    """
    from minescape.change.coregister import coregister_arrays

    out, shifts = [], {}
    for s in samples:
        t2, shifts[s.name] = coregister_arrays(s.t1, s.t2, bands, f"sample {s.name!r}")
        out.append(s if t2 is s.t2 else Sample(s.name, s.t1, t2, _ignore_invalid(s.label, s.t1, t2)))
    return out, shifts


HOLDOUT_SIDES: tuple[str, ...] = ("auto", "bottom", "top", "left", "right")


def _strip(s: Sample, side: str, fraction: float) -> tuple[Sample, Sample]:
    h, w = s.label.shape
    if side in ("bottom", "top"):
        cut = int(round(h * (1 - fraction))) if side == "bottom" else int(round(h * fraction))
        a, b = (slice(None, cut), slice(cut, None)) if side == "bottom" else (slice(cut, None), slice(None, cut))
        return (Sample(s.name, s.t1[:, a], s.t2[:, a], s.label[a]),
                Sample(s.name + ":val", s.t1[:, b], s.t2[:, b], s.label[b]))
    cut = int(round(w * (1 - fraction))) if side == "right" else int(round(w * fraction))
    a, b = (slice(None, cut), slice(cut, None)) if side == "right" else (slice(cut, None), slice(None, cut))
    return (Sample(s.name, s.t1[:, :, a], s.t2[:, :, a], s.label[:, a]),
            Sample(s.name + ":val", s.t1[:, :, b], s.t2[:, :, b], s.label[:, b]))


#: The narrowest side (pixels) either part of a hold-out split may have: the networks' smallest input.
MIN_HOLDOUT_PX = 16


def holdout_split(samples: Sequence[Sample], *, fraction: float = 0.2,
                  side: str = "auto") -> tuple[list[Sample], list[Sample]]:
    """Spatial hold-out: a border strip of ``fraction`` of each scene for validation, the rest for training.

    ``side`` is ``bottom``, ``top``, ``left``, ``right`` or ``auto``: per scene, the side whose strip's share of
    changed pixels is closest to the scene's (so validation is not left without change; ties: that order).
    The two parts touch along one line only, which keeps validation honest enough for the threshold choice and
    early stopping without losing whole scenes from training.
    """
    check_choice(side, HOLDOUT_SIDES, what="hold-out side")
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1) (got {fraction})")
    tr, va = [], []
    for s in samples:
        if side == "auto":
            def share(lab: np.ndarray) -> float:
                ok = lab != 255
                return float((lab[ok] == 1).mean()) if ok.any() else 0.0

            whole = share(s.label)
            best = min(HOLDOUT_SIDES[1:], key=lambda sd: abs(share(_strip(s, sd, fraction)[1].label) - whole))
            a, b = _strip(s, best, fraction)
        else:
            a, b = _strip(s, side, fraction)
        for part, what in ((a, "training"), (b, "validation")):
            if min(part.label.shape) < MIN_HOLDOUT_PX:
                raise ConfigError(f"--val-fraction {fraction:g} leaves {s.name}'s {what} part "
                                  f"{part.label.shape[0]} x {part.label.shape[1]} px (at least {MIN_HOLDOUT_PX} a "
                                  f"side is needed; the scene is {s.label.shape[0]} x {s.label.shape[1]})")
        tr.append(a)
        va.append(b)
    return tr, va


def band_statistics(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over valid pixels of both dates (float64 sums)."""
    c = samples[0].t1.shape[0]
    s = np.zeros(c)
    ss = np.zeros(c)
    n = np.zeros(c)
    for smp in samples:
        if smp.t1.shape[0] != c:
            raise InputError(f"sample {smp.name!r} has {smp.t1.shape[0]} bands, expected {c}")
        for a in (smp.t1, smp.t2):
            flat = a.reshape(c, -1).astype(np.float64)
            ok = np.isfinite(flat)
            s += np.where(ok, flat, 0).sum(1)
            ss += np.where(ok, flat * flat, 0).sum(1)
            n += ok.sum(1)
    if (n == 0).any():
        raise InputError("training data has a band with no valid pixels")
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean * mean, 1e-12))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


# ------------------------------------------------------------------------------------------ batches
def prepare_scenes(samples: Sequence[Sample], mean, std, norm: str = "global", *, pad: int, device: str = "cpu"):
    """Normalised training scenes held on ``device`` once (:mod:`minescape.change.deep.batches`)."""
    from minescape.change.deep.batches import to_device
    from minescape.change.deep.norm import normalise_pair

    scenes = []
    for s in samples:
        n1, n2 = normalise_pair(s.t1, s.t2, mean=mean, std=std, norm=norm)
        scenes.append((n1, n2, s.label))
    return to_device(scenes, pad=pad, device=device)


# ------------------------------------------------------------------------------------------ losses
def loss_fn(logits, target, *, kind: str, pos_weight: float):
    """Loss on ``(B,1,H,W)`` logits and ``(B,H,W)`` uint8 targets (255 ignored)."""
    import torch
    from torch.nn import functional as F

    z = logits[:, 0]
    valid = target != 255
    y = (target == 1).float()
    if not bool(valid.any()):
        return z.sum() * 0.0
    zv, yv = z[valid], y[valid]
    parts = []
    if kind in ("wce", "wce+dice"):
        parts.append(F.binary_cross_entropy_with_logits(zv, yv, pos_weight=torch.tensor(pos_weight, device=zv.device)))
    if kind == "focal":
        p = torch.sigmoid(zv)
        ce = F.binary_cross_entropy_with_logits(zv, yv, reduction="none")
        pt = p * yv + (1 - p) * (1 - yv)
        alpha = pos_weight / (1.0 + pos_weight)
        at = alpha * yv + (1 - alpha) * (1 - yv)
        parts.append((at * (1 - pt) ** 2 * ce).mean() * 4.0)
    if kind in ("dice", "wce+dice"):
        p = torch.sigmoid(zv)
        inter = (p * yv).sum()
        parts.append(1.0 - (2 * inter + 1.0) / (p.sum() + yv.sum() + 1.0))
    return sum(parts)


def best_threshold(prob: np.ndarray, truth: np.ndarray, *, beta: float = 1.0) -> tuple[float, float, dict]:
    """Threshold in 0.02..0.98 (step 0.02) maximising the F-beta of change (F1 by default; ``beta`` < 1 weighs
    precision more) on pixels with truth 0/1 and finite prob.

    Returns ``(threshold, f1, {precision, recall, f1, iou})`` at that threshold (the F1 there, whatever ``beta``);
    ``(0.5, 0.0, ...)`` when the truth has no changed pixel.
    """
    ok = np.isfinite(prob) & (truth != 255)
    p, t = prob[ok], truth[ok] == 1
    if not t.any():  # no change to find: F1 is 0 at every threshold; keep the neutral 0.5
        return 0.5, 0.0, change_scores(p >= 0.5, t)
    best, best_score = (0.5, -1.0, {}), -1.0
    b2 = beta * beta
    for thr in np.round(np.arange(0.02, 0.981, 0.02), 2):
        m = change_scores(p >= thr, t)
        pr, rc = m["precision"], m["recall"]
        score = (1 + b2) * pr * rc / (b2 * pr + rc) if pr + rc else 0.0  # beta 1: change_scores's F1, bit for bit
        if score > best_score + 1e-12:
            best, best_score = (float(thr), m["f1"], m), score
    return best


def change_scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Precision, recall, F1 and IoU of the change class from boolean arrays (NaN-free)."""
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "iou": iou, "tp": tp, "fp": fp, "fn": fn}


def validate(net, samples: Sequence[Sample], mean, std, *, tile: int = 256, norm: str = "global",
             tta: bool = False, compute=None, beta: float = 1.0) -> tuple[float, float, dict]:
    """Predict every validation sample (tiled) and pick the F-beta-maximising threshold (F1 by default) on the
    pooled pixels; returns ``(threshold, F1 there, scores)``."""
    from minescape.change.deep.infer import predict_arrays
    from minescape.change.deep.runner import flip_batch_for, torch_runner

    # the network changes every epoch: on a bf16 CPU, compiling a graph per tile shape would cost more than
    # it saves (9 OSCD validation strips, 1 thread: 1.6 s compiled, 0.5-0.7 s eager, 1.05-1.3 s in fp32)
    runner = torch_runner(net, compute, compiled=False)
    probs, truths = [], []
    for s in samples:
        probs.append(predict_arrays(runner, s.t1, s.t2, mean=mean, std=std, tile=tile,
                                    overlap=min(32, tile // 4), norm=norm, tta=tta,
                                    flip_batch=flip_batch_for(compute)).ravel())
        truths.append(s.label.ravel())
    return best_threshold(np.concatenate(probs), np.concatenate(truths), beta=beta)


# ------------------------------------------------------------------------------------------ training
def lr_at(epoch: int, config: TrainConfig, elapsed: float = 0.0) -> float:
    """Learning rate of ``epoch`` (0-based): cosine from ``lr`` to 5 % of it over ``lr_epochs`` epochs.

    It does not depend on ``epochs``, so a run extended with ``resume`` continues the same schedule. With
    ``lr_schedule="time"`` the cosine runs over the training-time budget instead (``elapsed`` seconds of
    ``max_minutes``), so the decay completes whatever the machine's speed (not reproducible, like the budget).
    """
    if config.lr_schedule == "time":
        t = min(elapsed / (config.max_minutes * 60.0), 1.0)
    else:
        t = min(epoch / max(config.lr_epochs, 1), 1.0)
    return float(config.lr * (0.05 + 0.95 * 0.5 * (1.0 + np.cos(np.pi * t))))


def _seed_all(seed: int, epoch: int) -> np.random.Generator:
    import torch

    torch.manual_seed(seed * 100003 + epoch)
    return np.random.default_rng([seed, epoch])


def train(train_samples: Sequence[Sample], val_samples: Sequence[Sample], out_dir: str | Path, *,
          bands: Sequence[str], config: TrainConfig = TrainConfig(), resume: bool = False,
          training_data: dict | None = None, progress: bool = True) -> TrainResult:
    """Train a change network; write ``model.pt``, ``model.json`` (model card), ``checkpoint.pt`` and
    ``train_log.json`` (timings, device).

    Args:
        train_samples: training scenes/patches (reflectance, CHANGE labels).
        val_samples: validation scenes/patches (threshold choice and early stopping).
        out_dir: output folder.
        bands: band names of the samples' channels, in order (stored with the model).
        config: :class:`TrainConfig` (device and precision included).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists (same config required).
        training_data: description for the model card (sources, cities, patch root...).
    """
    if not train_samples or not val_samples:
        raise InputError("training needs at least one training and one validation sample")
    if len(bands) != train_samples[0].t1.shape[0]:
        raise InputError(f"{len(bands)} band names {list(bands)} for {train_samples[0].t1.shape[0]}-band samples")
    if any(s.t1.shape[0] != len(bands) for s in list(train_samples) + list(val_samples)):
        raise InputError("training and validation samples must all have the same bands")
    compute = resolve_compute(config.device, config.precision, config.threads, workload="change-training")
    # torch's threads, deterministic algorithms and global seed for this run only (a notebook keeps its own)
    with compute.torch_scope(deterministic=True):
        return _fit(train_samples, val_samples, Path(out_dir), bands=bands, config=config, resume=resume,
                    training_data=training_data, progress=progress, compute=compute)


def _fit(train_samples: Sequence[Sample], val_samples: Sequence[Sample], out_dir: Path, *, bands: Sequence[str],
         config: TrainConfig, resume: bool, training_data: dict | None, progress: bool,
         compute: Compute) -> TrainResult:
    """:func:`train`'s work, inside its :meth:`~minescape.compute.Compute.torch_scope`."""
    import torch

    from minescape.atomic import atomic_write_bytes, atomic_write_text
    from minescape.change.deep.batches import make_batch
    from minescape.change.deep.clouds import synthetic_clouds
    from minescape.change.deep.model import ChangeModel, build_model, load_payload, save_model, torch_bytes
    from minescape.change.deep.model_card import write_model_card
    from minescape.change.deep.networks import ensemble_members
    from minescape.progress import make_progress

    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    t_start = time.perf_counter()

    mean, std = band_statistics(train_samples)
    n_pos = sum(int((s.label == 1).sum()) for s in train_samples)
    n_neg = sum(int((s.label == 0).sum()) for s in train_samples)
    pos_weight = config.pos_weight if config.pos_weight is not None else \
        float(np.clip(np.sqrt(n_neg / max(n_pos, 1)), 1.0, 30.0))
    area = np.array([float((s.label != 255).sum()) for s in train_samples])
    if area.sum() == 0:
        raise InputError("training samples have no labelled pixels")
    weights = area / area.sum()
    scenes = prepare_scenes(train_samples, mean, std, config.norm, pad=config.crop, device=compute.device)
    clouds = synthetic_clouds(config.clouds, bands, mean, std, norm=config.norm)
    dev = torch.device(compute.device)

    torch.manual_seed(config.seed)
    net = build_model(config.arch, len(bands), **config.model_kwargs).to(dev, memory_format=torch.channels_last)
    members = ensemble_members(net)
    if config.batch_size % members:
        raise ConfigError(f"{config.arch} trains {members} networks at once: the batch size ({config.batch_size}) "
                          f"must be a multiple of {members}")
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema_net = None
    if config.ema > 0:
        import copy

        ema_net = copy.deepcopy(net)
        for q in ema_net.parameters():
            q.requires_grad_(False)
    state = {"epoch": 0, "best_f1": -1.0, "best_threshold": 0.5, "best_epoch": 0, "bad_epochs": 0,
             "history": [], "elapsed": 0.0}
    best_state = None
    average = None  # running sum of the averaged epochs' weights (float64, CPU)
    cfg_dict = _config_dict(config)
    if resume and ckpt_path.exists():
        ck = load_payload(ckpt_path, formats=(CHECKPOINT_FORMAT,))
        meta = ck["meta"]
        if _same_config(meta.get("config", {})) != _same_config(cfg_dict) or meta.get("bands") != list(bands):
            raise InputError("checkpoint was written with another configuration or bands; use another output "
                             "folder or the same options", path=ckpt_path)
        try:
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            if ema_net is not None:
                ema_net.load_state_dict(ck["ema"])
            state = dict(meta["state"])
            best_state = ck.get("best_state")
            average = ck.get("average")
            # the kept and averaged weights are loaded only at the end: check now that they fit
            for what, sd in (("best-epoch weights", best_state), ("weight average", average)):
                _check_fits(sd, net.state_dict(), what)
            if average is not None and int(state.get("averaged", 0)) < 1:
                raise ValueError("weight average of no epoch")
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise InputError(f"checkpoint does not fit this network: {str(exc).splitlines()[0][:120]}",
                             path=ckpt_path) from None

    stopped = "epochs"
    epoch_seconds: list[float] = []
    steps_done = 0
    train_time = 0.0
    with make_progress(enabled=progress) as bar:
        task = bar.add_task(f"train {config.arch}", total=config.epochs * config.steps_per_epoch,
                            completed=state["epoch"] * config.steps_per_epoch, extra="")
        while state["epoch"] < config.epochs:
            epoch = state["epoch"]
            if state["bad_epochs"] >= config.patience:
                stopped = "early stop"
                break
            if config.max_minutes is not None and state["elapsed"] + (time.perf_counter() - t_start) > \
                    config.max_minutes * 60 and epoch > 0:
                stopped = "time budget"
                break
            t_epoch = time.perf_counter()
            rng = _seed_all(config.seed, epoch)
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch, config, state["elapsed"] + (time.perf_counter() - t_start))
            net.train()
            losses = []
            for _ in range(config.steps_per_epoch):
                x1, x2, lab = make_batch(scenes, weights, rng, size=config.crop, batch=config.batch_size,
                                         focus_change=config.focus_change, swap_dates=config.swap_dates,
                                         jitter=config.jitter, clouds=clouds)
                x1 = x1.contiguous(memory_format=torch.channels_last)
                x2 = x2.contiguous(memory_format=torch.channels_last)
                with compute.autocast():
                    logits = net(x1, x2)
                # an ensemble's members each get their own share of the batch and their own loss (summed)
                loss = sum(loss_fn(z, t, kind=config.loss, pos_weight=pos_weight)
                           for z, t in zip(logits.float().chunk(members), lab.chunk(members), strict=True))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if ema_net is not None:
                    _ema_update(ema_net, net, config.ema)
                losses.append(loss.detach())
                if len(losses) % 10 == 0 or len(losses) == config.steps_per_epoch:
                    bar.update(task, advance=10 if len(losses) % 10 == 0 else len(losses) % 10,
                               extra=f"loss {float(torch.stack(losses[-20:]).mean()):.3f}")
            steps_done += config.steps_per_epoch
            losses_np = [float(v) for v in losses]
            train_time += time.perf_counter() - t_epoch
            eval_net = ema_net if ema_net is not None else net
            thr, f1, scores = validate(eval_net, val_samples, mean, std, tile=config.val_tile, norm=config.norm,
                                       compute=compute)
            rec = {"epoch": epoch + 1, "train_loss": float(np.mean(losses_np)), "val_f1": f1, "val_threshold": thr,
                   "val_precision": scores.get("precision", 0.0), "val_recall": scores.get("recall", 0.0)}
            state["history"].append(rec)
            if epoch + 1 < config.keep_from_epoch:
                pass  # too early to keep; nor does it count towards early stopping
            elif f1 > state["best_f1"] + 1e-6:
                state.update(best_f1=f1, best_threshold=thr, best_epoch=epoch + 1, bad_epochs=0)
                best_state = _snapshot(eval_net)
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch + 1
            bar.update(task, extra=f"loss {rec['train_loss']:.3f} val F1 {f1:.3f}@{thr:.2f}")
            now = time.perf_counter()
            epoch_seconds.append(round(now - t_epoch, 3))
            state["elapsed"] += now - t_start
            t_start = now
            if config.max_minutes is not None:  # the bar's total: the epochs the time budget is expected to allow
                per_epoch = state["elapsed"] / state["epoch"]
                expected = min(config.epochs, max(state["epoch"] + 1, math.ceil(config.max_minutes * 60 / per_epoch)))
                bar.update(task, total=expected * config.steps_per_epoch)
            if config.average_from > 0 and training_fraction(config, epoch + 1, state["elapsed"]) > \
                    config.average_from:
                average = _accumulate(average, eval_net)
                state["averaged"] = state.get("averaged", 0) + 1
                state.setdefault("average_start", epoch + 1)
            payload = {"format": CHECKPOINT_FORMAT,
                       "meta": json.dumps({"config": cfg_dict, "bands": list(bands), "state": state}),
                       "model": _cpu(net.state_dict()), "optimizer": _cpu_opt(opt.state_dict())}
            if ema_net is not None:
                payload["ema"] = _cpu(ema_net.state_dict())
            if best_state is not None:
                payload["best_state"] = best_state
            if average is not None:
                payload["average"] = average
            atomic_write_bytes(ckpt_path, torch_bytes(payload))
        bar.update(task, total=state["epoch"] * config.steps_per_epoch)  # ends full where training ended
    state["elapsed"] += time.perf_counter() - t_start
    t_start = time.perf_counter()
    if best_state is None and state["history"]:  # training ended before keep_from_epoch: keep the last epoch
        last = state["history"][-1]
        state.update(best_f1=last["val_f1"], best_threshold=last["val_threshold"], best_epoch=last["epoch"])
        best_state = _snapshot(ema_net if ema_net is not None else net)  # the network validation saw
    kept = f"best validation epoch ({state['best_epoch']})"
    if average is not None:  # the average replaces the best epoch; its threshold is chosen below
        net.load_state_dict(_averaged(average, state["averaged"], net.state_dict()))
        kept = f"average of the {state['averaged']} epochs from epoch {state['average_start']}"
    elif best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    threshold, val_f1 = state["best_threshold"], state["best_f1"]
    if average is not None or config.tta or config.threshold_beta != 1.0:
        # weights no epoch validated, flip-averaged probabilities or another F-beta: one more validation pass
        threshold, val_f1, _ = validate(net, val_samples, mean, std, tile=config.val_tile, norm=config.norm,
                                        tta=config.tta, compute=compute, beta=config.threshold_beta)
        state["elapsed"] += time.perf_counter() - t_start
    model_path = out_dir / "model.pt"
    metrics = {"val_f1": val_f1, "val_threshold": threshold,
               "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "stopped_by": stopped, "kept": kept,
               "pos_weight": pos_weight, "train_pixels_change": n_pos, "train_pixels_nochange": n_neg}
    model = ChangeModel(net=net.cpu().to(memory_format=torch.contiguous_format), arch=config.arch,
                        bands=tuple(bands), mean=mean, std=std, threshold=threshold, norm=config.norm,
                        tta=config.tta, coregister=config.coregister, model_kwargs=dict(config.model_kwargs),
                        extra={"config": cfg_dict, "metrics": metrics}, path=model_path)
    save_model(model_path, model)
    model_path.with_suffix(".onnx").unlink(missing_ok=True)  # an export of an earlier model in the folder
    card = write_model_card(model, training_data=training_data or {
        "train": [s.name for s in train_samples], "val": [s.name for s in val_samples]},
        metrics=metrics, config=cfg_dict, seed=config.seed, history=state["history"])
    log = {"train_seconds": round(state["elapsed"], 2), "device": compute.device, "precision": compute.precision,
           "threads": compute.threads, "note": compute.note, "steps_this_run": steps_done,
           "steps_per_second": round(steps_done / train_time, 3) if train_time > 0 else None,
           "epoch_seconds": epoch_seconds, "max_minutes": config.max_minutes}
    if compute.device == "cuda":
        log["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    log_path = atomic_write_text(out_dir / "train_log.json", json.dumps(log, indent=2) + "\n")
    return TrainResult(model_path, card, ckpt_path, threshold, val_f1, state["epoch"],
                       state["best_epoch"], state["history"], state["elapsed"], log_path, compute.describe())


def _cpu(sd: dict) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in sd.items()}


def _cpu_opt(sd: dict) -> dict:
    """An optimizer state dict with its tensors on the CPU (checkpoints load anywhere)."""
    import torch

    return {"state": {k: {n: (t.detach().cpu().contiguous() if isinstance(t, torch.Tensor) else t)
                          for n, t in v.items()} for k, v in sd["state"].items()},
            "param_groups": sd["param_groups"]}


def _same_config(cfg: dict) -> dict:
    """The options a resumed run must share (``epochs`` and ``patience`` may grow; device and precision are
    where and how it computes, not what)."""
    return {**_NEW_OPTION_DEFAULTS, **{k: v for k, v in cfg.items()
                                       if k not in ("epochs", "patience", "device", "precision")}}


_NEW_OPTION_DEFAULTS = {"norm": "global", "ema": 0.0, "tta": False, "lr_schedule": "epochs", "jitter": 0.0,
                        "coregister": False, "clouds": 0.0, "keep_from_epoch": 1, "average_from": 0.0,
                        "threshold_beta": 1.0}


def training_fraction(config: TrainConfig, epochs_done: int, elapsed: float) -> float:
    """How far training is, in [0, 1]: ``elapsed`` seconds of ``max_minutes`` when set (a time budget), else
    ``epochs_done`` of ``epochs``."""
    if config.max_minutes:
        return min(elapsed / (config.max_minutes * 60.0), 1.0)
    return min(epochs_done / config.epochs, 1.0)


def _check_fits(sd: dict | None, like: dict, what: str) -> None:
    """ValueError unless ``sd`` (None passes) has the keys and tensor shapes of the state dict ``like``
    (:func:`minescape.limits.weights_mismatch`, the check model files get)."""
    from minescape.limits import weights_mismatch

    problem = None if sd is None else weights_mismatch(sd, like)
    if problem is not None:
        raise ValueError(f"{what} with other tensors than the network's: {problem}")


def _accumulate(total: dict | None, net) -> dict:
    """Add ``net``'s floating-point weights and buffers to ``total`` (float64 on the CPU); other tensors (batch
    counters) keep the latest value."""
    import torch

    out = {} if total is None else total
    for k, v in net.state_dict().items():
        v = v.detach().cpu()
        if v.dtype.is_floating_point:
            out[k] = v.to(torch.float64) + (out[k] if k in out else 0.0)
        else:
            out[k] = v.clone()
    return out


def _averaged(total: dict, count: int, like: dict) -> dict:
    """``total / count`` in the dtypes of the state dict ``like``."""
    return {k: (total[k] / count).to(v.dtype) if v.dtype.is_floating_point else total[k] for k, v in like.items()}


def _snapshot(net) -> dict:
    """A detached CPU copy of ``net``'s state (weights and buffers), kept as the best epoch's."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def _ema_update(ema_net, net, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * net`` for float parameters and buffers (BN statistics); others copied."""
    import torch

    floats, others = ([], []), ([], [])
    for e, v in zip(ema_net.state_dict().values(), net.state_dict().values(), strict=True):
        pair = floats if e.dtype.is_floating_point else others
        pair[0].append(e)
        pair[1].append(v.detach())
    with torch.no_grad():  # one multi-tensor op each instead of two per tensor (FC-EF: 143 tensors)
        if floats[0]:
            torch._foreach_mul_(floats[0], decay)
            torch._foreach_add_(floats[0], floats[1], alpha=1.0 - decay)
        for e, v in zip(*others, strict=True):
            e.copy_(v)


def _config_dict(config: TrainConfig) -> dict:
    d = asdict(config)
    for key in ("threads", "max_minutes", "device"):
        d.pop(key, None)
    return json.loads(json.dumps(d))


__all__ = ["LOSSES", "Sample", "TrainConfig", "TrainResult", "band_statistics", "best_threshold", "change_scores",
           "coregister_samples", "holdout_split", "loss_fn", "patch_band_names", "prepare_scenes", "replace",
           "samples_from_oscd", "samples_from_pairs", "samples_from_patches", "samples_from_scenes", "train",
           "validate"]

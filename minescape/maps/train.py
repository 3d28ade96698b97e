"""Training the U-Net on one or more image/label pairs held in memory; checkpoints; deterministic seeds.

Labels are class *indexes* (0..n_classes-1, legend order) with ``ignore_index`` (255) where there is no label.
Training samples random patches (seeded), with flips and 90-degree rotations, and optimises cross-entropy
with AdamW. A checkpoint stores the weights, the network size, the band normalisation, the legend and the
band names, so :func:`load_checkpoint` restores a ready-to-use model.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from minescape.atomic import atomic_write_bytes
from minescape.errors import ConfigError, InputError, MissingInputError, ResourceLimitError
from minescape.legend import Legend
from minescape.limits import check_network
from minescape.progress import make_progress
from minescape.threads import available_cores

IGNORE = 255


@dataclass(frozen=True)
class TrainConfig:
    """Training options (patch size in pixels)."""

    epochs: int = 4
    steps_per_epoch: int = 20
    batch: int = 6
    patch: int = 48
    lr: float = 5e-3
    weight_decay: float = 1e-4
    base: int = 8
    depth: int = 3
    seed: int = 0
    threads: int = 1
    device: str = "auto"  # auto (CUDA when torch sees one), cpu or cuda (minescape.compute)
    precision: str = "auto"  # fp32, bf16 or auto (bf16 on CUDA; fp32 on a CPU, where training was measured)

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch", "patch", "base", "depth"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, not {value!r}")


@dataclass
class Checkpoint:
    """A trained network with what inference needs: legend codes, band normalisation, band names."""

    net: object  # minescape.maps.unet.UNet
    legend: Legend
    mean: np.ndarray
    std: np.ndarray
    band_names: tuple[str, ...] | None = None
    history: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    @property
    def codes(self) -> list[int]:
        """Class codes in output-channel order."""
        return self.legend.codes


def band_stats(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std over finite pixels of ``(bands, rows, cols)``."""
    flat = image.reshape(image.shape[0], -1).astype(np.float64)
    mean = np.array([np.nanmean(b) for b in flat])
    std = np.array([np.nanstd(b) for b in flat])
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def normalize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(image - mean) / std`` per band, non-finite pixels set to 0 (the mean)."""
    out = (image.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def train_unet(
    image: np.ndarray,
    labels: np.ndarray,
    legend: Legend,
    *,
    config: TrainConfig | None = None,
    init: Checkpoint | None = None,
    band_names: tuple[str, ...] | None = None,
    description: str = "training U-Net",
) -> Checkpoint:
    """Train a U-Net on ``image`` ``(bands, rows, cols)`` with ``labels`` ``(rows, cols)`` class indexes.

    Args:
        image: reflectance or any float bands (NaN = nodata, ignored through the labels).
        labels: uint8 class indexes into ``legend.codes``; ``255`` is ignored in the loss.
        legend: the classes (output channel i is ``legend.codes[i]``).
        config: training options.
        init: start from this checkpoint's weights and normalisation (fine-tuning, self-training).
        band_names: stored in the checkpoint and checked at inference.
        description: progress-bar label.
    """
    import torch
    from torch.nn import functional as F

    from minescape.compute import resolve_compute
    from minescape.maps.unet import UNet

    cfg = config or TrainConfig()
    if image.ndim != 3 or labels.shape != image.shape[1:]:
        raise InputError(f"image {image.shape} and labels {labels.shape} do not match (bands, rows, cols)/(rows, cols)")
    n_classes = len(legend)
    bad = np.setdiff1d(np.unique(labels), [*range(n_classes), IGNORE])
    if bad.size:
        raise InputError(f"label indexes {bad.tolist()[:10]} outside 0..{n_classes - 1} (or {IGNORE} = ignore)")
    if not (labels != IGNORE).any():
        raise InputError("no labelled pixel to train on (every label is ignored)")
    compute = resolve_compute(cfg.device, cfg.precision, min(cfg.threads, available_cores()), workload="map-training")
    # torch's threads and global seed for this run only (CPU results repeatable; a notebook keeps its own)
    with compute.torch_scope():
        torch.manual_seed(cfg.seed)
        dev = torch.device(compute.device)
        rng = np.random.default_rng(cfg.seed)
        if init is not None:
            mean, std = init.mean, init.std
            net = UNet(image.shape[0], n_classes, base=init.net.base, depth=init.net.depth)
            net.load_state_dict(init.net.state_dict())
        else:
            mean, std = band_stats(image)
            net = UNet(image.shape[0], n_classes, base=cfg.base, depth=cfg.depth)
        x_all = normalize(image, mean, std)
        y_all = labels.astype(np.int64)
        h, w = labels.shape
        p = min(cfg.patch, h, w)
        net = net.to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = cfg.epochs * cfg.steps_per_epoch
        warm = max(1, total // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        history: list[float] = []
        net.train()
        with make_progress() as progress:
            task = progress.add_task(description, total=total, extra="")
            for _epoch in range(cfg.epochs):
                losses = []
                for _ in range(cfg.steps_per_epoch):
                    xb, yb = _batch(x_all, y_all, rng, cfg.batch, p)
                    with compute.autocast():
                        logits = net(torch.from_numpy(xb).to(dev))
                    loss = F.cross_entropy(logits.float(), torch.from_numpy(yb).to(dev), ignore_index=IGNORE)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    losses.append(float(loss.detach()))
                    progress.update(task, advance=1, extra=f"loss {losses[-1]:.3f}")
                history.append(float(np.mean(losses)))
        net = net.cpu().eval()  # a checkpoint lives on the CPU; predictors move it where they compute
    return Checkpoint(net=net, legend=legend, mean=mean, std=std, band_names=band_names, history=history,
                      config=asdict(cfg))


def _batch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n: int, p: int):
    h, w = y.shape
    xs, ys = [], []
    while len(xs) < n:
        r = int(rng.integers(0, h - p + 1))
        c = int(rng.integers(0, w - p + 1))
        yy = y[r:r + p, c:c + p]
        if (yy == IGNORE).all():
            continue
        xx = x[:, r:r + p, c:c + p]
        k = int(rng.integers(0, 4))
        xx, yy = np.rot90(xx, k, axes=(1, 2)), np.rot90(yy, k)
        if rng.random() < 0.5:
            xx, yy = xx[:, :, ::-1], yy[:, ::-1]
        xs.append(np.ascontiguousarray(xx))
        ys.append(np.ascontiguousarray(yy))
    return np.stack(xs), np.stack(ys)


def predict_proba(ckpt: Checkpoint, image: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n_classes, rows, cols)`` float32 of a whole (small) image in one pass."""
    import torch

    x = normalize(image, ckpt.mean, ckpt.std)
    with torch.inference_mode():
        logits = ckpt.net(torch.from_numpy(x)[None])
        return torch.softmax(logits, dim=1)[0].numpy().astype(np.float32)


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write the checkpoint atomically (``torch.save`` of weights + metadata; no pickled classes)."""
    import torch

    buf = io.BytesIO()
    torch.save({
        "format": "minescape-unet-1",
        "state_dict": ckpt.net.state_dict(),
        "net": ckpt.net.config(),
        "legend": ckpt.legend.to_dict(),
        "mean": ckpt.mean.tolist(),
        "std": ckpt.std.tolist(),
        "band_names": list(ckpt.band_names) if ckpt.band_names else None,
        "history": ckpt.history,
        "config": ckpt.config,
    }, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (InputError for anything else)."""
    import torch

    from minescape.maps.unet import UNet

    path = Path(path)
    if not path.exists():
        raise MissingInputError("checkpoint not found", path=path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        if "Unsupported global" in str(exc):  # pickled Python objects: refused, never run
            raise InputError("not a minescape U-Net checkpoint: it holds pickled Python objects, which are never "
                             "loaded (only tensors, numbers and strings are)", path=path) from None
        if "Weights only load failed" in str(exc):  # bytes that are no torch file at all
            first = "the bytes are not a torch file"
        else:
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise InputError(f"not a readable torch checkpoint ({first})", path=path) from None
    if not isinstance(data, dict) or data.get("format") != "minescape-unet-1":
        raise InputError("not a minescape U-Net checkpoint (missing format 'minescape-unet-1')", path=path)
    try:
        check_network(lambda: UNet(**data["net"]), "the U-Net it describes", weights=data["state_dict"])
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: the caller's RNG stays
            net = UNet(**data["net"])
        net.load_state_dict(data["state_dict"])
        net.eval()
        ckpt = Checkpoint(net=net, legend=Legend.from_dict(data["legend"]),
                          mean=np.asarray(data["mean"], np.float32), std=np.asarray(data["std"], np.float32),
                          band_names=tuple(data["band_names"]) if data["band_names"] else None,
                          history=list(data["history"]), config=dict(data["config"]))
    except (ResourceLimitError, InputError) as exc:
        raise InputError(str(exc), path=path) from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a damaged or hand-edited checkpoint
        first = str(exc).splitlines()[0][:100] if str(exc) else ""
        raise InputError(f"malformed U-Net checkpoint ({type(exc).__name__}: {first})", path=path) from None
    if ckpt.mean.shape != ckpt.std.shape or not (np.isfinite(ckpt.std).all() and (ckpt.std > 0).all()):
        raise InputError("malformed U-Net checkpoint: the normalisation std must be finite and > 0 per band",
                         path=path)
    return ckpt

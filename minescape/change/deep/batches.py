"""Training batches built on the device: scenes held there once, crops and augmentation as tensor operations.

Each step draws ``batch`` random ``size`` x ``size`` crops (a share of them centred near a changed pixel), and
applies to both dates and the label the same random 90-degree rotation and flip, optionally swaps the dates,
and optionally adds radiometric jitter (a per-date, per-band gain and offset). The random choices come from a
numpy generator (seeded by the caller, so runs and resumed runs repeat); the pixels never leave the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class DeviceScene:
    """One normalised scene on the device, padded by ``pad`` pixels (zeros; label 255 = ignored)."""

    x1: object  # torch tensor (C, H + 2 pad, W + 2 pad)
    x2: object
    label: object  # uint8 (H + 2 pad, W + 2 pad)
    height: int
    width: int
    change_rc: np.ndarray  # (k, 2) row/col of changed pixels (unpadded)


def to_device(scenes: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *, pad: int, device: str = "cpu"
              ) -> list[DeviceScene]:
    """Move normalised ``(x1, x2, label)`` scenes to ``device`` once, padded for crops that cross the edge."""
    import torch
    from torch.nn import functional as F

    out = []
    for x1, x2, lab in scenes:
        t1 = F.pad(torch.from_numpy(np.ascontiguousarray(x1)).to(device), (pad, pad, pad, pad))
        t2 = F.pad(torch.from_numpy(np.ascontiguousarray(x2)).to(device), (pad, pad, pad, pad))
        tl = F.pad(torch.from_numpy(np.ascontiguousarray(lab)).to(device), (pad, pad, pad, pad), value=255)
        out.append(DeviceScene(t1, t2, tl, lab.shape[0], lab.shape[1], np.argwhere(lab == 1)))
    return out


def make_batch(scenes: Sequence[DeviceScene], weights: np.ndarray, rng: np.random.Generator, *, size: int,
               batch: int, focus_change: float, swap_dates: bool, jitter: float = 0.0):
    """One augmented batch on the scenes' device: ``(x1, x2, label)`` tensors ``(B,C,S,S)`` x2, ``(B,S,S)``.

    ``jitter`` > 0 adds a per-date, per-band gain ``1 + jitter N(0,1)`` and offset ``jitter N(0,1)``
    (normalised units). With 0 the random stream is the same as without the option. Crops reaching past a
    scene are filled with zeros and ignored labels (the scenes are padded by at least ``size``).
    """
    import torch

    xs1, xs2, labs = [], [], []
    for _ in range(batch):
        k = int(rng.choice(len(scenes), p=weights))
        s = scenes[k]
        h, w = s.height, s.width
        if len(s.change_rc) and rng.random() < focus_change:
            rc = s.change_rc[rng.integers(len(s.change_rc))]
            r = int(rc[0]) - int(rng.integers(size // 8, size - size // 8))
            c = int(rc[1]) - int(rng.integers(size // 8, size - size // 8))
            r = int(np.clip(r, min(0, h - size), max(0, h - size)))
            c = int(np.clip(c, min(0, w - size), max(0, w - size)))
        else:
            r = int(rng.integers(0, max(1, h - size + 1)))
            c = int(rng.integers(0, max(1, w - size + 1)))
        pad = (s.x1.shape[-1] - w) // 2
        win = (slice(r + pad, r + pad + size), slice(c + pad, c + pad + size))
        x1, x2, lab = s.x1[(slice(None),) + win], s.x2[(slice(None),) + win], s.label[win]
        k_rot = int(rng.integers(4))
        flip = bool(rng.integers(2))
        if k_rot:
            x1, x2, lab = (torch.rot90(a, k_rot, dims=(-2, -1)) for a in (x1, x2, lab))
        if flip:
            x1, x2, lab = (torch.flip(a, dims=(-1,)) for a in (x1, x2, lab))
        if swap_dates and rng.integers(2):
            x1, x2 = x2, x1
        if jitter > 0:
            ch = x1.shape[0]
            g = torch.from_numpy((1.0 + jitter * rng.standard_normal((2, ch, 1, 1))).astype(np.float32))
            o = torch.from_numpy((jitter * rng.standard_normal((2, ch, 1, 1))).astype(np.float32))
            g, o = g.to(x1.device), o.to(x1.device)
            x1 = x1 * g[0] + o[0]
            x2 = x2 * g[1] + o[1]
        xs1.append(x1)
        xs2.append(x2)
        labs.append(lab)
    return torch.stack(xs1), torch.stack(xs2), torch.stack(labs)

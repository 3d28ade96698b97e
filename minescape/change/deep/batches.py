"""Training batches built on the device: scenes held there once, crops and augmentation as tensor operations.

Each step draws ``batch`` random ``size`` x ``size`` crops (a share of them centred near a changed pixel), and
applies to both dates and the label the same random 90-degree rotation and flip, optionally swaps the dates,
optionally puts a synthetic cloud and its shadow into one date (:mod:`minescape.change.deep.clouds`), and
optionally adds radiometric jitter (a per-date, per-band gain and offset). The random choices come from a
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
               batch: int, focus_change: float, swap_dates: bool, jitter: float = 0.0, clouds=None):
    """One augmented batch on the scenes' device: ``(x1, x2, label)`` tensors ``(B,C,S,S)`` x2, ``(B,S,S)``.

    ``jitter`` > 0 adds a per-date, per-band gain ``1 + jitter N(0,1)`` and offset ``jitter N(0,1)``
    (normalised units). With 0 the random stream is the same as without the option. ``clouds``
    (:class:`~minescape.change.deep.clouds.SyntheticClouds`, or None) adds clouds after the date swap and before
    the jitter; its draws follow all others, so the crops themselves do not change. Crops reaching past a
    scene are filled with zeros and ignored labels (the scenes are padded by at least ``size``).
    """
    import torch

    draws = []  # per crop: scene, row, col, rotation, flip, swap, jitter gains/offsets (same order as ever)
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
        k_rot = int(rng.integers(4))
        flip = bool(rng.integers(2))
        swap = bool(swap_dates and rng.integers(2))
        jit = None
        if jitter > 0:
            ch = s.x1.shape[0]
            jit = (1.0 + jitter * rng.standard_normal((2, ch, 1, 1)), jitter * rng.standard_normal((2, ch, 1, 1)))
        draws.append((k, r, c, k_rot, flip, swap, jit))
    dev = scenes[0].x1.device
    gather = _gather_per_crop if dev.type == "cpu" else _gather_grouped
    x1, x2, lab = gather(scenes, draws, size)
    if any(d[5] for d in draws):  # decided on the host: no wait for the device
        m = torch.tensor([d[5] for d in draws], device=dev)[:, None, None, None]
        x1, x2 = torch.where(m, x2, x1), torch.where(m, x1, x2)
    if clouds is not None:
        from minescape.change.deep.clouds import add_clouds, draw_clouds

        x1, x2, lab = add_clouds(x1, x2, lab, draw_clouds(rng, clouds, batch=batch, size=size), clouds)
    if jitter > 0:
        g = torch.from_numpy(np.stack([d[6][0] for d in draws]).astype(np.float32)).to(dev)  # (B, 2, C, 1, 1)
        o = torch.from_numpy(np.stack([d[6][1] for d in draws]).astype(np.float32)).to(dev)
        x1 = x1 * g[:, 0] + o[:, 0]
        x2 = x2 * g[:, 1] + o[:, 1]
    return x1, x2, lab


def _gather_per_crop(scenes: Sequence[DeviceScene], draws: list, size: int):
    """The crops, rotated and flipped, copied one by one (on a CPU each is a strided view copied once: a batch of
    8 x 64 px, 13 bands, in 4.0 ms instead of the grouped gather's 11.2). The same values as
    :func:`_gather_grouped`."""
    import torch

    s0 = scenes[0]
    x1 = torch.empty((len(draws), s0.x1.shape[0], size, size), dtype=s0.x1.dtype)
    x2 = torch.empty_like(x1)
    lab = torch.empty((len(draws), size, size), dtype=s0.label.dtype)
    for i, (k, r, c, k_rot, flip, _swap, _jit) in enumerate(draws):
        s = scenes[k]
        pad = (s.x1.shape[-1] - s.width) // 2
        rows, cols = slice(r + pad, r + pad + size), slice(c + pad, c + pad + size)
        for out, src in ((x1, s.x1[:, rows, cols]), (x2, s.x2[:, rows, cols]), (lab, s.label[rows, cols])):
            if k_rot:
                src = torch.rot90(src, k_rot, dims=(-2, -1))
            if flip:
                src = torch.flip(src, dims=(-1,))
            out[i] = src
    return x1, x2, lab


def _gather_grouped(scenes: Sequence[DeviceScene], draws: list, size: int):
    """The crops, rotated and flipped, in a few operations: one gather per scene for all its crops, one
    rotation/flip per group of crops that share them (on a GPU: few kernel launches per step)."""
    import torch

    dev = scenes[0].x1.device
    ch = scenes[0].x1.shape[0]
    x1 = torch.empty((len(draws), ch, size, size), dtype=scenes[0].x1.dtype, device=dev)
    x2 = torch.empty_like(x1)
    lab = torch.empty((len(draws), size, size), dtype=scenes[0].label.dtype, device=dev)
    ar = torch.arange(size, device=dev)
    for k in sorted({d[0] for d in draws}):  # one gather per scene for all its crops
        idx = [i for i, d in enumerate(draws) if d[0] == k]
        s = scenes[k]
        pad = (s.x1.shape[-1] - s.width) // 2
        rows = torch.tensor([draws[i][1] + pad for i in idx], device=dev)[:, None] + ar  # (n, S)
        cols = torch.tensor([draws[i][2] + pad for i in idx], device=dev)[:, None] + ar
        sel = torch.tensor(idx, device=dev)
        ri, ci = rows[:, :, None], cols[:, None, :]
        x1[sel] = s.x1[:, ri, ci].permute(1, 0, 2, 3)
        x2[sel] = s.x2[:, ri, ci].permute(1, 0, 2, 3)
        lab[sel] = s.label[ri, ci]
    for k_rot in range(4):  # rotations and flips: one operation per group of crops that share them
        for flip in (False, True):
            idx = [i for i, d in enumerate(draws) if d[3] == k_rot and d[4] == flip]
            if not idx or (k_rot == 0 and not flip):
                continue
            sel = torch.tensor(idx, device=dev)
            for t in (x1, x2, lab):
                part = t[sel]
                if k_rot:
                    part = torch.rot90(part, k_rot, dims=(-2, -1))
                if flip:
                    part = torch.flip(part, dims=(-1,))
                t[sel] = part
    return x1, x2, lab

"""Running a network on normalised tiles: torch (CPU/CUDA, fp32/bf16, channels_last) or onnxruntime, flips
batched into one forward pass, and ensembles of models averaged on probabilities."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from minescape.change.deep.model import STRIDE, ChangeModel
from minescape.compute import Compute
from minescape.errors import InputError
from minescape.inference_net import prepared_forward

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (N,C,H,W) x2 normalised -> (N,1,H,W) float32 logits
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # identity, horizontal, vertical, both


def flip_batch_for(compute: Compute | None) -> int:
    """How many of the 4 flips go through the network in one batch: all 4 on a GPU (one launch, the device
    kept busy); one at a time on a CPU, where a batch of 4 512-px tiles ran 1.3x slower per pixel than 4 single
    tiles (the activations of 4 tiles outgrow the caches; bench/bench_deep_speed.py)."""
    return 4 if compute is not None and compute.device == "cuda" else 1


def torch_runner(net, compute: Compute | None = None, *, compiled: bool = True) -> Runner:
    """A runner calling ``net`` without gradients on ``compute``'s device and precision (channels_last), as
    :func:`minescape.inference_net.inference_net` prepares it (``net`` itself is left as it is; ``compiled``:
    see there)."""
    forward = prepared_forward(net, compute or Compute(), compiled=compiled)

    def run(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        return forward(x1, x2).cpu().numpy()

    return run


def tile_probability(runner: Runner, x1: np.ndarray, x2: np.ndarray, *, tta: bool = False,
                     flip_batch: int = 1) -> np.ndarray:
    """Probability ``(h, w)`` of one normalised ``(C, h, w)`` tile pair.

    The tile is padded (reflect, else zeros) to a multiple of 16. With ``tta`` the identity and the three
    flips go through the network in batches of ``flip_batch`` (:func:`flip_batch_for`) and their probabilities
    are averaged.
    """
    _, h, w = x1.shape
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    if ph or pw:
        mode = "reflect" if min(h, w) > max(ph, pw) else "constant"
        pad = ((0, 0), (0, ph), (0, pw))
        x1, x2 = np.pad(x1, pad, mode=mode), np.pad(x2, pad, mode=mode)
    if tta:
        logits = []
        for i in range(0, len(FLIPS), flip_batch):
            flips = FLIPS[i:i + flip_batch]
            b1 = np.stack([np.flip(x1, ax) if ax else x1 for ax in flips])
            b2 = np.stack([np.flip(x2, ax) if ax else x2 for ax in flips])
            logits += [np.flip(z, ax) if ax else z for z, ax in zip(runner(b1, b2)[:, 0], flips, strict=True)]
        prob = _sigmoid(np.stack(logits)).mean(0)
    else:
        prob = _sigmoid(runner(x1[None], x2[None])[0, 0])
    return prob[:h, :w].astype(np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function in float32 (scipy's ``expit``: no overflow, ~1e-7 from float64)."""
    from scipy.special import expit

    return expit(np.asarray(z, np.float32))


@dataclass(frozen=True)
class Member:
    """One model of an ensemble, ready to run: its runner and input normalisation."""

    model: ChangeModel
    runner: Runner
    flip_batch: int = 1  # flips per forward pass (:func:`flip_batch_for`)


def check_ensemble(models: Sequence[ChangeModel]) -> None:
    """All members must read the same bands in the same order and use the same normalisation mode.

    Raises:
        InputError: naming the first model that disagrees with the first one.
    """
    if not models:
        raise InputError("no model given")
    ref = models[0]
    for m in models[1:]:
        if tuple(m.bands) != tuple(ref.bands):
            raise InputError(f"ensemble members disagree on bands: {list(m.bands)} vs {list(ref.bands)} in "
                             f"{ref.path}", path=m.path)
        if m.norm != ref.norm:
            raise InputError(f"ensemble members disagree on normalisation: {m.norm!r} vs {ref.norm!r} in "
                             f"{ref.path}", path=m.path)

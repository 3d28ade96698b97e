"""Running a network on normalised tiles: torch (CPU/CUDA, fp32/bf16, channels_last) or onnxruntime, flips
batched into one forward pass, and ensembles of models averaged on probabilities."""

from __future__ import annotations

import itertools
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from minescape.compute import Compute
from minescape.change.deep.model import STRIDE, ChangeModel
from minescape.errors import InputError

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (N,C,H,W) x2 normalised -> (N,1,H,W) float32 logits
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # identity, horizontal, vertical, both


def flip_batch_for(compute: Compute | None) -> int:
    """How many of the 4 flips go through the network in one batch: all 4 on a GPU (one launch, the device
    kept busy); one at a time on a CPU, where a batch of 4 512-px tiles ran 1.3x slower per pixel than 4 single
    tiles (the activations of 4 tiles outgrow the caches; bench/bench_deep_speed.py)."""
    return 4 if compute is not None and compute.device == "cuda" else 1


def fold_batchnorm(net):
    """A copy of ``net`` for inference with every ``Conv2d`` directly followed by a ``BatchNorm2d`` (inside an
    ``nn.Sequential``) merged into one convolution (the BN becomes ``Identity``): the same function in eval
    mode (to ~1e-6 in fp32), one pass over the activations less per layer."""
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    return net


def torch_runner(net, compute: Compute | None = None) -> Runner:
    """A runner calling ``net`` without gradients on ``compute``'s device and precision (channels_last), as
    :func:`inference_net` prepares it (``net`` itself is left as it is)."""
    import torch

    compute = compute or Compute()
    dev = torch.device(compute.device)
    model = inference_net(net, compute)
    graph = isinstance(model, CpuBf16Net)
    dtype = torch.bfloat16 if graph else torch.float32
    precision = nullcontext if graph else compute.autocast  # the graph is bf16 itself

    def run(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), precision():
            # a strided view of a strip is copied once, straight into the type and channels-last layout
            a = torch.from_numpy(x1).to(dev, dtype, memory_format=torch.channels_last)
            b = torch.from_numpy(x2).to(dev, dtype, memory_format=torch.channels_last)
            return model(a, b).float().cpu().numpy()

    return run


_INFERENCE_NETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_net(net, compute: Compute):
    """``net`` as prediction runs it on ``compute``: batch normalisations folded (:func:`fold_batchnorm`),
    channels-last on the device; on a CPU in bf16, a :class:`CpuBf16Net`.

    Built once per network and kept while the network lives: a second prediction with the same model (a
    notebook going through cities) skips the folding and compiling. The cache is keyed by the device, the
    precision and every parameter's and buffer's identity, storage and version counter (which in-place
    updates such as an optimiser step or ``load_state_dict`` advance), so a changed network is rebuilt.
    """
    import torch

    weights = tuple((id(t), t.data_ptr(), t._version) for t in itertools.chain(net.parameters(), net.buffers()))
    prepared = _INFERENCE_NETS.setdefault(net, {})  # (device, precision) -> (weights, prepared network)
    hit = prepared.get((compute.device, compute.precision))
    if hit is not None and hit[0] == weights:
        return hit[1]
    folded = fold_batchnorm(net).to(torch.device(compute.device), memory_format=torch.channels_last)
    model = CpuBf16Net(folded) if compute.device == "cpu" and compute.bf16 else folded
    prepared[compute.device, compute.precision] = (weights, model)
    return model


class CpuBf16Net:
    """A folded network in bfloat16 on the CPU (its logits head kept in float32), compiled by TorchScript at its
    first call: traced on a 32 x 32 input of the call's bands, frozen, and :func:`torch.jit.optimize_for_inference`
    (oneDNN runs each convolution with the ReLU after it in one pass).

    Why not autocast: autocast casts every weight and dispatches every operation anew on each call, and eager
    mode writes each convolution's output before the ReLU reads it again. A 13-band FC-Siam-diff on 2 threads:
    512² tile 4.0 -> 5.1 Mpix/s, 416² 3.5 -> 5.3 (``bench/bench_deep_speed.py``); the same values as the eager
    bf16 network, the same from the first call on. Where tracing fails (a network with data-dependent control
    flow), the eager bf16 network runs instead.
    """

    def __init__(self, folded) -> None:
        import torch

        self.net = folded.to(torch.bfloat16).requires_grad_(False)
        head = getattr(self.net, "head", None)
        if head is not None:
            head.float()  # the logits keep float precision (networks.fp32_head casts its input)
        self.graph = None
        self._lock = threading.Lock()

    def __call__(self, a, b):
        """Logits ``(N, 1, H, W)`` float32 of bf16 inputs ``(N, C, H, W)``; an enclosing autocast is set aside
        (the network is bf16 itself, and its trace must not record autocast's casts)."""
        import torch

        with torch.autocast(device_type="cpu", enabled=False):
            if self.graph is None:
                with self._lock:
                    if self.graph is None:
                        self.graph = self._compile(a.shape[1], b.shape[1])
            return self.graph(a, b)

    def _compile(self, c1: int, c2: int):
        import torch

        ex1 = torch.zeros((1, c1, 2 * STRIDE, 2 * STRIDE), dtype=torch.bfloat16).to(
            memory_format=torch.channels_last)
        ex2 = torch.zeros((1, c2, 2 * STRIDE, 2 * STRIDE), dtype=torch.bfloat16).to(
            memory_format=torch.channels_last)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's tracer warnings on shape arithmetic
                traced = torch.jit.trace(self.net, (ex1, ex2), check_trace=False)
                return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        except (RuntimeError, TypeError, torch.jit.Error):  # pragma: no cover - networks minescape builds trace
            return self.net


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
            logits += [np.flip(z, ax) if ax else z for z, ax in zip(runner(b1, b2)[:, 0], flips)]
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

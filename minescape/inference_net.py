"""A network prepared for inference, for change networks and map U-Nets alike.

:func:`inference_net` folds batch normalisations into the convolutions before them, moves the network to the
device in the channels-last layout and, on a CPU with bf16, compiles a bf16 copy (:class:`CpuBf16Net`). The
prepared network is cached per network object and precision; :func:`prepared_forward` runs it on numpy arrays.
:func:`fp32_head` keeps a network's logits in float32
whichever way it runs. torch is imported inside the functions (the CLI imports this module without it).
"""

from __future__ import annotations

import itertools
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING

from minescape.compute import Compute

if TYPE_CHECKING:
    import torch
    from torch import nn


def fp32_head(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``head(x)`` in float32 even inside a bf16 autocast region: the logits keep float precision, so bf16
    inference moves probabilities by ~1e-4, not ~1e-3 (the convolutions before it stay in bf16). Outside
    autocast, ``x`` takes the head's own type (a bf16 network whose head was kept in float32)."""
    import torch

    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return head(x.float())
    dtype = next(head.parameters()).dtype
    return head(x if x.dtype == dtype else x.to(dtype))


def fold_batchnorm(net: nn.Module) -> nn.Module:
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


_INFERENCE_NETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_net(net: nn.Module, compute: Compute, *, compiled: bool = True) -> nn.Module | CpuBf16Net:
    """``net`` as prediction runs it on ``compute``: batch normalisations folded (:func:`fold_batchnorm`),
    channels-last on the device; on a CPU in bf16, a :class:`CpuBf16Net` (``compiled=False``: without its
    per-shape graphs, for a network that changes between calls, as validation during training sees it).

    Built once per network and kept while the network lives: a second prediction with the same model (a
    notebook going through cities) skips the folding and compiling. The cache is keyed by the device, the
    precision and every parameter's and buffer's identity, storage and version counter (which in-place
    updates such as an optimiser step or ``load_state_dict`` advance), so a changed network is rebuilt.
    """
    import torch

    weights = tuple((id(t), t.data_ptr(), t._version) for t in itertools.chain(net.parameters(), net.buffers()))
    prepared = _INFERENCE_NETS.setdefault(net, {})  # (device, precision, compiled) -> (weights, prepared)
    hit = prepared.get((compute.device, compute.precision, compiled))
    if hit is not None and hit[0] == weights:
        return hit[1]
    folded = fold_batchnorm(net).to(torch.device(compute.device), memory_format=torch.channels_last)
    model = CpuBf16Net(folded, compiled=compiled) if compute.device == "cpu" and compute.bf16 else folded
    prepared[compute.device, compute.precision, compiled] = (weights, model)
    return model


def prepared_forward(net: nn.Module, compute: Compute, *, compiled: bool = True) -> Callable[..., torch.Tensor]:
    """A function running ``net`` as :func:`inference_net` prepares it, without gradients, on numpy inputs
    ``(N, C, H, W)``: each is copied once, straight into the type and channels-last layout the prepared network
    takes (bf16 for a :class:`CpuBf16Net`, else float32 in ``compute``'s autocast). Returns the float32 outputs
    on the device."""
    import torch

    dev = torch.device(compute.device)
    model = inference_net(net, compute, compiled=compiled)
    graph = isinstance(model, CpuBf16Net)
    dtype = torch.bfloat16 if graph else torch.float32
    precision = nullcontext if graph else compute.autocast  # the graph is bf16 itself

    def forward(*arrays) -> torch.Tensor:
        with torch.inference_mode(), precision():
            return model(*(torch.from_numpy(a).to(dev, dtype, memory_format=torch.channels_last)
                           for a in arrays)).float()

    return forward


class CpuBf16Net:
    """A folded network in bfloat16 on the CPU (its logits head kept in float32, :func:`fp32_head`), compiled by
    TorchScript for each input shape at its first call with that shape: traced on the call's inputs, frozen, and
    :func:`torch.jit.optimize_for_inference` (oneDNN runs each convolution with the ReLU after it in one pass).
    One graph per shape because a trace records the sizes a forward computes from its input (the U-Net's padding
    and crop); tiles are fitted to a scene, so a run sees one or two shapes. The last :data:`GRAPHS_KEPT` shapes'
    graphs are kept.

    Why not autocast: autocast casts every weight and dispatches every operation anew on each call, and eager
    mode writes each convolution's output before the ReLU reads it again. A 13-band FC-Siam-diff on 2 threads:
    512² tile 4.0 -> 5.1 Mpix/s, 416² 3.5 -> 5.3 (``bench/bench_deep_speed.py``); the same values as the eager
    bf16 network, the same from the first call on. Where tracing fails (a network with data-dependent control
    flow), the eager bf16 network runs instead.
    """

    def __init__(self, folded: nn.Module, *, compiled: bool = True) -> None:
        import torch

        self.compiled = compiled  # False: the eager bf16 network on every shape (the same values, no compile)
        self.net = folded.to(torch.bfloat16).requires_grad_(False)
        head = getattr(self.net, "head", None)
        if head is not None:
            head.float()  # the logits keep float precision (fp32_head casts its input)
        self.graphs: OrderedDict[tuple, object] = OrderedDict()  # input shapes -> compiled graph
        self._lock = threading.Lock()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Float32 logits of bf16 channels-last inputs; an enclosing autocast is set aside (the network is bf16
        itself, and its trace must not record autocast's casts)."""
        import torch

        key = tuple(tuple(t.shape) for t in inputs)
        with torch.autocast(device_type="cpu", enabled=False):
            with self._lock:
                graph = self.graphs.get(key)
                if graph is None:
                    graph = self.graphs[key] = self._compile(inputs)
                    while len(self.graphs) > GRAPHS_KEPT:
                        self.graphs.popitem(last=False)
                else:
                    self.graphs.move_to_end(key)
            return graph(*inputs)

    def _compile(self, inputs: tuple[torch.Tensor, ...]):
        import torch

        if not self.compiled:
            return self.net
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's tracer warnings on shape arithmetic
                traced = torch.jit.trace(self.net, tuple(inputs), check_trace=False)
                return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        except (RuntimeError, TypeError, torch.jit.Error):  # pragma: no cover - networks minescape builds trace
            return self.net


GRAPHS_KEPT = 8  # compiled input shapes kept per network (each holds the frozen bf16 weights)

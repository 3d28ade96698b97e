"""The prepared inference network: built once per network and weights, and on a bf16 CPU compiled by TorchScript."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minescape.change.deep.model import build_model  # noqa: E402
from minescape.change.deep.runner import torch_runner  # noqa: E402
from minescape.compute import Compute, cpu_has_bf16  # noqa: E402
from minescape.inference_net import CpuBf16Net, inference_net  # noqa: E402


def _net(arch: str = "fc-siam-diff"):
    torch.manual_seed(0)
    return build_model(arch, 4).eval()


def test_a_network_is_prepared_once_and_again_after_its_weights_change():
    net = _net()
    c = Compute("cpu", "fp32", 1)
    first = inference_net(net, c)
    assert inference_net(net, c) is first  # the second prediction reuses the folded copy
    bf16 = inference_net(net, Compute("cpu", "bf16", 1))
    assert inference_net(net, c) is first  # one prepared network per precision: alternating rebuilds nothing
    assert inference_net(net, Compute("cpu", "bf16", 1)) is bf16
    assert bf16 is not first and isinstance(bf16, CpuBf16Net)
    x = np.random.default_rng(0).normal(size=(1, 4, 64, 64)).astype(np.float32)
    before = torch_runner(net, c)(x, x)
    with torch.no_grad():
        next(net.parameters()).add_(0.5)  # an in-place update, as an optimiser step makes
    assert inference_net(net, c) is not first
    after = torch_runner(net, c)(x, x)
    assert not np.array_equal(before, after)
    net.load_state_dict(_net().state_dict())  # back to the original weights, copied in place
    assert np.array_equal(torch_runner(net, c)(x, x), before)


@pytest.mark.parametrize("arch", ["fc-ef", "fc-siam-diff", "fc-siam-conc", "siam-att"])
def test_the_compiled_bf16_network_gives_the_eager_bf16_values(arch):
    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    net = _net(arch)
    model = inference_net(net, Compute("cpu", "bf16", 1))
    assert isinstance(model, CpuBf16Net)
    rng = np.random.default_rng(1)
    x1 = torch.from_numpy(rng.normal(size=(1, 4, 96, 80)).astype(np.float32))
    x2 = torch.from_numpy(rng.normal(size=(1, 4, 96, 80)).astype(np.float32))
    a, b = (t.to(torch.bfloat16, memory_format=torch.channels_last) for t in (x1, x2))
    with torch.inference_mode():
        first = model(a, b).float()
        assert [type(g) for g in model.graphs.values()] == [torch.jit.RecursiveScriptModule]  # compiled now
        again = model(a, b).float()
        eager = model.net(a, b).float()
        fp32 = net(x1, x2)
    assert first.dtype == torch.float32 and first.shape == (1, 1, 96, 80)
    assert torch.equal(first, again)  # the same bytes from the first call on
    with torch.inference_mode(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert torch.equal(model(a, b).float(), first)  # an enclosing autocast changes nothing
    fresh = inference_net(_net(arch), Compute("cpu", "bf16", 1))
    with torch.inference_mode(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert torch.equal(fresh(a, b).float(), first)  # nor when it is compiled inside one
    assert float((first - eager).abs().max()) < 1e-6  # the eager bf16 network's values (siam-att: 3e-8 apart)
    p, q = torch.sigmoid(first), torch.sigmoid(fp32)
    assert 0 < float((p - q).abs().max()) < 2e-3  # bf16 ran, and stays near fp32


def test_each_input_shape_gets_its_own_graph_so_shape_arithmetic_stays_right():
    """The U-Net pads its input to a multiple of 2**depth and crops the logits back: a trace records those sizes,
    so a graph traced on one shape would be wrong on another. Each shape is compiled on its own."""
    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    from minescape.maps.unet import UNet

    torch.manual_seed(0)
    net = UNet(3, 4, base=8, depth=2).eval()
    model = inference_net(net, Compute("cpu", "bf16", 1))
    rng = np.random.default_rng(2)
    with torch.inference_mode():
        for h, w in ((32, 32), (30, 21), (32, 32)):
            x = torch.from_numpy(rng.normal(size=(2, 3, h, w)).astype(np.float32))
            xb = x.to(torch.bfloat16, memory_format=torch.channels_last)
            out = model(xb).float()
            assert out.shape == (2, 4, h, w)
            assert float((out - model.net(xb).float()).abs().max()) < 1e-6
            assert float((out - net(x)).abs().max()) < 0.1  # bf16 of the float network
    assert list(model.graphs) == [((2, 3, 30, 21),), ((2, 3, 32, 32),)]  # most recently used last


def test_an_uncompiled_bf16_network_runs_eagerly_with_the_same_values():
    """``compiled=False`` (validation during training, where the weights change every epoch): no graph is
    traced, the values are the compiled network's, and it is cached apart from the compiled one."""
    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    net = _net("fc-ef")
    c = Compute("cpu", "bf16", 1)
    eager = inference_net(net, c, compiled=False)
    graph = inference_net(net, c)
    assert isinstance(eager, CpuBf16Net) and eager is not graph
    assert inference_net(net, c, compiled=False) is eager
    x = np.random.default_rng(3).normal(size=(1, 4, 64, 48)).astype(np.float32)
    a = torch_runner(net, c, compiled=False)(x, x)
    assert [type(g) for g in eager.graphs.values()] == [type(eager.net)]  # the eager network, not a trace
    b = torch_runner(net, c)(x, x)
    assert [type(g) for g in graph.graphs.values()] == [torch.jit.RecursiveScriptModule]
    assert np.abs(a - b).max() < 1e-6 and not np.array_equal(a, torch_runner(net, Compute("cpu", "fp32", 1))(x, x))

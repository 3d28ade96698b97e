"""Networks: forward shapes for 3, 4 and 13 bands, determinism with a seed, choices checked."""

from __future__ import annotations

import numpy as np
import pytest

from minescape.change.deep.model import ARCHITECTURES, build_model, count_parameters
from minescape.errors import ConfigError


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("bands", [3, 4, 13])
def test_forward_shape(arch, bands):
    import torch

    torch.manual_seed(0)
    net = build_model(arch, bands).eval()
    x1 = torch.randn(2, bands, 32, 48)
    x2 = torch.randn(2, bands, 32, 48)
    with torch.no_grad():
        y = net(x1, x2)
    assert tuple(y.shape) == (2, 1, 32, 48)
    assert torch.isfinite(y).all()
    assert count_parameters(net) > 10_000
    with torch.no_grad():
        # not a shape-only check: the output depends on each date, and each batch item is computed alone
        assert (net(x1, x2 + 1.0) - y).abs().max() > 1e-4
        assert (net(x1 + 1.0, x2) - y).abs().max() > 1e-4
        np.testing.assert_allclose(net(x1[1:], x2[1:]).numpy(), y[1:].numpy(), atol=1e-4)


@pytest.mark.parametrize("arch", ["fc-siam-diff", "siam-att"])
def test_seeded_build_is_deterministic(arch):
    import torch

    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = build_model(arch, 4).eval()
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 4, 32, 32)).astype(np.float32))
        with torch.no_grad():
            outs.append(net(x, x * 0.5).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    torch.manual_seed(124)
    other = build_model(arch, 4).eval()
    with torch.no_grad():
        assert not np.array_equal(other(x, x * 0.5).numpy(), outs[0])


def _decoder_inputs(net, x1, x2):
    """The (bottleneck, skips) that ``net``'s decoder receives for dates ``(x1, x2)``."""
    import torch

    seen = {}
    hook = net.decoder.register_forward_hook(lambda mod, args, out: seen.update(args=args))
    try:
        with torch.no_grad():
            net(x1, x2)
    finally:
        hook.remove()
    return seen["args"]


def _check_siamese_diff(net, x1, x2):
    """FC-Siam-diff's contract: swapping the dates leaves every skip (``|f1 - f2|``) unchanged, and the
    bottleneck is the second date's encoding."""
    import torch

    (b12, s12), (b21, s21) = _decoder_inputs(net, x1, x2), _decoder_inputs(net, x2, x1)
    for a, b in zip(s12, s21):
        assert torch.equal(a, b)
    with torch.no_grad():
        torch.testing.assert_close(b12, net.encoder(x2)[0])
        torch.testing.assert_close(b21, net.encoder(x1)[0])


def test_siamese_diff_is_symmetric_in_dates():
    """The dates are really swapped (different inputs, different bottlenecks); the skips are the same either
    way. A network with signed differences ``f1 - f2`` fails the same check."""
    import torch

    from minescape.change.deep.networks import FCSiamDiff

    torch.manual_seed(0)
    net = build_model("fc-siam-diff", 3).eval()
    x1 = torch.randn(1, 3, 32, 32)
    x2 = torch.randn(1, 3, 32, 32)
    assert (x1 - x2).abs().max() > 1.0  # two different dates
    (b12, s12), (b21, _) = _decoder_inputs(net, x1, x2), _decoder_inputs(net, x2, x1)
    assert (b12 - b21).abs().max() > 1e-5  # the swap reaches the decoder: its bottlenecks differ
    assert min(float(s.abs().max()) for s in s12) > 1e-5  # the skips compared below are not all zero
    _check_siamese_diff(net, x1, x2)

    class SignedDiff(FCSiamDiff):  # a broken variant: signed skips depend on the date order
        def forward(self, a, b):
            _, s1 = self.encoder(a)
            x, s2 = self.encoder(b)
            return self.decoder(x, [p - q for p, q in zip(s1, s2)])

    broken = SignedDiff(3).eval()
    broken.load_state_dict(net.state_dict())
    with pytest.raises(AssertionError):
        _check_siamese_diff(broken, x1, x2)


def test_bad_choices_list_valid_values():
    with pytest.raises(ConfigError, match="fc-siam-diff"):
        build_model("unet3000", 4)
    with pytest.raises(ConfigError, match="at least one"):
        build_model("fc-ef", 0)
    with pytest.raises(ConfigError, match="width must be an integer >= 1"):
        build_model("siam-att", 4, width=0)
    with pytest.raises(ConfigError, match="unknown fc-ef option"):
        build_model("fc-ef", 4, members=10_000)
    with pytest.raises(ConfigError, match="dropout"):
        build_model("fc-ef", 4, dropout=1.5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_batchnorm_folding_keeps_the_function(arch):
    import torch
    from torch import nn

    from minescape.inference_net import fold_batchnorm

    torch.manual_seed(0)
    net = build_model(arch, 4)
    net.train()
    with torch.no_grad():  # non-trivial running statistics, as after training
        for _ in range(3):
            net(torch.randn(2, 4, 32, 32) * 3 + 1, torch.randn(2, 4, 32, 32))
    net.eval()
    folded = fold_batchnorm(net)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert n_bn > 10 and left == 0  # every BN follows a convolution and was folded
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == n_bn  # the original is untouched
    x1, x2 = torch.randn(1, 4, 48, 32), torch.randn(1, 4, 48, 32)
    with torch.no_grad():
        ref, out = net(x1, x2), folded(x1, x2)
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)

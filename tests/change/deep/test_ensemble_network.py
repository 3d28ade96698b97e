"""fc-ef-x2: two FC-EF networks in grouped convolutions are exactly two independent FC-EF networks."""

from __future__ import annotations

import pytest

from minescape.change.deep.model import build_model
from minescape.change.deep.networks import FCEFEnsemble, ensemble_members, split_members


def _trained_bn(net, bands: int):
    """Non-trivial batch-norm statistics, as after training."""
    import torch

    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, bands, 32, 32) * 2 + 1, torch.randn(4, bands, 32, 32))
    return net.eval()


def test_prediction_is_the_members_mean_probability():
    import torch

    torch.manual_seed(0)
    net = _trained_bn(build_model("fc-ef-x2", 4), 4)
    assert ensemble_members(net) == 2 and ensemble_members(build_model("fc-ef", 4)) == 1
    a, b = split_members(net)
    x1, x2 = torch.randn(3, 4, 32, 48), torch.randn(3, 4, 32, 48)
    with torch.no_grad():
        pa, pb = torch.sigmoid(a(x1, x2)), torch.sigmoid(b(x1, x2))
        p = torch.sigmoid(net(x1, x2))
    assert (pa - pb).abs().max() > 1e-2  # two different networks, not one twice
    assert tuple(p.shape) == (3, 1, 32, 48)
    torch.testing.assert_close(p, (pa + pb) / 2, atol=1e-5, rtol=1e-4)
    # the ensemble's logit stays exact where the members are sure (p is not rounded to 0 or 1 on the way)
    with torch.no_grad():
        net.decoder.head.weight.zero_()
        net.decoder.head.bias.copy_(torch.tensor([40.0, 40.0]))
        sure = net(x1, x2)
        net.decoder.head.bias.copy_(torch.tensor([40.0, -40.0]))
        split = net(x1, x2)
    torch.testing.assert_close(sure, torch.full_like(sure, 40.0))
    torch.testing.assert_close(split, torch.zeros_like(split), atol=1e-6, rtol=0)


def test_training_gives_each_member_its_own_part_of_the_batch():
    """In training mode member i sees batch part i only: its logits equal that member alone in training mode,
    and a loss on part 0 leaves member 1's weights without gradient."""
    import torch

    torch.manual_seed(1)
    net = FCEFEnsemble(3, dropout=0.0, members=2)
    a, b = split_members(net)
    a.train(), b.train(), net.train()
    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    z = net(x1, x2)
    torch.testing.assert_close(z[:2], a(x1[:2], x2[:2]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(z[2:], b(x1[2:], x2[2:]), atol=1e-5, rtol=1e-4)
    z[:2].square().mean().backward()
    w = net.encoder.stages[0][0].weight.grad  # (2 * 16, 6, 3, 3): member 0's filters, then member 1's
    assert w[:16].abs().max() > 0 and w[16:].abs().max() == 0
    with pytest.raises(ValueError, match="does not split"):
        net(x1[:3], x2[:3])


def test_batch_must_split_among_the_members(tmp_path):
    import numpy as np

    from minescape.change.deep.train import Sample, TrainConfig, train
    from minescape.errors import ConfigError

    rng = np.random.default_rng(0)
    s = Sample("a", rng.random((3, 32, 32), dtype=np.float32), rng.random((3, 32, 32), dtype=np.float32),
               (rng.random((32, 32)) > 0.8).astype(np.uint8))
    with pytest.raises(ConfigError, match="multiple of 2"):
        train([s], [s], tmp_path, bands=("B02", "B03", "B04"),
              config=TrainConfig(arch="fc-ef-x2", batch_size=3, crop=16, epochs=1, steps_per_epoch=1),
              progress=False)


def test_trained_ensemble_saves_loads_and_predicts_as_its_members_mean(tmp_path):
    """Through train(), the model file and the fp32 prediction path: the loaded fc-ef-x2 predicts the mean of
    its two members' probabilities, and the members have learnt different things."""
    import numpy as np

    from minescape.change.deep.infer import predict_arrays
    from minescape.change.deep.model import load_model
    from minescape.change.deep.runner import torch_runner
    from minescape.change.deep.train import Sample, TrainConfig, train
    from minescape.compute import resolve_compute

    rng = np.random.default_rng(0)
    t1 = rng.random((3, 48, 48), dtype=np.float32) * 0.3
    t2 = t1.copy()
    t2[:, 10:30, 12:28] += 0.4
    label = np.zeros((48, 48), np.uint8)
    label[10:30, 12:28] = 1
    s = Sample("a", t1, t2, label)
    res = train([s], [s], tmp_path, bands=("B02", "B03", "B04"), progress=False,
                config=TrainConfig(arch="fc-ef-x2", batch_size=4, crop=32, epochs=2, steps_per_epoch=3,
                                   precision="fp32", seed=3))
    model = load_model(res.model_path)
    assert model.arch == "fc-ef-x2" and ensemble_members(model.net) == 2
    a, b = split_members(model.net)
    compute = resolve_compute("cpu", "fp32")

    def prob(net):
        return predict_arrays(torch_runner(net, compute), t1, t2, mean=model.mean, std=model.std, tile=48,
                              overlap=0, norm=model.norm)

    pa, pb, p = prob(a), prob(b), prob(model.net)
    assert np.abs(pa - pb).max() > 1e-3
    np.testing.assert_allclose(p, (pa + pb) / 2, atol=1e-4)

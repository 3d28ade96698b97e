"""Per-image normalisation, weight EMA, flip TTA and the time-based learning-rate schedule: stored with the model
and applied again by predict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minescape.change.deep.infer import predict_arrays, predict_scene
from minescape.change.deep.model import MODEL_FORMAT, load_model, load_payload, torch_bytes
from minescape.change.deep.norm import image_statistics, normalise_pair
from minescape.change.deep.runner import torch_runner
from minescape.change.deep.train import Sample, TrainConfig, holdout_split, lr_at, train
from minescape.errors import ConfigError, InputError
from minescape.geo.raster import read_raster
from tests.change.deep.conftest import BANDS4, toy_pair, write_pair


@pytest.fixture(scope="module")
def per_image_model(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    t1, t2, label = toy_pair(seed=4)
    tr, va = holdout_split([Sample("toy", t1, t2, label)], fraction=0.25)
    cfg = TrainConfig(arch="fc-siam-diff", crop=32, batch_size=4, epochs=3, steps_per_epoch=6, lr=3e-3, seed=3,
                      val_tile=64, norm="per-image", ema=0.9, tta=True)
    return train(tr, va, tmp_path_factory.mktemp("per_image"), bands=BANDS4, config=cfg, progress=False)


def test_per_image_statistics_and_normalisation():
    t1, t2, _ = toy_pair(seed=2, height=40, width=48)
    t2[:, 10:12, 5:7] = np.nan  # nodata in date 2 only: excluded from both dates' statistics
    m, s = image_statistics(t1)
    ok = np.isfinite(t1).all(0)
    np.testing.assert_allclose(m, t1[:, ok].mean(1), rtol=1e-5)
    np.testing.assert_allclose(s, t1[:, ok].std(1), rtol=1e-4)
    n1, n2 = normalise_pair(t1, t2, mean=np.zeros(4, np.float32), std=np.ones(4, np.float32), norm="per-image")
    both = np.isfinite(t1).all(0) & np.isfinite(t2).all(0)
    for n in (n1, n2):
        np.testing.assert_allclose(n[:, both].mean(1), 0.0, atol=1e-4)
        np.testing.assert_allclose(n[:, both].std(1), 1.0, atol=1e-3)
        assert np.isfinite(n).all()
    assert (n2[:, ~np.isfinite(t2).all(0)] == 0).all()  # nodata becomes 0, as with the global normalisation
    # a per-band gain and offset of one date (haze, calibration, season) leaves the input unchanged
    gain, offset = np.array([1.3, 0.8, 1.1, 0.7], np.float32), np.array([0.02, -0.01, 0.05, 0.03], np.float32)
    _, n2b = normalise_pair(t1, t2 * gain[:, None, None] + offset[:, None, None],
                            mean=np.zeros(4, np.float32), std=np.ones(4, np.float32), norm="per-image")
    np.testing.assert_allclose(n2b, n2, atol=1e-3)
    # the default stays the global mean/std
    g1, _ = normalise_pair(t1, t2, mean=np.full(4, 0.1, np.float32), std=np.full(4, 0.5, np.float32))
    np.testing.assert_allclose(g1[:, ok], (t1[:, ok] - 0.1) / 0.5, rtol=1e-5)
    with pytest.raises(ConfigError):
        normalise_pair(t1, t2, mean=m, std=s, norm="sideways")
    with pytest.raises(ConfigError):
        TrainConfig(norm="sideways")
    with pytest.raises(ConfigError):
        TrainConfig(ema=1.0)


def test_flip_tta_averages_the_four_flips():
    t1, t2, _ = toy_pair(seed=3, height=48, width=64)
    t1, t2 = np.nan_to_num(t1, nan=0.1), np.nan_to_num(t2, nan=0.1)
    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)

    def pixelwise(x1, x2):  # flip-equivariant: TTA changes nothing
        return np.abs(x2 - x1).sum(1, keepdims=True) * 5 - 1

    def positional(x1, x2):  # logits grow with the column: TTA makes the map symmetric left-right
        n, _, h, w = x1.shape
        return np.broadcast_to(np.linspace(-3, 3, w, dtype=np.float32), (n, 1, h, w)).copy()

    a = predict_arrays(pixelwise, t1, t2, mean=mean, std=std, tile=64, overlap=0)
    b = predict_arrays(pixelwise, t1, t2, mean=mean, std=std, tile=64, overlap=0, tta=True)
    np.testing.assert_allclose(a, b, atol=1e-6)
    c = predict_arrays(positional, t1, t2, mean=mean, std=std, tile=64, overlap=0, tta=True)
    np.testing.assert_allclose(c, c[:, ::-1], atol=1e-6)
    assert abs(float(c.mean()) - 0.5) < 1e-3 and np.ptp(c) < 0.01


def test_options_are_stored_and_predict_applies_them(per_image_model, tmp_path):
    m = load_model(per_image_model.model_path)
    assert (m.norm, m.tta) == ("per-image", True)
    card = json.loads(per_image_model.card_path.read_text())
    assert card["normalisation"]["mode"] == "per-image" and card["tta"] is True
    assert card["config"]["ema"] == 0.9 and card["metrics"]["val_threshold"] == m.threshold
    t1, t2, label = toy_pair(seed=13, height=112, width=128)
    p1, p2 = write_pair(tmp_path, t1, t2)
    res = predict_scene(m, p1, p2, tmp_path / "prob.tif", tmp_path / "mask.tif", tile=64, overlap=16)
    expected = predict_arrays(torch_runner(m.net), t1, t2, mean=m.mean, std=m.std, tile=64, overlap=16,
                              norm="per-image", tta=True)
    np.testing.assert_allclose(read_raster(res.probability).data[0], expected, atol=1e-5, equal_nan=True)
    glob = predict_arrays(torch_runner(m.net), t1, t2, mean=m.mean, std=m.std, tile=64, overlap=16, tta=True)
    assert np.nanmax(np.abs(glob - expected)) > 1e-3  # the stored mode matters: global gives another map
    mask = read_raster(res.mask).data[0]
    f1 = np.sum((mask == 1) & (label == 1)) * 2 / (np.sum(mask == 1) + np.sum(label == 1))
    assert f1 > 0.5
    # a brighter, lower-contrast date 2 (haze) hardly changes the per-image prediction
    (tmp_path / "hazy").mkdir()
    _, p2b = write_pair(tmp_path / "hazy", t1, t2 * 0.8 + 0.05)
    res_b = predict_scene(m, p1, p2b, tmp_path / "prob_b.tif", tmp_path / "mask_b.tif", tile=64, overlap=16)
    np.testing.assert_allclose(read_raster(res_b.probability).data[0], expected, atol=2e-3, equal_nan=True)


def test_models_without_the_option_load_as_global_and_old_formats_are_refused(per_image_model, tmp_path):
    import torch

    payload = load_payload(per_image_model.model_path, formats=(MODEL_FORMAT,))
    meta = payload["meta"]
    for key in ("norm", "tta"):
        meta.pop(key)
    (tmp_path / "older.pt").write_bytes(torch_bytes({**payload, "meta": json.dumps(meta)}))
    old = load_model(tmp_path / "older.pt")
    assert (old.norm, old.tta) == ("global", False)
    meta["norm"] = "per-scene-magic"
    (tmp_path / "future.pt").write_bytes(torch_bytes({**payload, "meta": json.dumps(meta)}))
    with pytest.raises(InputError, match="future.pt: model uses normalisation 'per-scene-magic'"):
        load_model(tmp_path / "future.pt")
    # a file of the first format (metadata as loose keys) is refused with one line
    v1 = {"format": "minescape-change-model/1", "arch": "fc-siam-diff", "state_dict": payload["state_dict"]}
    torch.save(v1, tmp_path / "v1.pt")
    with pytest.raises(InputError, match="v1.pt: written in the old format 'minescape-change-model/1'"):
        load_model(tmp_path / "v1.pt")
    torch.save({"weights": payload["state_dict"]}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="foreign.pt: not a minescape change model"):
        load_model(tmp_path / "foreign.pt")


def test_learning_rate_schedule_by_epochs_or_time():
    by_epoch = TrainConfig(lr=1e-3, lr_epochs=10)
    assert lr_at(0, by_epoch) == pytest.approx(1e-3)
    assert lr_at(5, by_epoch, elapsed=1e9) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # time is ignored
    assert lr_at(10, by_epoch) == lr_at(40, by_epoch) == pytest.approx(5e-5)
    by_time = TrainConfig(lr=1e-3, lr_schedule="time", max_minutes=10)
    assert lr_at(0, by_time, elapsed=0.0) == pytest.approx(1e-3)
    assert lr_at(0, by_time, elapsed=300.0) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # epochs are ignored
    assert lr_at(3, by_time, elapsed=600.0) == lr_at(3, by_time, elapsed=900.0) == pytest.approx(5e-5)
    with pytest.raises(ConfigError, match="max_minutes"):
        TrainConfig(lr_schedule="time")
    with pytest.raises(ConfigError):
        TrainConfig(lr_schedule="weekly", max_minutes=1)


def test_ema_update_is_the_per_tensor_average_and_copies_integer_buffers():
    """The multi-tensor EMA step gives exactly ``decay * ema + (1 - decay) * net`` for every float parameter and
    buffer, and copies the integer ones (BatchNorm's batch counter)."""
    import copy

    import torch

    from minescape.change.deep.model import build_model
    from minescape.change.deep.train import _ema_update

    torch.manual_seed(0)
    net = build_model("fc-ef", 4)
    ema = copy.deepcopy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        for b in net.buffers():
            b.add_(3 if not b.dtype.is_floating_point else torch.rand_like(b))
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    floats = [k for k, v in before.items() if v.dtype.is_floating_point]
    ints = [k for k, v in before.items() if not v.dtype.is_floating_point]
    assert floats and ints  # both kinds are there to check
    _ema_update(ema, net, 0.9)
    now, src = ema.state_dict(), net.state_dict()
    for k in floats:
        want = before[k].mul(0.9).add_(src[k], alpha=0.1)
        assert torch.equal(now[k], want), k
        assert not torch.equal(now[k], before[k]) or torch.equal(src[k], before[k]), k
    for k in ints:
        assert torch.equal(now[k], src[k]) and not torch.equal(now[k], before[k]), k

"""Training: the loss goes down, seeds make runs identical, resume equals an uninterrupted run, patch data."""

from __future__ import annotations

import numpy as np
import pytest

from minescape.change.deep.batches import make_batch
from minescape.change.deep.train import (
    Sample,
    TrainConfig,
    band_statistics,
    best_threshold,
    holdout_split,
    loss_fn,
    prepare_scenes,
    samples_from_patches,
    train,
)
from minescape.errors import ConfigError, InputError
from tests.change.deep.conftest import BANDS4, saved_model, toy_pair

CFG = TrainConfig(arch="fc-siam-diff", crop=32, batch_size=4, epochs=2, steps_per_epoch=4, lr=3e-3, seed=5,
                  val_tile=64)


def _samples():
    t1, t2, label = toy_pair(seed=1, height=80, width=96)
    return holdout_split([Sample("toy", t1, t2, label)], fraction=0.25)


def _fixed_loss(model_path, pos_weight: float) -> float:
    import torch

    from minescape.change.deep.model import load_model
    from minescape.change.deep.norm import normalise_pair

    m = load_model(model_path)
    t1, t2, label = toy_pair(seed=9, height=64, width=64)
    n1, n2 = normalise_pair(t1, t2, mean=m.mean, std=m.std)
    with torch.no_grad():
        logits = m.net(torch.from_numpy(n1[None]), torch.from_numpy(n2[None]))
        return float(loss_fn(logits, torch.from_numpy(label[None]), kind="wce+dice",
                             pos_weight=pos_weight))


def test_training_lowers_the_loss(tiny_model, tmp_path):
    card = __import__("json").loads(tiny_model.card_path.read_text())
    saved_model(tmp_path / "untrained.pt", BANDS4, seed=3, mean=np.asarray(card["normalisation"]["mean"]),
                std=np.asarray(card["normalisation"]["std"]))
    pw = card["metrics"]["pos_weight"]
    before, after = _fixed_loss(tmp_path / "untrained.pt", pw), _fixed_loss(tiny_model.model_path, pw)
    assert after < 0.8 * before, (before, after, tiny_model.history)
    assert tiny_model.val_f1 > 0.5
    assert 0.0 < tiny_model.threshold < 1.0


def test_same_seed_same_model_and_resume_matches(tmp_path):
    from dataclasses import replace

    import torch

    tr, va = _samples()
    a = train(tr, va, tmp_path / "a", bands=BANDS4, config=CFG)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model.onnx").write_bytes(b"an export of an earlier model")
    b = train(tr, va, tmp_path / "b", bands=BANDS4, config=CFG)
    assert not (tmp_path / "b" / "model.onnx").exists()  # the run owns its folder: the stale export is gone
    sa = torch.load(a.model_path, weights_only=True)["state_dict"]
    sb = torch.load(b.model_path, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.threshold == b.threshold and a.history == b.history
    # the reproducible files are byte-identical; the timings went to train_log.json
    assert a.model_path.read_bytes() == b.model_path.read_bytes()
    assert a.card_path.read_bytes() == b.card_path.read_bytes()
    log = __import__("json").loads(a.log_path.read_text())
    assert log["train_seconds"] > 0 and log["steps_this_run"] == CFG.epochs * CFG.steps_per_epoch
    assert "seconds" not in a.card_path.read_text() and log["device"] == "cpu"
    # and not because the writer ignores its input: another seed gives other bytes
    d = train(tr, va, tmp_path / "d", bands=BANDS4, config=replace(CFG, seed=6))
    assert d.model_path.read_bytes() != a.model_path.read_bytes()
    # interrupted after 1 epoch, resumed to 2 == uninterrupted 2 epochs
    train(tr, va, tmp_path / "c", bands=BANDS4, config=replace(CFG, epochs=1))
    c = train(tr, va, tmp_path / "c", bands=BANDS4, config=CFG, resume=True)
    sc = torch.load(c.model_path, weights_only=True)["state_dict"]
    assert c.epochs_run == 2
    assert all(torch.equal(sa[k], sc[k]) for k in sa)
    ca = torch.load(a.checkpoint_path, weights_only=True)["model"]
    cc = torch.load(c.checkpoint_path, weights_only=True)["model"]
    assert all(torch.equal(ca[k], cc[k]) for k in ca)
    assert [h["train_loss"] for h in c.history] == [h["train_loss"] for h in a.history]


def test_resume_with_other_options_is_refused(tmp_path):
    from dataclasses import replace

    tr, va = _samples()
    train(tr, va, tmp_path, bands=BANDS4, config=replace(CFG, epochs=1))
    with pytest.raises(InputError, match="checkpoint.pt.*another configuration"):
        train(tr, va, tmp_path, bands=BANDS4, config=replace(CFG, lr=1e-2), resume=True)


def test_augmentation_is_identical_for_dates_and_mask():
    t1, _, label = toy_pair(seed=2, height=64, width=64)
    # date 2 = date 1 and the first band encodes the label: any mismatch of the transforms would show
    t1 = t1.copy()
    t1[0] = np.where(label == 1, 5.0, 0.0)
    t1[:, :3, :3] = 0.0
    prep = prepare_scenes([Sample("s", t1, t1.copy(), label)], np.zeros(4, np.float32), np.ones(4, np.float32),
                          pad=32)
    x1, x2, lab = (t.numpy() for t in make_batch(prep, np.array([1.0]), np.random.default_rng(0), size=32,
                                                  batch=16, focus_change=0.5, swap_dates=True))
    assert (lab == 1).sum() > 100 and (lab == 0).sum() > 100  # crops hold both classes
    np.testing.assert_array_equal(x1, x2)
    valid = lab != 255
    np.testing.assert_array_equal(x1[:, 0][valid] == 5.0, lab[valid] == 1)


def test_cpu_crop_copies_equal_the_grouped_gather(monkeypatch):
    """On a CPU the batch is copied crop by crop; the grouped gather (one per scene, the GPU path) gives the same
    batch bit for bit: several scenes, one smaller than the crop, rotations, flips, date swaps and jitter."""
    from minescape.change.deep import batches

    rng = np.random.default_rng(7)
    samples = []
    for i, (h, w) in enumerate(((70, 90), (24, 40), (120, 64))):
        t1, t2, label = toy_pair(seed=i, height=h, width=w)
        samples.append(Sample(f"s{i}", t1, t2 + rng.normal(0, 0.01, t2.shape).astype(np.float32), label))
    prep = prepare_scenes(samples, np.zeros(4, np.float32), np.ones(4, np.float32), pad=32)
    kw = dict(size=32, batch=24, focus_change=0.5, swap_dates=True, jitter=0.1)
    weights = np.array([0.4, 0.2, 0.4])
    per_crop = make_batch(prep, weights, np.random.default_rng(1), **kw)
    monkeypatch.setattr(batches, "_gather_per_crop", batches._gather_grouped)
    grouped = make_batch(prep, weights, np.random.default_rng(1), **kw)
    assert per_crop[0].shape == (24, 4, 32, 32) and (per_crop[2] == 255).any() and (per_crop[2] == 1).any()
    for a, b in zip(per_crop, grouped):
        assert a.dtype == b.dtype and np.array_equal(a.numpy(), b.numpy())


def test_radiometric_jitter_changes_each_date_by_its_own_gain_and_offset():
    t1, t2, label = toy_pair(seed=3, height=64, width=64)
    prep = prepare_scenes([Sample("s", t1, t2, label)], np.full(4, 0.2, np.float32), np.full(4, 0.1, np.float32),
                          pad=32)

    def make_batch_np(*args, **kwargs):
        return tuple(t.numpy() for t in make_batch(*args, **kwargs))

    kw = dict(size=32, batch=6, focus_change=0.5, swap_dates=True)
    plain = make_batch_np(prep, np.array([1.0]), np.random.default_rng(5), **kw)
    zero = make_batch_np(prep, np.array([1.0]), np.random.default_rng(5), jitter=0.0, **kw)
    for a, b in zip(plain, zero):  # 0 = off, with the same random stream as before the option
        np.testing.assert_array_equal(a, b)
    kw["batch"] = 1  # the jitter draws follow each crop's own draws: the first crop is the same crop
    for seed in range(4):
        ref1, ref2, ref_lab = make_batch_np(prep, np.array([1.0]), np.random.default_rng(seed), **kw)
        j1, j2, lab = make_batch_np(prep, np.array([1.0]), np.random.default_rng(seed), jitter=0.1, **kw)
        np.testing.assert_array_equal(lab, ref_lab)  # only the values move
        for x, ref in ((j1, ref1), (j2, ref2)):
            for c in range(4):  # per band an exact affine map x = g * ref + o, with g near 1
                r, v = ref[0, c].ravel().astype(np.float64), x[0, c].ravel().astype(np.float64)
                g, o = np.polyfit(r, v, 1)
                np.testing.assert_allclose(v, g * r + o, atol=1e-4)
                assert 0.5 < g < 1.5 and g != 1.0
        assert not np.allclose(j1 - ref1, j2 - ref2)  # the two dates get different draws


def test_normalisation_and_threshold_helpers():
    t1, t2, label = toy_pair()
    mean, std = band_statistics([Sample("a", t1, t2, label)])
    both = np.concatenate([t1, t2], axis=2)
    np.testing.assert_allclose(mean, np.nanmean(both, axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(std, np.nanstd(both, axis=(1, 2)), rtol=1e-3)
    prob = np.array([0.1, 0.2, 0.7, 0.9, np.nan])
    truth = np.array([0, 0, 1, 1, 1], np.uint8)
    thr, f1, _ = best_threshold(prob, truth)
    assert f1 == 1.0 and 0.2 < thr <= 0.7


def test_train_from_patch_dataset(tmp_path):
    from minescape.geo.raster import Raster, write_raster
    from tests.change.deep.conftest import CRS_UTM, TRANSFORM

    t1, t2, label = toy_pair(seed=4, height=64, width=96)
    for i, c in enumerate((0, 32, 64)):
        name = f"p{i}"
        sl = (slice(None), slice(0, 32), slice(c, c + 32))
        for folder, arr in (("T1", t1), ("T2", t2)):
            write_raster(Raster(arr[sl], CRS_UTM, TRANSFORM, np.nan, BANDS4), tmp_path / "ds" / folder / f"{name}.tif")
        write_raster(Raster(label[sl[1:]], CRS_UTM, TRANSFORM, 255), tmp_path / "ds" / "Change" / f"{name}.tif")
    (tmp_path / "ds" / "split.csv").write_text("name,split\np0,train\np1,train\np2,val\n")
    tr = samples_from_patches(tmp_path / "ds", split="train", bands=BANDS4[::-1])
    va = samples_from_patches(tmp_path / "ds", split="val")
    assert [s.name for s in tr] == ["p0", "p1"] and len(va) == 1
    np.testing.assert_array_equal(tr[0].t1[3], t1[0, 0:32, 0:32])  # bands reordered by name
    res = train(tr, [Sample(s.name, s.t1[::-1], s.t2[::-1], s.label) for s in va], tmp_path / "m",
                bands=BANDS4[::-1], config=TrainConfig(arch="fc-ef", crop=32, batch_size=2, epochs=1,
                                                       steps_per_epoch=2, seed=0, val_tile=32))
    assert res.model_path.exists() and res.epochs_run == 1


def test_bad_training_input():
    t1, t2, label = toy_pair()
    with pytest.raises(InputError, match="shapes differ"):
        Sample("x", t1, t2[:, :10], label)
    with pytest.raises(ConfigError, match="multiple of 16"):
        TrainConfig(crop=50)
    with pytest.raises(ConfigError, match="wce, dice, focal"):
        TrainConfig(loss="mse")
    s = Sample("x", t1, t2, label)
    with pytest.raises(InputError, match="3 band names"):
        train([s], [s], "/tmp/unused", bands=BANDS4[:3], config=CFG)
    # a validation strip of no rows (or a training part of none) failed after a whole epoch, naming neither
    for fraction, part in ((0.001, "validation"), (0.999, "training")):
        with pytest.raises(ConfigError, match=rf"--val-fraction {fraction:g} leaves x's {part} part \d+ x \d+ px"):
            holdout_split([s], fraction=fraction, side="bottom")
    assert min(holdout_split([s], fraction=0.25, side="bottom")[1][0].label.shape) >= 16


@pytest.mark.parametrize("kind", ["wce", "dice", "focal", "wce+dice"])
def test_losses_ignore_nodata(kind):
    import torch

    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    target[0, 0, 0] = 1
    target[0, 1, 1] = 0
    loss = loss_fn(logits, target, kind=kind, pos_weight=2.0)
    loss.backward()
    g = logits.grad[0, 0]
    assert float(loss.detach()) > 0
    assert (g[target[0] == 255] == 0).all() and g[0, 0] < 0


def test_keep_from_epoch_is_a_floor_on_the_kept_epoch(tmp_path):
    from dataclasses import replace

    import torch

    tr, va = _samples()
    free = train(tr, va, tmp_path / "free", bands=BANDS4, config=replace(CFG, epochs=4))
    assert free.best_epoch < 3  # without the floor this run keeps an early epoch: the floor has work to do
    r = train(tr, va, tmp_path / "floor", bands=BANDS4, config=replace(CFG, epochs=4, keep_from_epoch=3))
    assert [h["val_f1"] for h in r.history] == [h["val_f1"] for h in free.history]
    f1 = [h["val_f1"] for h in r.history]
    assert len(f1) == 4  # epochs 1-2 were validated (their curve is in the log) but could not be kept
    assert r.best_epoch == 3 + int(np.argmax(f1[2:])) and r.best_epoch >= 3
    # the kept weights are those of the kept epoch: same as a 4-epoch run's checkpoint of that epoch
    ref = train(tr, va, tmp_path / "ref", bands=BANDS4, config=replace(CFG, epochs=r.best_epoch))
    ema_or_net = torch.load(ref.checkpoint_path, weights_only=True)["model"]
    kept = torch.load(r.model_path, weights_only=True)["state_dict"]
    assert all(torch.equal(kept[k], ema_or_net[k]) for k in kept)
    # a run that ends (here by its time budget) before the floor keeps its last epoch rather than nothing
    early = train(tr, va, tmp_path / "early", bands=BANDS4,
                  config=replace(CFG, epochs=4, keep_from_epoch=4, max_minutes=1e-6))
    assert early.epochs_run == 1 and early.best_epoch == 1 and early.model_path.exists()
    with pytest.raises(ConfigError, match="keep_from_epoch"):
        replace(CFG, epochs=2, keep_from_epoch=3)
    with pytest.raises(ConfigError, match="keep_from_epoch must be >= 1"):
        replace(CFG, keep_from_epoch=0)


def test_average_from_keeps_the_mean_of_the_late_epochs(tmp_path):
    """--average-from: the model kept is the mean of the epoch-end weights after that fraction of training, its
    threshold chosen on validation like an epoch's; the running sum survives in the checkpoint."""
    import json
    from dataclasses import replace

    import torch

    tr, va = _samples()
    ends = {e: torch.load(train(tr, va, tmp_path / f"e{e}", bands=BANDS4, config=replace(CFG, epochs=e))
                          .checkpoint_path, weights_only=True)["model"] for e in (3, 4)}
    assert any(not torch.equal(ends[3][k], ends[4][k]) for k in ends[3])  # the two epochs differ: a mean to take
    r = train(tr, va, tmp_path / "avg", bands=BANDS4, config=replace(CFG, epochs=4, average_from=0.5))
    kept = torch.load(r.model_path, weights_only=True)["state_dict"]
    for k, v in kept.items():  # epochs 3 and 4 lie after half of the 4 epochs; epochs 1 and 2 do not
        if v.dtype.is_floating_point:
            assert torch.equal(v, ((ends[3][k].double() + ends[4][k].double()) / 2).to(v.dtype)), k
    card = json.loads(r.card_path.read_text())
    assert card["metrics"]["kept"] == "average of the 2 epochs from epoch 3"
    assert 0.0 < r.threshold < 1.0 and card["threshold"] == r.threshold
    # resumed from its last checkpoint, the run keeps the same average (it was saved, not recomputed)
    again = train(tr, va, tmp_path / "avg", bands=BANDS4, config=replace(CFG, epochs=4, average_from=0.5),
                  resume=True)
    assert again.model_path.read_bytes() == r.model_path.read_bytes()
    # a checkpoint whose saved average or best-epoch weights do not fit the network: one line, not a traceback
    ck_path = tmp_path / "avg" / "checkpoint.pt"
    honest = torch.load(ck_path, weights_only=True)
    for key in ("average", "best_state"):
        bad = dict(honest, **{key: {k: v for i, (k, v) in enumerate(honest[key].items()) if i}})
        torch.save(bad, ck_path)
        with pytest.raises(InputError, match="checkpoint.pt.*does not fit this network: .* other tensors"):
            train(tr, va, tmp_path / "avg", bands=BANDS4, config=replace(CFG, epochs=4, average_from=0.5),
                  resume=True)
    plain = train(tr, va, tmp_path / "plain", bands=BANDS4, config=replace(CFG, epochs=4))
    assert json.loads(plain.card_path.read_text())["metrics"]["kept"].startswith("best validation epoch")
    with pytest.raises(ConfigError, match="average_from"):
        replace(CFG, average_from=1.0)


def test_threshold_beta_below_one_chooses_a_more_precise_threshold():
    """F0.5 weighs precision more: on a probability map whose extra alarms are all false, it keeps a higher
    threshold than F1, with higher precision; beta 1 is F1 exactly."""
    rng = np.random.default_rng(0)
    truth = (rng.random(20000) < 0.1).astype(np.uint8)
    # changed pixels score high; no-change pixels mostly low, with a tail up to 1: F1 accepts some of the tail
    # for recall
    prob = np.where(truth == 1, rng.uniform(0.3, 1.0, truth.size), rng.uniform(0.0, 1.0, truth.size) ** 3)
    t1, f1_1, m1 = best_threshold(prob, truth)
    assert best_threshold(prob, truth, beta=1.0) == (t1, f1_1, m1)
    t05, f1_05, m05 = best_threshold(prob, truth, beta=0.5)
    assert t05 > t1 and m05["precision"] > m1["precision"] and m05["recall"] < m1["recall"]
    assert f1_05 == m05["f1"] <= f1_1  # the F1 it reports is the F1 at its own threshold
    with pytest.raises(ConfigError, match="threshold_beta"):
        TrainConfig(threshold_beta=0.0)


def test_threshold_beta_reaches_the_model_and_its_card(tmp_path):
    import json
    from dataclasses import replace

    tr, va = _samples()
    r = train(tr, va, tmp_path / "b", bands=BANDS4, config=replace(CFG, threshold_beta=0.5))
    card = json.loads(r.card_path.read_text())
    assert card["config"]["threshold_beta"] == 0.5 and "F0.5" in card["threshold_chosen_on"]
    plain = json.loads(train(tr, va, tmp_path / "p", bands=BANDS4, config=CFG).card_path.read_text())
    assert "pooled F1 of change" in plain["threshold_chosen_on"]


def test_training_leaves_torch_as_the_caller_set_it(tmp_path, capfd):
    """A notebook trains, then keeps using torch: its thread count, deterministic mode and random stream are as
    it set them, and ``progress=False`` draws nothing (training itself ran deterministic on its own threads)."""
    import torch

    tr, va = _samples()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(123)
        expected = torch.rand(3)  # the caller's stream, drawn without training in between
        torch.manual_seed(123)
        capfd.readouterr()
        train(tr, va, tmp_path / "m", bands=BANDS4, config=CFG, progress=False)
        assert capfd.readouterr().err == ""
        assert torch.get_num_threads() == 1
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.equal(torch.rand(3), expected)
    finally:
        torch.set_num_threads(before)

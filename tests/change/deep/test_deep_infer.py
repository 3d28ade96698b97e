"""Scene inference: tiled = whole-image up to blending tolerance, streamed files = in-memory result, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from minescape.change.deep.infer import predict_arrays, predict_scene
from minescape.change.deep.model import load_model
from minescape.change.deep.runner import torch_runner
from minescape.errors import ConfigError, CRSMismatchError, InputError
from minescape.geo.blend import taper_1d, window_origins
from minescape.geo.raster import Raster, read_raster, write_raster
from minescape.legend import CHANGE
from tests.change.deep.conftest import BANDS4, CRS_UTM, TRANSFORM, saved_model, toy_pair, write_pair


def tile_starts(n, tile, stride):
    return window_origins(n, size=tile, stride=stride)


def test_tile_layout_and_ramp():
    assert tile_starts(100, 64, 48) == [0, 36]
    assert tile_starts(64, 64, 48) == [0]
    assert tile_starts(40, 64, 48) == [0]
    assert tile_starts(200, 64, 48) == [0, 48, 96, 136]
    w = taper_1d(64, overlap=16)
    assert w.min() > 0 and w[16:48].min() == 1.0 and w[0] < 0.1 and np.allclose(w, w[::-1])


def test_fitted_tiles_need_no_more_tiles_and_fewer_pixels():
    from minescape.geo.blend import fitted_size, fitted_windows

    for n in (16, 40, 300, 512, 513, 785, 799, 1000, 10980):
        s, starts = fitted_windows(n, size=512, overlap=32)
        k = len(window_origins(n, size=512, stride=480))
        assert len(starts) == k and starts[-1] + s == n and s <= min(512, n)
        assert s == n or s % 16 == 0
        if k > 1:  # windows still overlap by at least the overlap, and a smaller window would need more of them
            assert all(b - a <= s - 32 for a, b in zip(starts, starts[1:]))
            assert len(window_origins(n, size=s - 16, stride=s - 48)) > k or s - 16 < 64
    assert fitted_size(799, size=512, overlap=32) == 416  # abudhabi: 4 tiles of 416 px, not 4 of 512
    with pytest.raises(ConfigError):
        fitted_size(100, size=64, overlap=64)


def test_tiled_equals_whole_image_within_blending_tolerance(tiny_model):
    m = load_model(tiny_model.model_path)
    run = torch_runner(m.net)
    t1, t2, _ = toy_pair(seed=11, height=144, width=176)
    whole = predict_arrays(run, t1, t2, mean=m.mean, std=m.std, tile=192, overlap=0)
    tiled = predict_arrays(run, t1, t2, mean=m.mean, std=m.std, tile=64, overlap=16)
    hard = predict_arrays(run, t1, t2, mean=m.mean, std=m.std, tile=64, overlap=0)
    ok = np.isfinite(whole)
    assert np.array_equal(ok, np.isfinite(tiled))
    d_blend = np.abs(tiled - whole)[ok]
    d_hard = np.abs(hard - whole)[ok]
    assert d_blend.max() < 0.1 and d_blend.mean() < 5e-3, (d_blend.max(), d_blend.mean())
    # blending is what removes the seams: abutting tiles without overlap differ more from the whole image
    assert d_blend.mean() < d_hard.mean()
    # and the masks agree on almost every pixel
    assert np.mean((tiled >= m.threshold) == (whole >= m.threshold)) > 0.995


def test_predict_scene_streams_the_same_result(tiny_model, tmp_path):
    m = load_model(tiny_model.model_path)
    t1, t2, label = toy_pair(seed=12, height=150, width=170)
    p1, p2 = write_pair(tmp_path, t1, t2)
    res = predict_scene(m, p1, p2, tmp_path / "out" / "prob.tif", tmp_path / "out" / "mask.tif", tile=64,
                        overlap=16)
    expected = predict_arrays(torch_runner(m.net), t1, t2, mean=m.mean, std=m.std, tile=64, overlap=16)
    prob = read_raster(res.probability)
    np.testing.assert_allclose(prob.data[0], expected, atol=1e-6, equal_nan=True)
    assert prob.crs == CRS_UTM and prob.transform == TRANSFORM and prob.shape == (150, 170)
    mask = read_raster(res.mask).data[0]
    assert set(np.unique(mask)) <= {0, 1, 255}
    assert (mask[:3, :3] == 255).all() and (mask[3:, 3:] != 255).all()
    np.testing.assert_array_equal(mask[3:, 3:], (expected[3:, 3:] >= m.threshold).astype(np.uint8))
    with rasterio.open(res.mask) as src:
        assert src.nodata == CHANGE.nodata and src.colormap(1)[1][:3] == CHANGE.by_code(1).color
    f1 = np.sum((mask == 1) & (label == 1)) * 2 / (np.sum(mask == 1) + np.sum(label == 1))
    assert f1 > 0.5  # the tiny model learned something real on unseen toy data
    assert res.tiles == len(tile_starts(150, 64, 48)) * len(tile_starts(170, 64, 48))


def test_predict_scene_bad_input(tiny_model, tmp_path):
    t1, t2, _ = toy_pair(seed=13, height=80, width=96)
    p1, p2 = write_pair(tmp_path, t1, t2)
    out = (tmp_path / "o" / "p.tif", tmp_path / "o" / "m.tif")
    model = load_model(tiny_model.model_path)
    # a pair smaller than one tile is one tile of its own size: the whole-image prediction
    res = predict_scene(model, p1, p2, tmp_path / "one" / "p.tif", tmp_path / "one" / "m.tif", tile=128,
                        overlap=16)
    whole = predict_arrays(torch_runner(model.net), t1, t2, mean=model.mean, std=model.std, tile=128, overlap=0)
    assert res.tiles == 1
    np.testing.assert_allclose(read_raster(res.probability).data[0], whole, atol=1e-6, equal_nan=True)
    # smaller than the network's minimum
    s1 = write_raster(Raster(t1[:, :12, :40], CRS_UTM, TRANSFORM, np.nan, BANDS4), tmp_path / "s1.tif")
    s2 = write_raster(Raster(t2[:, :12, :40], CRS_UTM, TRANSFORM, np.nan, BANDS4), tmp_path / "s2.tif")
    with pytest.raises(InputError, match=r"s1.tif: pair is 40x12 pixels, smaller than the network's 16x16 minimum"):
        predict_scene(model, s1, s2, *out, tile=128, overlap=16)
    # imagery without a band the model needs
    q1 = write_raster(Raster(t1[:3], CRS_UTM, TRANSFORM, np.nan, ("B02", "B03", "B04")), tmp_path / "rgb1.tif")
    q2 = write_raster(Raster(t2[:3], CRS_UTM, TRANSFORM, np.nan, ("B02", "B03", "B04")), tmp_path / "rgb2.tif")
    with pytest.raises(InputError, match=r"rgb1.tif: model needs bands .*missing \['B08'\]"):
        predict_scene(model, q1, q2, *out, tile=64, overlap=16)
    # dates on different grids
    from affine import Affine

    shifted = write_raster(Raster(t2, CRS_UTM, Affine(10, 0, 500010, 0, -10, 4100000), np.nan, BANDS4),
                           tmp_path / "shifted.tif")
    with pytest.raises(CRSMismatchError, match="shifted.tif: date 2 is not on date 1's grid"):
        predict_scene(model, p1, shifted, *out, tile=64, overlap=16)
    # a corrupted model file
    bad = tmp_path / "bad.pt"
    bad.write_bytes(tiny_model.model_path.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"bad.pt: not a readable model/checkpoint file"):
        load_model(bad)
    with pytest.raises(ConfigError, match="multiple of 16"):
        predict_scene(model, p1, p2, *out, tile=50, overlap=16)
    with pytest.raises(ConfigError, match="torch, onnx"):
        predict_scene(model, p1, p2, *out, tile=64, overlap=16, backend="tensorrt")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())  # nothing half-written


def test_corrupted_checkpoint_on_resume(tmp_path):
    from minescape.change.deep.train import Sample, TrainConfig, train

    t1, t2, label = toy_pair(seed=3, height=64, width=64)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02garbage")
    s = Sample("s", t1, t2, label)
    with pytest.raises(InputError, match="checkpoint.pt: not a readable model/checkpoint file"):
        train([s], [s], tmp_path, bands=BANDS4, config=TrainConfig(arch="fc-ef", crop=32, epochs=1,
                                                                    steps_per_epoch=1), resume=True)


def test_predict_sentinel2_scenes_of_the_synthetic_region(small_region, tmp_path):
    """Scenes (uint16 DN stacks) are read through read_stack; a model with bands the scene lacks is refused."""
    model = saved_model(tmp_path / "m.pt", ("B02", "B03", "B04", "B08"))
    res = predict_scene(model, small_region.t1, small_region.t2, tmp_path / "p.tif",
                        tmp_path / "m.tif", tile=128, overlap=16)
    truth = read_raster(small_region.truth_change)
    prob = read_raster(res.probability)
    assert prob.shape == truth.shape and prob.transform == truth.transform and prob.crs == truth.crs
    import rasterio

    for path in (res.probability, res.mask):  # overviews by default (260 px: one level); none when asked
        with rasterio.open(path) as src:
            assert src.overviews(1) == [2]
    from minescape.geo.raster_style import style_path

    qml = style_path(res.probability).read_text()  # the style QGIS applies: viridis from 0 to 1
    assert 'type="singlebandpseudocolor"' in qml and 'classificationMin="0"' in qml and 'classificationMax="1"' in qml
    assert f"threshold {res.threshold:.2f}" in qml
    bare = predict_scene(model, small_region.t1, small_region.t2, tmp_path / "bare_p.tif", tmp_path / "bare_m.tif",
                         tile=128, overlap=16, overviews=False)
    with rasterio.open(bare.probability) as src:
        assert src.overviews(1) == [] and np.array_equal(src.read(1), prob.data[0], equal_nan=True)
    m13 = saved_model(tmp_path / "m13.pt", ("B10",))
    with pytest.raises(InputError, match=r"missing bands \['B10'\]"):
        predict_scene(m13, small_region.t1, small_region.t2, tmp_path / "p.tif",
                      tmp_path / "m.tif", tile=128, overlap=16)


def test_flips_give_the_same_probability_in_any_batch_size(tiny_model):
    """Flips one at a time (the CPU default) or batched (GPU) average the same four predictions; and the
    flips do change each single prediction (so the average is not trivially the identity's)."""
    from minescape.change.deep.runner import tile_probability

    m = load_model(tiny_model.model_path)
    run = torch_runner(m.net)
    t1, t2, _ = toy_pair(seed=21, height=64, width=80)
    n1, n2 = (np.nan_to_num((t - m.mean[:, None, None]) / m.std[:, None, None]).astype(np.float32) for t in (t1, t2))
    plain = tile_probability(run, n1, n2)
    probs = [tile_probability(run, n1, n2, tta=True, flip_batch=b) for b in (1, 2, 4)]
    assert np.abs(probs[0] - plain).max() > 1e-4
    for p in probs[1:]:
        np.testing.assert_allclose(p, probs[0], atol=1e-6)


def test_input_phase_on_two_threads_gives_the_same_files(tiny_model, tmp_path):
    """With 2 threads the strip is read and normalised in two column parts by two threads (each reading through
    its own handle); the outputs are the same bytes as with one thread, for reflectance stacks and for a
    Sentinel-2 band folder (where two threads once shared a GDAL handle and corrupted the read)."""
    import os

    from minescape.compute import Compute

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one usable core: the two-part input phase needs 2 threads")
    m = load_model(tiny_model.model_path)
    t1, t2, _ = toy_pair(seed=31, height=150, width=170)
    p1, p2 = write_pair(tmp_path, t1, t2)
    outs = {}
    for n in (1, 2):
        res = predict_scene(m, p1, p2, tmp_path / f"o{n}" / "p.tif", tmp_path / f"o{n}" / "m.tif", tile=64,
                            overlap=16, compute=Compute("cpu", "fp32", n))
        outs[n] = (res.probability.read_bytes(), res.mask.read_bytes())
        assert res.tiles > 4  # several strips and several tiles per strip
    assert outs[1] == outs[2]
    # a band folder: one file per band, DN, read by two threads at once
    folder = {}
    for date, arr in (("a", t1), ("b", t2)):
        d = tmp_path / date
        d.mkdir()
        for k, band in enumerate(BANDS4):
            dn = np.where(np.isfinite(arr[k]), np.clip(arr[k] * 10000, 1, 65535), 0).astype(np.uint16)
            write_raster(Raster(dn[None], CRS_UTM, TRANSFORM, 0), d / f"T00XXX_20200101T000000_{band}.tif")
        folder[date] = d
    scene = {}
    for n in (1, 2):
        res = predict_scene(m, folder["a"], folder["b"], tmp_path / f"s{n}" / "p.tif", tmp_path / f"s{n}" / "m.tif",
                            tile=64, overlap=16, compute=Compute("cpu", "fp32", n))
        scene[n] = (res.probability.read_bytes(), res.mask.read_bytes())
    assert scene[1] == scene[2]
    assert np.isfinite(read_raster(tmp_path / "s2" / "p.tif").data).mean() > 0.9


def test_dn_scenes_are_normalised_from_the_stored_numbers(tiny_model, tmp_path):
    """Sentinel-2 DN stacks on one grid are normalised straight from the uint16 DN (statistics moved into DN
    units, each date with its own radiometric offset): the probabilities of the reflectance path within 1e-5,
    NaN at the same pixels (a nodata pixel in one band of date 2 included)."""
    from minescape.change.pairs import open_pair, open_pair_source, read_pair
    from minescape.compute import Compute

    m = load_model(tiny_model.model_path)
    t1, t2, _ = toy_pair(seed=41, height=150, width=170)
    names = ("S2A_MSIL1C_20170101T000000_N0204_R001_T33TWM_20170101T000001.tif",  # offset 0
             "S2B_MSIL2A_20240101T000000_N0510_R001_T33TWM_20240101T000001.tif")  # offset -1000
    paths = []
    for arr, name, off in ((t1, names[0], 0), (t2, names[1], 1000)):
        dn = np.where(np.isfinite(arr), np.clip(arr * 10000 + off, 1, 65535), 0).astype(np.uint16)
        if off:
            dn[1, 70:75, 80:90] = 0  # nodata in one band of date 2 only
        paths.append(write_raster(Raster(dn, CRS_UTM, TRANSFORM, 0, BANDS4), tmp_path / name))
    source = open_pair_source(paths[0], paths[1], BANDS4)
    from rasterio.windows import Window

    raw = source.read_dn(Window(0, 0, 170, 150))
    assert raw is not None and raw.dn1.dtype == np.uint16  # the DN path is the one taken
    assert raw.to_reflectance[0] != raw.to_reflectance[1] and not raw.valid[72, 85]
    res = predict_scene(m, paths[0], paths[1], tmp_path / "o" / "p.tif", tmp_path / "o" / "m.tif", tile=64,
                        overlap=16, compute=Compute("cpu", "fp32", 1))
    r1, r2 = read_pair(open_pair(paths[0], paths[1], bands=BANDS4))
    expected = predict_arrays(torch_runner(m.net), r1.data, r2.data, mean=m.mean, std=m.std, tile=64, overlap=16)
    got = read_raster(res.probability).data[0]
    assert np.isnan(got[72, 85]) and np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.nanmax(np.abs(got - expected)) < 1e-5


def test_prediction_keeps_its_band_files_open(tiny_model, tmp_path):
    """The handle pool is sized for every band file of both dates and every input thread: a prediction opens each
    band file once, however many strips (with the pool's old limit of 2 readers, each strip reopened the band
    files), and closes them all when it returns, the pool's limit back as it was."""
    from minescape.compute import Compute
    from minescape.geo.handles import pool

    m = load_model(tiny_model.model_path)
    t1, t2, _ = toy_pair(seed=33, height=150, width=170)
    folder = {}
    for date, arr in (("a", t1), ("b", t2)):
        (tmp_path / date).mkdir()
        for k, band in enumerate(BANDS4):
            dn = np.where(np.isfinite(arr[k]), np.clip(arr[k] * 10000, 1, 65535), 0).astype(np.uint16)
            write_raster(Raster(dn[None], CRS_UTM, TRANSFORM, 0),
                         tmp_path / date / f"T00XXX_20200101T000000_{band}.tif")
        folder[date] = tmp_path / date
    p = pool()
    saved = p.base_idle
    p.base_idle = p.max_idle = 2  # fewer readers than the 8 band files
    try:
        opened = []
        for n in range(2):
            before = p.opened
            res = predict_scene(m, folder["a"], folder["b"], tmp_path / f"o{n}" / "p.tif", tmp_path / f"o{n}" / "m.tif",
                                tile=64, overlap=16, compute=Compute("cpu", "fp32", 1))
            opened.append(p.opened - before)
            assert res.tiles > 4  # several strips: each read every band file
            assert p.idle_count() == 0 and p.max_idle == 2  # all closed on return, the reservation undone
    finally:
        p.base_idle = p.max_idle = saved
    assert opened == [2 * len(BANDS4)] * 2, opened  # each band file of each date opened once a prediction


def test_prediction_bytes_do_not_depend_on_the_thread_count(tmp_path):
    """A convolution split over 2 threads sums in another order than over 1, so one FC-EF tile differs by ~1e-7
    between 1 and 2 intra-op threads, and the default thread count follows the machine's load. Prediction on a
    CPU runs ``threads`` tiles at once, one thread each (``resolve_compute``): the files are the same bytes
    for 1 and 2 threads, on a pair of several strips and several tiles a strip."""
    import os

    import torch

    from minescape.change.deep.runner import tile_probability
    from minescape.compute import Compute, resolve_compute

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one usable core: 2 threads cannot be compared with 1")
    m = saved_model(tmp_path / "fcef.pt", arch="fc-ef", seed=2)
    t1, t2, _ = toy_pair(seed=41, height=300, width=400)
    before = torch.get_num_threads()
    try:
        # the problem is there: the same tile through the network on 1 and on 2 intra-op threads
        n1, n2 = (np.nan_to_num((t - m.mean[:, None, None]) / m.std[:, None, None]).astype(np.float32)
                  for t in (t1, t2))
        single = []
        for n in (1, 2):
            torch.set_num_threads(n)
            single.append(tile_probability(torch_runner(m.net, Compute("cpu", "fp32", n)), n1, n2))
        assert not np.array_equal(single[0], single[1])
        np.testing.assert_allclose(single[0], single[1], atol=1e-5)
        p1, p2 = write_pair(tmp_path, t1, t2)
        files = {}
        for n in (1, 2):
            compute = resolve_compute("cpu", "fp32", n)
            assert compute.tiles_at_once == n and compute.op_threads == 1
            torch.set_num_threads(2)  # the caller's own setting (1 tile on 2 threads would differ, above)
            res = predict_scene(m, p1, p2, tmp_path / f"o{n}" / "p.tif", tmp_path / f"o{n}" / "m.tif", tile=128,
                                overlap=16, compute=compute)
            assert torch.get_num_threads() == 2  # put back
            assert res.tiles >= 9
            files[n] = (res.probability.read_bytes(), res.mask.read_bytes())
        assert files[1] == files[2]
    finally:
        torch.set_num_threads(before)

"""Device, precision and threads (one line for bad choices), and ensembles of change models."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.errors import ConfigError, InputError
from tests.change.deep.conftest import BANDS4, saved_model, toy_pair, write_pair

runner = CliRunner()


def _one_line_exit_2(args, *needles):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    for n in needles:
        assert n in r.output, r.output
    return r.output


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without a GPU")
def test_cuda_without_a_gpu_is_one_line(small_region, tmp_path):
    from tests.change.deep.conftest import quick_train_args

    model = saved_model(tmp_path / "m.pt")
    _one_line_exit_2(["change", "predict", str(model.path), str(small_region.t1), str(small_region.t2),
                      str(tmp_path / "o"), "--device", "cuda"], "--device cuda", "no CUDA GPU")
    _one_line_exit_2(quick_train_args(small_region, tmp_path / "t", "--device", "cuda"), "no CUDA GPU")
    _one_line_exit_2(["map", "predict", str(small_region.t1), str(model.path), str(tmp_path / "map.tif"),
                      "--device", "cuda"], "no CUDA GPU")
    assert not (tmp_path / "o").exists() and not (tmp_path / "t").exists()


def test_bad_device_precision_and_threads_are_one_line(small_region, tmp_path):
    from minescape.threads import available_cores

    model = saved_model(tmp_path / "m.pt")
    base = ["change", "predict", str(model.path), str(small_region.t1), str(small_region.t2), str(tmp_path / "o")]
    _one_line_exit_2(base + ["--device", "tpu"], "auto, cpu, cuda")
    _one_line_exit_2(base + ["--precision", "fp8"], "fp32, bf16, auto")
    _one_line_exit_2(base + ["--threads", "0"], "--threads 0 is not possible here: choose 1 to")
    _one_line_exit_2(base + ["--threads", str(available_cores() + 1)], f"choose 1 to {available_cores()}")


def test_precision_resolution_names_the_fallback(monkeypatch):
    from minescape import compute as C

    c = C.resolve_compute("cpu", "fp32", 1)
    assert (c.device, c.precision, c.threads) == ("cpu", "fp32", 1)
    native = C.cpu_has_bf16()
    assert C.resolve_compute("cpu", "auto", 1).precision == ("bf16" if native else "fp32")
    # change training follows prediction (measured: two seeds); map training stays fp32 (not measured in bf16)
    assert C.resolve_compute("cpu", "auto", 1, workload="change-training").precision == ("bf16" if native else "fp32")
    assert C.resolve_compute("cpu", "auto", 1, workload="map-training").precision == "fp32"
    with pytest.raises(ConfigError, match="invalid workload 'serve'"):
        C.resolve_compute("cpu", "auto", 1, workload="serve")
    # a CPU without bf16 (simulated: this machine's answer replaced) gets fp32, and the output says so
    monkeypatch.setattr(C, "cpu_has_bf16", lambda: False)
    c = C.resolve_compute("cpu", "bf16", 1)
    assert c.precision == "fp32" and "no native bf16" in c.describe()


def test_bf16_probabilities_stay_within_1e3_of_fp32(tiny_model):
    from minescape.change.deep.infer import predict_arrays
    from minescape.change.deep.model import load_model
    from minescape.change.deep.runner import torch_runner
    from minescape.compute import Compute, cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    m = load_model(tiny_model.model_path)
    t1, t2, _ = toy_pair(seed=31, height=128, width=144)
    kw = dict(mean=m.mean, std=m.std, tile=64, overlap=16, tta=True)
    p32 = predict_arrays(torch_runner(m.net, Compute(precision="fp32")), t1, t2, **kw)
    p16 = predict_arrays(torch_runner(m.net, Compute(precision="bf16")), t1, t2, **kw)
    d = np.abs(p32 - p16)[np.isfinite(p32)]
    # bf16 really ran (not identical), and stayed close. The CPU's compiled bf16 network (inference_net.CpuBf16Net)
    # reaches 1.007e-3 on this toy model where autocast stayed just under 1e-3; on the leave-one-city-out fold
    # models both reach the same maxima (abudhabi 4.7e-3 vs 4.5e-3, beirut 2.2e-2 for both; docs/deep-change.md)
    assert d.size > 10_000 and 0 < d.max() < 2e-3


def test_ensemble_averages_member_probabilities(tmp_path):
    from minescape.change.deep.infer import predict_scene
    from minescape.geo.raster import read_raster

    t1, t2, _ = toy_pair(seed=14, height=96, width=112)
    p1, p2 = write_pair(tmp_path, t1, t2)
    a = saved_model(tmp_path / "a.pt", seed=1, threshold=0.4)
    b = saved_model(tmp_path / "b.pt", seed=2, threshold=0.6, mean=np.full(4, 0.15, np.float32))
    probs = []
    for name, models in (("a", [a]), ("b", [b]), ("ab", [a, b])):
        res = predict_scene(models, p1, p2, tmp_path / f"{name}_p.tif", tmp_path / f"{name}_m.tif", tile=64,
                            overlap=16)
        probs.append(read_raster(res.probability).data[0])
    pa, pb, pab = probs
    ok = np.isfinite(pab)
    assert ok.sum() > 5000 and np.abs(pa - pb)[ok].max() > 1e-3  # the members really differ
    np.testing.assert_allclose(pab[ok], ((pa + pb) / 2)[ok], atol=1e-6)
    assert res.models == 2 and res.threshold == pytest.approx(0.5)  # the mean of the members' thresholds


def test_ensemble_members_that_disagree_are_refused(tmp_path, small_region):
    from minescape.change.deep.infer import predict_scene

    a = saved_model(tmp_path / "a.pt")
    rgb = saved_model(tmp_path / "rgb.pt", BANDS4[:3])
    per_image = saved_model(tmp_path / "pi.pt", norm="per-image")
    out = (tmp_path / "p.tif", tmp_path / "m.tif")
    with pytest.raises(InputError, match=r"rgb.pt: ensemble members disagree on bands"):
        predict_scene([a, rgb], small_region.t1, small_region.t2, *out)
    with pytest.raises(InputError, match=r"pi.pt: ensemble members disagree on normalisation"):
        predict_scene([a, per_image], small_region.t1, small_region.t2, *out)
    r = runner.invoke(app, ["change", "predict", f"{a.path},{rgb.path}", str(small_region.t1),
                            str(small_region.t2), str(tmp_path / "o")])
    assert r.exit_code == 2 and "rgb.pt: ensemble members disagree on bands" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    with pytest.raises(ConfigError):
        predict_scene([a], small_region.t1, small_region.t2, *out, backend="tensorrt")

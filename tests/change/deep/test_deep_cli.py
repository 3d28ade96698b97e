"""``minescape change train|predict|export`` through the CLI runner on the small synthetic region."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.geo.raster import read_raster
from tests.change.deep.conftest import quick_train_args

runner = CliRunner()


def test_train_predict_export(small_region, tmp_path):
    out = tmp_path / "model"
    r = runner.invoke(app, quick_train_args(small_region, out))
    assert r.exit_code == 0, r.output
    assert "validation F1" in r.output
    card = json.loads((out / "model.json").read_text())
    assert card["bands"] == ["B02", "B03", "B04", "B08"] and card["training_data"]["dataset"] == "scene pair"
    r = runner.invoke(app, ["change", "export", str(out / "model.pt")])
    assert r.exit_code == 0, r.output
    assert (out / "model.onnx").exists() and "max |torch - onnxruntime|" in r.output
    for backend in ("torch", "onnx"):
        r = runner.invoke(app, ["change", "predict", str(out / "model.pt"), str(small_region.t1),
                                str(small_region.t2), str(tmp_path / backend), "--tile", "128", "--overlap", "16",
                                "--backend", backend, "--threads", "1", "--precision", "fp32"])
        assert r.exit_code == 0, r.output
    a = read_raster(tmp_path / "torch" / "change_probability.tif").data
    b = read_raster(tmp_path / "onnx" / "change_probability.tif").data
    assert abs(a - b)[a == a].max() < 1e-4
    # the default precision (auto: bf16 where the CPU has it) stays within 1e-3 of fp32
    r = runner.invoke(app, ["change", "predict", str(out / "model.pt"), str(small_region.t1),
                            str(small_region.t2), str(tmp_path / "auto"), "--tile", "128", "--overlap", "16",
                            "--threads", "1"])
    assert r.exit_code == 0, r.output
    c = read_raster(tmp_path / "auto" / "change_probability.tif").data
    assert (a == a).sum() > 10_000 and abs(a - c)[a == a].max() < 1e-3
    assert ("bf16" in r.output) == bool(abs(a - c)[a == a].max() > 0)  # the output names what ran
    mask = read_raster(tmp_path / "torch" / "change_mask.tif")
    assert mask.shape == read_raster(small_region.truth_change).shape


def test_cli_bad_input_one_line(small_region, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    r = runner.invoke(app, ["change", "predict", str(bad), str(small_region.t1), str(small_region.t2),
                            str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "model.pt: not a readable model/checkpoint file" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["change", "train", str(tmp_path / "m"), "--arch", "resnet"])
    assert r.exit_code == 2 and "give exactly one training source" in r.output
    r = runner.invoke(app, ["change", "train", str(tmp_path / "m"), "--t1", str(small_region.t1), "--t2",
                            str(small_region.t2), "--truth", str(small_region.truth_change), "--arch", "resnet"])
    assert r.exit_code == 2 and "invalid architecture 'resnet'; choose one of: fc-ef" in r.output
    r = runner.invoke(app, ["change", "export", str(tmp_path / "nope.pt")])
    assert r.exit_code == 2 and "nope.pt: model file not found" in r.output


def test_cli_import_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, minescape.cli.app; print(sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_options_per_image_ema_tta_stored_and_used(small_region, tmp_path):
    out = tmp_path / "model"
    r = runner.invoke(app, quick_train_args(small_region, out, "--norm", "per-image", "--ema", "0.9", "--tta",
                                                   "--lr-epochs", "1"))
    assert r.exit_code == 0, r.output
    card = json.loads((out / "model.json").read_text())
    assert card["normalisation"]["mode"] == "per-image" and card["tta"] is True
    assert card["config"]["ema"] == 0.9 and card["config"]["lr_epochs"] == 1
    probs = {}
    for flag in ("--tta", "--no-tta"):
        r = runner.invoke(app, ["change", "predict", str(out / "model.pt"), str(small_region.t1),
                                str(small_region.t2), str(tmp_path / flag), "--tile", "128", "--overlap", "16",
                                "--threads", "1", flag])
        assert r.exit_code == 0, r.output
        probs[flag] = read_raster(tmp_path / flag / "change_probability.tif").data
    ok = probs["--tta"] == probs["--tta"]
    assert 0 < abs(probs["--tta"] - probs["--no-tta"])[ok].max() < 0.5
    r = runner.invoke(app, ["change", "train", str(tmp_path / "m"), "--t1", str(small_region.t1), "--t2",
                            str(small_region.t2), "--truth", str(small_region.truth_change), "--norm", "sideways"])
    assert r.exit_code == 2 and "invalid normalisation 'sideways'" in r.output


def test_train_with_synthetic_clouds_records_them(small_region, tmp_path):
    out = tmp_path / "model"
    r = runner.invoke(app, quick_train_args(small_region, out, "--clouds", "0.3"))
    assert r.exit_code == 0, r.output
    assert json.loads((out / "model.json").read_text())["config"]["clouds"] == 0.3
    r = runner.invoke(app, quick_train_args(small_region, tmp_path / "m2", "--clouds", "0.3", "--norm", "per-image"))
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "synthetic clouds need global normalisation" in r.output

"""ONNX export matches torch to 1e-4 (also through scene inference); the model card says what the model is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minescape.change.deep.model import load_model
from minescape.change.deep.model_card import read_model_card
from minescape.errors import InputError
from tests.change.deep.conftest import BANDS4, toy_pair, write_pair


def test_onnx_export_matches_torch(tiny_model, tmp_path):
    from minescape.change.deep.onnx_backend import export_onnx, max_abs_difference, onnx_metadata, onnx_runner
    from minescape.change.deep.runner import torch_runner

    m = load_model(tiny_model.model_path)
    path = export_onnx(m, tmp_path / "m.onnx")
    assert max_abs_difference(m, path, size=80) < 1e-4
    meta = onnx_metadata(path)
    assert meta["bands"] == list(BANDS4) and meta["threshold"] == pytest.approx(m.threshold)
    rng = np.random.default_rng(5)
    x1 = rng.standard_normal((2, 4, 48, 112)).astype(np.float32)  # other batch and size than at export
    x2 = rng.standard_normal((2, 4, 48, 112)).astype(np.float32)
    np.testing.assert_allclose(onnx_runner(path)(x1, x2), torch_runner(m.net)(x1, x2), atol=1e-4)


@pytest.mark.parametrize("arch", ["fc-ef", "fc-siam-conc", "siam-att", "fc-ef-x2"])
def test_onnx_export_other_architectures(arch, tmp_path):
    from minescape.change.deep.onnx_backend import export_onnx, max_abs_difference
    from tests.change.deep.conftest import saved_model

    path = export_onnx(saved_model(tmp_path / "m.pt", ("B02", "B03", "B04"), arch=arch), sample_size=32)
    assert path == tmp_path / "m.onnx"
    assert max_abs_difference(load_model(tmp_path / "m.pt"), path, size=48) < 1e-4


def test_scene_inference_onnx_backend(tiny_model, tmp_path):
    from minescape.change.deep.infer import predict_scene
    from minescape.change.deep.onnx_backend import export_onnx
    from minescape.geo.raster import read_raster

    m = load_model(tiny_model.model_path)
    onnx_path = export_onnx(m, tmp_path / "m.onnx")
    t1, t2, _ = toy_pair(seed=21, height=96, width=80)
    p1, p2 = write_pair(tmp_path, t1, t2)
    a = predict_scene(m, p1, p2, tmp_path / "a_p.tif", tmp_path / "a_m.tif", tile=64, overlap=16)
    b = predict_scene(m, p1, p2, tmp_path / "b_p.tif", tmp_path / "b_m.tif", tile=64, overlap=16,
                      backend="onnx", onnx_paths=[onnx_path])
    pa, pb = read_raster(a.probability).data, read_raster(b.probability).data
    np.testing.assert_allclose(pa, pb, atol=1e-4, equal_nan=True)
    with pytest.raises(InputError, match="missing.onnx: ONNX model not found"):
        predict_scene(m, p1, p2, tmp_path / "c_p.tif", tmp_path / "c_m.tif", tile=64, overlap=16,
                      backend="onnx", onnx_paths=[tmp_path / "missing.onnx"])


def test_model_card_content(tiny_model):
    card = read_model_card(tiny_model.model_path)
    assert card["arch"] == "fc-siam-diff" and card["bands"] == list(BANDS4)
    assert len(card["normalisation"]["mean"]) == 4 and all(s > 0 for s in card["normalisation"]["std"])
    m = load_model(tiny_model.model_path)
    np.testing.assert_allclose(card["normalisation"]["mean"], m.mean, rtol=1e-5)
    assert card["threshold"] == m.threshold == tiny_model.threshold
    assert card["training_data"] == {"dataset": "toy"}
    assert card["metrics"]["val_f1"] == pytest.approx(tiny_model.val_f1)
    assert card["metrics"]["epochs_run"] == 3 and len(card["history"]) == 3
    assert card["seed"] == 3 and card["config"]["crop"] == 32
    assert {"python", "numpy", "torch"} <= set(card["versions"])
    assert card["model_file"] == "model.pt"


def test_bad_model_card(tmp_path):
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(InputError, match="m.json: model card is not valid JSON"):
        read_model_card(tmp_path / "m.pt")
    (tmp_path / "m.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(InputError, match="m.json: model card lacks"):
        read_model_card(tmp_path / "m.json")

"""--backend onnx uses ``<model>.onnx`` only when it was exported from that model: architecture, bands,
normalisation and (recorded at export) the weights' SHA-256 must match, else one InputError naming the file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from minescape.errors import InputError
from tests.change.deep.conftest import saved_model

pytest.importorskip("onnx", reason="the optional onnx package is not installed (ONNX export)")
pytest.importorskip("onnxruntime", reason="the optional onnxruntime package is not installed (onnx backend)")

BANDS4 = ("B02", "B03", "B04", "B08")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A seeded fc-ef model and its ONNX export (a.pt, a.onnx)."""
    from minescape.change.deep.onnx_backend import export_onnx

    folder = tmp_path_factory.mktemp("onnx_mismatch")
    model = saved_model(folder / "a.pt", BANDS4, arch="fc-ef", seed=0)
    return model, export_onnx(model, sample_size=32)


def _beside(exported, tmp_path, name, **kwargs):
    """A model saved as ``name``.pt with a.onnx copied beside it as ``name``.onnx."""
    model = saved_model(tmp_path / f"{name}.pt", **kwargs)
    shutil.copy(exported[1], tmp_path / f"{name}.onnx")
    return model


def test_the_models_own_export_is_used(exported):
    from minescape.change.deep.infer import make_members
    from minescape.change.deep.onnx_backend import onnx_metadata
    from minescape.change.deep.runner import torch_runner

    model, path = exported
    assert onnx_metadata(path)["weights_sha256"]
    member = make_members([model], backend="onnx")[0]
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(member.runner(x[0], x[1]), torch_runner(model.net)(x[0], x[1]), atol=1e-4)


def test_stale_export_of_other_weights_is_refused(exported, tmp_path):
    import torch

    from minescape.change.deep.infer import make_members

    other = _beside(exported, tmp_path, "b", bands=BANDS4, arch="fc-ef", seed=1)
    a, b = exported[0].net.state_dict(), other.net.state_dict()
    assert all(a[k].shape == b[k].shape for k in a) and not all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="b.onnx: was not exported from model .*b.pt: its weights differ"):
        make_members([other], backend="onnx")


@pytest.mark.parametrize(("fields", "what"), [
    ({"bands": ("B02", "B03", "B04")}, "its bands are"),
    ({"bands": BANDS4, "arch": "fc-siam-diff"}, "its architecture is"),
    ({"bands": BANDS4, "mean": np.full(4, 0.2, np.float32)}, "its mean is"),
])
def test_export_of_another_model_is_refused(exported, tmp_path, fields, what):
    from minescape.change.deep.infer import make_members

    fields = dict(fields)
    model = _beside(exported, tmp_path, "c", arch=fields.pop("arch", "fc-ef"), seed=0, **fields)
    with pytest.raises(InputError, match=f"c.onnx: was not exported from model .*c.pt: {what}") as err:
        make_members([model], backend="onnx")
    assert len(str(err.value).splitlines()) == 1


def test_the_export_given_as_the_model_says_which_file_to_give(exported):
    """``change predict model.onnx ...``: the export is a real ONNX file (onnxruntime opens it); the model to give
    is the .pt it came from, which the message names."""
    import onnxruntime

    from minescape.change.deep.model import load_model

    _, path = exported
    assert onnxruntime.InferenceSession(str(path)).get_inputs()
    with pytest.raises(InputError, match=r"a.onnx: is an ONNX export; give the model it was exported from \(a.pt\)"):
        load_model(path)

"""Model and checkpoint files are zips that torch.save writes uncompressed: one with compressed entries (a few KB
that inflate to many MB or GB) is refused before torch.load inflates anything; model metadata is checked too."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from minescape.errors import InputError


def _deflated_copy(src: bytes, dst) -> None:
    """The same zip, every entry DEFLATE-compressed."""
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED,
                                                                    compresslevel=9) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))


def _model() -> dict:
    """A valid fc-ef model payload (what save_model writes)."""
    import torch

    from minescape.change.deep.model import MODEL_FORMAT, ChangeModel, build_model

    torch.manual_seed(0)
    m = ChangeModel(build_model("fc-ef", 3), "fc-ef", ("B02", "B03", "B04"), np.zeros(3, np.float32),
                    np.ones(3, np.float32), 0.5)
    state = {k: v.detach().contiguous() for k, v in m.net.state_dict().items()}
    return {"format": MODEL_FORMAT, "meta": json.dumps(m.meta()), "state_dict": state}


def test_torch_save_stores_entries_uncompressed():
    from minescape.change.deep.model import torch_bytes

    with zipfile.ZipFile(io.BytesIO(torch_bytes(_model()))) as z:
        infos = z.infolist()
    assert infos and all(i.compress_type == zipfile.ZIP_STORED for i in infos)


def test_compressed_model_file_is_refused_before_loading(tmp_path):
    import torch

    from minescape.change.deep.model import load_model, torch_bytes

    payload = _model()
    # the weights held as a view of a large zero storage: the file inflates to ~32 MB from a few KB
    big = torch.zeros(8 * 2**20)
    name = "enc1.0.weight" if "enc1.0.weight" in payload["state_dict"] else next(iter(payload["state_dict"]))
    w = payload["state_dict"][name]
    big[: w.numel()] = w.flatten()
    payload["state_dict"][name] = big[: w.numel()].view(w.shape)
    path = tmp_path / "model.pt"
    _deflated_copy(torch_bytes(payload), path)
    with zipfile.ZipFile(path) as z:
        inflated = sum(i.file_size for i in z.infolist())
        assert any(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    assert inflated > 5 * path.stat().st_size  # really inflates (32 MB of zeros in a few KB), and torch reads it:
    assert torch.load(path, weights_only=True)["format"] == payload["format"]
    with pytest.raises(InputError, match="is compressed") as err:
        load_model(path)
    assert str(path) in str(err.value) and len(str(err.value).splitlines()) == 1


def test_compressed_checkpoint_is_refused_on_resume(tmp_path):
    from minescape.change.deep.model import load_payload, torch_bytes

    path = tmp_path / "checkpoint.pt"
    _deflated_copy(torch_bytes({"format": "minescape-change-checkpoint/2", "meta": "{}"}), path)
    with pytest.raises(InputError, match="checkpoint.pt: refused: zip entry .* is compressed"):
        load_payload(path, formats=("minescape-change-checkpoint/2",))


@pytest.mark.parametrize(("field", "value", "what"), [
    ("std", [0.1, 0.0, 0.1], "std > 0"),
    ("std", [0.1, float("nan"), 0.1], "finite"),
    ("mean", [0.1, float("inf"), 0.1], "finite"),
    ("threshold", float("nan"), "not a probability"),
    ("threshold", 2.0, "not a probability"),
])
def test_unusable_normalisation_or_threshold_is_refused_on_load(tmp_path, field, value, what):
    from minescape.change.deep.model import load_model, torch_bytes

    payload = _model()
    good = tmp_path / "good.pt"
    good.write_bytes(torch_bytes(payload))
    assert load_model(good).std.tolist() == [1.0, 1.0, 1.0]  # the same file loads with usable metadata
    meta = json.loads(payload["meta"])
    meta[field] = value
    payload["meta"] = json.dumps(meta)
    path = tmp_path / "model.pt"
    path.write_bytes(torch_bytes(payload))
    with pytest.raises(InputError, match=what) as err:
        load_model(path)
    assert str(path) in str(err.value) and len(str(err.value).splitlines()) == 1

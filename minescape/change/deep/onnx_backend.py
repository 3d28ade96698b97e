"""ONNX export of change models and inference through onnxruntime (an optional backend).

The exported graph takes ``t1`` and ``t2`` (``(N, C, H, W)`` float32, normalised as the model card says) and
returns ``logits`` ``(N, 1, H, W)``; batch, height and width are dynamic (H and W multiples of 16). The model's
bands, normalisation and threshold are also stored in the ONNX metadata, so the file is self-describing, with the
SHA-256 of the weights it was exported from: the onnx backend refuses a file whose metadata or weights are not the
model's (a stale or foreign ``<model>.onnx``), see :func:`onnx_mismatch`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from minescape.change.deep.model import ChangeModel, weights_sha256
from minescape.errors import ConfigError, InputError, MissingInputError

OPSET = 17


def require(package: str) -> None:
    """ConfigError (one line) when the optional ``package`` (``onnx`` or ``onnxruntime``) cannot be imported."""
    import importlib

    try:
        importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"the optional package {package!r} is not installed; ONNX export and the onnx backend "
                          f"need it (pip install onnx onnxruntime)") from None


def export_onnx(model: ChangeModel, out_path: str | Path | None = None, *, sample_size: int = 64,
                check: bool = True, tolerance: float = 1e-4) -> Path:
    """Export a :class:`~minescape.change.deep.model.ChangeModel` to ONNX, atomically.

    Args:
        model: the model (``model.path`` places the default output).
        out_path: output ``.onnx``; default beside the model with the same stem.
        sample_size: height/width in pixels of the example input used for tracing (multiple of 16).
        check: run onnxruntime on a seeded random input and compare with torch.
        tolerance: largest allowed absolute difference of logits when ``check`` is on.

    Raises:
        InputError: the outputs differ by more than ``tolerance`` (the file is not written).
        ConfigError: ``onnx`` or ``onnxruntime`` is not installed.
    """
    import torch

    from minescape.atomic import atomic_path

    require("onnx")
    if check:
        require("onnxruntime")
    out_path = Path(out_path) if out_path else Path(model.path).with_suffix(".onnx")
    net = model.net.eval()
    c = len(model.bands)
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(1, c, sample_size, sample_size, generator=gen)
    x2 = torch.randn(1, c, sample_size, sample_size, generator=gen)
    with atomic_path(out_path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deprecated but needs no onnxscript; scope its warnings to this call
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(net, (x1, x2), str(tmp), input_names=["t1", "t2"], output_names=["logits"],
                              dynamic_axes={"t1": {0: "n", 2: "h", 3: "w"}, "t2": {0: "n", 2: "h", 3: "w"},
                                            "logits": {0: "n", 2: "h", 3: "w"}},
                              opset_version=OPSET, dynamo=False)
        _add_metadata(tmp, model)
        if check:
            diff = max_abs_difference(model, tmp, size=sample_size + 32)
            if diff > tolerance:
                raise InputError(f"ONNX output differs from torch by {diff:.2e} (> {tolerance:.0e})", path=out_path)
    return out_path


def _add_metadata(path: Path, model: ChangeModel) -> None:
    import onnx

    proto = onnx.load(str(path))
    meta = {"arch": model.arch, "bands": json.dumps(list(model.bands)),
            "mean": json.dumps([float(v) for v in model.mean]), "std": json.dumps([float(v) for v in model.std]),
            "threshold": str(model.threshold), "norm": model.norm, "tta": json.dumps(bool(model.tta)),
            "coregister": json.dumps(bool(model.coregister)), "weights_sha256": weights_sha256(model)}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def onnx_session(path: str | Path, *, threads: int | None = None):
    """An onnxruntime InferenceSession on CPU; InputError naming the file if it cannot be loaded."""
    require("onnxruntime")
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise MissingInputError("ONNX model not found; create it with `minescape change export MODEL`", path=path)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise InputError(f"not a readable ONNX model: {' '.join(str(exc).split())[:120]}", path=path) from None


def onnx_runner(path: str | Path, *, threads: int | None = None, model: ChangeModel | None = None):
    """A runner ``(x1, x2) -> logits`` on numpy arrays through onnxruntime
    (see :mod:`minescape.change.deep.runner`).

    ``model``: the model the file must have been exported from (:func:`onnx_mismatch`): InputError naming the
    file otherwise, before anything runs.
    """
    sess = onnx_session(path, threads=threads)
    if model is not None:
        problem = onnx_mismatch(model, _session_metadata(sess, path))
        if problem is not None:
            where = f"model {model.path}" if model.path is not None else "the model"
            raise InputError(f"was not exported from {where}: {problem}; export it again with "
                             "`minescape change export MODEL`", path=path)

    def run(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        return sess.run(["logits"], {"t1": np.ascontiguousarray(x1, np.float32),
                                     "t2": np.ascontiguousarray(x2, np.float32)})[0]

    return run


def onnx_metadata(path: str | Path) -> dict:
    """The model metadata stored in an exported ONNX file (arch, bands, mean, std, threshold, norm, whether
    the threshold assumes flip TTA and the pair co-registered, and ``weights_sha256``; files from before those
    keys say ``False``, and None for the digest)."""
    return _session_metadata(onnx_session(path), path)


def _session_metadata(sess, path: str | Path) -> dict:
    meta = sess.get_modelmeta().custom_metadata_map
    try:
        return {"arch": meta.get("arch"), "bands": json.loads(meta.get("bands", "[]")),
                "mean": json.loads(meta.get("mean", "[]")), "std": json.loads(meta.get("std", "[]")),
                "threshold": float(meta.get("threshold", "nan")), "norm": meta.get("norm", "global"),
                "tta": json.loads(meta.get("tta", "false")),
                "coregister": json.loads(meta.get("coregister", "false")),
                "weights_sha256": meta.get("weights_sha256")}
    except ValueError as exc:
        raise InputError(f"ONNX metadata is not readable ({exc})", path=path) from None


def onnx_mismatch(model: ChangeModel, meta: dict) -> str | None:
    """How an ONNX file's metadata (:func:`onnx_metadata`) differs from ``model``, or None when it was exported
    from it: architecture, bands (names and order), normalisation (kind, mean, std as float32) and, where the file
    records it, the SHA-256 of the weights (a file exported before it was recorded is checked on the rest only).
    Threshold, TTA and co-registration are read from the model, never from the ONNX file."""
    if meta.get("arch") != model.arch:
        return f"its architecture is {meta.get('arch')!r}, the model's {model.arch!r}"
    if list(meta.get("bands") or []) != list(model.bands):
        return f"its bands are {list(meta.get('bands') or [])}, the model's {list(model.bands)}"
    if meta.get("norm") != model.norm:
        return f"its normalisation is {meta.get('norm')!r}, the model's {model.norm!r}"
    for key in ("mean", "std"):
        theirs = np.asarray(meta.get(key) or [], np.float32)
        ours = np.asarray(getattr(model, key), np.float32)
        if theirs.shape != ours.shape or not np.array_equal(theirs, ours):
            return f"its {key} is {theirs.tolist()}, the model's {ours.tolist()}"
    digest = meta.get("weights_sha256")
    if digest is not None and digest != weights_sha256(model):
        return "its weights differ from the model's (same shapes, other values: a stale export?)"
    return None


def max_abs_difference(model: ChangeModel, onnx_path: str | Path, *, size: int = 96, seed: int = 1) -> float:
    """Largest absolute difference between torch and onnxruntime logits on a seeded random input."""
    from minescape.change.deep.runner import torch_runner

    rng = np.random.default_rng(seed)
    c = len(model.bands)
    x1 = rng.standard_normal((1, c, size, size + 16)).astype(np.float32)
    x2 = rng.standard_normal((1, c, size, size + 16)).astype(np.float32)
    a = torch_runner(model.net)(x1, x2)
    b = onnx_runner(onnx_path)(x1, x2)
    return float(np.max(np.abs(a - b)))

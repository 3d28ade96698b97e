"""The :class:`ChangeModel` value and its file (``model.pt``): one value through save, load, card and predict.

A model file is a zip written by ``torch.save`` and read with ``torch.load(..., weights_only=True)``: it holds
only tensors (``state_dict``), a format marker and the metadata as one JSON string (``meta``), so loading
an untrusted file never runs code. Files of an older format, or anything else, are refused with one line.

``torch.save`` stores the zip's entries uncompressed, so the memory loading takes is bounded by the file's size;
a file with compressed entries (a few MB inflating to many GB) is refused before ``torch.load`` reads it
(:func:`check_archive`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from minescape.errors import ConfigError, InputError, MissingInputError, ResourceLimitError, check_choice
from minescape.limits import check_network

ARCHITECTURES: tuple[str, ...] = ("fc-ef", "fc-siam-conc", "fc-siam-diff", "siam-att", "fc-ef-x2")
STRIDE = 16  # four 2x poolings: tile sides must be multiples of this
MODEL_FORMAT = "minescape-change-model/2"
OLD_FORMATS = ("minescape-change-model/1", "minescape-change-checkpoint/1")


@dataclass(frozen=True)
class ChangeModel:
    """A trained network with its input contract: bands, normalisation and decision threshold.

    Attributes:
        net: the torch network (eval mode after loading).
        arch: one of :data:`ARCHITECTURES`.
        bands: band names in input order.
        mean, std: per-band normalisation in reflectance units (``global``; informative for ``per-image``).
        threshold: decision threshold on the change probability.
        norm: ``global`` or ``per-image`` (:data:`minescape.change.deep.norm.NORMS`).
        tta: the threshold was chosen on flip-averaged probabilities; predict averages flips by default.
        coregister: date 2 was co-registered onto date 1 in training; predict does the same by default.
        model_kwargs: keyword arguments of :func:`build_model`.
        extra: training summary (config, metrics) kept in the file.
        path: the file it was loaded from (None for a model in memory).
    """

    net: Any
    arch: str
    bands: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    threshold: float
    norm: str = "global"
    tta: bool = False
    coregister: bool = False
    model_kwargs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    path: Path | None = None

    def meta(self) -> dict:
        """Everything but the weights, as plain JSON values."""
        return {"arch": self.arch, "model_kwargs": dict(self.model_kwargs), "bands": list(self.bands),
                "mean": [float(v) for v in np.asarray(self.mean)], "std": [float(v) for v in np.asarray(self.std)],
                "threshold": float(self.threshold), "norm": str(self.norm), "tta": bool(self.tta),
                "coregister": bool(self.coregister), "extra": self.extra}


def build_model(arch: str, in_channels: int, **kwargs: Any):
    """A fresh network ``arch`` (one of :data:`ARCHITECTURES`) for ``in_channels`` bands per date.

    Keyword arguments go to the network (``dropout`` for the FC networks, ``width`` for ``siam-att``).
    """
    check_choice(arch, ARCHITECTURES, what="architecture")
    if in_channels < 1:
        raise ConfigError(f"a model needs at least one input band (got {in_channels})")
    check_model_kwargs(arch, kwargs)
    from minescape.change.deep.networks import NETWORKS

    return NETWORKS[arch](in_channels, **kwargs)


def check_model_kwargs(arch: str, kwargs: dict) -> None:
    """ConfigError unless ``kwargs`` are known options of ``arch`` of the right type: ``dropout`` in [0, 1) for
    every network, an integer ``width`` >= 1 for ``siam-att`` (its size is checked by
    :func:`minescape.limits.check_network` where a file declares it)."""
    allowed = {"dropout", "width"} if arch == "siam-att" else {"dropout"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(f"unknown {arch} option(s) {unknown} (known: {', '.join(sorted(allowed))})")
    d = kwargs.get("dropout", 0.0)
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
        raise ConfigError(f"dropout must be a number in [0, 1) (got {d!r})")
    wd = kwargs.get("width", 16)
    if isinstance(wd, bool) or not isinstance(wd, int) or wd < 1:
        raise ConfigError(f"width must be an integer >= 1 (got {wd!r})")


def count_parameters(net) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def weights_sha256(model: ChangeModel) -> str:
    """SHA-256 (hex) of the network's weights: every state-dict tensor in name order, with its dtype and shape.
    The same weights give the same digest on any device; an ONNX export records it (``weights_sha256``) so a
    stale export of other weights with the same shapes is told apart from the model's own."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    state = model.net.state_dict()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def torch_bytes(payload: dict) -> bytes:
    """``torch.save`` into memory: the same payload gives the same bytes (no file name inside the zip)."""
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_model(path: str | Path, model: ChangeModel) -> Path:
    """Write ``model`` atomically as a weights-only file (tensors + a JSON string of metadata)."""
    from minescape.atomic import atomic_write_bytes

    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "meta": json.dumps(model.meta(), sort_keys=True), "state_dict": state}
    return atomic_write_bytes(path, torch_bytes(payload))


def check_archive(path: Path) -> None:
    """Refuse a model or checkpoint zip that would take more memory to load than its size says, before
    ``torch.load`` inflates anything: an entry stored compressed (``torch.save`` never compresses, so such a file
    was not written by it and could inflate a few MB into many GB), an entry declaring more bytes than it
    stores, or entries whose total size fails :func:`minescape.limits.check_alloc`. Files that are not zips are
    left to ``torch.load`` (it refuses them).

    Raises:
        InputError: one line naming ``path`` and the entry.
    """
    import zipfile

    from minescape.limits import check_alloc

    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"not a readable model/checkpoint file (corrupted or truncated?): {exc}", path=path) from None
    total = 0
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED:
            raise InputError(f"refused: zip entry {entry.filename!r} is compressed ({entry.file_size:,} bytes "
                             f"in {entry.compress_size:,}); torch.save stores entries uncompressed, so this file was "
                             "not written by minescape and could inflate far beyond its size", path=path)
        if entry.file_size != entry.compress_size:
            raise InputError(f"refused: zip entry {entry.filename!r} declares {entry.file_size:,} bytes but stores "
                             f"{entry.compress_size:,} (damaged or forged)", path=path)
        total += entry.file_size
    try:
        check_alloc(total, "loading the model/checkpoint file")
    except ResourceLimitError as exc:
        raise ResourceLimitError(str(exc), path=path) from None


def load_payload(path: str | Path, *, formats: tuple[str, ...]) -> dict:
    """Read a model or checkpoint file safely (``weights_only=True``): a dict with ``format`` in ``formats``.

    Raises:
        MissingInputError: no such file.
        InputError: unreadable, foreign (any pickle that is not plain tensors and values), an old format, or a
            zip that would inflate beyond its size (:func:`check_archive`); one line naming the file.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingInputError("model file not found", path=path)
    check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):  # a pickle asking for code: never run it
            raise InputError("refused: the file holds objects other than tensors and plain values (not a "
                             "minescape model or checkpoint; it was not loaded, because loading it could run code)",
                             path=path) from None
        raise InputError(f"not a readable model/checkpoint file (corrupted or truncated?): "
                         f"{' '.join(str(exc).split())[:120]}", path=path) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        msg = " ".join(str(exc).split())[:120]
        raise InputError(f"not a readable model/checkpoint file (corrupted or truncated?): {msg}",
                         path=path) from None
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt in OLD_FORMATS:
        raise InputError(f"written in the old format {fmt!r}, which this version no longer reads; train the "
                         "model again", path=path)
    if fmt not in formats:
        raise InputError(f"not a minescape change {'model' if MODEL_FORMAT in formats else 'checkpoint'} "
                         f"(format {fmt!r}, expected {' or '.join(formats)})", path=path)
    try:
        payload["meta"] = json.loads(payload["meta"])
    except (KeyError, TypeError, ValueError):
        raise InputError("model file has no readable metadata", path=path) from None
    return payload


def load_model(path: str | Path) -> ChangeModel:
    """Load a model written by :func:`save_model` (network on the CPU, eval mode).

    Raises:
        InputError: one line naming the file: unreadable or foreign (:func:`load_payload`), metadata that lacks a
            field or holds an unusable one (unknown architecture or normalisation, a mean or std per band that is
            not finite or a std <= 0, a threshold outside [0, 1]), or weights that do not fit the network.
    """
    import torch

    from minescape.change.deep.norm import NORMS

    path = Path(path)
    if path.suffix.lower() == ".onnx":
        raise InputError(f"is an ONNX export; give the model it was exported from ({path.with_suffix('.pt').name}): "
                         "--backend onnx runs the .onnx file beside it", path=path)
    payload = load_payload(path, formats=(MODEL_FORMAT,))
    meta = payload["meta"]
    try:
        arch, bands = meta["arch"], tuple(meta["bands"])
        norm = str(meta.get("norm", "global"))
        mean = np.asarray(meta["mean"], np.float32)
        std = np.asarray(meta["std"], np.float32)
        threshold = float(meta["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"model metadata lacks or garbles {exc}", path=path) from None
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})", path=path)
    if norm not in NORMS:
        raise InputError(f"model uses normalisation {norm!r}, unknown to this version (known: {', '.join(NORMS)})",
                         path=path)
    if mean.shape != (len(bands),) or std.shape != (len(bands),):
        raise InputError(f"model has {len(bands)} bands but {mean.size} means and {std.size} stds", path=path)
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise InputError(f"model normalisation is unusable (mean {mean.tolist()}, std {std.tolist()}): every mean "
                         "and std must be finite and every std > 0", path=path)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"model threshold {threshold} is not a probability in [0, 1]", path=path)
    kwargs = meta.get("model_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise InputError(f"model metadata has model_kwargs of type {type(kwargs).__name__}, not an object", path=path)
    try:
        check_network(lambda: build_model(arch, len(bands), **kwargs), f"the {arch} network it describes",
                      weights=payload["state_dict"])
    except (ResourceLimitError, InputError) as exc:
        raise InputError(str(exc), path=path) from None
    except ConfigError as exc:  # the file's metadata, not the user's options
        raise InputError(f"model metadata: {exc}", path=path) from None
    except KeyError:
        raise InputError("model file has no weights (state_dict)", path=path) from None
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave the caller's RNG alone
        net = build_model(arch, len(bands), **kwargs)
    try:
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise InputError(f"weights do not fit a {arch} network: {str(exc).splitlines()[0]}", path=path) from None
    net.eval()
    return ChangeModel(net=net, arch=arch, bands=bands, mean=mean, std=std, threshold=threshold, norm=norm,
                       tta=bool(meta.get("tta", False)), coregister=bool(meta.get("coregister", False)),
                       model_kwargs=dict(meta.get("model_kwargs") or {}), extra=dict(meta.get("extra") or {}),
                       path=path)

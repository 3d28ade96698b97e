"""Fully convolutional change-detection networks in plain PyTorch (no torchvision).

Three networks after Daudt, Le Saux & Boulch (2018), "Fully Convolutional Siamese Networks for Change
Detection" (ICIP), and one stronger variant:

- ``fc-ef``        early fusion: both dates stacked on the channel axis, one U-Net.
- ``fc-siam-conc`` Siamese encoder (shared weights); decoder skips concatenate both dates' features.
- ``fc-siam-diff`` Siamese encoder; decoder skips are the absolute feature difference.
- ``siam-att``     Siamese encoder with wider residual stages; skips fuse ``|f1 - f2|`` with both dates
                   through a 1x1 convolution and squeeze-and-excitation channel attention, and the
                   decoder gates each skip with a spatial attention map (Oktay et al. 2018).

Every network takes two ``(N, C, H, W)`` float tensors (normalised reflectance of date 1 and date 2,
any band count ``C``) and returns ``(N, 1, H, W)`` change logits (sigmoid -> probability of change).
``H`` and ``W`` must be multiples of :data:`STRIDE` (16); inference pads tiles accordingly.

``torch`` is imported lazily: build networks with :func:`build_model`.
"""

from __future__ import annotations

from typing import Any

from minescape.errors import check_choice

ARCHITECTURES: tuple[str, ...] = ("fc-ef", "fc-siam-conc", "fc-siam-diff", "siam-att")
STRIDE = 16  # four 2x poolings


def build_model(arch: str, in_channels: int, **kwargs: Any):
    """A fresh network ``arch`` (one of :data:`ARCHITECTURES`) for ``in_channels`` bands per date.

    Keyword arguments go to the network (``dropout`` for the FC networks, ``width`` for ``siam-att``).
    """
    check_choice(arch, ARCHITECTURES, what="architecture")
    if in_channels < 1:
        from minescape.errors import ConfigError

        raise ConfigError(f"a model needs at least one input band (got {in_channels})")
    classes = _classes()
    return classes[arch](in_channels, **kwargs)


def count_parameters(model) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


_CACHE: dict[str, type] = {}


def _classes() -> dict[str, type]:  # noqa: C901 - one place that defines all network classes lazily
    if _CACHE:
        return _CACHE
    import torch
    from torch import nn
    from torch.nn import functional as F

    def cbr(cin: int, cout: int, dropout: float) -> list:
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        return layers

    def stage(cin: int, widths: tuple[int, ...], dropout: float) -> nn.Sequential:
        layers: list = []
        for w in widths:
            layers += cbr(cin, w, dropout)
            cin = w
        return nn.Sequential(*layers)

    # Daudt et al. 2018: encoder 16,16 | 32,32 | 64,64,64 | 128,128,128 with 2x2 max pooling.
    ENC = ((16, 16), (32, 32), (64, 64, 64), (128, 128, 128))

    class _Encoder(nn.Module):
        def __init__(self, cin: int, dropout: float) -> None:
            super().__init__()
            stages = []
            for widths in ENC:
                stages.append(stage(cin, widths, dropout))
                cin = widths[-1]
            self.stages = nn.ModuleList(stages)

        def forward(self, x):
            skips = []
            for s in self.stages:
                x = s(x)
                skips.append(x)
                x = F.max_pool2d(x, 2)
            return x, skips

    class _Decoder(nn.Module):
        """Upsampling path; ``mult`` is the skip width multiplier (1 for EF/diff, 2 for conc)."""

        def __init__(self, mult: int, dropout: float) -> None:
            super().__init__()
            self.up = nn.ModuleList([nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1)
                                     for c in (128, 64, 32, 16)])
            self.convs = nn.ModuleList([
                stage(128 + 128 * mult, (128, 128, 64), dropout),
                stage(64 + 64 * mult, (64, 64, 32), dropout),
                stage(32 + 32 * mult, (32, 16), dropout),
                nn.Sequential(*cbr(16 + 16 * mult, 16, 0.0)),
            ])
            self.head = nn.Conv2d(16, 1, 3, padding=1)

        def forward(self, x, skips):
            for up, conv, skip in zip(self.up, self.convs, reversed(skips)):
                x = conv(torch.cat([up(x), skip], dim=1))
            return self.head(x)

    class FCEF(nn.Module):
        """FC-EF: early fusion of both dates (``2C`` input channels) in one U-Net."""

        def __init__(self, in_channels: int, *, dropout: float = 0.2) -> None:
            super().__init__()
            self.encoder = _Encoder(2 * in_channels, dropout)
            self.decoder = _Decoder(1, dropout)

        def forward(self, x1, x2):
            x, skips = self.encoder(torch.cat([x1, x2], dim=1))
            return self.decoder(x, skips)

    class FCSiamConc(nn.Module):
        """FC-Siam-conc: shared encoder, skips concatenate date-1 and date-2 features."""

        def __init__(self, in_channels: int, *, dropout: float = 0.2) -> None:
            super().__init__()
            self.encoder = _Encoder(in_channels, dropout)
            self.decoder = _Decoder(2, dropout)

        def forward(self, x1, x2):
            _, s1 = self.encoder(x1)
            x, s2 = self.encoder(x2)
            return self.decoder(x, [torch.cat([a, b], dim=1) for a, b in zip(s1, s2)])

    class FCSiamDiff(nn.Module):
        """FC-Siam-diff: shared encoder, skips are ``|f1 - f2|``."""

        def __init__(self, in_channels: int, *, dropout: float = 0.2) -> None:
            super().__init__()
            self.encoder = _Encoder(in_channels, dropout)
            self.decoder = _Decoder(1, dropout)

        def forward(self, x1, x2):
            _, s1 = self.encoder(x1)
            x, s2 = self.encoder(x2)
            return self.decoder(x, [torch.abs(a - b) for a, b in zip(s1, s2)])

    class _ResStage(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                      nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(cout))
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return F.relu(self.body(x) + self.skip(x))

    class _SE(nn.Module):
        def __init__(self, c: int, r: int = 4) -> None:
            super().__init__()
            self.fc1 = nn.Conv2d(c, max(4, c // r), 1)
            self.fc2 = nn.Conv2d(max(4, c // r), c, 1)

        def forward(self, x):
            w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
            return x * w

    class _Fuse(nn.Module):
        """Difference skip: 1x1 conv over ``[|f1-f2|, f1, f2]`` then SE channel attention."""

        def __init__(self, c: int) -> None:
            super().__init__()
            self.mix = nn.Sequential(nn.Conv2d(3 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            self.se = _SE(c)

        def forward(self, a, b):
            return self.se(self.mix(torch.cat([torch.abs(a - b), a, b], dim=1)))

    class _Gate(nn.Module):
        """Additive spatial attention gate: the decoder signal weights the skip per pixel."""

        def __init__(self, c_skip: int, c_gate: int) -> None:
            super().__init__()
            inter = max(8, c_skip // 2)
            self.ws = nn.Conv2d(c_skip, inter, 1)
            self.wg = nn.Conv2d(c_gate, inter, 1)
            self.psi = nn.Conv2d(inter, 1, 1)

        def forward(self, skip, gate):
            return skip * torch.sigmoid(self.psi(F.relu(self.ws(skip) + self.wg(gate))))

    class SiamAtt(nn.Module):
        """Siamese residual U-Net with attention-weighted difference skips (``siam-att``)."""

        def __init__(self, in_channels: int, *, width: int = 16, dropout: float = 0.1) -> None:
            super().__init__()
            ws = (width, 2 * width, 4 * width, 8 * width)
            self.stem = nn.Sequential(nn.Conv2d(in_channels, ws[0], 3, padding=1, bias=False),
                                      nn.BatchNorm2d(ws[0]), nn.ReLU(inplace=True))
            self.enc = nn.ModuleList([_ResStage(ws[max(0, i - 1)], w) for i, w in enumerate(ws)])
            self.fuse = nn.ModuleList([_Fuse(w) for w in ws])
            self.bottom = _ResStage(ws[3], ws[3])
            self.gates = nn.ModuleList([_Gate(ws[i], ws[i]) for i in range(4)])
            self.dec = nn.ModuleList([_ResStage(ws[i] * 2, ws[max(0, i - 1)]) for i in range(4)])
            self.drop = nn.Dropout2d(dropout)
            self.head = nn.Conv2d(ws[0], 1, 1)

        def _encode(self, x):
            x = self.stem(x)
            feats = []
            for i, s in enumerate(self.enc):
                if i:
                    x = F.max_pool2d(x, 2)
                x = s(x)
                feats.append(x)
            return feats

        def forward(self, x1, x2):
            f1 = self._encode(x1)
            f2 = self._encode(x2)
            skips = [fu(a, b) for fu, a, b in zip(self.fuse, f1, f2)]
            x = self.drop(self.bottom(F.max_pool2d(skips[3], 2)))
            for i in (3, 2, 1, 0):
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
                x = self.dec[i](torch.cat([x, self.gates[i](skips[i], x)], dim=1))
            return self.head(x)

    _CACHE.update({"fc-ef": FCEF, "fc-siam-conc": FCSiamConc, "fc-siam-diff": FCSiamDiff, "siam-att": SiamAtt})
    return _CACHE


# --------------------------------------------------------------------------------------------- model files
MODEL_FORMAT = "minescape-change-model/1"


def save_model(path, net, *, arch: str, bands, mean, std, threshold: float, model_kwargs: dict | None = None,
               extra: dict | None = None, norm: str = "global", tta: bool = False, coregister: bool = False):
    """Write a trained network with everything inference needs (atomic ``torch.save``).

    Args:
        path: output ``.pt`` file.
        net: the trained network (its ``state_dict`` is stored).
        arch: architecture name (:data:`ARCHITECTURES`).
        bands: Sentinel-2 band names, in input order.
        mean, std: per-band normalisation (reflectance units) computed on the training set.
        threshold: decision threshold on the change probability, chosen on validation data.
        model_kwargs: keyword arguments given to :func:`build_model`.
        extra: anything else to keep (training summary).
        norm: input normalisation (:data:`minescape.change.infer.NORMS`): ``global`` uses ``mean``/``std``,
            ``per-image`` standardises each date of a pair by its own statistics (``mean``/``std`` are then
            informative only).
        tta: whether ``threshold`` was chosen on flip-averaged (test-time augmented) probabilities; inference
            does the same by default.
        coregister: whether the training pairs' date 2 was co-registered onto date 1
            (:mod:`minescape.change.coregister`); inference does the same by default.
    """
    import torch

    from minescape.atomic import atomic_path

    payload = {
        "format": MODEL_FORMAT,
        "arch": arch,
        "model_kwargs": dict(model_kwargs or {}),
        "bands": list(bands),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "threshold": float(threshold),
        "norm": str(norm),
        "tta": bool(tta),
        "coregister": bool(coregister),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_payload(path) -> dict:
    """Read a model or checkpoint file; InputError naming the file if it is missing or unreadable."""
    from pathlib import Path

    import torch

    from minescape.errors import InputError, MissingInputError

    path = Path(path)
    if not path.is_file():
        raise MissingInputError("model file not found", path=path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        msg = " ".join(str(exc).split())[:120]
        raise InputError(f"not a readable model/checkpoint file (corrupted or truncated?): {msg}",
                         path=path) from None
    if not isinstance(payload, dict) or payload.get("format") not in (MODEL_FORMAT, "minescape-change-checkpoint/1"):
        raise InputError("not a minescape change model (no 'format' marker)", path=path)
    return payload


def load_model(path):
    """Load a model written by :func:`save_model` into a :class:`ChangeModel` (network in eval mode)."""
    from pathlib import Path

    import numpy as np

    from minescape.errors import InputError

    payload = load_payload(path)
    if payload["format"] != MODEL_FORMAT:
        raise InputError("this is a training checkpoint, not a model; use the model.pt written beside it",
                         path=path)
    from minescape.change.infer import NORMS

    if payload.get("norm", "global") not in NORMS:
        raise InputError(f"model uses normalisation {payload.get('norm')!r}, unknown to this version "
                         f"(known: {', '.join(NORMS)})", path=path)
    net = build_model(payload["arch"], len(payload["bands"]), **payload["model_kwargs"])
    try:
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"weights do not fit a {payload['arch']} network: {str(exc).splitlines()[0]}",
                         path=path) from None
    net.eval()
    return ChangeModel(net=net, arch=payload["arch"], bands=tuple(payload["bands"]),
                       mean=np.asarray(payload["mean"], np.float32), std=np.asarray(payload["std"], np.float32),
                       threshold=float(payload["threshold"]), path=Path(path),
                       model_kwargs=payload["model_kwargs"], extra=payload.get("extra", {}),
                       norm=str(payload.get("norm", "global")), tta=bool(payload.get("tta", False)),
                       coregister=bool(payload.get("coregister", False)))


from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402


@dataclass(frozen=True)
class ChangeModel:
    """A trained network with its input contract: bands, normalisation and decision threshold."""

    net: Any
    arch: str
    bands: tuple[str, ...]
    mean: Any
    std: Any
    threshold: float
    path: Path | None = None
    model_kwargs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    norm: str = "global"  # files written before the option existed are "global"
    tta: bool = False
    coregister: bool = False  # co-register date 2 onto date 1 before inference (as in training)

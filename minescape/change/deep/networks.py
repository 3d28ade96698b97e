"""Fully convolutional change-detection networks in plain PyTorch (no torchvision).

Three networks after Daudt, Le Saux & Boulch (2018), "Fully Convolutional Siamese Networks for Change
Detection" (ICIP), and one stronger variant:

- ``fc-ef``        early fusion: both dates stacked on the channel axis, one U-Net.
- ``fc-siam-conc`` Siamese encoder (shared weights); decoder skips concatenate both dates' features.
- ``fc-siam-diff`` Siamese encoder; decoder skips are the absolute feature difference.
- ``siam-att``     Siamese encoder with wider residual stages; skips fuse ``|f1 - f2|`` with both dates
                   through a 1x1 convolution and squeeze-and-excitation channel attention, and the
                   decoder gates each skip with a spatial attention map (Oktay et al. 2018).
- ``fc-ef-x2``     two FC-EF networks trained side by side in grouped convolutions; predicts their mean
                   probability (an ensemble in one file, at about one network's cost per step on a GPU).

Every network takes two ``(N, C, H, W)`` float tensors (normalised reflectance of date 1 and date 2,
any band count ``C``) and returns ``(N, 1, H, W)`` change logits (sigmoid -> probability of change).
``H`` and ``W`` must be multiples of 16 (four 2x poolings); inference pads tiles accordingly.

This module imports torch at the top: import it only where a network is built
(:func:`minescape.change.deep.model.build_model` does so lazily).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from minescape.inference_net import fp32_head

# Daudt et al. 2018: encoder 16,16 | 32,32 | 64,64,64 | 128,128,128 with 2x2 max pooling.
ENCODER_WIDTHS: tuple[tuple[int, ...], ...] = ((16, 16), (32, 32), (64, 64, 64), (128, 128, 128))


def _cbr(cin: int, cout: int, dropout: float, groups: int = 1) -> list[nn.Module]:
    """Conv 3x3, BN, ReLU (and dropout); ``cin``/``cout`` per group: ``groups`` independent networks side by side."""
    layers: list[nn.Module] = [nn.Conv2d(cin * groups, cout * groups, 3, padding=1, groups=groups),
                               nn.BatchNorm2d(cout * groups), nn.ReLU(inplace=True)]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return layers


def _stage(cin: int, widths: tuple[int, ...], dropout: float, groups: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += _cbr(cin, w, dropout, groups)
        cin = w
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """The FC networks' encoder: four conv stages, each followed by 2x2 max pooling. ``groups`` > 1: that many
    encoders side by side (grouped convolutions; ``cin`` and the widths are per group)."""

    def __init__(self, cin: int, dropout: float, groups: int = 1) -> None:
        super().__init__()
        stages = []
        for widths in ENCODER_WIDTHS:
            stages.append(_stage(cin, widths, dropout, groups))
            cin = widths[-1]
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        """The bottleneck features and the skip features of each level, finest first."""
        skips = []
        for s in self.stages:
            x = s(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        return x, skips


class Decoder(nn.Module):
    """Upsampling path; ``mult`` is the skip width multiplier (1 for EF/diff, 2 for conc). ``groups`` > 1: that
    many decoders side by side, one logit channel each."""

    def __init__(self, mult: int, dropout: float, groups: int = 1) -> None:
        super().__init__()
        g = groups
        self.groups = g
        self.up = nn.ModuleList([nn.ConvTranspose2d(c * g, c * g, 3, stride=2, padding=1, output_padding=1, groups=g)
                                 for c in (128, 64, 32, 16)])
        self.convs = nn.ModuleList([
            _stage(128 + 128 * mult, (128, 128, 64), dropout, g),
            _stage(64 + 64 * mult, (64, 64, 32), dropout, g),
            _stage(32 + 32 * mult, (32, 16), dropout, g),
            nn.Sequential(*_cbr(16 + 16 * mult, 16, 0.0, g)),
        ])
        self.head = nn.Conv2d(16 * g, g, 3, padding=1, groups=g)

    def forward(self, x, skips):
        """Change logits ``[B, groups, H, W]`` (float32) from the bottleneck ``x`` and the encoder's ``skips``."""
        for up, conv, skip in zip(self.up, self.convs, reversed(skips)):
            x = conv(_cat_per_group([up(x), skip], self.groups))
        return fp32_head(self.head, x)


def _cat_per_group(parts: list[torch.Tensor], groups: int) -> torch.Tensor:
    """Channel concatenation that keeps each group's channels together: ``[a_1, b_1, a_2, b_2, ...]`` for parts
    ``a``, ``b`` of ``groups`` equal channel blocks each (a plain ``torch.cat`` when ``groups`` is 1)."""
    if groups == 1:
        return torch.cat(parts, dim=1)
    blocks = [p.chunk(groups, dim=1) for p in parts]
    return torch.cat([b[i] for i in range(groups) for b in blocks], dim=1)


class FCEF(nn.Module):
    """FC-EF: early fusion of both dates (``2C`` input channels) in one U-Net."""

    def __init__(self, in_channels: int, *, dropout: float = 0.2) -> None:
        super().__init__()
        self.encoder = Encoder(2 * in_channels, dropout)
        self.decoder = Decoder(1, dropout)

    def forward(self, x1, x2):
        """Change logits ``[B, 1, H, W]`` (float32) of the date-1 and date-2 batches ``[B, C, H, W]``."""
        x, skips = self.encoder(torch.cat([x1, x2], dim=1))
        return self.decoder(x, skips)


class FCEFEnsemble(nn.Module):
    """``members`` FC-EF networks trained side by side in one set of grouped convolutions (``fc-ef-x2``).

    Each member is a whole FC-EF with its own weights and batch-norm statistics; grouped convolutions compute
    them all in one kernel per layer, so where a step costs launches rather than arithmetic (a GPU shared by
    several trainings) the ensemble trains at about the speed of one network. Training (``net.train()``): the
    batch is split in ``members`` equal parts, member ``i`` sees part ``i`` only, and the ``(N, 1, H, W)`` logits
    come back in batch order, so each part's loss reaches its own member alone (the training loop sums the
    members' losses, see ``ensemble_members``). Evaluation: every member sees the whole batch and the logit of the
    members' mean probability is returned, as ``change predict`` averages several models.
    """

    def __init__(self, in_channels: int, *, dropout: float = 0.2, members: int = 2) -> None:
        super().__init__()
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members (got {members})")
        self.members = members
        self.encoder = Encoder(2 * in_channels, dropout, groups=members)
        self.decoder = Decoder(1, dropout, groups=members)

    def forward(self, x1, x2):
        """The logit of the members' mean probability, ``[B, 1, H, W]``; in training, each member's logits for its
        own share of the batch, stacked along the batch."""
        k = self.members
        x = torch.cat([x1, x2], dim=1)
        if self.training:
            if x.shape[0] % k:
                raise ValueError(f"a training batch of {x.shape[0]} does not split among {k} members")
            z = self.decoder(*self.encoder(torch.cat(x.chunk(k, dim=0), dim=1)))
            return torch.cat(z.chunk(k, dim=1), dim=0)
        z = self.decoder(*self.encoder(x.repeat(1, k, 1, 1))).float()
        # logit(mean_i sigmoid(z_i)) = log(mean sigmoid(z)) - log(mean sigmoid(-z)), without rounding p near 0 or 1
        return (torch.logsumexp(-F.softplus(-z), dim=1, keepdim=True)
                - torch.logsumexp(-F.softplus(z), dim=1, keepdim=True))


class FCEFx2(FCEFEnsemble):
    """Two FC-EF networks side by side (the ``fc-ef-x2`` architecture)."""

    def __init__(self, in_channels: int, *, dropout: float = 0.2) -> None:
        super().__init__(in_channels, dropout=dropout, members=2)


def split_members(net: FCEFEnsemble) -> list[FCEF]:
    """The members of ``net`` as ordinary :class:`FCEF` networks (same weights and batch-norm statistics, eval
    mode). Every grouped tensor holds its groups in equal blocks along its first axis (output channels of a
    convolution, input channels of a transposed one, channels of a batch norm), so member ``i`` is block ``i``."""
    k = net.members
    in_channels = net.encoder.stages[0][0].in_channels // (2 * k)
    dropout = next((m.p for m in net.modules() if isinstance(m, nn.Dropout2d)), 0.0)
    out = []
    for i in range(k):
        member = FCEF(in_channels, dropout=dropout)
        member.load_state_dict({name: t.chunk(k, dim=0)[i].clone() if t.ndim else t.clone()
                                for name, t in net.state_dict().items()})
        out.append(member.eval())
    return out


def ensemble_members(net: nn.Module) -> int:
    """How many networks ``net`` trains at once (1 for an ordinary network; see :class:`FCEFEnsemble`)."""
    return int(getattr(net, "members", 1))


class FCSiamConc(nn.Module):
    """FC-Siam-conc: shared encoder, skips concatenate date-1 and date-2 features."""

    def __init__(self, in_channels: int, *, dropout: float = 0.2) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, dropout)
        self.decoder = Decoder(2, dropout)

    def forward(self, x1, x2):
        """Change logits ``[B, 1, H, W]`` (float32) of the date-1 and date-2 batches ``[B, C, H, W]``."""
        _, s1 = self.encoder(x1)
        x, s2 = self.encoder(x2)
        return self.decoder(x, [torch.cat([a, b], dim=1) for a, b in zip(s1, s2)])


class FCSiamDiff(nn.Module):
    """FC-Siam-diff: shared encoder, skips are ``|f1 - f2|``.

    The bottleneck passed to the decoder is date 2's, as in Daudt et al. (2018), so the output is not exactly
    symmetric in the dates; the skips are.
    """

    def __init__(self, in_channels: int, *, dropout: float = 0.2) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, dropout)
        self.decoder = Decoder(1, dropout)

    def forward(self, x1, x2):
        """Change logits ``[B, 1, H, W]`` (float32) of the date-1 and date-2 batches ``[B, C, H, W]``."""
        _, s1 = self.encoder(x1)
        x, s2 = self.encoder(x2)
        return self.decoder(x, [torch.abs(a - b) for a, b in zip(s1, s2)])


class ResStage(nn.Module):
    """Two 3x3 conv + BN with a 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        """The stage's output: its convolutions plus the (projected) input, through a ReLU."""
        return F.relu(self.body(x) + self.skip(x))


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018)."""

    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(4, c // r), 1)
        self.fc2 = nn.Conv2d(max(4, c // r), c, 1)

    def forward(self, x):
        """``x`` with each channel scaled by its squeeze-and-excitation weight in ``(0, 1)``."""
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * w


class Fuse(nn.Module):
    """Difference skip: 1x1 conv over ``[|f1-f2|, f1, f2]`` then SE channel attention."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(3 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.se = SqueezeExcite(c)

    def forward(self, a, b):
        """The fused features of the two dates' ``a`` and ``b`` (their absolute difference and both)."""
        return self.se(self.mix(torch.cat([torch.abs(a - b), a, b], dim=1)))


class Gate(nn.Module):
    """Additive spatial attention gate: the decoder signal weights the skip per pixel."""

    def __init__(self, c_skip: int, c_gate: int) -> None:
        super().__init__()
        inter = max(8, c_skip // 2)
        self.ws = nn.Conv2d(c_skip, inter, 1)
        self.wg = nn.Conv2d(c_gate, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)

    def forward(self, skip, gate):
        """``skip`` weighted per pixel by the attention computed from it and the coarser ``gate``."""
        return skip * torch.sigmoid(self.psi(F.relu(self.ws(skip) + self.wg(gate))))


class SiamAtt(nn.Module):
    """Siamese residual U-Net with attention-weighted difference skips (``siam-att``)."""

    def __init__(self, in_channels: int, *, width: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        ws = (width, 2 * width, 4 * width, 8 * width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, ws[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(ws[0]), nn.ReLU(inplace=True))
        self.enc = nn.ModuleList([ResStage(ws[max(0, i - 1)], w) for i, w in enumerate(ws)])
        self.fuse = nn.ModuleList([Fuse(w) for w in ws])
        self.bottom = ResStage(ws[3], ws[3])
        self.gates = nn.ModuleList([Gate(ws[i], ws[i]) for i in range(4)])
        self.dec = nn.ModuleList([ResStage(ws[i] * 2, ws[max(0, i - 1)]) for i in range(4)])
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
        """Change logits ``[B, 1, H, W]`` (float32) of the date-1 and date-2 batches ``[B, C, H, W]``."""
        f1 = self._encode(x1)
        f2 = self._encode(x2)
        skips = [fu(a, b) for fu, a, b in zip(self.fuse, f1, f2)]
        x = self.drop(self.bottom(F.max_pool2d(skips[3], 2)))
        for i in (3, 2, 1, 0):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = self.dec[i](torch.cat([x, self.gates[i](skips[i], x)], dim=1))
        return fp32_head(self.head, x)


NETWORKS: dict[str, type[nn.Module]] = {"fc-ef": FCEF, "fc-siam-conc": FCSiamConc, "fc-siam-diff": FCSiamDiff,
                                        "siam-att": SiamAtt, "fc-ef-x2": FCEFx2}

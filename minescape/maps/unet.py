"""A compact U-Net in plain torch (any number of input bands), for CPU-friendly segmentation.

Encoder: ``depth`` stages of two 3x3 conv + batch-norm + ReLU, each followed by 2x2 max-pooling, channels
``base * 2**i``; decoder: transposed-conv upsampling, concatenation with the encoder features, two convs;
a 1x1 conv to ``n_classes`` logits. Inputs whose sides are not multiples of ``2**depth`` are padded
(reflect) and the output cropped back, so any window size works.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from minescape.inference_net import fp32_head


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


MAX_DEPTH = 8  # poolings (tiles are multiples of 2**depth: 256 px at 8)


class UNet(nn.Module):
    """U-Net mapping ``(N, in_channels, H, W)`` to ``(N, n_classes, H, W)`` logits."""

    def __init__(self, in_channels: int, n_classes: int, *, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 2 or not 1 <= depth <= MAX_DEPTH or base < 1:
            raise ValueError(f"invalid U-Net size: in={in_channels} classes={n_classes} base={base} depth={depth}")
        self.in_channels, self.n_classes, self.base, self.depth = in_channels, n_classes, base, depth
        chans = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, chans[0])] +
                                  [_block(chans[i], chans[i + 1]) for i in range(depth - 1)])
        self.bottom = _block(chans[depth - 1], chans[depth])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                 for i in reversed(range(depth))])
        self.dec = nn.ModuleList([_block(chans[i] * 2, chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], n_classes, 1)

    def config(self) -> dict:
        """Constructor arguments (stored in checkpoints)."""
        return {"in_channels": self.in_channels, "n_classes": self.n_classes, "base": self.base, "depth": self.depth}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return fp32_head(self.head, x)[..., :h, :w]

"""The GT encoder: an encoder-only IS-Net on the ground-truth mask, for feature synchronisation.

Its six encoder stages have the same shapes as the refiner's six features (decoder 1..5, encoder 6),
so the refiner's features can be pulled towards them with an MSE. Layout and names match the
official ISNetGTEncoder (6,877,734 parameters at width 1.0).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .isnet import SIDE_CHANNELS, side_maps
from .rsu import build_rsu, scale_channels

ENCODER = (
    ("stage1", "RSU7", 16, 16, 64),
    ("stage2", "RSU6", 64, 16, 64),
    ("stage3", "RSU5", 64, 32, 128),
    ("stage4", "RSU4", 128, 32, 256),
    ("stage5", "RSU4F", 256, 64, 512),
    ("stage6", "RSU4F", 512, 64, 512),
)


class ConvBNReLU(nn.Module):
    """Conv (with bias) -> BatchNorm -> ReLU; attribute names ``conv``, ``bn`` as the official stem."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn: nn.Module = nn.BatchNorm2d(out_ch)
        self.rl = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rl(self.bn(self.conv(x)))


class ISNetGTEncoder(nn.Module):
    """``forward(mask)`` -> (six side maps, six encoder features)."""

    def __init__(self, in_ch: int = 1, width: float = 1.0) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"width": float(width)}
        c = lambda n: scale_channels(n, width)  # noqa: E731
        self.conv_in = ConvBNReLU(in_ch, c(16), stride=2)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        for name, kind, cin, mid, cout in ENCODER:
            setattr(self, name, build_rsu(kind, c(cin), c(mid), c(cout)))
        for i, ch in enumerate(SIDE_CHANNELS, start=1):
            setattr(self, f"side{i}", nn.Conv2d(c(ch), 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hx = self.conv_in(x)
        feats = []
        for i, (name, *_rest) in enumerate(ENCODER):
            if i > 0:
                hx = self.pool(hx)
            hx = getattr(self, name)(hx)
            feats.append(hx)
        sides = [getattr(self, f"side{i}")(f) for i, f in enumerate(feats, start=1)]
        return side_maps(sides, x), feats


def build_gt_encoder(width: float = 1.0) -> ISNetGTEncoder:
    """The GT encoder (one input channel: the GT mask in [0, 1]) at the refiner's ``width``."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return ISNetGTEncoder(in_ch=1, width=width)

"""IS-Net's building blocks: REBNCONV and the residual U-blocks RSU7/6/5/4 and RSU4F.

Attribute names (``rebnconvin``, ``rebnconv1``..``rebnconv7``, ``rebnconv6d``..``rebnconv1d``,
``conv_s1``, ``bn_s1``) follow the official IS-Net layout so that official checkpoints load
with no key conversion.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def scale_channels(channels: int, width: float) -> int:
    """A channel count scaled by the ``width`` multiplier: rounded, at least 1 (1.0 = official)."""
    return max(1, int(round(channels * width)))


def upsample_like(src: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``src`` to ``ref``'s spatial size (align_corners=False, as IS-Net)."""
    if src.shape[2:] == ref.shape[2:]:
        return src
    return F.interpolate(src, size=ref.shape[2:], mode="bilinear", align_corners=False)


class REBNCONV(nn.Module):
    """3x3 conv (padding = dilation, with bias) -> BatchNorm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.bn_s1: nn.Module = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of height ``depth`` (RSU7 = depth 7 ... RSU4 = depth 4).

    in->out conv (kept as residual), out->mid, ``depth - 2`` mid convs each after a 2x max-pool
    (ceil mode), a dilation-2 bottom conv, then a decoder of (2*mid -> mid) convs with bilinear
    upsampling and a final 2*mid -> out conv; output = decoded + residual.
    """

    def __init__(self, depth: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"RSU depth must be >= 3, got {depth}")
        self.depth = depth
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        for i in range(2, depth):
            setattr(self, f"rebnconv{i}", REBNCONV(mid_ch, mid_ch))
        setattr(self, f"rebnconv{depth}", REBNCONV(mid_ch, mid_ch, dilation=2))
        for i in range(depth - 1, 1, -1):
            setattr(self, f"rebnconv{i}d", REBNCONV(2 * mid_ch, mid_ch))
        self.rebnconv1d = REBNCONV(2 * mid_ch, out_ch)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips = [self.rebnconv1(hxin)]
        hx = skips[0]
        for i in range(2, self.depth):
            hx = getattr(self, f"rebnconv{i}")(self.pool(hx))
            skips.append(hx)
        hx = getattr(self, f"rebnconv{self.depth}")(hx)
        # skips[k] is the output of rebnconv{k+1}; decode from the deepest level up.
        for i in range(self.depth - 1, 0, -1):
            skip = skips[i - 1]
            hx = getattr(self, f"rebnconv{i}d")(torch.cat((upsample_like(hx, skip), skip), 1))
        return hx + hxin


class RSU4F(nn.Module):
    """Dilated residual block without pooling: dilations 1, 2, 4, 8 then 4, 2, 1."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dilation=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dilation=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dilation=8)
        self.rebnconv3d = REBNCONV(2 * mid_ch, mid_ch, dilation=4)
        self.rebnconv2d = REBNCONV(2 * mid_ch, mid_ch, dilation=2)
        self.rebnconv1d = REBNCONV(2 * mid_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        hx1d = self.rebnconv1d(torch.cat((hx2d, hx1), 1))
        return hx1d + hxin


def RSU7(in_ch: int, mid_ch: int, out_ch: int) -> RSU:  # noqa: N802 - official block names
    return RSU(7, in_ch, mid_ch, out_ch)


def RSU6(in_ch: int, mid_ch: int, out_ch: int) -> RSU:  # noqa: N802
    return RSU(6, in_ch, mid_ch, out_ch)


def RSU5(in_ch: int, mid_ch: int, out_ch: int) -> RSU:  # noqa: N802
    return RSU(5, in_ch, mid_ch, out_ch)


def RSU4(in_ch: int, mid_ch: int, out_ch: int) -> RSU:  # noqa: N802
    return RSU(4, in_ch, mid_ch, out_ch)


RSU_BLOCKS = {"RSU7": RSU7, "RSU6": RSU6, "RSU5": RSU5, "RSU4": RSU4, "RSU4F": RSU4F}


def build_rsu(kind: str, in_ch: int, mid_ch: int, out_ch: int) -> nn.Module:
    """``kind`` one of ``RSU7``, ``RSU6``, ``RSU5``, ``RSU4``, ``RSU4F`` (a registry lookup)."""
    if kind not in RSU_BLOCKS:
        raise ValueError(f"unknown RSU block {kind!r}; choose one of {', '.join(RSU_BLOCKS)}")
    return RSU_BLOCKS[kind](in_ch, mid_ch, out_ch)

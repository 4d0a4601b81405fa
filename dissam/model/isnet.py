"""ISNetDIS, the stage-2 refiner: IS-Net on (RGB, coarse mask, filled box).

Layout and parameter names match the official ISNetDIS (44,047,942 parameters at 5 input channels,
width 1.0), so official IS-Net and DIS-SAM checkpoints load as they are. ``width`` scales every
channel count for the CPU profiles.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .rsu import build_rsu, scale_channels, upsample_like

# (name, block, in, mid, out) at width 1.0; decoder inputs are concatenations of two tensors.
ENCODER = (
    ("stage1", "RSU7", 64, 32, 64),
    ("stage2", "RSU6", 64, 32, 128),
    ("stage3", "RSU5", 128, 64, 256),
    ("stage4", "RSU4", 256, 128, 512),
    ("stage5", "RSU4F", 512, 256, 512),
    ("stage6", "RSU4F", 512, 256, 512),
)
DECODER = (
    ("stage5d", "RSU4F", 1024, 256, 512),
    ("stage4d", "RSU4", 1024, 128, 256),
    ("stage3d", "RSU5", 512, 64, 128),
    ("stage2d", "RSU6", 256, 32, 64),
    ("stage1d", "RSU7", 128, 16, 64),
)
# Channels feeding side1..side6: decoder stages 1..5, then encoder stage 6.
SIDE_CHANNELS = (64, 64, 128, 256, 512, 512)


def side_maps(sides: list[torch.Tensor], ref: torch.Tensor, prior: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Side logits -> fp32 probability maps at ``ref``'s size (upsample first, then sigmoid, as IS-Net).

    Always in fp32 with autocast off, even inside a bf16/fp16 autocast forward: in bf16 every sigmoid
    above ~0.998 rounds to exactly 1.0, and a confidently wrong pixel then gets no gradient (both
    references train in fp32). ``prior`` (logits at ``ref``'s size) is added to every side logit."""
    with torch.autocast(device_type=ref.device.type, enabled=False):
        maps = [upsample_like(s.float(), ref) for s in sides]
        if prior is not None:
            maps = [m + prior for m in maps]
        return [torch.sigmoid(m) for m in maps]


MASK_CHANNEL = 3  # the coarse mask in (R, G, B, mask, box)


class ISNetDIS(nn.Module):
    """IS-Net for dichotomous segmentation. ``forward(x)`` -> (six maps, six features).

    ``coarse_prior`` k > 0 (off in the paper's network) adds ``k * (2 * mask - 1)`` to every side
    logit, ``mask`` being the coarse-mask input channel in [0, 1]: an untrained refiner then returns
    stage 1's mask (p = sigmoid(+-k)) and training learns the corrections. It has no parameters, so
    a checkpoint's weights load either way; the setting travels in ``config``."""

    def __init__(self, in_ch: int = 5, width: float = 1.0, coarse_prior: float = 0.0) -> None:
        super().__init__()
        if coarse_prior < 0 or (coarse_prior > 0 and in_ch <= MASK_CHANNEL):
            raise ValueError(f"coarse_prior needs a coarse-mask channel and k >= 0; got k={coarse_prior}, "
                             f"in_ch={in_ch}")
        self.config: dict[str, Any] = {"in_ch": int(in_ch), "width": float(width)}
        if coarse_prior:
            self.config["coarse_prior"] = float(coarse_prior)
        self.coarse_prior = float(coarse_prior)
        c = lambda n: scale_channels(n, width)  # noqa: E731
        self.conv_in = nn.Conv2d(in_ch, c(64), 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        for name, kind, cin, mid, cout in ENCODER:
            setattr(self, name, build_rsu(kind, c(cin), c(mid), c(cout)))
        # A decoder stage takes cat(upsampled deeper output, encoder skip): sum the scaled halves.
        skip_out = {f"stage{i + 1}": c(spec[4]) for i, spec in enumerate(ENCODER)}
        deeper = c(ENCODER[-1][4])
        for name, kind, _cin, mid, cout in DECODER:
            skip = skip_out[name[:-1]]
            setattr(self, name, build_rsu(kind, deeper + skip, c(mid), c(cout)))
            deeper = c(cout)
        for i, ch in enumerate(SIDE_CHANNELS, start=1):
            setattr(self, f"side{i}", nn.Conv2d(c(ch), 1, 3, padding=1))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder stages 1..5 and encoder stage 6 (the tensors feature sync compares)."""
        hx = self.conv_in(x)
        enc = []
        for i, (name, *_rest) in enumerate(ENCODER):
            if i > 0:
                hx = self.pool(hx)
            hx = getattr(self, name)(hx)
            enc.append(hx)
        dec = []
        hx = enc[-1]
        for (name, *_rest), skip in zip(DECODER, reversed(enc[:-1])):
            hx = getattr(self, name)(torch.cat((upsample_like(hx, skip), skip), 1))
            dec.append(hx)
        return [*reversed(dec), enc[-1]]

    def _prior(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.coarse_prior:
            return None
        return self.coarse_prior * (2.0 * x[:, MASK_CHANNEL:MASK_CHANNEL + 1].float() - 1.0)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        feats = self._features(x)
        sides = [getattr(self, f"side{i}")(f) for i, f in enumerate(feats, start=1)]
        return side_maps(sides, x, self._prior(x)), feats

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """maps[0] alone, [B, 1, H, W]: skips the five unused side convs and their upsampling."""
        feats = self._features(x)
        return side_maps([self.side1(feats[0])], x, self._prior(x))[0]


def build_refiner(in_ch: int = 5, width: float = 1.0, coarse_prior: float = 0.0) -> ISNetDIS:
    """The stage-2 refiner. ``in_ch`` 5 = RGB + coarse mask + box (3 = plain IS-Net);
    ``width`` 1.0 = official IS-Net (44.0M parameters), 0.25 for the smoke profile, 0.125 for tiny;
    ``coarse_prior`` 0 = the paper's network (see :class:`ISNetDIS`)."""
    if in_ch < 1:
        raise ValueError(f"in_ch must be >= 1, got {in_ch}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return ISNetDIS(in_ch=in_ch, width=width, coarse_prior=coarse_prior)

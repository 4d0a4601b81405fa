"""A learned stage 1 for photos: the published IS-Net on a square window around the box.

GrabCut, the offline stage 1, models colours; on a real photo it leaks into a background of the
object's colours and cuts holes where the object has the background's. The published IS-Net
(general-use weights, :mod:`dissam.model.published`) has seen real objects, but it segments the most
salient thing of a whole image and knows nothing of a box. Here it is told the box the simplest way:
it sees only a square window around the box (:func:`dissam.data.prompts.crop_window`, the box plus
``margin`` of its size on each side, shifted inside the image), its probability map is pasted back into
the window, and everything outside the box is background. The window gives IS-Net the context a
photo of the object would have; the box bounds the answer, since a box prompt says the object is inside
it (a helmet's box on a photo of an astronaut: the window shows the suit too, and IS-Net marks it
outside the box; figures/smoke/real_photos.csv). ``clip_to_box=False`` keeps the whole window.

The mask is that map thresholded at 0.5 (uint8 0/255, the stage-1 contract); ``logits`` keeps the
probabilities as logits, clipped to +-20. Nothing is shared between boxes, so :meth:`_embed` only keeps
the image and each box costs one IS-Net forward, whose time grows with ``input_size`` (docs/benchmarks.md,
"Stage 1 for photos").
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.prompts import Box, box_channel, crop_window
from ..data.transforms import resize
from .base import CoarseResult, CoarseSegmenter

DEFAULT_MARGIN = 0.2  # of the box's size on each side: context around the object, as in a photo of it
LOGIT_CLIP = 20.0


class IsNetCropSegmenter(CoarseSegmenter):
    """Stage 1 from the published 3-channel IS-Net (``checkpoint``: our conversion, ``isnet-general-use.pth``
    or ``isnet.pth``; default: :func:`dissam.model.published.find_published_isnet`) on the box's window.

    ``input_size``: the square the window is resized to (1024, IS-Net's ``Inference.py``); ``margin``:
    the window's margin around the box, a fraction of its size; ``model``: an already loaded IS-Net
    instead of ``checkpoint`` (its weights are then hashed for :attr:`key`); ``clip_to_box``: zero outside
    the box (default) or only outside the window."""

    def __init__(self, checkpoint: str | Path | None = None, model: Any = None, margin: float = DEFAULT_MARGIN,
                 input_size: int = 1024, clip_to_box: bool = True, device: str | None = None) -> None:
        from ..model.published import find_published_isnet
        from ..model.published_predict import PublishedISNet, load_published_isnet

        super().__init__()
        if not margin >= 0 or not np.isfinite(margin):
            raise ValueError(f"margin must be a finite fraction >= 0 of the box size, not {margin}")
        if int(input_size) < 32:
            raise ValueError(f"input_size must be at least 32 px, not {input_size}")
        self.margin, self.input_size, self.clip_to_box = float(margin), int(input_size), bool(clip_to_box)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if model is None:
            path = find_published_isnet(checkpoint)
            model = load_published_isnet(path, device)
            self._weights = f"{path.name}|{path.stat().st_size}"
        else:
            self._weights = "sha1=" + _weights_digest(model)
        self.isnet = PublishedISNet(model, device, input_size=self.input_size)
        self._rgb: np.ndarray | None = None

    @property
    def key(self) -> str:
        return (f"isnet-crop|{self._weights}|margin={self.margin}|input={self.input_size}|"
                f"clip={'box' if self.clip_to_box else 'window'}")

    def _embed(self, image: np.ndarray) -> None:
        self._rgb = image

    def _predict(self, box: Box) -> CoarseResult:
        assert self._rgb is not None
        h, w = self._rgb.shape[:2]
        y0, y1, x0, x1 = crop_window(box, h, w, self.margin)
        prob = np.zeros((h, w), np.float32)
        window = self.isnet.prob(np.ascontiguousarray(self._rgb[y0:y1, x0:x1]))
        prob[y0:y1, x0:x1] = np.clip(resize(window, (y1 - y0, x1 - x0)), 0.0, 1.0)
        if self.clip_to_box:
            prob[box_channel(box, h, w) == 0] = 0.0
        mask = np.where(prob >= 0.5, 255, 0).astype(np.uint8)
        with np.errstate(divide="ignore"):
            logits = np.clip(np.log(prob) - np.log1p(-prob), -LOGIT_CLIP, LOGIT_CLIP).astype(np.float32)
        return CoarseResult(mask, logits=logits)


def _weights_digest(model: torch.nn.Module) -> str:
    """SHA-1 of a model's parameters and buffers (names, shapes and bytes): what identifies weights given in memory."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]

"""The refiner's input, built the same way for training, evaluation and interactive use.

Input = concat(RGB/255 - 0.5, coarse mask/255, filled box/255) at ``size x size`` (IS-Net resizes
every image to a square, whatever its aspect). Channels that an ablation switches off are zeros.
Every resize here is the references' (:func:`resize`): bilinear, no antialiasing, uint8 truncated.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .prompts import Box, box_channel


def resize(array: np.ndarray, size: int | tuple[int, int], interpolation: int | None = None) -> np.ndarray:
    """Resize an ``[H, W]`` or ``[H, W, C]`` uint8/float array to ``size`` (int = square, or (h, w)).

    The default is the references' resize (IS-Net's and DIS-SAM's data loaders and Inference.py):
    bilinear with half-pixel centres and no antialiasing (``F.upsample(..., mode="bilinear")``), uint8
    results truncated as ``tensor.type(torch.uint8)`` does. It keeps GT soft: a thin structure is never
    re-binarised away after a shrink. ``interpolation`` (an OpenCV flag) asks for ``cv2.resize`` instead.
    A no-op at the same size."""
    h, w = (size, size) if isinstance(size, int) else size
    if array.shape[:2] == (h, w):
        return array
    if interpolation is not None:
        return cv2.resize(array, (w, h), interpolation=interpolation)
    return _bilinear(array, h, w)


def _bilinear(array: np.ndarray, h: int, w: int) -> np.ndarray:
    x = torch.from_numpy(np.array(array, copy=True)).float()
    x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]
    y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)[0]
    y = y[0] if array.ndim == 2 else y.permute(1, 2, 0)
    if array.dtype == np.uint8:
        return y.clamp(0, 255).to(torch.uint8).numpy()  # truncation, as the references' .type(torch.uint8)
    return y.numpy().astype(array.dtype if array.dtype.kind == "f" else np.float32)


def normalize_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` -> float32 ``[3, H, W]`` as RGB/255 - 0.5 (IS-Net's normalisation)."""
    return (image.astype(np.float32) / 255.0 - 0.5).transpose(2, 0, 1)


def make_input(image: np.ndarray, coarse: np.ndarray | None, box: Box | None, size: int,
               use_mask: bool = True, use_box: bool = True, in_ch: int = 5) -> np.ndarray:
    """float32 ``[in_ch, size, size]``: RGB, coarse mask, box channel (in_ch 3 = RGB alone)."""
    h, w = image.shape[:2]
    rgb = normalize_rgb(resize(image, size))
    if in_ch == 3:
        return np.ascontiguousarray(rgb)
    if in_ch != 5:
        raise ValueError(f"the refiner takes 3 or 5 input channels, not {in_ch}")
    out = np.zeros((5, size, size), np.float32)
    out[:3] = rgb
    if use_mask and coarse is not None:
        if coarse.shape != (h, w):
            raise ValueError(f"coarse mask is {coarse.shape}, image is {(h, w)}")
        out[3] = resize(coarse, size).astype(np.float32) / 255.0
    if use_box and box is not None:
        out[4] = resize(box_channel(box, h, w), size).astype(np.float32) / 255.0
    return out


def to_original(prob: np.ndarray, height: int, width: int, minmax: bool = False) -> np.ndarray:
    """A probability map at network size -> uint8 0..255 at the original image size (bilinear).

    ``minmax=True`` is IS-Net's Inference.py, what the paper's evaluation saw: the upsampled map is
    min-max normalised, then ``x255`` truncated to uint8 (a constant map, where that is undefined, gives
    zeros). ``minmax=False`` keeps probabilities as they are (rounded), for interactive use."""
    prob = resize(prob.astype(np.float32), (height, width))
    if not minmax:
        return np.clip(prob * 255.0 + 0.5, 0, 255).astype(np.uint8)
    lo, hi = float(prob.min()), float(prob.max())
    if hi <= lo:
        return np.zeros((height, width), np.uint8)
    return np.clip((prob - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)

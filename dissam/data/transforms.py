"""The refiner's input, built the same way for training, evaluation and interactive use.

Input = concat(RGB/255 - 0.5, coarse mask/255, filled box/255) at ``size x size`` (IS-Net resizes
every image to a square, whatever its aspect). Channels that an ablation switches off are zeros.
"""
from __future__ import annotations

import cv2
import numpy as np

from .prompts import Box, box_channel


def resize(array: np.ndarray, size: int | tuple[int, int], interpolation: int | None = None) -> np.ndarray:
    """Resize an ``[H, W]`` or ``[H, W, C]`` uint8/float array to ``size`` (int = square, or (h, w));
    area averaging when shrinking, bilinear when enlarging; a no-op at the same size."""
    h, w = (size, size) if isinstance(size, int) else size
    if array.shape[:2] == (h, w):
        return array
    if interpolation is None:
        interpolation = cv2.INTER_AREA if h * w < array.shape[0] * array.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(array, (w, h), interpolation=interpolation)


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


def to_original(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """A probability map at network size -> uint8 0..255 at the original image size (bilinear)."""
    prob = resize(prob.astype(np.float32), (height, width), interpolation=cv2.INTER_LINEAR)
    return np.clip(prob * 255.0 + 0.5, 0, 255).astype(np.uint8)

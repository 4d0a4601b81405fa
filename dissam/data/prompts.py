"""Box prompts: tight boxes of masks, jitter, clipping, and the filled box channel.

Boxes are ``(x0, y0, x1, y1)`` integer pixel coordinates, half-open like array slices
(``mask[y0:y1, x0:x1]`` is the box). SAM takes the same four numbers as floats.
"""
from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]


class BoxError(ValueError):
    """An empty, inverted or fully outside box."""


def box_from_mask(mask: np.ndarray, threshold: int = 128) -> Box:
    """Tight half-open box of ``mask > threshold`` (uint8) or of a bool mask; error on an empty mask."""
    fg = mask if mask.dtype == bool else mask > threshold
    rows = np.flatnonzero(fg.any(axis=1))
    cols = np.flatnonzero(fg.any(axis=0))
    if rows.size == 0:
        raise BoxError("cannot take the box of an empty mask (no pixel above the threshold)")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def clip_box(box: tuple[float, float, float, float], height: int, width: int) -> Box:
    """Round to integers and clip to the image; error when nothing of the box is left."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise BoxError(f"box {tuple(box)} is empty or inverted: need x0 < x1 and y0 < y1 (x0, y0, x1, y1)")
    cx0, cy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    cx1, cy1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    if cx1 <= cx0 or cy1 <= cy0:
        raise BoxError(f"box {tuple(box)} lies outside the {width}x{height} image")
    return cx0, cy0, cx1, cy1


def jitter_box(box: Box, height: int, width: int, rng: np.random.Generator, scale: float = 0.1) -> Box:
    """Move each side by up to ``scale`` of the box's size (uniform), then clip: training robustness."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    d = rng.uniform(-scale, scale, size=4) * np.array([bw, bh, bw, bh])
    jittered = (x0 + d[0], y0 + d[1], x1 + d[2], y1 + d[3])
    try:
        return clip_box(jittered, height, width)
    except BoxError:
        return box


def box_channel(box: Box, height: int, width: int) -> np.ndarray:
    """Filled box as a uint8 image: 255 inside, 0 outside (the refiner's 5th input channel)."""
    x0, y0, x1, y1 = clip_box(box, height, width)
    channel = np.zeros((height, width), np.uint8)
    channel[y0:y1, x0:x1] = 255
    return channel


def scale_box(box: Box, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Box:
    """Map a box between resolutions (outward rounding, so the scaled box still covers the object)."""
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    x0, y0, x1, y1 = box
    return clip_box((x0 * sx, y0 * sy, x1 * sx, y1 * sy), *to_hw)

"""Box prompts: tight boxes of masks, jitter, clipping, the filled box channel, and the crop window
around a box (refining a crop instead of the whole image keeps thin structures at high resolution).

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


Window = tuple[int, int, int, int]


def crop_window(box: Box, height: int, width: int, margin: float, min_side: int = 0,
                square: bool = True) -> Window:
    """The half-open window ``(y0, y1, x0, x1)`` the refiner reads around ``box`` in box-crop inference.

    Each side of the (clipped) box moves out by ``margin`` times the box's width or height (context: the
    refiner was trained on whole images where the box is surrounded by background). ``square`` widens the
    shorter side to the longer one, because the refiner's input is a square: a square window is shrunk by
    the same factor both ways, as the square training images were, and thin structures keep the same
    width whatever their direction. Each side is at least ``min_side`` (the network's input size: a
    smaller window would be enlarged, making structures thicker than any seen in training). A window
    larger than the image along one axis is the whole axis (then it is not square); otherwise a window
    that would cross the border is shifted inside, so it keeps its size. The window always contains the
    box.
    """
    if margin < 0 or not np.isfinite(margin):
        raise ValueError(f"crop margin must be a finite fraction >= 0 of the box size, not {margin}")
    if min_side < 0:
        raise ValueError(f"min_side must be >= 0, not {min_side}")
    x0, y0, x1, y1 = clip_box(box, height, width)
    bw, bh = x1 - x0, y1 - y0
    side_x, side_y = bw * (1 + 2 * margin), bh * (1 + 2 * margin)
    if square:
        side_x = side_y = max(side_x, side_y)
    wy0, wy1 = _span(y0, y1, side_y, min_side, height)
    wx0, wx1 = _span(x0, x1, side_x, min_side, width)
    return wy0, wy1, wx0, wx1


def _span(lo: int, hi: int, side: float, min_side: int, limit: int) -> tuple[int, int]:
    """A span of ``max(ceil(side), min_side, hi - lo)`` pixels centred on ``[lo, hi)``, inside ``[0, limit)``."""
    n = min(limit, max(int(np.ceil(side - 1e-9)), int(min_side), hi - lo))
    start = int(np.floor((lo + hi - n) / 2))
    start = min(max(start, 0), limit - n)
    return start, start + n

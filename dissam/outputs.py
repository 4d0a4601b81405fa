"""What a segmentation is turned into for people to look at: the RGBA cut-out, the outline + box overlay,
the colour-filled overlay and the checkerboard backdrop. Pure array functions (uint8 in, uint8 out), shared
by ``dissam predict`` (:mod:`dissam.cli`), the figures (:mod:`dissam.repro.figures`) and the widget.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["BOX_COLOUR", "OUTLINE_COLOUR", "box_edges", "cutout", "line_width", "mask_outline",
           "on_checkerboard", "outline_overlay", "overlay"]

OUTLINE_COLOUR = (0, 255, 64)  # green: the refined mask's outline
BOX_COLOUR = (255, 220, 0)  # yellow: the box prompt


def cutout(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA uint8: the image with ``alpha`` (a 0..255 mask or probability map) as its alpha channel."""
    image, alpha = np.asarray(image), np.asarray(alpha)
    if image.ndim != 3 or image.shape[2] != 3 or alpha.shape != image.shape[:2]:
        raise ValueError(f"cutout needs an HxWx3 image and an HxW alpha, got {image.shape} and {alpha.shape}")
    return np.dstack([image.astype(np.uint8), alpha.astype(np.uint8)])


def on_checkerboard(rgba: np.ndarray, cell: int = 12) -> np.ndarray:
    """An RGBA cut-out composited over a grey checkerboard, to show where it is transparent."""
    h, w = rgba.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where(((yy // cell + xx // cell) % 2)[..., None] == 0, 200, 150).astype(np.float32)
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3] * a + board * (1 - a)).astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray | None, colour: Sequence[float] | None = (230, 25, 75),
            alpha: float = 0.55, dim: float = 1.0) -> np.ndarray:
    """What ``mask > 127`` marks on ``image`` (uint8 RGB): pixels outside it scaled by ``dim``, pixels
    inside blended as ``(1 - alpha) * image + alpha * colour`` (``colour`` None: kept as they are)."""
    rgb = image.astype(np.float32)
    out = rgb * dim
    if mask is not None:
        sel = mask > 127
        out[sel] = rgb[sel] if colour is None else (1 - alpha) * rgb[sel] + alpha * np.asarray(colour, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def line_width(h: int, w: int) -> int:
    """Outline and box line width for an ``h`` x ``w`` image: 1 px up to 600 px, then 1 px per 300 px of
    the long side, so the lines stay visible on large photos without hiding small ones."""
    return max(1, round(max(h, w) / 300))


def mask_outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """bool ``[H, W]``: the pixels of ``mask > 127`` within ``width`` pixels (8-neighbourhood) of a pixel
    outside it. The image border does not count as outside: an object cut by the frame has no line there."""
    inside = (np.asarray(mask) > 127).astype(np.uint8)
    if width < 1:
        raise ValueError(f"outline width must be >= 1, got {width}")
    eroded = cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=width,
                       borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return inside.astype(bool) & ~eroded.astype(bool)


def box_edges(shape: tuple[int, int], box: Sequence[float], width: int = 1) -> np.ndarray:
    """bool ``[H, W]``: the inner band, ``width`` pixels wide, of the box ``(x0, y0, x1, y1)`` (pixel
    edges, x1/y1 exclusive; rounded and clipped to the image), i.e. the box's border pixels."""
    h, w = shape
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, x1 = max(0, min(x0, w)), max(0, min(x1, w))
    y0, y1 = max(0, min(y0, h)), max(0, min(y1, h))
    edges = np.zeros((h, w), bool)
    if x1 <= x0 or y1 <= y0:
        return edges
    edges[y0:y1, x0:x1] = True
    edges[min(y0 + width, y1):max(y1 - width, y0), min(x0 + width, x1):max(x1 - width, x0)] = False
    return edges


def outline_overlay(image: np.ndarray, mask: np.ndarray | None, box: Sequence[float] | None = None,
                    width: int | None = None, outline_colour: Sequence[int] = OUTLINE_COLOUR,
                    box_colour: Sequence[int] = BOX_COLOUR) -> np.ndarray:
    """A quick look at a prediction: ``image`` (uint8 RGB) with the outline of ``mask`` and the edges of
    ``box`` painted over it (``width`` default :func:`line_width`; the box on top). Every other pixel is
    the input's own."""
    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    width = width or line_width(h, w)
    if mask is not None:
        out[mask_outline(mask, width)] = outline_colour
    if box is not None:
        out[box_edges((h, w), box, width)] = box_colour
    return out

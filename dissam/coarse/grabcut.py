"""Offline stage 1: OpenCV GrabCut initialised from the box (no weights, deterministic).

Like SAM on DIS, GrabCut is coarse at thin structures (its smoothness prior fills grids and blobs
thin parts), which is what the refiner learns to fix. Boxes that leave GrabCut too few samples
fall back to simple rules written down in :meth:`GrabCutSegmenter._predict`.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..data.prompts import Box
from .base import CoarseResult, CoarseSegmenter

# Bump when the fallback rules below change: cached masks of the old rules must not be reused.
GRABCUT_RULES_VERSION = 1
MIN_SAMPLES = 16  # GrabCut's k-means needs at least 5 samples per model; keep a margin
THIN_BOX = 2  # boxes with a side below this many pixels are returned filled


class GrabCutSegmenter(CoarseSegmenter):
    """cv2.grabCut with GC_INIT_WITH_RECT from the box, ``iters`` iterations, cv2's RNG seeded per call."""

    cpu_parallel = True  # seeded per call: the same mask whatever process or order computes it

    def __init__(self, iters: int = 3, seed: int = 0) -> None:
        super().__init__()
        if int(iters) < 1:
            raise ValueError(f"GrabCut needs iters >= 1, got {iters}")
        self.iters = int(iters)
        self.seed = int(seed)
        self._bgr: np.ndarray | None = None

    @property
    def key(self) -> str:
        return f"grabcut|iters={self.iters}|seed={self.seed}|rules={GRABCUT_RULES_VERSION}|opencv={cv2.__version__}"

    def _embed(self, image: np.ndarray) -> None:
        self._bgr = np.ascontiguousarray(image[..., ::-1])

    def _predict(self, box: Box) -> CoarseResult:
        assert self._bgr is not None
        h, w = self._bgr.shape[:2]
        x0, y0, x1, y1 = box
        filled = np.zeros((h, w), np.uint8)
        filled[y0:y1, x0:x1] = 255
        if x1 - x0 < THIN_BOX or y1 - y0 < THIN_BOX:
            return CoarseResult(filled)  # nothing inside to model: the box itself
        outside = h * w - (x1 - x0) * (y1 - y0)
        if outside >= MIN_SAMPLES:
            mask = np.zeros((h, w), np.uint8)
            rect = (x0, y0, x1 - x0, y1 - y0)
            mode = cv2.GC_INIT_WITH_RECT
        else:
            # The box covers (almost) the whole image: no background to learn from outside it, so the
            # box's own one-pixel rim is taken as probable background.
            mask = np.full((h, w), cv2.GC_BGD, np.uint8)
            mask[y0:y1, x0:x1] = cv2.GC_PR_BGD
            mask[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = cv2.GC_PR_FGD
            rect, mode = None, cv2.GC_INIT_WITH_MASK
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(self.seed)
        try:
            cv2.grabCut(self._bgr, mask, rect, bgd, fgd, self.iters, mode)
        except cv2.error:
            return CoarseResult(filled)  # too few samples for GrabCut's colour models
        fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        return CoarseResult(np.where(fg, 255, 0).astype(np.uint8))

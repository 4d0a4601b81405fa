"""The stage-1 interface: set an image once, then answer any number of box prompts.

Every segmenter (SAM, HQ-SAM, GrabCut) subclasses :class:`CoarseSegmenter`. The base class checks
inputs, clips boxes (half-open xyxy, :mod:`dissam.data.prompts`) and counts image embeddings, so the
cache and the tests can check that an image is embedded once, never once per box.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ..data.prompts import Box, clip_box


@dataclass
class CoarseResult:
    """One stage-1 answer at the image's size: ``mask`` uint8 0/255, ``logits`` float32 or None, ``score`` or None."""

    mask: np.ndarray
    logits: np.ndarray | None = None
    score: float | None = None


def check_image(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 ``[H, W, 3]`` array (made contiguous); anything else is a ValueError saying what came."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"stage 1 needs an RGB uint8 image of shape [H, W, 3]; got {got}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image of shape {image.shape}")
    return np.ascontiguousarray(image)


class CoarseSegmenter(abc.ABC):
    """Box-prompted segmenter. Subclasses implement ``_embed``, ``_predict`` and ``key``.

    ``cpu_parallel``: its results do not depend on the order of calls, a shallow copy of it works
    alone, and it releases the GIL (GrabCut), so the stage-1 cache may run copies in threads."""

    cpu_parallel = False

    def __init__(self) -> None:
        self.encoder_calls = 0  # image embeddings computed (one per set_image)
        self._hw: tuple[int, int] | None = None

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """Identifies the model and every setting that changes its output (part of cache keys)."""

    @abc.abstractmethod
    def _embed(self, image: np.ndarray) -> None:
        """Compute whatever is shared by all boxes of ``image`` (SAM: the image embedding)."""

    @abc.abstractmethod
    def _predict(self, box: Box) -> CoarseResult:
        """Answer one clipped, non-empty box of the current image."""

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of the current image, or None before the first :meth:`set_image`."""
        return self._hw

    def set_image(self, image: np.ndarray) -> None:
        """Embed ``image`` (uint8 RGB ``[H, W, 3]``) once; later :meth:`predict` calls reuse it."""
        image = check_image(image)
        self._hw = None
        self._embed(image)
        self._hw = (int(image.shape[0]), int(image.shape[1]))
        self.encoder_calls += 1

    def predict(self, box: tuple[float, float, float, float]) -> CoarseResult:
        """Coarse mask for a half-open xyxy box of the current image (clipped to it; empty boxes raise BoxError)."""
        if self._hw is None:
            raise RuntimeError("call set_image(image) before predict(box)")
        clipped = clip_box(box, *self._hw)
        result = self._predict(clipped)
        if result.mask.shape != self._hw or result.mask.dtype != np.uint8:
            raise AssertionError(f"{type(self).__name__} returned a {result.mask.dtype} mask of shape "
                                 f"{result.mask.shape}, expected uint8 {self._hw}")
        return result

    def __call__(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """One-shot convenience: set ``image`` and return the uint8 mask for ``box``."""
        self.set_image(image)
        return self.predict(box).mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r})"

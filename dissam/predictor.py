"""The predictor: image + box -> highly accurate mask, from a trained refiner checkpoint (:class:`DisSam`).

Stage 1 (SAM, the offline GrabCut stand-in, or the published IS-Net on a window around the box) turns
the box into a coarse mask; stage 2, the IS-Net refiner, reads (RGB, coarse mask, filled box) and outputs
the fine mask. The stage-1 image embedding is
computed once per image (keyed by its content), so every further box on the same image only pays for
the prompt and the refiner: what makes box dragging interactive. Any image a user has (path, PIL image
or array of any layout and depth: :func:`as_rgb`) and any box (four numbers, clipped) is accepted.
The command-line ``dissam predict`` is :func:`dissam.predict_files.run_predict`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from . import numerics
from .coarse import build_coarse
from .coarse.cache import image_digest
from .coarse.grabcut import GrabCutSegmenter
from .data.images import as_rgb
from .data.prompts import Box, BoxError, box_channel, box_from_mask, clip_box, crop_window, scale_box
from .data.transforms import make_input, resize, to_original
from .model.checkpoint import CheckpointError, checkpoint_metadata, load_refiner
from .model.inference import predict_prob
from .model.path_choice import build_path, choose_inference_path
from .model.onnx_export import OnnxRefiner
from .variant import Variant

__all__ = ["BoxError", "CheckpointError", "DisSam", "MultiPrediction", "Prediction",
           "default_stage1_max_side", "final_mask"]

DEFAULT_SIZE = 192
AUTO = "auto"
# GrabCut's default bound on the long side of the image it sees. Its time grows with the pixel count.
# 192 (the smoke refiner's input) is what an interactive box needs and scores best on smoke scenes
# upscaled 4x, but on real photos the smoke refiner's answer depends on the details of stage 1's mask:
# with GrabCut at 192 px it cut holes into the astronaut's suit. 512 leaves photos of up to 512 px as
# they were (no hollowed object in the real-photo check) and makes a megapixel photo several times
# faster; pass 192 for interactive use. Timings and scores: docs/benchmarks.md, "Photos"
# (benchmarks/bench_interactive.py).
DEFAULT_STAGE1_MAX_SIDE = 512


def stage1_of(meta: dict[str, Any], kind: str | None = None):
    """The stage-1 segmenter a checkpoint's metadata records (``"stage1"``: :func:`dissam.coarse.build_coarse`'s
    arguments, written by training), GrabCut when it records none; ``kind`` replaces the recorded kind
    (a SAM kind keeps the recorded SAM checkpoint and model type; ``"isnet"`` takes the published IS-Net
    of :func:`dissam.model.published.find_published_isnet`)."""
    spec = dict(meta.get("stage1") or {"kind": "grabcut"})
    if kind is not None and kind != spec["kind"]:
        recorded, spec = spec, {"kind": kind}
        if kind in ("sam", "hq-sam") and recorded["kind"] in ("sam", "hq-sam"):
            spec.update({k: recorded[k] for k in ("checkpoint", "model_type", "multimask") if k in recorded})
    return build_coarse(**spec)


def variant_of(meta: dict[str, Any]) -> Variant:
    """The variant a checkpoint was trained with (its ``"variant"`` record), the paper's when absent."""
    known = set(Variant.__dataclass_fields__)
    return Variant(**{k: v for k, v in (meta.get("variant") or {}).items() if k in known})


def default_stage1_max_side(segmenter: Any) -> int | None:
    """The bound ``stage1_max_side="auto"`` means for ``segmenter``: :data:`DEFAULT_STAGE1_MAX_SIDE` for
    GrabCut; None (full size) for SAM / HQ-SAM, the IS-Net crop and others. SAM and IS-Net resize what they
    see to their 1024 px input themselves, so their time does not depend on the photo's size, and a
    smaller copy would only lose detail (and their maps, upsampled to full size, are better than a
    thresholded mask scaled up)."""
    return DEFAULT_STAGE1_MAX_SIDE if isinstance(segmenter, GrabCutSegmenter) else None


def check_stage1_max_side(value: Any) -> None:
    """``"auto"``, None, 0 or a positive int; anything else is a ValueError saying so."""
    if value is None or value == AUTO:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"stage1_max_side must be 'auto', None, 0 (full size) or a positive number of "
                         f"pixels, not {value!r}")


def resolve_stage1_max_side(value: int | str | None, segmenter: Any) -> int | None:
    """The bound in pixels, or None for full size (0 and None), ``"auto"`` resolved per segmenter."""
    check_stage1_max_side(value)
    if value == AUTO:
        return default_stage1_max_side(segmenter)
    return int(value) if value else None  # 0 and None: full size


REFINE_REGIONS = ("image", "box")


@dataclass
class Prediction:
    """One object: refined ``mask`` (uint8 0/255), refiner ``prob`` (uint8 0..255), stage-1 ``coarse``
    (uint8 0/255), the clipped ``box`` (x0, y0, x1, y1) and ``timings`` in seconds."""

    mask: np.ndarray
    prob: np.ndarray
    coarse: np.ndarray
    box: Box
    timings: dict[str, float] = field(default_factory=dict)
    score: float = float("nan")  # stage 1's own quality estimate, when it has one

    @property
    def pixels(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass
class MultiPrediction:
    """Several boxes on one image: the union of the objects' masks, and each object alone."""

    mask: np.ndarray
    prob: np.ndarray
    coarse: np.ndarray
    objects: list[Prediction]
    timings: dict[str, float] = field(default_factory=dict)


def final_mask(prob: np.ndarray, mode: str = "threshold") -> np.ndarray:
    """uint8 0/255 mask from a 0..255 probability map: ``threshold`` at 0.5 (the paper), or ``otsu``
    (the authors' code: min-max normalise, then Otsu's threshold)."""
    if mode == "threshold":
        return np.where(prob >= 128, 255, 0).astype(np.uint8)
    if mode == "otsu":
        lo, hi = int(prob.min()), int(prob.max())
        if hi - lo < 1:
            return np.zeros_like(prob, dtype=np.uint8)
        norm = ((prob.astype(np.float32) - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)
        _, mask = cv2.threshold(norm, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        return mask
    raise ValueError(f"final_mask must be 'threshold' or 'otsu', not {mode!r}")


def _as_box(box: Any) -> tuple[float, float, float, float]:
    values = tuple(float(v) for v in np.asarray(box, dtype=np.float64).ravel())
    if len(values) != 4:
        raise BoxError(f"a box is four numbers (x0, y0, x1, y1), got {box!r}")
    return values  # type: ignore[return-value]


class DisSam:
    """The two stages behind one call: ``predict(image, box) -> Prediction``.

    ``refiner`` is a model whose forward returns IS-Net's ``(maps, features)``; ``segmenter`` has
    ``set_image(rgb)`` and ``predict(box)`` (see :mod:`dissam.coarse`). ``stage1_max_side``: stage 1
    sees the image shrunk to at most that many pixels on its long side and its mask is scaled back
    (GrabCut's cost grows with the pixel count; the refiner reads the mask at ``size`` anyway); None or 0:
    full size; ``"auto"`` (default): :func:`default_stage1_max_side` of the segmenter (GrabCut bounded,
    SAM full size). ``inference_path``: ``"auto"`` (default) times eager and the optimised refiner once
    on this machine at ``size`` and keeps the faster (:func:`dissam.model.path_choice.choose_inference_path`,
    cached); ``"eager"`` or ``"optimised"`` fix it. Under portable numerics (:mod:`dissam.numerics`)
    ``"auto"`` is ``"optimised"`` untimed, so every CPU runs the same path. The choice is in ``inference_choice``.
    ``refiner`` may also be a runner such as :class:`dissam.model.onnx_export.OnnxRefiner` (stage 2 on
    ONNX Runtime): a callable, numpy ``[B, C, S, S]`` -> probabilities ``[B, 1, S, S]``.
    ``refine_region``: what the refiner reads, shrunk to ``size``: the whole ``"image"`` (the paper), or
    a ``"box"`` crop (:func:`~dissam.data.prompts.crop_window`: the box plus ``crop_margin`` of its size
    on each side, square, at least ``size`` px), pasted back with zeros outside, so that a large image's
    thin structures are shrunk less. Both are attributes and may be changed between calls.
    """

    def __init__(self, refiner: torch.nn.Module, segmenter: Any, size: int = DEFAULT_SIZE,
                 use_mask: bool = True, use_box: bool = True, variant: Variant | None = None,
                 device: str | torch.device | None = None, in_ch: int | None = None,
                 stage1_max_side: int | str | None = AUTO, inference_path: str = AUTO,
                 refine_region: str = "image", crop_margin: float = 0.1) -> None:
        if refine_region not in REFINE_REGIONS:
            raise ValueError(f"refine_region must be one of {REFINE_REGIONS}, not {refine_region!r}")
        if not crop_margin >= 0:
            raise ValueError(f"crop_margin must be a fraction >= 0 of the box size, not {crop_margin}")
        self.refine_region, self.crop_margin = refine_region, float(crop_margin)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        config = getattr(refiner, "config", None) or {}
        self.in_ch = int(in_ch or config.get("in_ch", 5))
        self.segmenter = segmenter
        self.size, self.use_mask, self.use_box = int(size), bool(use_mask), bool(use_box)
        self.variant = variant or Variant.paper()
        check_stage1_max_side(stage1_max_side)
        self.stage1_max_side = stage1_max_side
        self.backend = "torch" if isinstance(refiner, torch.nn.Module) else str(
            getattr(refiner, "backend", type(refiner).__name__))
        if self.backend != "torch":  # a runner, numpy [B, C, S, S] -> [B, 1, S, S] (OnnxRefiner)
            self.refiner, self.inference_choice = refiner, {"path": self.backend}
        elif inference_path == AUTO and numerics.apply() == "portable":  # $DISSAM_NUMERICS; untimed, one path
            self.refiner = build_path(refiner.to(self.device).eval(), "optimised")
            self.inference_choice = {"path": "optimised", "source": "portable numerics"}
        elif inference_path == AUTO:  # timed once per machine, size and thread count (cached)
            self.refiner, self.inference_choice = choose_inference_path(
                refiner.to(self.device).eval(), self.size, self.in_ch)
        else:
            self.refiner = build_path(refiner.to(self.device).eval(), inference_path)
            self.inference_choice = {"path": inference_path}
        self._key: str | None = None
        self._rgb: np.ndarray | None = None
        self._stage1_hw: tuple[int, int] = (0, 0)

    @classmethod
    def from_checkpoint(cls, path: str | Path, coarse: Any = None, device: str | None = None,
                        variant: Variant | None = None, stage1_max_side: int | str | None = AUTO,
                        backend: str | None = None, refine_region: str = "image") -> "DisSam":
        """Load a refiner checkpoint; ``coarse`` is a stage-1 kind (``"grabcut"``, ``"sam"``...), a
        ready segmenter, or None for the stage 1 the refiner was trained with (:func:`stage1_of`).
        Input size and channel switches come from the checkpoint's ``train_config`` (size 192 when
        absent), the variant from the checkpoint unless given. ``stage1_max_side``, ``refine_region``:
        see :class:`DisSam`.

        ``backend``: ``"torch"`` (the default for checkpoints) or ``"onnxruntime"`` (stage 2 on ONNX
        Runtime's CPU provider; the default for a ``.onnx`` file from ``dissam export``, and a
        checkpoint is then exported in memory). Needs ``pip install 'dissam[onnx]'``."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"refiner checkpoint not found: {path}")
        is_onnx = path.suffix.lower() == ".onnx"
        backend = backend or ("onnxruntime" if is_onnx else "torch")
        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"backend must be 'torch' or 'onnxruntime', not {backend!r}")
        if is_onnx and backend != "onnxruntime":
            raise ValueError(f"{path} is an ONNX file: it runs with backend='onnxruntime', not {backend!r}")
        if backend == "onnxruntime":
            refiner: Any = OnnxRefiner.from_file(path) if is_onnx else OnnxRefiner.from_checkpoint(path)
            meta = refiner.meta
        else:
            meta = checkpoint_metadata(path)
            refiner = load_refiner(path)
        train_config = meta.get("train_config") or {}
        segmenter = stage1_of(meta, coarse) if coarse is None or isinstance(coarse, str) else coarse
        return cls(refiner, segmenter, size=int(train_config.get("size", DEFAULT_SIZE)),
                   use_mask=bool(train_config.get("use_mask", True)),
                   use_box=bool(train_config.get("use_box", True)),
                   variant=variant or variant_of(meta), device=device, stage1_max_side=stage1_max_side,
                   refine_region=refine_region)

    # ---- stage 1: the image embedding, once per image ----
    def use_stage1(self, segmenter: Any) -> None:
        """Swap stage 1 (a :mod:`dissam.coarse` segmenter); the new one embeds the current image, if any,
        at once."""
        self.segmenter = segmenter
        if self._rgb is not None:
            rgb, self._key = self._rgb, None
            self.set_image(rgb)

    def set_image(self, image: Any) -> np.ndarray:
        """Make ``image`` current; stage 1 embeds it only when its content differs from the current one."""
        rgb = as_rgb(image)
        bound = resolve_stage1_max_side(self.stage1_max_side, self.segmenter)
        key = f"{image_digest(rgb)}|{bound}"  # a changed bound re-embeds the image
        if key != self._key:
            h, w = rgb.shape[:2]
            longest = max(h, w)
            if bound and longest > bound:
                f = bound / longest  # INTER_AREA: an antialiased shrink, GrabCut's colour models see no aliasing
                small = resize(rgb, (max(1, round(h * f)), max(1, round(w * f))), cv2.INTER_AREA)
                self.segmenter.set_image(np.ascontiguousarray(small))
                self._stage1_hw = small.shape[:2]
            else:
                self.segmenter.set_image(rgb)
                self._stage1_hw = (h, w)
            self._key, self._rgb = key, rgb
        return self._rgb  # type: ignore[return-value]

    def _current(self, image: Any) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        if image is None:
            if self._rgb is None:
                raise ValueError("no image: pass one to predict() or call set_image() first")
            return self._rgb, 0.0
        key_before = self._key
        rgb = self.set_image(image)
        return rgb, (time.perf_counter() - start) if self._key != key_before else 0.0

    # ---- one box ----
    def predict(self, image: Any, box: Sequence[float]) -> Prediction:
        """Refined mask of the object in ``box`` (x0, y0, x1, y1; clipped to the image). ``image=None``
        reuses the current image. Raises :class:`BoxError` for an empty, inverted or outside box."""
        rgb, t_embed = self._current(image)
        h, w = rgb.shape[:2]
        clipped = clip_box(_as_box(box), h, w)
        start = time.perf_counter()
        if self._stage1_hw == (h, w):
            result = self.segmenter.predict(clipped)
            coarse = _as_mask(result.mask, h, w)
        else:  # stage 1 ran on a shrunk copy: box down, mask back up (bilinear, then 0.5)
            small_box = scale_box(clipped, (h, w), self._stage1_hw)
            result = self.segmenter.predict(small_box)
            small = _as_mask(result.mask, *self._stage1_hw)
            coarse = np.where(resize(small, (h, w), cv2.INTER_LINEAR) > 127, 255, 0).astype(np.uint8)
            if _within(small, small_box):  # the outward-rounded small box must not widen a box-bounded mask
                coarse = np.where(box_channel(clipped, h, w) > 0, coarse, 0).astype(np.uint8)
        t_prompt = time.perf_counter() - start

        start = time.perf_counter()
        refine_box = clipped
        if self.variant.inference_box == "sam_tight" and coarse.any():
            refine_box = box_from_mask(coarse)
        y0, y1, x0, x1 = 0, h, 0, w
        if self.refine_region == "box":  # the window is around the box the refiner is told
            y0, y1, x0, x1 = crop_window(refine_box, h, w, self.crop_margin, min_side=self.size)
        elif self.refine_region != "image":
            raise ValueError(f"refine_region must be one of {REFINE_REGIONS}, not {self.refine_region!r}")
        bx0, by0, bx1, by1 = refine_box
        x = make_input(rgb[y0:y1, x0:x1], coarse[y0:y1, x0:x1], (bx0 - x0, by0 - y0, bx1 - x0, by1 - y0),
                       self.size, self.use_mask, self.use_box, self.in_ch)
        prob = np.zeros((h, w), np.uint8)  # outside the window: 0
        prob[y0:y1, x0:x1] = to_original(self._refine(x), y1 - y0, x1 - x0)
        mask = final_mask(prob, self.variant.final_mask)
        t_refine = time.perf_counter() - start
        timings = {"embed": t_embed, "prompt": t_prompt, "refine": t_refine,
                   "total": t_embed + t_prompt + t_refine}
        return Prediction(mask=mask, prob=prob, coarse=coarse, box=clipped, timings=timings,
                          score=_score(getattr(result, "score", None)))

    def _refine(self, x: np.ndarray) -> np.ndarray:
        """The one refiner call: ``x`` [C, S, S] -> probabilities [S, S], on either backend."""
        if self.backend == "torch":
            prob = predict_prob(self.refiner, torch.from_numpy(x)[None].to(self.device))
        else:
            prob = self.refiner(x[None])
        if isinstance(prob, torch.Tensor):
            prob = prob.detach().float().cpu().numpy()
        prob = np.asarray(prob, dtype=np.float32)
        return prob.reshape(prob.shape[-2:])

    # ---- several boxes ----
    def predict_many(self, image: Any, boxes: Sequence[Sequence[float]]) -> MultiPrediction:
        """One prediction per box (one embedding for all) and their union."""
        if len(boxes) == 0:
            raise BoxError("predict_many needs at least one box")
        objects = [self.predict(image if i == 0 else None, box) for i, box in enumerate(boxes)]
        union = lambda key: np.maximum.reduce([getattr(o, key) for o in objects])  # noqa: E731
        timings = {k: float(sum(o.timings.get(k, 0.0) for o in objects))
                   for k in ("embed", "prompt", "refine", "total")}
        return MultiPrediction(mask=union("mask"), prob=union("prob"), coarse=union("coarse"),
                               objects=objects, timings=timings)


def _score(value: Any) -> float:
    try:
        return float(np.asarray(value, dtype=np.float64).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return float("nan")


def _within(mask: np.ndarray, box: Box) -> bool:
    """Whether ``mask`` (> 127 = object) has nothing outside ``box``."""
    return not ((mask > 127) & (box_channel(box, *mask.shape) == 0)).any()


def _as_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != (h, w):
        raise ValueError(f"stage 1 returned a {mask.shape} mask for a {h}x{w} image")
    if mask.dtype == bool or mask.max(initial=0) <= 1:
        return (mask > 0).astype(np.uint8) * 255
    return np.where(mask > 127, 255, 0).astype(np.uint8)

"""Real photographs that ship with scikit-image, with a box around an object each: the check that a
refiner trained on procedural scenes does not make a real photo worse than stage 1 made it, with
GrabCut and, when the published weights are there, the IS-Net crop as stage 1, beside the published
IS-Net alone on the whole image.

The photos are never used to train (the procedural textures are cropped from other scikit-image images).
:func:`interior_kept` measures the failure a thin-structure-only training mix produces on real photos:
a refined mask that keeps the outline of stage 1's solid blob and removes its interior. The figure is
:func:`dissam.repro.figures.real_photos`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Photo:
    name: str
    loader: str  # a function of skimage.data
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 around the object
    what: str


PHOTOS = (
    Photo("coffee", "coffee", (75, 15, 480, 390), "cup, saucer and spoon (solid, with a handle)"),
    Photo("cat", "chelsea", (0, 0, 405, 300), "cat's head (solid, fur and whiskers)"),
    Photo("astronaut", "astronaut", (20, 15, 365, 512), "astronaut (solid, large)"),
    Photo("helmet", "astronaut", (275, 340, 512, 512), "helmet (solid, dark, cut by the frame)"),
)


def load_photo(photo: Photo) -> np.ndarray:
    """The photo as uint8 RGB (scikit-image ships these files; nothing is downloaded)."""
    import skimage.data

    return np.ascontiguousarray(getattr(skimage.data, photo.loader)()[..., :3])


def interior_kept(coarse: np.ndarray, refined: np.ndarray, erode_frac: float = 0.08) -> float:
    """Share of stage 1's interior (its mask eroded by ``erode_frac`` of the box's short side) that the
    refined mask keeps: ~1 when the refiner keeps a solid object solid, near 0 when it hollows it out."""
    fg = (coarse > 127).astype(np.uint8)
    ys, xs = np.nonzero(fg)
    if len(ys) == 0:
        return float("nan")
    radius = max(1, int(erode_frac * min(np.ptp(ys) + 1, np.ptp(xs) + 1)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    interior = cv2.erode(fg, kernel) > 0
    if not interior.any():
        return float("nan")
    return float((refined[interior] > 127).mean())


def outside_box(mask: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of the image (0..1) that ``mask`` (uint8, > 127 = object) marks outside the box: a box prompt
    says the object is inside it, so anything out there is a mistake."""
    x0, y0, x1, y1 = box
    fg = mask > 127
    return float(fg.sum() - fg[y0:y1, x0:x1].sum()) / fg.size


GRABCUT, ISNET_CROP, ISNET_WHOLE = "GrabCut", "IS-Net crop", "IS-Net, whole image (no box)"


def run_photos(model: Any, crop_stage1: Any = None, isnet: Any = None,
               photos: tuple[Photo, ...] = PHOTOS) -> tuple[list[dict], pd.DataFrame]:
    """Each photo through ``model.predict(image, box)`` (a :class:`dissam.predictor.DisSam`) with its own
    stage 1 (GrabCut on the CPU profiles) and, when given, with ``crop_stage1`` (the IS-Net crop,
    :mod:`dissam.coarse.isnet_crop`) as stage 1; and ``isnet.predict(image)`` (the published IS-Net alone,
    :class:`dissam.model.published_predict.PublishedISNet`) when given.

    Returns the arrays for the figure (per photo: ``{stage-1 label: Prediction}`` and the whole-image map)
    and a long table, one row per photo and method: the mask's area and its area outside the box (% of
    the image) and, for a refined mask, the share of its stage 1's interior it keeps (%)."""
    own = model.segmenter
    stage1s = {GRABCUT: own, **({ISNET_CROP: crop_stage1} if crop_stage1 is not None else {})}
    results, rows = [], []
    try:
        for photo in photos:
            image = load_photo(photo)
            preds = {}
            for label, segmenter in stage1s.items():
                model.use_stage1(segmenter)
                preds[label] = pred = model.predict(image, photo.box)
                rows.append(_row(photo, f"{label} (stage 1)", pred.coarse, pred.box))
                rows.append(_row(photo, f"DIS-SAM on {label}", pred.mask, pred.box, interior_kept(pred.coarse, pred.mask)))
            whole = isnet.predict(image) if isnet is not None else None
            if whole is not None:
                rows.append(_row(photo, ISNET_WHOLE, whole, preds[GRABCUT].box))
            results.append({"photo": photo, "image": image, "predictions": preds, "whole": whole})
    finally:
        model.use_stage1(own)
    return results, pd.DataFrame(rows)


def _row(photo: Photo, method: str, mask: np.ndarray, box: tuple[int, int, int, int],
         kept: float = float("nan")) -> dict:
    return {"photo": photo.name, "object": photo.what, "method": method, "area %": 100 * float((mask > 127).mean()),
            "outside box %": 100 * outside_box(mask, box), "interior kept %": 100 * kept}

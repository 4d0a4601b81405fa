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


# Thin structures, for the photo fine-tune (docs/photo-finetune.md): these two photos lend textures to the
# procedural scenes (dissam.data.procedural.textures), but their objects are never training targets.
THIN_PHOTOS = (
    Photo("rocket", "rocket", (160, 115, 485, 427), "rocket and its two launch towers (thin lattices)"),
    Photo("tripod", "camera", (225, 200, 410, 512), "camera tripod (thin legs; the gloves at its top)"),
)


def load_photo(photo: Photo) -> np.ndarray:
    """The photo as uint8 RGB (scikit-image ships these files; nothing is downloaded; grey ones are
    repeated over three channels)."""
    import skimage.data

    from ..data.images import as_rgb

    return as_rgb(getattr(skimage.data, photo.loader)())


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


def thin_kept(reference: np.ndarray, refined: np.ndarray, radius: int = 3) -> float:
    """Share of ``reference``'s thin structures that ``refined`` keeps (uint8 masks, > 127 = object): the
    thin part is what an opening with a disc of ``radius`` px removes from the reference (lattices, legs,
    wires: anything under ``2 * radius + 1`` px wide), less what lies within ``radius`` of the part it
    keeps (the corners an opening rounds off). NaN when the reference has none."""
    fg = (reference > 127).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    thick = cv2.dilate(cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel), kernel)
    thin = (fg > 0) & (thick == 0)
    if not thin.any():
        return float("nan")
    return float((refined[thin] > 127).mean())


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


def compare_refiners(models: dict[str, Any], crop_stage1: Any, photos: tuple[Photo, ...] = PHOTOS + THIN_PHOTOS
                     ) -> tuple[list[dict], pd.DataFrame]:
    """Several refiners (``{label: DisSam}``) on the same photos, each on its own stage 1 and on the IS-Net
    crop (``crop_stage1``, :mod:`dissam.coarse.isnet_crop`), which is also the reference of what the
    published IS-Net keeps: per photo, refiner and stage 1, the mask's area and its share outside the box
    (% of the image), the share of its stage 1's interior it keeps and the share of the IS-Net crop's thin
    structures it keeps (%: :func:`thin_kept`). The stage-1 masks get rows of their own (refiner "-").
    Returns the arrays for a figure (per photo: image, crop mask and ``{(refiner, stage 1): Prediction}``)
    and the long table."""
    results, rows = [], []
    owns = {label: model.segmenter for label, model in models.items()}
    first = next(iter(models))  # its predictions give the stage-1 rows
    try:
        for photo in photos:
            image = load_photo(photo)
            preds: dict[tuple[str, str], Any] = {}
            reference = None
            for label, model in models.items():
                for stage1_label, segmenter in ((GRABCUT, owns[label]), (ISNET_CROP, crop_stage1)):
                    model.use_stage1(segmenter)
                    preds[label, stage1_label] = pred = model.predict(image, photo.box)
                    if stage1_label == ISNET_CROP and reference is None:
                        reference = pred.coarse
            for (label, stage1_label), pred in preds.items():
                if label == first:  # each stage-1 mask once
                    rows.append(_compare_row(photo, "-", stage1_label, pred.coarse, pred.box, reference))
                rows.append(_compare_row(photo, label, stage1_label, pred.mask, pred.box, reference,
                                         interior_kept(pred.coarse, pred.mask)))
            results.append({"photo": photo, "image": image, "reference": reference, "predictions": preds})
    finally:
        for label, model in models.items():
            model.use_stage1(owns[label])
    return results, pd.DataFrame(rows)


def _compare_row(photo: Photo, refiner: str, stage1: str, mask: np.ndarray, box: tuple[int, int, int, int],
                 reference: np.ndarray | None, kept: float = float("nan")) -> dict:
    thin = thin_kept(reference, mask) if reference is not None else float("nan")
    return {"photo": photo.name, "refiner": refiner, "stage 1": stage1, "area %": 100 * float((mask > 127).mean()),
            "outside box %": 100 * outside_box(mask, box), "interior kept %": 100 * kept,
            "IS-Net thin kept %": 100 * thin}

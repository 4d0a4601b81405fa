"""Real photographs that ship with scikit-image, with a box around an object each: the check that a
refiner trained on procedural scenes does not make a real photo worse than stage 1 made it.

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


def run_photos(model: Any, photos: tuple[Photo, ...] = PHOTOS) -> tuple[list[dict], pd.DataFrame]:
    """Each photo through ``model.predict(image, box)`` (a :class:`dissam.predictor.DisSam`): the arrays
    for the figure and a table of stage-1 and refined areas and the share of the interior kept."""
    results, rows = [], []
    for photo in photos:
        image = load_photo(photo)
        pred = model.predict(image, photo.box)
        kept = interior_kept(pred.coarse, pred.mask)
        results.append({"photo": photo, "image": image, "coarse": pred.coarse, "mask": pred.mask,
                        "prob": pred.prob, "box": pred.box})
        rows.append({"photo": photo.name, "object": photo.what,
                     "stage-1 area %": 100 * float((pred.coarse > 127).mean()),
                     "refined area %": 100 * float((pred.mask > 127).mean()),
                     "interior kept %": 100 * kept})
    return results, pd.DataFrame(rows)

"""im/gt folders (DIS5K layout and alike): ``<root>/<split>/im/<stem>.<ext>`` and
``<root>/<split>/gt/<stem>.png``, paired by stem. Files are read by :mod:`dissam.data.images`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import IMAGE_EXTS, DataError, read_image, read_mask


@dataclass(frozen=True)
class Pair:
    """One image and its GT, paired by file stem."""

    stem: str
    image_path: Path
    gt_path: Path

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        image, gt = read_image(self.image_path, exif_orientation=False), read_mask(self.gt_path)
        if image.shape[:2] != gt.shape:
            raise DataError(f"size mismatch for {self.stem!r}: image {self.image_path} is "
                            f"{image.shape[1]}x{image.shape[0]}, GT {self.gt_path} is {gt.shape[1]}x{gt.shape[0]}")
        return image, gt


def list_pairs(folder: str | Path, require_gt: bool = True) -> list[Pair]:
    """Pairs of ``folder/im`` and ``folder/gt`` by stem, sorted by stem. A missing GT is an error naming it."""
    folder = Path(folder)
    im_dir, gt_dir = folder / "im", folder / "gt"
    if not im_dir.is_dir():
        raise DataError(f"no image folder {im_dir} (expected <split>/im and <split>/gt, as in DIS5K)")
    images = sorted(p for p in im_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not images:
        raise DataError(f"no images in {im_dir}")
    gts = {p.stem: p for p in gt_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS} if gt_dir.is_dir() else {}
    pairs, missing = [], []
    for im in images:
        gt = gts.get(im.stem)
        if gt is None:
            missing.append(str(gt_dir / f"{im.stem}.png"))
            gt = gt_dir / f"{im.stem}.png"
        pairs.append(Pair(im.stem, im, gt))
    if missing and require_gt:
        raise DataError(f"missing GT for {len(missing)} image(s): {', '.join(missing[:5])}"
                        + (" ..." if len(missing) > 5 else ""))
    return pairs

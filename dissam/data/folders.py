"""Reading im/gt folders (DIS5K layout and alike): any image a user has, as uint8 RGB / uint8 masks.

Layout: ``<root>/<split>/im/<stem>.<ext>`` and ``<root>/<split>/gt/<stem>.png``, paired by stem.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .images import to_uint8

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")  # 16-bit, 32-bit and float images: see dissam.data.images


class DataError(ValueError):
    """A missing, unreadable or inconsistent file of a data set; the message names the file."""


def _open(path: Path, exif_orientation: bool = False) -> Image.Image:
    """The decoded image; in stored pixel order unless ``exif_orientation`` (then turned as a viewer shows it)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"unreadable image {path}: {err}") from err
    return ImageOps.exif_transpose(img) if exif_orientation else img


def read_image(path: str | Path, exif_orientation: bool = True) -> np.ndarray:
    """Any image file as uint8 RGB ``[H, W, 3]``: alpha dropped, grayscale repeated, palette expanded,
    16-bit scaled to 8-bit (:func:`dissam.data.images.to_uint8`).

    ``exif_orientation=True`` (users' photos: predictor, CLI, widget) turns the pixels as the EXIF
    orientation tag says, as a photo viewer shows them. Data sets read with ``False`` (:meth:`Pair.load`):
    their GT PNGs carry no EXIF and were drawn on the stored pixel order, which is also how the reference
    code (IS-Net's and the authors' loaders) reads images, so a DIS5K JPEG with an orientation tag stays
    aligned with its GT."""
    img = _open(Path(path), exif_orientation)
    if img.mode in WIDE_MODES:
        gray = to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    return np.ascontiguousarray(np.asarray(img.convert("RGB")))


def read_mask(path: str | Path) -> np.ndarray:
    """A GT mask as uint8 ``[H, W]`` in 0..255 (0/1 masks are scaled to 0/255; colour masks take luminance),
    in stored pixel order (no EXIF orientation, as :func:`read_image` reads data-set images)."""
    img = _open(Path(path))
    if img.mode in WIDE_MODES:
        mask = to_uint8(np.asarray(img))
    elif img.mode == "1":
        mask = np.asarray(img, dtype=np.uint8) * 255
    else:
        mask = np.asarray(img.convert("L"))
    if mask.max(initial=0) == 1:
        mask = mask * np.uint8(255)
    return np.ascontiguousarray(mask)


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

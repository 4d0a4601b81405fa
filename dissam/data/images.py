"""Images into dissam: files read (:func:`read_image`, :func:`read_mask`), and any array or PIL image a
user has brought to uint8 RGB (:func:`as_rgb`) by one rule (:func:`to_uint8`):

- uint8 is kept as it is; bool becomes 0/255;
- 16-bit data becomes ``round(x / 257)``, so 0 -> 0, 65535 -> 255 and ``257 k -> k`` exactly. uint16
  arrays are 16-bit whatever their values; wider integers (PIL reads 16-bit PNGs as int32, mode ``I``)
  are 16-bit when a value exceeds 255, else taken as 8-bit values;
- floats are 0..1 (scaled by 255) when their maximum is at most 1, else 0..255; NaN counts as 0; the
  result is rounded to the nearest integer (halves to even, as ``np.round``, the rule
  :func:`dissam.metrics.to_uint8` quantises float predictions with);
- everything is clipped to 0..255.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """``arr`` (any shape) as uint8 by the rules above; raises ValueError for other dtypes."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.floating):
        values = np.nan_to_num(arr.astype(np.float64))
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        return np.round(np.clip(values * scale, 0, 255)).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == np.uint16 or arr.max(initial=0) > 255:
            wide = np.clip(arr, 0, 65535).astype(np.uint32)
            return ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {arr.dtype}")


def as_rgb(image: Any) -> np.ndarray:
    """Any image a user has -> contiguous uint8 RGB ``[H, W, 3]``.

    Paths go through :func:`read_image` (EXIF rotation, alpha, palette, 16-bit). Arrays may be ``HxW``,
    ``HxWx1``, ``HxWx3`` or ``HxWx4`` (alpha dropped), of any dtype :func:`to_uint8`
    converts (uint16 as ``round(x / 257)``, bool, float 0..1 or 0..255). PIL images are accepted too.
    """
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image if image.mode in WIDE_MODES else image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"expected an image of shape HxW, HxWx1, HxWx3 or HxWx4, got {arr.shape}")
    return np.ascontiguousarray(to_uint8(arr[..., :3]))

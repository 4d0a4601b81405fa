"""Photographic textures for procedural scenes, cropped from the sample photographs that ship with
scikit-image (``skimage.data``): bricks, grass, gravel, coins, the moon, a rocket launch site, a garage
with a motorcycle, a retina, a tissue stain, handwriting, the Hubble deep field and the cameraman.

Only images installed with the package are used (no download: the loader refuses anything that would
need one), so data generation works offline and is deterministic for a given scikit-image version.
The photographs the evaluation uses as "real photos" (:data:`EVALUATION_PHOTOS`) are never textures, so
that test stays honest.
"""
from __future__ import annotations

import functools
import importlib.metadata

import cv2
import numpy as np

# skimage.data loaders whose files are bundled with scikit-image (checked offline; no pooch needed)
TEXTURE_SOURCES = ("brick", "grass", "gravel", "camera", "rocket", "coins", "moon", "immunohistochemistry",
                   "stereo_motorcycle", "retina", "text", "hubble_deep_field")
EVALUATION_PHOTOS = frozenset({"astronaut", "chelsea", "cat", "coffee"})
MAX_SIDE = 512  # sources are stored at most this large (enough for crops of a 192-px scene)


def texture_source_id() -> str:
    """Names the texture sources and the scikit-image version they come from (for data-set manifests)."""
    return f"scikit-image-{importlib.metadata.version('scikit-image')}:{','.join(TEXTURE_SOURCES)}"


def _load_one(name: str) -> np.ndarray:
    import skimage.data

    if name in EVALUATION_PHOTOS:
        raise ValueError(f"{name!r} is an evaluation photo and must not be used as a texture")
    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo pairs: the left view
        img = img[0]
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (img.astype(np.float32) / max(1e-6, float(img.max())) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, 2)
    img = np.ascontiguousarray(img[..., :3])
    scale = MAX_SIDE / max(img.shape[:2])
    if scale < 1:
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return img


@functools.lru_cache(maxsize=1)
def load_textures() -> tuple[np.ndarray, ...]:
    """Every source as uint8 RGB ``[H, W, 3]`` (grey ones repeated), longest side at most ``MAX_SIDE``.

    Raises when a source is missing from the installed package (it would need a download)."""
    out = []
    for name in TEXTURE_SOURCES:
        try:
            img = _load_one(name)
        except (ImportError, OSError, ValueError, AttributeError) as e:
            raise RuntimeError(f"texture source skimage.data.{name}() does not load offline: {e}") from e
        img.setflags(write=False)
        out.append(img)
    return tuple(out)


def texture_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of a random source, rotated/flipped, resized to ``size``: float32 RGB 0..255."""
    textures = load_textures()
    img = textures[int(rng.integers(len(textures)))]
    h, w = img.shape[:2]
    side = int(rng.uniform(0.2, 1.0) * min(h, w))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = np.rot90(img[y0:y0 + side, x0:x0 + side], int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp).astype(np.float32)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def photo_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A photographic background: a texture crop, tinted (grey sources, or at random) and with its contrast
    set to a random standard deviation of 10-45 grey levels. float32 ``[S, S, 3]`` in 0..255."""
    crop = texture_crop(rng, size)
    lum = _luminance(crop)
    grey = float(np.abs(crop - lum[..., None]).mean()) < 2.0
    if grey or rng.random() < 0.3:  # tint: map luminance through a random two-colour ramp
        g = (lum - lum.min()) / max(1.0, float(lum.max() - lum.min()))
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        tinted = a * (1 - g[..., None]) + b * g[..., None]
        mix = 1.0 if grey else rng.uniform(0.4, 0.8)
        crop = crop * (1 - mix) + tinted * mix
    mean = crop.reshape(-1, 3).mean(0)
    std = float(crop.std()) + 1e-3
    centre = 0.5 * mean + 0.5 * rng.uniform(30, 225, 3)
    return (centre + (crop - mean) * (rng.uniform(10, 45) / std)).astype(np.float32)


def texture_detail(rng: np.random.Generator, size: int) -> np.ndarray:
    """Zero-mean, unit-deviation luminance of a texture crop, ``[S, S]`` float32 (object surface detail)."""
    lum = _luminance(texture_crop(rng, size))
    return ((lum - lum.mean()) / (float(lum.std()) + 1e-3)).astype(np.float32)

"""Stage-1 masks on disk, keyed by (image content, box, segmenter key), and the reader the refiner's Dataset uses.

Layout: ``<cache_dir>/<segmenter digest>/<image digest[:2]>/<image digest>_<x0>_<y0>_<x1>_<y1>.png``; each
PNG carries its full key in a text chunk that is checked on every read, so a changed image, box or model
never meets a stale entry (and an unreadable or foreign file counts as missing). Writes go to a temporary
file renamed into place (:func:`dissam.fileio.atomic_write`), so an interrupted run leaves only whole
entries and simply resumes. Several
splits may share one ``cache_dir``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
import copy
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from tqdm.auto import tqdm

from ..data.enrichment import targets_for
from ..data.folders import list_pairs
from ..data.prompts import Box, clip_box
from ..fileio import atomic_write_bytes
from .base import CoarseSegmenter, check_image

KEY_CHUNK = "dissam-coarse-key"


def image_digest(image: np.ndarray) -> str:
    """Content hash of a decoded image (shape, dtype and pixels): re-encoding the same pixels keeps it."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.shape}|{image.dtype}|".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def key_digest(segmenter_key: str) -> str:
    """Short folder name for a segmenter key."""
    return hashlib.blake2b(segmenter_key.encode(), digest_size=8).hexdigest()


def _write(path: Path, data: bytes) -> None:
    """Atomic, not fsynced: an entry lost to a power cut is recomputed (and a damaged one fails its key check)."""
    atomic_write_bytes(path, data, durable=False)


class MaskStore:
    """The entries of one segmenter key under ``cache_dir``."""

    def __init__(self, cache_dir: str | Path, segmenter_key: str) -> None:
        self.cache_dir = Path(cache_dir)
        self.segmenter_key = segmenter_key
        self.root = self.cache_dir / key_digest(segmenter_key)

    def _entry_key(self, image_hash: str, box: Box) -> str:
        return f"{self.segmenter_key}\n{image_hash}\n{tuple(int(v) for v in box)}"

    def path(self, image_hash: str, box: Box) -> Path:
        x0, y0, x1, y1 = (int(v) for v in box)
        return self.root / image_hash[:2] / f"{image_hash}_{x0}_{y0}_{x1}_{y1}.png"

    def get(self, image_hash: str, box: Box) -> np.ndarray | None:
        """The stored uint8 mask, or None when absent, unreadable or written under another key."""
        path = self.path(image_hash, box)
        try:
            with Image.open(path) as img:
                img.load()
                if img.text.get(KEY_CHUNK) != self._entry_key(image_hash, box) or img.mode != "L":
                    return None
                return np.array(img, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError):
            return None

    def put(self, image_hash: str, box: Box, mask: np.ndarray) -> Path:
        """Store a uint8 ``[H, W]`` mask atomically; returns its path."""
        if not self.root.joinpath("segmenter.json").is_file():
            _write(self.root / "segmenter.json", json.dumps({"key": self.segmenter_key}).encode())
        info = PngInfo()
        info.add_text(KEY_CHUNK, self._entry_key(image_hash, box))
        buf = BytesIO()
        Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="L").save(buf, format="PNG", pnginfo=info)
        path = self.path(image_hash, box)
        _write(path, buf.getvalue())
        return path


CHUNK_IMAGES = 32  # images read ahead per round of parallel stage-1 work (bounds the memory held)


def _segment(job: tuple[CoarseSegmenter, np.ndarray, list[Box]]) -> list[np.ndarray]:
    """One image's missing masks, on a private copy of the segmenter (it holds the image it embedded)."""
    segmenter, image, boxes = job
    segmenter = copy.copy(segmenter)
    segmenter.set_image(image)
    return [segmenter.predict(box).mask for box in boxes]


def _image_jobs(pairs, store: MaskStore, enrichment: str | None, stats: dict[str, int],
                samples: list[dict[str, Any]], cache_dir: Path) -> Iterator[tuple[str, np.ndarray, list[Box]]]:
    """(digest, image, missing boxes) per image that needs work; counts boxes and records samples."""
    for pair in pairs:
        image, gt = pair.load()
        digest = image_digest(image)
        targets = targets_for(gt, enrichment)
        boxes = [clip_box(t.box, *gt.shape) for t in targets]
        missing = [b for b in dict.fromkeys(boxes) if store.get(digest, b) is None]
        stats["boxes"] += len(boxes)
        stats["computed"] += len(missing)
        samples += [{"stem": pair.stem, "component": t.index, "box": list(b),
                     "file": store.path(digest, b).relative_to(cache_dir).as_posix()} for t, b in zip(targets, boxes)]
        yield digest, image, missing


def _chunks(items: Iterator, n: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def cache_masks(segmenter: CoarseSegmenter, data_dir: str | Path, cache_dir: str | Path,
                enrichment: str | None = "filtered", progress: bool = True,
                workers: int | None = None) -> dict[str, Any]:
    """Stage-1 masks for every (image, target box) of an im/gt folder; returns the manifest.

    ``workers`` (default: every core for a ``cpu_parallel`` segmenter such as GrabCut, else 1) computes
    the missing masks of several images at once in threads (cv2 releases the GIL); the masks, the cache
    and the manifest are the same as with one. Targets: ``enrichment`` None/'none' = the whole GT's tight
    box, 'filtered'/'components' = one box per enriched component. Each image is embedded at most once (``set_image``, then every missing box); an image whose
    boxes are all cached is not embedded at all. The manifest (integer ``images``, ``boxes``,
    ``encoder_calls``, ``cache_hits``, ``computed``; ``seconds``, ``segmenter``, ``data_dir``,
    ``enrichment``, ``samples``) is written to ``<cache_dir>/manifest.json`` and ``<cache_dir>/manifests/``.
    """
    start = time.perf_counter()
    data_dir, cache_dir = Path(data_dir).resolve(), Path(cache_dir)
    store = MaskStore(cache_dir, segmenter.key)
    pairs = list_pairs(data_dir)
    if workers is None:
        workers = (os.cpu_count() or 1) if segmenter.cpu_parallel else 1
    stats = {"boxes": 0, "computed": 0, "embedded": 0}
    samples: list[dict[str, Any]] = []
    jobs = _image_jobs(tqdm(pairs, desc=f"stage 1 {data_dir.name}", unit="img", disable=not progress),
                       store, enrichment, stats, samples, cache_dir)
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        for chunk in _chunks(jobs, CHUNK_IMAGES if pool else 1):
            todo = [(digest, image, missing) for digest, image, missing in chunk if missing]
            stats["embedded"] += len(todo)
            if pool is None:  # each mask stored as soon as it exists: an interruption loses none
                for digest, image, missing in todo:
                    segmenter.set_image(image)
                    for box in missing:
                        store.put(digest, box, segmenter.predict(box).mask)
                continue
            masks = list(pool.map(_segment, [(segmenter, image, missing) for _, image, missing in todo]))
            segmenter.encoder_calls += len(todo)  # the copies embedded them
            for (digest, _, missing), found in zip(todo, masks):
                for box, mask in zip(missing, found):
                    store.put(digest, box, mask)
    finally:
        if pool is not None:
            pool.shutdown()
    manifest = {
        "images": len(pairs), "boxes": stats["boxes"], "encoder_calls": stats["embedded"],
        "cache_hits": stats["boxes"] - stats["computed"], "computed": stats["computed"],
        "seconds": round(time.perf_counter() - start, 3),
        "segmenter": segmenter.key, "segmenter_dir": store.root.name, "data_dir": str(data_dir),
        "enrichment": enrichment or "none", "samples": samples,
    }
    text = json.dumps(manifest, indent=1).encode()
    _write(cache_dir / "manifest.json", text)
    run_id = hashlib.blake2b(f"{data_dir}|{enrichment}|{segmenter.key}".encode(), digest_size=6).hexdigest()
    _write(cache_dir / "manifests" / f"{data_dir.name}-{run_id}.json", text)
    return manifest


class CachedCoarse:
    """Stage-1 seam of the refiner's Dataset: ``reader(stem, image, box) -> uint8 [H, W]`` from the cache.

    A missing entry raises KeyError naming the stem and box, unless a segmenter was given with
    ``compute_missing=True``: then it is computed (embedding each image once) and stored.
    """

    def __init__(self, cache_dir: str | Path, segmenter_or_key: CoarseSegmenter | str,
                 compute_missing: bool = False) -> None:
        if isinstance(segmenter_or_key, str):
            self.segmenter, key = None, segmenter_or_key
        else:
            self.segmenter, key = segmenter_or_key, segmenter_or_key.key
        if compute_missing and self.segmenter is None:
            raise ValueError("compute_missing=True needs a segmenter, not only its key")
        self.compute_missing = compute_missing
        self.store = MaskStore(cache_dir, key)
        self._embedded: tuple[str, int] | None = None  # (image digest, segmenter.encoder_calls) after our set_image

    @property
    def key(self) -> str:
        return self.store.segmenter_key

    def __call__(self, stem: str, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        image = check_image(image)
        clipped = clip_box(box, *image.shape[:2])
        digest = image_digest(image)
        mask = self.store.get(digest, clipped)
        if mask is not None:
            return mask
        if not self.compute_missing or self.segmenter is None:
            raise KeyError(f"no cached stage-1 mask for image {stem!r}, box {clipped} under segmenter "
                           f"{self.key!r} in {self.store.root}; run dissam.coarse.cache_masks (or `dissam cache`) "
                           "first, or pass a segmenter with compute_missing=True")
        seg = self.segmenter
        if self._embedded != (digest, seg.encoder_calls):
            seg.set_image(image)
            self._embedded = (digest, seg.encoder_calls)
        mask = seg.predict(clipped).mask
        self.store.put(digest, clipped, mask)
        return mask

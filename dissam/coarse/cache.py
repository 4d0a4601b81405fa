"""Stage-1 masks on disk, keyed by (image content, box, segmenter key), and the reader the refiner's Dataset uses.

Layout: ``<cache_dir>/<segmenter digest>/<image digest[:2]>/<image digest>_<x0>_<y0>_<x1>_<y1>.png``; each
PNG carries its full key in a text chunk that is checked on every read, so a changed image, box or model
never meets a stale entry (and an unreadable or foreign file counts as missing). Writes go to a temporary
file renamed into place (:func:`dissam.fileio.atomic_write`), so an interrupted run leaves only whole
entries and simply resumes. Several splits may share one ``cache_dir``.

A pass over a folder (:func:`cache_split`, :func:`cache_masks`) decodes, hashes and looks up each image in
read-ahead threads while the segmenter works, serves several enrichment rules at once (each image embedded
at most once for all), and ends with a manifest per rule that records the folder's listing (names, sizes,
modification times). A later pass whose listing, key and rule match a complete manifest, and whose entry
files are all there, reads nothing (``verify=True`` checks every entry again).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from tqdm.auto import tqdm

from ..data.enrichment import targets_for
from ..data.folders import Pair, list_pairs
from ..data.prompts import Box, clip_box
from ..data.stamps import listing_digest
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


CHUNK_IMAGES = 32  # images segmented per round of parallel stage-1 work (bounds the memory held)
READ_AHEAD = 4  # images decoded, hashed and looked up ahead of the segmenter, by as many threads


def _segment(job: tuple[CoarseSegmenter, np.ndarray, list[Box]]) -> list[np.ndarray]:
    """One image's missing masks, on a private copy of the segmenter (it holds the image it embedded)."""
    segmenter, image, boxes = job
    segmenter = copy.copy(segmenter)
    segmenter.set_image(image)
    return [segmenter.predict(box).mask for box in boxes]


@dataclass
class ImageWork:
    """One image as the stage-1 pass sees it: its content digest, its clipped boxes per enrichment (in
    target order) and the distinct boxes the cache lacks."""

    pair: Pair
    digest: str
    image: np.ndarray
    targets: list[list[tuple[int, Box]]]  # per enrichment: (component index, clipped box)
    missing: list[Box]


def _look_up(pair: Pair, store: MaskStore, enrichments: Sequence[str | None]) -> ImageWork:
    """Decode and hash one image, find its boxes (the GT labelled once per rule) and the missing ones."""
    image, gt = pair.load()
    digest = image_digest(image)
    targets = [[(t.index, clip_box(t.box, *gt.shape)) for t in targets_for(gt, e)] for e in enrichments]
    boxes = dict.fromkeys(b for per_rule in targets for _, b in per_rule)
    return ImageWork(pair, digest, image, targets, [b for b in boxes if store.get(digest, b) is None])


def _read_ahead(func: Callable[[Any], Any], items: Iterable, depth: int) -> Iterator:
    """``func(item)`` for each item, in order, computed by ``depth`` threads up to ``depth`` items ahead
    (decoding and hashing overlap the consumer's work; at most ``depth`` results wait in memory)."""
    if depth <= 1:
        yield from map(func, items)
        return
    with ThreadPoolExecutor(depth) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(func, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _chunks(items: Iterator, n: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Tally:
    """The counts and samples of each enrichment's manifest. A computed box counts in the first rule
    that lists it, an embedding in the first rule with a computed box of that image, so the manifests
    of one pass add up to the work done (and equal two passes' computed and cache hits)."""

    def __init__(self, n_rules: int, store: MaskStore, cache_dir: Path) -> None:
        self.store, self.cache_dir = store, cache_dir
        self.stats = [{"boxes": 0, "computed": 0, "embedded": 0} for _ in range(n_rules)]
        self.samples: list[list[dict[str, Any]]] = [[] for _ in range(n_rules)]

    def add(self, work: ImageWork) -> None:
        left, embedded = set(work.missing), False
        for stats, samples, targets in zip(self.stats, self.samples, work.targets):
            mine = [b for b in dict.fromkeys(b for _, b in targets) if b in left]
            left -= set(mine)
            stats["boxes"] += len(targets)
            stats["computed"] += len(mine)
            if mine and not embedded:
                stats["embedded"], embedded = stats["embedded"] + 1, True
            samples += [{"stem": work.pair.stem, "component": index, "box": list(box),
                         "file": self.store.path(work.digest, box).relative_to(self.cache_dir).as_posix()}
                        for index, box in targets]


def _counted(works: Iterator[ImageWork], tally: "_Tally") -> Iterator[ImageWork]:
    for work in works:
        tally.add(work)
        yield work


WRITE_BACKLOG = 16  # masks waiting for their PNG encoding before the segmenter waits for the writers


def _segment_serial(segmenter: CoarseSegmenter, works: Iterator[ImageWork], store: MaskStore) -> None:
    """One image at a time on the segmenter (SAM on its device), the next images read ahead meanwhile;
    each mask is handed to a writer thread (PNG encoding, atomic write) as soon as it exists."""
    with ThreadPoolExecutor(2) as writer:
        pending: deque = deque()
        for work in works:
            if not work.missing:
                continue
            segmenter.set_image(work.image)
            for box in work.missing:
                pending.append(writer.submit(store.put, work.digest, box, segmenter.predict(box).mask))
                while pending and (pending[0].done() or len(pending) > WRITE_BACKLOG):
                    pending.popleft().result()  # raises a writer's error here
        while pending:
            pending.popleft().result()


def _segment_parallel(segmenter: CoarseSegmenter, works: Iterator[ImageWork], store: MaskStore,
                      workers: int) -> None:
    """Several images at once on copies of a ``cpu_parallel`` segmenter (GrabCut), in threads."""
    with ThreadPoolExecutor(workers) as pool:
        for chunk in _chunks(works, CHUNK_IMAGES):
            todo = [w for w in chunk if w.missing]
            masks = list(pool.map(_segment, [(segmenter, w.image, w.missing) for w in todo]))
            segmenter.encoder_calls += len(todo)  # the copies embedded them
            for work, found in zip(todo, masks):
                for box, mask in zip(work.missing, found):
                    store.put(work.digest, box, mask)


def _manifest_path(cache_dir: Path, data_dir: Path, enrichment: str | None, key: str) -> Path:
    run_id = hashlib.blake2b(f"{data_dir}|{enrichment}|{key}".encode(), digest_size=6).hexdigest()
    return cache_dir / "manifests" / f"{data_dir.name}-{run_id}.json"


def _write_manifest(cache_dir: Path, data_dir: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1).encode()
    _write(cache_dir / "manifest.json", text)
    enrichment = None if manifest["enrichment"] == "none" else manifest["enrichment"]
    _write(_manifest_path(cache_dir, data_dir, enrichment, manifest["segmenter"]), text)


def _entries_exist(cache_dir: Path, samples: list[dict[str, Any]]) -> bool:
    """Whether every file the samples name is there (one scan per folder; no file is opened)."""
    wanted: dict[Path, set[str]] = {}
    for s in samples:
        path = cache_dir / s["file"]
        wanted.setdefault(path.parent, set()).add(path.name)
    for folder, names in wanted.items():
        try:
            with os.scandir(folder) as it:
                present = {e.name for e in it}
        except FileNotFoundError:
            return False
        if not names <= present:
            return False
    return True


def complete_manifest(data_dir: str | Path, cache_dir: str | Path, segmenter_key: str,
                      enrichment: str | None = "filtered",
                      pairs: Sequence[Pair] | None = None) -> dict[str, Any] | None:
    """The manifest of an earlier complete pass over ``data_dir`` under this key and enrichment when
    nothing changed since: the same folder listing (names, sizes, modification times) and every entry
    file still there. None otherwise (then the split needs a full pass). Opens no image and no mask."""
    data_dir, cache_dir = Path(data_dir).resolve(), Path(cache_dir)
    try:
        manifest = json.loads(_manifest_path(cache_dir, data_dir, enrichment, segmenter_key).read_text())
    except (OSError, ValueError):
        return None
    pairs = list_pairs(data_dir) if pairs is None else pairs
    if (not manifest.get("complete") or manifest.get("segmenter") != segmenter_key
            or manifest.get("listing") != listing_digest(pairs) or manifest.get("images") != len(pairs)):
        return None
    return manifest if _entries_exist(cache_dir, manifest.get("samples", [])) else None


def completed_pass(data_dir: str | Path, cache_dir: str | Path, segmenter_key: str,
                   enrichments: Sequence[str | None],
                   pairs: Sequence[Pair] | None = None) -> list[dict[str, Any]] | None:
    """The manifests a pass would return when every rule's is complete (:func:`complete_manifest`),
    reported as a pass that found everything cached (no embedding, every box a hit); else None.
    Reads no image and no mask, and writes nothing."""
    start = time.perf_counter()
    pairs = list_pairs(data_dir) if pairs is None else pairs
    done = [complete_manifest(data_dir, cache_dir, segmenter_key, e, pairs) for e in enrichments]
    if any(m is None for m in done):
        return None
    seconds = round(time.perf_counter() - start, 3)
    return [{**m, "encoder_calls": 0, "cache_hits": m["boxes"], "computed": 0, "seconds": seconds,
             "verified": False} for m in done]


def cache_split(segmenter: CoarseSegmenter, data_dir: str | Path, cache_dir: str | Path,
                enrichments: Sequence[str | None] = ("filtered",), progress: bool = True,
                workers: int | None = None, verify: bool = False) -> list[dict[str, Any]]:
    """Stage-1 masks of an im/gt folder for several enrichment rules in one pass (each image decoded,
    hashed and embedded at most once for all of them); returns one manifest per rule, in order.

    When every rule's manifest says an earlier pass completed under this key with the same folder
    listing (:func:`completed_pass`), nothing is read, unless ``verify``. Otherwise every image is
    decoded, hashed and its entries looked up by :data:`READ_AHEAD` threads while the segmenter works
    on earlier images. ``workers``: as in :func:`cache_masks`."""
    start = time.perf_counter()
    data_dir, cache_dir = Path(data_dir).resolve(), Path(cache_dir)
    pairs = list_pairs(data_dir)
    done = None if verify else completed_pass(data_dir, cache_dir, segmenter.key, enrichments, pairs)
    if done is not None:
        return done
    store = MaskStore(cache_dir, segmenter.key)
    if workers is None:
        workers = (os.cpu_count() or 1) if segmenter.cpu_parallel else 1
    tally = _Tally(len(enrichments), store, cache_dir)
    bar = tqdm(pairs, desc=f"stage 1 {data_dir.name}", unit="img", disable=not progress)
    works = _read_ahead(lambda pair: _look_up(pair, store, enrichments), bar, READ_AHEAD)
    counted = _counted(works, tally)
    if workers > 1:
        _segment_parallel(segmenter, counted, store, workers)
    else:
        _segment_serial(segmenter, counted, store)
    listing, seconds = listing_digest(pairs), round(time.perf_counter() - start, 3)
    manifests = []
    for enrichment, stats, samples in zip(enrichments, tally.stats, tally.samples):
        manifest = {
            "images": len(pairs), "boxes": stats["boxes"], "encoder_calls": stats["embedded"],
            "cache_hits": stats["boxes"] - stats["computed"], "computed": stats["computed"], "seconds": seconds,
            "segmenter": segmenter.key, "segmenter_dir": store.root.name, "data_dir": str(data_dir),
            "enrichment": enrichment or "none", "listing": listing, "complete": True, "verified": True,
            "samples": samples,
        }
        _write_manifest(cache_dir, data_dir, manifest)
        manifests.append(manifest)
    return manifests


def cache_masks(segmenter: CoarseSegmenter, data_dir: str | Path, cache_dir: str | Path,
                enrichment: str | None = "filtered", progress: bool = True,
                workers: int | None = None, verify: bool = False) -> dict[str, Any]:
    """Stage-1 masks for every (image, target box) of an im/gt folder; returns the manifest.

    ``workers`` (default: every core for a ``cpu_parallel`` segmenter such as GrabCut, else 1) computes
    the missing masks of several images at once in threads (cv2 releases the GIL); the masks, the cache
    and the manifest are the same as with one. Targets: ``enrichment`` None/'none' = the whole GT's tight
    box, 'filtered'/'components' = one box per enriched component. Each image is embedded at most once
    (``set_image``, then every missing box); an image whose boxes are all cached is not embedded at all.
    A folder whose last complete pass under this key saw the same listing is not read again (unless
    ``verify``; :func:`cache_split`). The manifest (integer ``images``, ``boxes``, ``encoder_calls``,
    ``cache_hits``, ``computed``; ``seconds``, ``segmenter``, ``data_dir``, ``enrichment``, ``listing``,
    ``complete``, ``verified``, ``samples``) is written to ``<cache_dir>/manifest.json`` and
    ``<cache_dir>/manifests/``.
    """
    return cache_split(segmenter, data_dir, cache_dir, (enrichment,), progress=progress, workers=workers,
                       verify=verify)[0]


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

    def masks(self, stem: str, image: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
        """The masks of several boxes of one image (hashed once): what :meth:`__call__` gives for each."""
        image = check_image(image)
        digest = image_digest(image)
        return [self._mask(stem, image, digest, box) for box in boxes]

    def __call__(self, stem: str, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        image = check_image(image)
        return self._mask(stem, image, image_digest(image), box)

    def _mask(self, stem: str, image: np.ndarray, digest: str, box: tuple[float, float, float, float]) -> np.ndarray:
        clipped = clip_box(box, *image.shape[:2])
        mask = self.store.get(digest, clipped)
        if mask is not None:
            return mask
        if not self.compute_missing or self.segmenter is None:
            raise KeyError(f"no cached stage-1 mask for image {stem!r}, box {clipped} under segmenter "
                           f"{self.key!r} in {self.store.root}; run dissam.coarse.cache_masks (or `dissam cache`) "
                           "first (with verify=True where a manifest claims a complete pass), or pass a segmenter with "
                           "compute_missing=True")
        seg = self.segmenter
        if self._embedded != (digest, seg.encoder_calls):
            seg.set_image(image)
            self._embedded = (digest, seg.encoder_calls)
        mask = seg.predict(clipped).mask
        self.store.put(digest, clipped, mask)
        return mask

"""The refiner's data at network size, computed once per image: uint8 arrays in memory or on disk.

Every sample of :class:`dissam.data.datasets.RefinerDataset` is two uint8 arrays at ``S x S``: the image's
RGB ``[3, S, S]`` (shared by the samples of one image) and the sample's *aux* planes ``[C, S, S]``: the
stage-1 mask (when ``use_mask``), the filled box (when ``use_box``) and the soft target GT (always, last),
in that order. :func:`image_arrays` computes them for one image: decode, enrichment, prompt boxes, stage-1
masks, and the references' resize (:func:`dissam.data.transforms.resize`) of each full-size array. The
same function fills every storage, so the storages hold the same bytes:

- :class:`MemoryArrays`: stacked tensors (the CPU profiles: small images, fast epochs);
- :class:`DiskArrays`: ``.npy`` files read through ``np.load(mmap_mode="r")`` (DIS5K at 1024^2), built by
  :func:`open_disk_arrays` once, in parallel threads, and reused by every later start;
- per item (:func:`sample_arrays`): the same arrays for one sample, from the original files.

Disk layout under ``cache_dir`` (one split):
``rgb-<S>/<stem>.<image stamp digest>.npy`` (shared by every data set of the split at that size) and
``set-<S>-<spec key>/<stem>.npy`` (aux ``[m, C, S, S]``), ``<stem>.json`` (its record) and
``manifest.json`` (every record). A record holds the image's and GT's stamps (size, mtime;
:mod:`dissam.data.stamps`), the image's position in the split, its samples (component, prompt box,
original size) and the byte size of each file. The spec key covers the size, the enrichment rule, the box
jitter and its seed, the channel switches and the stage-1 key, so any change gives another set. A start
checks the manifest against the listing (one ``stat`` per image and GT, one folder scan) and never opens
an entry; entries are written atomically (:mod:`dissam.fileio`), so an interrupted build leaves whole
entries, and their records (the ``.json`` beside each) make the next start build only what is missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..fileio import atomic_write_bytes
from .enrichment import component_target, target_mask, targets_for
from .folders import Pair
from .images import DataError
from .prompts import Box, box_channel, jitter_box
from .stamps import file_stamp, pair_stamp
from .transforms import resize

FORMAT = 1  # bump when the arrays' meaning changes: every set gets a new key

# (component index, prompt box at the original resolution, original (H, W)) of one sample
SampleRecord = tuple[int, Box, tuple[int, int]]


@dataclass(frozen=True)
class ArraySpec:
    """What a data set's arrays depend on beside its files. ``stage1_key``: the coarse source's key
    (only when ``use_mask``; part of the on-disk key)."""

    size: int
    enrichment: str | None
    jitter: float = 0.0
    seed: int = 0
    use_mask: bool = True
    use_box: bool = True
    stage1_key: str | None = None

    @property
    def channels(self) -> tuple[str, ...]:
        """The aux planes, in order: ``coarse`` and ``box`` when switched on, ``target`` always last."""
        return ("coarse",) * self.use_mask + ("box",) * self.use_box + ("target",)

    @property
    def key(self) -> str:
        """Short digest of every field (and the format), naming the on-disk set."""
        text = json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# ----------------------------------------------------------------------------- the arrays of one image
def prompt_box(box: Box, hw: tuple[int, int], image_index: int, index: int, spec: ArraySpec) -> Box:
    """The prompt box of a sample: the component's tight box, jittered when ``spec.jitter`` > 0 (by a
    generator seeded with ``(seed, image_index, index + 1)``, so the box is fixed per sample)."""
    if spec.jitter <= 0:
        return box
    rng = np.random.default_rng([spec.seed, image_index, index + 1])
    return jitter_box(box, hw[0], hw[1], rng, spec.jitter)


def coarse_masks(coarse: Callable, stem: str, image: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
    """The stage-1 masks of ``boxes`` (uint8, the image's size) from a coarse source; one that offers
    ``masks(stem, image, boxes)`` (the stage-1 cache: the image hashed once) is asked once."""
    many = getattr(coarse, "masks", None)
    masks = many(stem, image, boxes) if many is not None else [coarse(stem, image, box) for box in boxes]
    masks = [np.asarray(m) for m in masks]
    for mask in masks:
        if mask.shape != image.shape[:2]:
            raise DataError(f"coarse mask for {stem!r} is {mask.shape}, its image is {image.shape[:2]}")
    return masks


def rgb_array(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[3, S, S]``: the image resized (the references' bilinear, truncated)."""
    return np.ascontiguousarray(resize(image, size).transpose(2, 0, 1))


def sample_aux(target: np.ndarray, box: Box, coarse: np.ndarray | None, spec: ArraySpec) -> np.ndarray:
    """uint8 ``[C, S, S]`` (:attr:`ArraySpec.channels`): each plane made at the original size, then resized."""
    h, w = target.shape
    planes = []
    if spec.use_mask:
        planes.append(resize(coarse, spec.size))
    if spec.use_box:
        planes.append(resize(box_channel(box, h, w), spec.size))
    planes.append(resize(target, spec.size))
    return np.stack(planes)


def image_arrays(pair: Pair, image_index: int, spec: ArraySpec, coarse: Callable | None
                 ) -> tuple[list[SampleRecord], np.ndarray, np.ndarray]:
    """One image's samples and arrays: (records, rgb uint8 ``[3, S, S]``, aux uint8 ``[m, C, S, S]``).
    The one function behind every storage (an image without a sample gives ``m = 0``)."""
    image, gt = pair.load()
    hw = (int(gt.shape[0]), int(gt.shape[1]))
    rgb = rgb_array(image, spec.size)
    targets = targets_for(gt, spec.enrichment)
    boxes = [prompt_box(t.box, hw, image_index, t.index, spec) for t in targets]
    masks = coarse_masks(coarse, pair.stem, image, boxes) if spec.use_mask else [None] * len(boxes)
    aux = [sample_aux(component_target(gt, None if t.index == -1 else t.mask), box, mask, spec)
           for t, box, mask in zip(targets, boxes, masks)]
    records = [(t.index, box, hw) for t, box in zip(targets, boxes)]
    planes = np.stack(aux) if aux else np.zeros((0, len(spec.channels), spec.size, spec.size), np.uint8)
    return records, rgb, planes


def sample_arrays(pair: Pair, record: SampleRecord, spec: ArraySpec, coarse: Callable | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One sample's (rgb ``[3, S, S]``, aux ``[C, S, S]``) from the original files, as :func:`image_arrays`
    makes them (for data sets that read per item)."""
    index, box, _ = record
    image, gt = pair.load()
    mask = coarse_masks(coarse, pair.stem, image, [box])[0] if spec.use_mask else None
    return rgb_array(image, spec.size), sample_aux(target_mask(gt, spec.enrichment, index), box, mask, spec)


def sample_records(pair: Pair, image_index: int, spec: ArraySpec) -> list[SampleRecord]:
    """The samples of one image from its GT alone (what a per-item data set enumerates at start)."""
    from .images import read_mask

    gt = read_mask(pair.gt_path)
    hw = (int(gt.shape[0]), int(gt.shape[1]))
    return [(t.index, prompt_box(t.box, hw, image_index, t.index, spec), hw) for t in targets_for(gt, spec.enrichment)]


# ----------------------------------------------------------------------------- storages
class MemoryArrays:
    """Stacked uint8 tensors: ``rgb [N, 3, S, S]`` per image with a sample, ``aux [M, C, S, S]`` per sample."""

    def __init__(self, rgb: list[np.ndarray], aux: list[np.ndarray], size: int, channels: int) -> None:
        self._rgb = torch.from_numpy(np.stack(rgb)) if rgb else torch.zeros(0, 3, size, size, dtype=torch.uint8)
        self._aux = torch.from_numpy(np.concatenate(aux)) if aux else torch.zeros(0, channels, size, size,
                                                                                   dtype=torch.uint8)

    def rgb(self, row: int) -> torch.Tensor:
        return self._rgb[row]

    def aux(self, sample: int) -> torch.Tensor:
        return self._aux[sample]


def memory_arrays(pairs: Sequence[Pair], spec: ArraySpec, coarse: Callable | None
                  ) -> tuple[MemoryArrays, list[list[SampleRecord]], list[int]]:
    """Every image's arrays in memory, one image after the other (in order: a live segmenter may be the
    coarse source). Returns (storage, records per image, rgb row per image; -1 when it has no sample)."""
    rgb, aux, records, rows = [], [], [], []
    for k, pair in enumerate(pairs):
        recs, image_rgb, planes = image_arrays(pair, k, spec, coarse)
        records.append(recs)
        rows.append(len(rgb) if recs else -1)
        if recs:
            rgb.append(image_rgb)
            aux.append(planes)
    return MemoryArrays(rgb, aux, spec.size, len(spec.channels)), records, rows


class DiskArrays:
    """uint8 arrays in ``.npy`` files, memory-mapped on each read (cheap in DataLoader workers: nothing is
    held open, so the object pickles small). ``rgb(row)`` and ``aux(sample)`` copy one array out."""

    def __init__(self, rgb_files: list[Path | None], aux_files: list[tuple[Path, int]]) -> None:
        self.rgb_files, self.aux_files = rgb_files, aux_files

    def rgb(self, row: int) -> torch.Tensor:
        return torch.from_numpy(np.array(np.load(self.rgb_files[row], mmap_mode="r")))

    def aux(self, sample: int) -> torch.Tensor:
        path, offset = self.aux_files[sample]
        return torch.from_numpy(np.array(np.load(path, mmap_mode="r")[offset]))


# ----------------------------------------------------------------------------- the on-disk cache
def _npy_bytes(array: np.ndarray) -> bytes:
    buf = BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _rgb_name(pair: Pair) -> str:
    stamp = hashlib.blake2b(f"{Path(pair.image_path).name}|{file_stamp(pair.image_path)}".encode(),
                            digest_size=6).hexdigest()
    return f"{pair.stem}.{stamp}.npy"


@dataclass
class DiskLayout:
    """The folders of one split's set: ``rgb_dir`` (shared by the split's sets at one size) and ``set_dir``."""

    rgb_dir: Path
    set_dir: Path

    @classmethod
    def of(cls, cache_dir: str | Path, spec: ArraySpec) -> "DiskLayout":
        root = Path(cache_dir)
        return cls(root / f"rgb-{spec.size}", root / f"set-{spec.size}-{spec.key}")

    @property
    def manifest(self) -> Path:
        return self.set_dir / "manifest.json"


def _sizes(folder: Path) -> dict[str, int]:
    """File name -> size of every entry in ``folder`` (one scan, no file opened)."""
    try:
        with os.scandir(folder) as it:
            return {e.name: e.stat().st_size for e in it if e.is_file()}
    except FileNotFoundError:
        return {}


def _build_entry(pair: Pair, k: int, spec: ArraySpec, coarse: Callable | None, layout: DiskLayout,
                 rgb_sizes: dict[str, int]) -> dict[str, Any]:
    """Compute and write one image's entry (rgb when absent, aux, then its record); returns the record."""
    stamp = pair_stamp(pair)
    records, rgb, planes = image_arrays(pair, k, spec, coarse)
    record: dict[str, Any] = {"stem": pair.stem, "image_index": k, "stamp": stamp,
                              "samples": [[i, list(box), list(hw)] for i, box, hw in records]}
    if records:
        rgb_name = _rgb_name(pair)
        if rgb_name not in rgb_sizes:
            atomic_write_bytes(layout.rgb_dir / rgb_name, _npy_bytes(rgb), durable=False)
        aux_bytes = _npy_bytes(planes)
        atomic_write_bytes(layout.set_dir / f"{pair.stem}.npy", aux_bytes, durable=False)
        record.update(rgb=rgb_name, rgb_bytes=(layout.rgb_dir / rgb_name).stat().st_size, aux_bytes=len(aux_bytes))
    atomic_write_bytes(layout.set_dir / f"{pair.stem}.json", json.dumps(record).encode(), durable=False)
    return record


def _valid(record: dict[str, Any] | None, pair: Pair, k: int, spec: ArraySpec, rgb_sizes: dict[str, int],
           set_sizes: dict[str, int]) -> bool:
    """Whether a record still describes ``pair`` and its files are whole (stamps and sizes only)."""
    if record is None or record.get("stem") != pair.stem or record.get("stamp") != pair_stamp(pair):
        return False
    if spec.jitter > 0 and record.get("image_index") != k:  # the jitter draw depends on the position
        return False
    if not record["samples"]:
        return True
    return (rgb_sizes.get(record["rgb"]) == record["rgb_bytes"]
            and set_sizes.get(f"{pair.stem}.npy") == record["aux_bytes"])


def _sidecar(layout: DiskLayout, stem: str, set_sizes: dict[str, int]) -> dict[str, Any] | None:
    """The record an interrupted build left beside an entry (read only for images the manifest lacks)."""
    if f"{stem}.json" not in set_sizes:
        return None
    try:
        return json.loads((layout.set_dir / f"{stem}.json").read_text())
    except (OSError, ValueError):
        return None


def _read_manifest(layout: DiskLayout, spec: ArraySpec) -> dict[str, Any]:
    try:
        manifest = json.loads(layout.manifest.read_text())
    except (OSError, ValueError):
        return {}
    return manifest.get("images", {}) if manifest.get("key") == spec.key else {}


def _write_manifest(layout: DiskLayout, spec: ArraySpec, records: dict[str, dict], stats: dict[str, Any]) -> dict:
    manifest = {"key": spec.key, "format": FORMAT, "spec": asdict(spec), "channels": list(spec.channels), **stats,
                "images": records}
    atomic_write_bytes(layout.manifest, json.dumps(manifest).encode(), durable=False)
    return manifest


def _thread_safe(coarse: Callable | None) -> bool:
    """Sources that may be called from several threads: none, or a cache reader that computes nothing."""
    return coarse is None or (hasattr(coarse, "masks") and not getattr(coarse, "compute_missing", False))


def open_disk_arrays(pairs: Sequence[Pair], spec: ArraySpec, coarse: Callable | None, cache_dir: str | Path,
                     workers: int | None = None, progress: bool = False
                     ) -> tuple[DiskArrays, list[list[SampleRecord]], list[int], dict[str, Any]]:
    """The split's arrays on disk under ``cache_dir``: reused where the manifest (or an entry's record)
    matches the listing, built for the rest in ``workers`` threads (default: every core, one when the
    coarse source is not thread-safe). Returns (storage, records per image, rgb row per image, manifest
    without its records: ``images``, ``samples``, ``built``, ``reused``, ``seconds``, ``bytes``)."""
    start = time.perf_counter()
    layout = DiskLayout.of(cache_dir, spec)
    layout.set_dir.mkdir(parents=True, exist_ok=True)
    layout.rgb_dir.mkdir(parents=True, exist_ok=True)
    known, rgb_sizes, set_sizes = _read_manifest(layout, spec), _sizes(layout.rgb_dir), _sizes(layout.set_dir)
    records: dict[str, dict] = {}
    todo: list[tuple[int, Pair]] = []
    for k, pair in enumerate(pairs):
        record = known.get(pair.stem)
        if not _valid(record, pair, k, spec, rgb_sizes, set_sizes):
            record = _sidecar(layout, pair.stem, set_sizes)
        if _valid(record, pair, k, spec, rgb_sizes, set_sizes):
            records[pair.stem] = record
        else:
            todo.append((k, pair))
    reused = len(records)
    workers = workers or os.cpu_count() or 1
    workers = workers if _thread_safe(coarse) else 1
    try:
        _build(todo, spec, coarse, layout, rgb_sizes, records, workers, progress)
    finally:
        if todo or set(known) != set(records):
            stats = {"images": len(pairs), "built": len(records) - reused, "reused": reused}
            _write_manifest(layout, spec, {p.stem: records[p.stem] for p in pairs if p.stem in records}, stats)
    return _storage(pairs, records, layout, spec, reused, time.perf_counter() - start)


def _build(todo: list[tuple[int, Pair]], spec: ArraySpec, coarse: Callable | None, layout: DiskLayout,
           rgb_sizes: dict[str, int], records: dict[str, dict], workers: int, progress: bool) -> None:
    """Build the missing entries, ``workers`` images at once; each finished record lands in ``records``."""
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=f"resized cache {layout.set_dir.parent.name}", unit="img", disable=not progress)
    job = lambda item: _build_entry(item[1], item[0], spec, coarse, layout, rgb_sizes)  # noqa: E731
    try:
        if workers <= 1:
            for item in todo:
                records[item[1].stem] = job(item)
                bar.update()
            return
        with ThreadPoolExecutor(workers) as pool:
            for item, record in zip(todo, pool.map(job, todo)):
                records[item[1].stem] = record
                bar.update()
    finally:
        bar.close()


def _storage(pairs: Sequence[Pair], records: dict[str, dict], layout: DiskLayout, spec: ArraySpec, reused: int,
             seconds: float) -> tuple[DiskArrays, list[list[SampleRecord]], list[int], dict[str, Any]]:
    rgb_files: list[Path | None] = []
    aux_files: list[tuple[Path, int]] = []
    per_image: list[list[SampleRecord]] = []
    total = 0
    for pair in pairs:
        record = records[pair.stem]
        samples = [(int(i), tuple(int(v) for v in box), (int(hw[0]), int(hw[1]))) for i, box, hw in record["samples"]]
        per_image.append(samples)
        rgb_files.append(layout.rgb_dir / record["rgb"] if samples else None)
        aux_files += [(layout.set_dir / f"{pair.stem}.npy", j) for j in range(len(samples))]
        total += record.get("rgb_bytes", 0) + record.get("aux_bytes", 0) if samples else 0
    summary = {"images": len(pairs), "samples": len(aux_files), "built": len(pairs) - reused, "reused": reused,
               "seconds": round(seconds, 3), "bytes": total, "set_dir": str(layout.set_dir),
               "channels": list(spec.channels)}
    return DiskArrays(rgb_files, aux_files), per_image, list(range(len(pairs))), summary
